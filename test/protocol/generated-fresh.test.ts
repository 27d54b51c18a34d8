import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generate, OUT_DIR } from '../../spec/codegen.js';

describe('src/protocol/generated is fresh', () => {
  const files = generate();

  it('generate() produces spec.ts, methods.ts and properties.ts', () => {
    expect(Object.keys(files).sort()).toEqual(['methods.ts', 'properties.ts', 'spec.ts']);
  });

  it('the generated directory holds exactly those files', () => {
    const onDisk = readdirSync(OUT_DIR).filter((f) => f.endsWith('.ts'));
    expect(onDisk.sort(), 'stale file in src/protocol/generated: run `npm run gen`').toEqual(
      Object.keys(files).sort(),
    );
  });

  it.each(Object.keys(files))('%s equals the committed file byte for byte', (name) => {
    const committed = readFileSync(join(OUT_DIR, name), 'utf8');
    // a plain boolean first, so a mismatch names the fix instead of dumping two 2,000-line files
    const same = committed === files[name];
    expect(same, `src/protocol/generated/${name} is stale: run \`npm run gen\``).toBe(true);
  });
});
