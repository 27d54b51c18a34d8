/**
 * The crash test (slow; `npm run test:slow`, not part of `npm test`).
 *
 * Each round starts the built broker as a child process on the same data dir, first drains
 * and checks what came back, then runs two publishers with confirms and one or two consumers
 * per queue with manual acks against it for a random 200–1500 ms, and kills it with SIGKILL.
 * After every restart:
 *  - every confirmed persistent message is present, or was acked by a consumer before;
 *  - nothing appears that was never published, and no transient message comes back;
 *  - a message seen a second time (acked but its ack not committed, or never acked) carries
 *    redelivered = true;
 *  - within a queue, one publisher's messages come back in publish order.
 *
 * Publisher 0 publishes to a fanout exchange bound to both durable queues (shared bodies),
 * publisher 1 to one queue through the default exchange (inline records, with every tenth
 * message transient). The random choices come from a logged seed (CRASH_SEED=… reproduces
 * them; the kill moments are timing and so only roughly reproducible); CRASH_ROUNDS changes
 * the number of rounds, CRASH_SYNC=off runs the broker with --sync off.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqplib from 'amqplib';
import { afterAll, expect, it } from 'vitest';
import { type ChildBroker, killAll, startBroker } from './child-broker.js';

const SEED = process.env['CRASH_SEED']
  ? Number(process.env['CRASH_SEED'])
  : Math.floor(Math.random() * 2 ** 31);
const ROUNDS = process.env['CRASH_ROUNDS'] ? Number(process.env['CRASH_ROUNDS']) : 20;
/** --sync of the broker under test (CRASH_SYNC=off: confirms at commit, still crash-safe) */
const SYNC = process.env['CRASH_SYNC'] ?? 'always';

/** mulberry32: a small seeded PRNG, so a run's choices can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const between = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));

const FANOUT = 'crash.fan';
const QA = 'crash.a';
const QB = 'crash.b';
const QUEUES = [QA, QB];

interface Publisher {
  exchange: string;
  routingKey: string;
  queues: string[];
}
const PUBLISHERS: Publisher[] = [
  { exchange: FANOUT, routingKey: '', queues: [QA, QB] },
  { exchange: '', routingKey: QB, queues: [QB] },
];

/** What the clients know, across every round. */
class Ledger {
  /** id → the queues it was routed to (persistent messages) */
  readonly persistent = new Map<string, string[]>();
  readonly transient = new Set<string>();
  readonly confirmed = new Set<string>();
  /** nacked, or the connection went before the confirm */
  readonly failed = new Set<string>();
  /** per queue: ids a consumer acked (the ack may not have been committed) */
  readonly acked = new Map<string, Set<string>>(QUEUES.map((q) => [q, new Set<string>()]));
  /** per queue: ids a consumer has seen at least once */
  readonly seen = new Map<string, Set<string>>(QUEUES.map((q) => [q, new Set<string>()]));
  /** broken promises by kind: how many, and the first few */
  readonly violations = new Map<string, { count: number; examples: string[] }>();
  deliveries = 0;
  redelivered = 0;
  /** acked ids that came back after a crash (their ack was not committed) */
  resurrected = 0;

  violation(kind: string, text: string): void {
    let v = this.violations.get(kind);
    if (!v) {
      v = { count: 0, examples: [] };
      this.violations.set(kind, v);
    }
    if (v.count++ < 8) v.examples.push(text);
  }

  get violationCount(): number {
    let n = 0;
    for (const v of this.violations.values()) n += v.count;
    return n;
  }

  /** kind → "count: first examples", for the final assertion */
  summary(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of this.violations) out[k] = `${v.count}: ${v.examples.join('; ')}`;
    return out;
  }

  /** Records one delivery and checks the redelivered flag; returns the id. */
  delivery(queue: string, msg: amqplib.Message, where: string): string {
    const id = msg.content.toString();
    this.deliveries++;
    if (msg.fields.redelivered) this.redelivered++;
    if (!this.persistent.has(id) && !this.transient.has(id))
      this.violation('never published', `${where}: ${queue} delivered '${id}'`);
    const seen = this.seen.get(queue)!;
    if (seen.has(id) && !msg.fields.redelivered)
      this.violation(
        'seen again without redelivered',
        `${where}: ${queue} delivered '${id}' again with redelivered=false${this.acked.get(queue)!.has(id) ? ' (it had been acked)' : ''}`,
      );
    if (this.acked.get(queue)!.has(id)) this.resurrected++;
    seen.add(id);
    return id;
  }
}

const dataDir = mkdtempSync(join(tmpdir(), 'warren-crash-'));

afterAll(async () => {
  await killAll();
  rmSync(dataDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once a model's connection is gone. */
const gone = new WeakMap<amqplib.ChannelModel, Promise<void>>();

async function connect(b: ChildBroker): Promise<amqplib.ChannelModel> {
  const m = await amqplib.connect(b.url);
  m.on('error', () => {}); // the broker is killed under it
  gone.set(m, new Promise((resolve) => m.once('close', () => resolve())));
  return m;
}

/** Resolves when the model's connection is gone (or after `ms`). */
function closed(m: amqplib.ChannelModel, ms = 5_000): Promise<void> {
  return Promise.race([gone.get(m)!, sleep(ms)]).then(() => {});
}

/** The broker's own complaints: stderr output and error-level log lines. */
function brokerErrors(b: ChildBroker): string[] {
  const out: string[] = [];
  if (b.stderr() !== '') out.push(`stderr: ${b.stderr()}`);
  for (const l of b.stdout().split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      if ((JSON.parse(l) as { level?: number }).level! >= 50) out.push(`log: ${l}`);
    } catch {
      // the last line may have been cut by the kill
    }
  }
  return out;
}

/**
 * Consumes everything a freshly started broker holds (nothing publishes meanwhile), acks it,
 * and checks it against the ledger.
 */
async function drainAndCheck(b: ChildBroker, ledger: Ledger, round: number): Promise<number> {
  const m = await connect(b);
  const where = `after crash ${round}`;
  let total = 0;
  try {
    for (const q of QUEUES) {
      const ch = await m.createChannel();
      ch.on('error', () => {});
      const { messageCount } = await ch.checkQueue(q);
      await ch.prefetch(1_000);
      const got: string[] = [];
      await new Promise<void>((resolve, reject) => {
        if (messageCount === 0) return resolve();
        const t = setTimeout(
          () => reject(new Error(`${where}: ${q} delivered ${got.length} of ${messageCount} messages`)),
          20_000,
        );
        void ch.consume(q, (msg) => {
          if (!msg) return;
          got.push(ledger.delivery(q, msg, where));
          ch.ack(msg);
          if (got.length === messageCount) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      // a round trip so the acks are handled before the next phase
      await ch.checkQueue(q);
      await ch.close();
      total += got.length;
      const acked = ledger.acked.get(q)!;
      // no message twice, no transient message, one publisher's messages in order
      const inDrain = new Set<string>();
      const lastOf = new Map<string, number>();
      for (const id of got) {
        if (inDrain.has(id)) ledger.violation('held twice', `${where}: ${q} held '${id}' twice`);
        inDrain.add(id);
        if (ledger.transient.has(id)) ledger.violation('transient survived', `${where}: '${id}' in ${q}`);
        const [stream, n] = splitId(id);
        const last = lastOf.get(stream);
        if (last !== undefined && n <= last)
          ledger.violation('out of order', `${where}: ${q} returned '${id}' after ${stream}-${last}`);
        lastOf.set(stream, n);
        acked.add(id);
      }
      // every confirmed message routed here was acked before or is back now
      for (const id of ledger.confirmed) {
        if (!ledger.persistent.get(id)!.includes(q) || acked.has(id)) continue;
        ledger.violation('confirmed but lost', `${where}: '${id}' is missing from ${q}`);
        acked.add(id); // reported once
      }
    }
  } finally {
    await m.close().catch(() => {});
  }
  return total;
}

/** "r3-p1-42" → ["r3-p1", 42] */
function splitId(id: string): [string, number] {
  const i = id.lastIndexOf('-');
  return [id.slice(0, i), Number(id.slice(i + 1))];
}

/** Publishers with confirms and consumers with acks, until `stop()`; returns a stopper. */
async function load(b: ChildBroker, ledger: Ledger, round: number) {
  let running = true;
  const models: amqplib.ChannelModel[] = [];
  const pubModel = await connect(b);
  models.push(pubModel);
  for (const [pi, p] of PUBLISHERS.entries()) {
    const ch = await pubModel.createConfirmChannel();
    ch.on('error', () => {});
    const window = between(20, 400);
    let inflight = 0;
    let n = 0;
    const pump = () => {
      while (running && inflight < window) {
        const id = `r${round}-p${pi}-${n}`;
        const isTransient = pi === 1 && n % 10 === 9;
        n++;
        if (isTransient) ledger.transient.add(id);
        else ledger.persistent.set(id, p.queues);
        inflight++;
        try {
          ch.publish(
            p.exchange,
            p.routingKey,
            Buffer.from(id),
            { deliveryMode: isTransient ? 1 : 2 },
            (err) => {
              inflight--;
              if (err) ledger.failed.add(id);
              else if (!isTransient) ledger.confirmed.add(id);
              pump();
            },
          );
        } catch {
          inflight--;
          return; // the connection is gone
        }
      }
    };
    pump();
  }
  for (const q of QUEUES) {
    const consumers = between(1, 2);
    for (let c = 0; c < consumers; c++) {
      const m = await connect(b);
      models.push(m);
      const ch = await m.createChannel();
      ch.on('error', () => {});
      const prefetch = between(1, 300);
      const ackEvery = between(1, Math.min(prefetch, 20));
      await ch.prefetch(prefetch);
      let pending: string[] = [];
      await ch.consume(q, (msg) => {
        if (!msg) return;
        const id = ledger.delivery(q, msg, `round ${round}`);
        try {
          if (random() < 0.02) {
            // back to the queue; it must come again with the flag set
            ch.nack(msg, false, true);
            return;
          }
          pending.push(id);
          if (pending.length >= ackEvery) {
            ch.ack(msg, true); // everything up to here on this channel
            for (const a of pending) ledger.acked.get(q)!.add(a);
            pending = [];
          }
        } catch {
          // the connection is gone: the ack was never sent
        }
      });
    }
  }
  return {
    stop: async () => {
      running = false;
      await Promise.all(models.map((m) => closed(m)));
    },
  };
}

it(`confirmed messages survive ${ROUNDS} kill -9 rounds (seed ${SEED})`, async () => {
  console.log(`crash test: seed ${SEED} (CRASH_SEED=${SEED} replays the choices), ${ROUNDS} rounds`);
  const ledger = new Ledger();
  const started = Date.now();

  let b = await startBroker(dataDir, ['--sync', SYNC]);
  {
    const m = await connect(b);
    const ch = await m.createChannel();
    await ch.assertExchange(FANOUT, 'fanout', { durable: true });
    for (const q of QUEUES) await ch.assertQueue(q, { durable: true });
    await ch.bindQueue(QA, FANOUT, '');
    await ch.bindQueue(QB, FANOUT, '');
    await m.close();
  }

  for (let round = 1; round <= ROUNDS; round++) {
    const t0 = Date.now();
    const l = await load(b, ledger, round);
    const ms = between(200, 1_500);
    await sleep(ms);
    const exit = await b.kill();
    expect(exit.signal).toBe('SIGKILL');
    for (const e of brokerErrors(b)) ledger.violation('broker error', `round ${round}: ${e}`);
    const t1 = Date.now();
    await l.stop();
    const t2 = Date.now();
    b = await startBroker(dataDir, ['--sync', SYNC]);
    const t3 = Date.now();
    const back = await drainAndCheck(b, ledger, round);
    const t4 = Date.now();
    console.log(
      `round ${round}: ran ${ms} ms; published ${ledger.persistent.size + ledger.transient.size}, confirmed ${ledger.confirmed.size}, ` +
        `back after the crash ${back}, resurrected acks ${ledger.resurrected}, violations ${ledger.violationCount}` +
        ` [load ${t1 - t0} close ${t2 - t1} start ${t3 - t2} drain ${t4 - t3}]`,
    );
  }

  // a graceful stop at the end, then nothing is left
  expect(await b.stop()).toEqual({ code: 0, signal: null });
  for (const e of brokerErrors(b)) ledger.violation('broker error', `last run: ${e}`);
  b = await startBroker(dataDir, ['--sync', SYNC]);
  const m = await connect(b);
  const ch = await m.createChannel();
  for (const q of QUEUES) expect((await ch.checkQueue(q)).messageCount, q).toBe(0);
  await m.close();
  expect(await b.stop()).toEqual({ code: 0, signal: null });

  console.log(
    `crash test (seed ${SEED}): ${ledger.persistent.size} persistent and ${ledger.transient.size} transient published, ` +
      `${ledger.confirmed.size} confirmed, ${ledger.failed.size} not confirmed, ${ledger.deliveries} deliveries ` +
      `(${ledger.redelivered} redelivered), ${ledger.resurrected} acked messages came back; ` +
      `${Math.round((Date.now() - started) / 1000)} s`,
  );
  expect(ledger.confirmed.size).toBeGreaterThan(0);
  expect(ledger.summary(), `seed ${SEED}`).toEqual({});
}, 240_000);
