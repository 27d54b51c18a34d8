import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitTopicWords, TopicTrie } from '../../src/core/exchange/topic-trie.js';

// ---------------------------------------------------------------------------------------------
// the reference: RabbitMQ's rules written as plainly as possible

/** `""` is zero words; otherwise split on every dot, keeping empty words. */
function words(s: string): string[] {
  return s === '' ? [] : s.split('.');
}

/** Does pattern p[pi..] match key k[ki..]? `*` is one word, `#` is zero or more. */
function refWords(p: string[], pi: number, k: string[], ki: number): boolean {
  if (pi === p.length) return ki === k.length;
  const w = p[pi];
  if (w === '#') return refWords(p, pi + 1, k, ki) || (ki < k.length && refWords(p, pi, k, ki + 1));
  if (ki === k.length) return false;
  return (w === '*' || w === k[ki]) && refWords(p, pi + 1, k, ki + 1);
}

function refMatch(pattern: string, key: string): boolean {
  return refWords(words(pattern), 0, words(key), 0);
}

interface Q {
  readonly name: string;
}
const q = (name: string): Q => ({ name });

/** Names of the matched values, sorted, for set comparison. */
const names = (r: readonly Q[]): string[] => r.map((v) => v.name).sort();

/** The reference's answer over a list of pairs, each value once. */
function refNames(pairs: Iterable<readonly [string, Q]>, key: string): string[] {
  const out = new Set<string>();
  for (const [p, v] of pairs) if (refMatch(p, key)) out.add(v.name);
  return [...out].sort();
}

// ---------------------------------------------------------------------------------------------

describe('splitTopicWords', () => {
  it('treats the empty key as zero words and keeps empty words elsewhere', () => {
    expect(splitTopicWords('')).toEqual([]);
    expect(splitTopicWords('a')).toEqual(['a']);
    expect(splitTopicWords('.')).toEqual(['', '']);
    expect(splitTopicWords('a..b.')).toEqual(['a', '', 'b', '']);
  });
});

describe('TopicTrie: RabbitMQ examples', () => {
  it('routes the tutorial animals (speed.colour.species)', () => {
    const t = new TopicTrie<Q>();
    const q1 = q('Q1');
    const q2 = q('Q2');
    t.add('*.orange.*', q1);
    t.add('*.*.rabbit', q2);
    t.add('lazy.#', q2);
    expect(names(t.match('quick.orange.rabbit'))).toEqual(['Q1', 'Q2']);
    expect(names(t.match('lazy.orange.elephant'))).toEqual(['Q1', 'Q2']);
    expect(names(t.match('quick.orange.fox'))).toEqual(['Q1']);
    expect(names(t.match('lazy.brown.fox'))).toEqual(['Q2']);
    // matches two of Q2's bindings, delivered once
    expect(t.match('lazy.pink.rabbit')).toEqual([q2]);
    expect(t.match('quick.brown.fox')).toEqual([]);
    expect(t.match('orange')).toEqual([]);
    expect(t.match('quick.orange.new.rabbit')).toEqual([]);
    expect(names(t.match('lazy.orange.new.rabbit'))).toEqual(['Q2']);
    expect(names(t.match('lazy'))).toEqual(['Q2']);
  });

  it.each([
    // [pattern, key, matches]
    ['#', '', true],
    ['#', 'a', true],
    ['#', 'a.b.c', true],
    ['#', '.', true],
    ['*', '', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['*.*', '.', true],
    ['*', '.', false],
    ['', '', true],
    ['', 'a', false],
    ['a', '', false],
    ['a.#', 'a', true],
    ['a.#', 'a.b.c', true],
    ['a.#', 'b.a', false],
    ['#.a', 'a', true],
    ['#.a', 'x.y.a', true],
    ['#.a', 'a.x', false],
    ['a.#.b', 'a.b', true],
    ['a.#.b', 'a.x.y.b', true],
    ['a.#.b', 'a.x.y', false],
    ['a.*.b', 'a.b', false],
    ['a.*.b', 'a..b', true],
    ['a.*', 'a.', true],
    ['a.', 'a', false],
    ['a.', 'a.', true],
    ['#.#', '', true],
    ['#.*', '', false],
    ['#.*', 'a.b', true],
    ['*.#', 'a', true],
    ['a*', 'ab', false],
    ['a*', 'a*', true],
    ['#b', 'x.b', false],
    ['#b', '#b', true],
    ['*.#.*', 'a', false],
    ['*.#.*', 'a.b', true],
    ['a.#.#.b', 'a.b', true],
  ])('%j vs key %j → %s', (pattern, key, expected) => {
    expect(refMatch(pattern, key)).toBe(expected);
    const t = new TopicTrie<Q>();
    const v = q('v');
    t.add(pattern, v);
    expect(t.match(key)).toEqual(expected ? [v] : []);
  });
});

describe('TopicTrie: add, remove, size', () => {
  it('reports whether a pair was new or present', () => {
    const t = new TopicTrie<Q>();
    const a = q('a');
    const b = q('b');
    expect(t.add('x.*', a)).toBe(true);
    expect(t.add('x.*', a)).toBe(false);
    expect(t.add('x.*', b)).toBe(true);
    expect(t.add('x.#', a)).toBe(true);
    expect(t.size).toBe(3);
    expect(t.has('x.*', a)).toBe(true);
    expect(t.has('x.#', b)).toBe(false);
    expect(t.remove('x.#', b)).toBe(false);
    expect(t.remove('y', a)).toBe(false);
    expect(t.remove('x.*', a)).toBe(true);
    expect(t.remove('x.*', a)).toBe(false);
    expect(t.size).toBe(2);
    expect(names(t.match('x.y'))).toEqual(['a', 'b']);
  });

  it('keeps many values on one node correct through adds and removes', () => {
    const t = new TopicTrie<Q>();
    const vs = Array.from({ length: 100 }, (_, i) => q(`q${i}`));
    for (const v of vs) expect(t.add('a.b', v)).toBe(true);
    for (const v of vs) expect(t.add('a.b', v)).toBe(false);
    for (let i = 0; i < 100; i += 3) expect(t.remove('a.b', vs[i]!)).toBe(true);
    const left = vs.filter((_, i) => i % 3 !== 0);
    expect(names(t.match('a.b'))).toEqual(names(left));
    for (const v of left) expect(t.remove('a.b', v)).toBe(true);
    expect(t.match('a.b')).toEqual([]);
    expect(t.size).toBe(0);
  });

  it('prunes emptied branches and still matches what is left', () => {
    const t = new TopicTrie<Q>();
    const a = q('a');
    const b = q('b');
    t.add('a.b.c.d', a);
    t.add('a.b', b);
    t.add('a.*.#', a);
    expect(t.remove('a.b.c.d', a)).toBe(true);
    expect(t.remove('a.*.#', a)).toBe(true);
    expect(t.has('a.b.c.d', a)).toBe(false);
    expect(t.match('a.b')).toEqual([b]);
    expect(t.nodes).toBe(3); // root, a, a.b
    expect(t.remove('a.b', b)).toBe(true);
    expect(t.size).toBe(0);
    expect(t.nodes).toBe(1);
    // the same patterns bind again from scratch
    expect(t.add('a.b.c.d', b)).toBe(true);
    expect(t.match('a.b.c.d')).toEqual([b]);
  });
});

describe('TopicTrie: the result cache', () => {
  it('sees a binding added or removed after a cached match', () => {
    const t = new TopicTrie<Q>();
    const a = q('a');
    const b = q('b');
    t.add('x.y', a);
    expect(t.match('x.y')).toEqual([a]); // first sighting: only marked as seen
    const first = t.match('x.y'); // second: kept
    expect(first).toEqual([a]);
    expect(t.match('x.y')).toBe(first); // a hit shares the cached array
    t.add('x.*', b);
    expect(names(t.match('x.y'))).toEqual(['a', 'b']);
    t.remove('x.y', a);
    expect(t.match('x.y')).toEqual([b]);
    t.remove('x.*', b);
    expect(t.match('x.y')).toEqual([]);
  });

  it('stays bounded and correct with more distinct keys than it holds', () => {
    const t = new TopicTrie<Q>(64);
    const a = q('a');
    t.add('k.#', a);
    for (let i = 0; i < 1000; i++) expect(t.match(`k.${i}`)).toEqual([a]);
    expect(t.cachedKeys).toBeGreaterThan(0);
    expect(t.cachedKeys).toBeLessThanOrEqual(64);
    expect(t.match('k.999')).toEqual([a]);
    expect(t.match('z.1')).toEqual([]);
  });

  it('keeps a key in use cached while many others come and go', () => {
    const t = new TopicTrie<Q>(64);
    t.add('#', q('a'));
    t.match('hot.key');
    const hot = t.match('hot.key');
    for (let i = 0; i < 1000; i++) {
      t.match(`cold.${i}`);
      expect(t.match('hot.key')).toBe(hot);
    }
  });

  it('works with the cache disabled', () => {
    const t = new TopicTrie<Q>(0);
    const a = q('a');
    t.add('#', a);
    expect(t.match('any.key')).toEqual([a]);
    expect(t.cachedKeys).toBe(0);
  });
});

describe('TopicTrie: pathological patterns', () => {
  it('matches many # against a long key without blowing up', () => {
    const t = new TopicTrie<Q>();
    const a = q('a');
    const b = q('b');
    const c = q('c');
    t.add('#.#.#.#.#.a', a);
    t.add('#.b.#.b.#.b.#.b.#.b.#.c', b);
    t.add('#.*.#.*.#.*.#.*.#.*.#.*.#', c);
    const bees = Array.from({ length: 100 }, () => 'b');
    expect(t.match(bees.join('.'))).toEqual([c]);
    expect(names(t.match([...bees, 'a'].join('.')))).toEqual(['a', 'c']);
    expect(names(t.match([...bees, 'c'].join('.')))).toEqual(['b', 'c']);
    // 255 dots: 256 empty words, the most a routing key can have
    expect(names(t.match('.'.repeat(255)))).toEqual(['c']);
  });
});

// ---------------------------------------------------------------------------------------------
// property: the trie agrees with the reference

const WORDS = ['a', 'b', '', '*', '#'];
const KEY_WORDS = ['a', 'b', 'c', '', '*', '#'];
const pattern = fc.array(fc.constantFrom(...WORDS), { maxLength: 6 }).map((w) => w.join('.'));
const key = fc.array(fc.constantFrom(...KEY_WORDS), { maxLength: 7 }).map((w) => w.join('.'));
const POOL = Array.from({ length: 6 }, (_, i) => q(`q${i}`));
const binding = fc.tuple(pattern, fc.nat({ max: POOL.length - 1 }));

describe('TopicTrie: property against the reference matcher', () => {
  it('matches exactly what the reference matches, also after removes', () => {
    fc.assert(
      fc.property(
        fc.array(binding, { maxLength: 30 }),
        fc.array(key, { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 15 }),
        (bindings, keys, removals) => {
          const t = new TopicTrie<Q>(8);
          const model = new Map<string, readonly [string, Q]>();
          for (const [p, i] of bindings) {
            const v = POOL[i]!;
            const id = `${p}\u0000${v.name}`;
            expect(t.add(p, v)).toBe(!model.has(id));
            model.set(id, [p, v]);
          }
          expect(t.size).toBe(model.size);
          for (const k of keys) expect(names(t.match(k))).toEqual(refNames(model.values(), k));
          const ids = [...model.keys()];
          for (const r of removals) {
            if (ids.length === 0) break;
            const id = ids[r % ids.length]!;
            const pair = model.get(id);
            if (pair === undefined) {
              // already removed: removing again says so
              const [p, name] = id.split('\u0000') as [string, string];
              expect(t.remove(p, POOL.find((v) => v.name === name)!)).toBe(false);
              continue;
            }
            expect(t.remove(pair[0], pair[1])).toBe(true);
            model.delete(id);
            for (const k of keys) expect(names(t.match(k))).toEqual(refNames(model.values(), k));
          }
          expect(t.size).toBe(model.size);
          for (const [p, v] of model.values()) expect(t.remove(p, v)).toBe(true);
          expect(t.nodes).toBe(1);
          expect(t.match('a')).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('TopicTrie: 100,000 bindings', () => {
  it('builds and matches a realistic binding set correctly', () => {
    const regions = Array.from({ length: 50 }, (_, i) => `r${i}`);
    const services = Array.from({ length: 40 }, (_, i) => `svc${i}`);
    const events = Array.from({ length: 50 }, (_, i) => `ev${i}`);
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pick = (a: readonly string[]): string => a[rnd(a.length)]!;
    const t = new TopicTrie<Q>();
    const pairs: [string, Q][] = [];
    let added = 0;
    while (pairs.length < 100_000) {
      const r = rnd(100);
      const p =
        r < 70
          ? `${pick(regions)}.${pick(services)}.${pick(events)}`
          : r < 85
            ? `${pick(regions)}.*.${pick(events)}`
            : r < 95
              ? `${pick(regions)}.${pick(services)}.*`
              : r < 99
                ? `${pick(regions)}.#`
                : `#.${pick(events)}`;
      const v = q(`q${pairs.length}`);
      if (t.add(p, v)) added++;
      pairs.push([p, v]);
    }
    expect(added).toBe(100_000);
    expect(t.size).toBe(100_000);
    for (let i = 0; i < 40; i++) {
      const k =
        i % 4 === 3
          ? `${pick(regions)}.${pick(services)}`
          : `${pick(regions)}.${pick(services)}.${pick(events)}`;
      const got = names(t.match(k));
      expect(got).toEqual(refNames(pairs, k));
      if (i % 4 !== 3) expect(got.length).toBeGreaterThan(0);
    }
  });
});
