/**
 * DESIGN.md §1: dependencies point one way. protocol/ and util/ import nothing of ours;
 * storage/ imports util/; core/ imports protocol/, the storage interface and util/; amqp/
 * imports core/ and protocol/. Root modules (broker, main, config, errors, log) wire them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '../../src');

const ALLOWED: Record<string, string[]> = {
  protocol: ['protocol'],
  util: ['util'],
  storage: ['storage', 'util'],
  core: ['core', 'protocol', 'storage', 'util', '(root)'],
  amqp: ['amqp', 'core', 'protocol', 'util', '(root)'],
};
/** Root modules that layers below broker.ts may use. */
const SHARED_ROOT = new Set(['errors.ts', 'config.ts', 'log.ts', 'version.ts']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function area(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? rel.split('/')[0]! : '(root)';
}

describe('module dependencies', () => {
  const all = files(SRC);

  it('finds the source tree', () => {
    expect(all.length).toBeGreaterThan(10);
  });

  for (const file of all) {
    const from = area(file);
    const allowed = ALLOWED[from];
    if (!allowed) continue;
    it(`${relative(SRC, file)} imports only what its layer may`, () => {
      const text = readFileSync(file, 'utf8');
      const bad: string[] = [];
      for (const m of text.matchAll(/from '(\.[^']+)'/g)) {
        const target = resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts'));
        const to = area(target);
        if (!allowed.includes(to)) bad.push(m[1]!);
        else if (to === '(root)' && !SHARED_ROOT.has(relative(SRC, target))) bad.push(m[1]!);
      }
      expect(bad).toEqual([]);
    });
  }
});
