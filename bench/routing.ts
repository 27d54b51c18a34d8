/**
 * Routing micro-benchmark: a TopicTrie with 100,000 bindings, matched with repeated keys (cache
 * hits) and with keys that never repeat (cache misses, so every match walks the trie), against a
 * plain Map lookup as the floor.
 *
 *   npm run bench:routing            (or: npx tsx bench/routing.ts [matches])
 */

import { performance } from 'node:perf_hooks';
import { TopicTrie } from '../src/core/exchange/topic-trie.js';

interface Queue {
  readonly name: string;
}

const BINDINGS = 100_000;
const N = Number(process.argv[2] ?? 1_000_000);

const regions = Array.from({ length: 50 }, (_, i) => `region${i}`);
const services = Array.from({ length: 40 }, (_, i) => `service${i}`);
const events = Array.from({ length: 60 }, (_, i) => `event${i}`);

/** A small deterministic PRNG, so runs are comparable. */
let seed = 0x2545f491;
function rnd(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
const pick = (a: readonly string[]): string => a[rnd(a.length)]!;

/** region.service.event, with wildcards in about a third of the patterns. */
function pattern(): string {
  const r = rnd(100);
  if (r < 65) return `${pick(regions)}.${pick(services)}.${pick(events)}`;
  if (r < 80) return `${pick(regions)}.*.${pick(events)}`;
  if (r < 92) return `${pick(regions)}.${pick(services)}.*`;
  if (r < 97) return `${pick(regions)}.${pick(services)}.#`;
  if (r < 99) return `*.${pick(services)}.#`;
  return `#.${pick(events)}`;
}

interface Row {
  readonly name: string;
  readonly ops: number;
  readonly ms: number;
  readonly avgMatches: number;
}

/** Runs `fn` over every key after a warm-up on `warm`; returns ops/s and the average fan-out. */
function time(
  name: string,
  warm: readonly string[],
  keys: readonly string[],
  fn: (k: string) => readonly unknown[] | undefined,
): Row {
  for (let i = 0; i < warm.length; i++) fn(warm[i]!);
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < keys.length; i++) hits += fn(keys[i]!)?.length ?? 0;
  const ms = performance.now() - t0;
  return { name, ops: keys.length / (ms / 1000), ms, avgMatches: hits / keys.length };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// ---------------------------------------------------------------------------------------------
// build

const patterns: string[] = [];
const queues: Queue[] = [];
for (let i = 0; i < BINDINGS; i++) {
  patterns.push(pattern());
  queues.push({ name: `q${i}` });
}
const trie = new TopicTrie<Queue>();
const tb0 = performance.now();
let bound = 0;
for (let i = 0; i < BINDINGS; i++) if (trie.add(patterns[i]!, queues[i]!)) bound++;
const buildMs = performance.now() - tb0;

const direct = new Map<string, Queue[]>();
for (let i = 0; i < BINDINGS; i++) {
  const k = `${pick(regions)}.${pick(services)}.${pick(events)}`;
  const qs = direct.get(k);
  if (qs === undefined) direct.set(k, [queues[i]!]);
  else qs.push(queues[i]!);
}

// ---------------------------------------------------------------------------------------------
// keys, as flat strings the way the broker decodes them from a frame (a template literal gives
// a rope that V8 would flatten on first use, inside the timed loop)

const flat = (s: string): string => Buffer.from(s, 'latin1').toString('latin1');
const WARM = 20_000;
/** 1,000 distinct keys repeated: after the warm-up every match is a cache hit. */
const hot = Array.from({ length: 1000 }, () => flat(`${pick(regions)}.${pick(services)}.${pick(events)}`));
const hotKeys = Array.from({ length: N }, (_, i) => hot[i % hot.length]!);
/** Every key is new (a unique event word), so every match misses the cache and walks the trie. */
const cold = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => flat(`${pick(regions)}.${pick(services)}.${tag}${i}`));
const coldKeys = cold(N, 'e');
/** Unique 4-word keys whose first three words are a bound pattern (only `#` patterns match). */
const cold4 = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) =>
    flat(`${patterns[i % BINDINGS]!.split('*').join('w').split('#').join('w')}.${tag}${i}`),
  );
const coldLiteral = cold4(N, 'x');

// ---------------------------------------------------------------------------------------------
// run

const rows: Row[] = [
  time('Map.get (direct baseline)', hot, hotKeys, (k) => direct.get(k)),
  time('trie.match, cache hit', [...hot, ...hot], hotKeys, (k) => trie.match(k)),
  time('trie.match, miss (3 words)', cold(WARM, 'w'), coldKeys, (k) => trie.match(k)),
  time('trie.match, miss (4 words)', cold4(WARM, 'w'), coldLiteral, (k) => trie.match(k)),
];

console.log(
  `TopicTrie: ${fmt(bound)} bindings (${fmt(trie.nodes)} nodes) built in ${fmt(buildMs, 1)} ms ` +
    `(${fmt(bound / (buildMs / 1000))} adds/s); ${fmt(N)} matches per row`,
);
console.log('');
const head = ['case', 'ops/s', 'ns/op', 'ms total', 'avg matches'];
const table = rows.map((r) => [r.name, fmt(r.ops), fmt(1e9 / r.ops, 1), fmt(r.ms, 1), fmt(r.avgMatches, 2)]);
const widths = head.map((h, c) => Math.max(h.length, ...table.map((row) => row[c]!.length)));
const line = (cells: readonly string[]): string =>
  cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of table) console.log(line(row));
