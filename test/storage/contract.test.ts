/**
 * The store contract (DESIGN.md §5: "one contract test suite runs against every store
 * implementation"). Every store keeps definitions and settles confirms in order; stores with
 * `durable === true` also keep messages: what was enqueued and committed comes back from
 * messages() in seq order and byte-identical, removes and delivery counts are kept, a body
 * shared by several queues is stored once, and cleanup() drops what no live queue refers to.
 *
 * LmdbStore runs with both sync levels, on a temp dir, and is closed and reopened where the
 * contract speaks of surviving a restart. MemoryStore runs twice: with a MemoryDisk per temp dir
 * (a durable store, closed and reopened on the same disk like LmdbStore on the same file), and
 * as the broker's placeholder without one, which keeps no messages (its enqueue, delivered,
 * remove and messages are no-ops), so only the definition and confirm parts apply to it.
 *
 * Messages and entries are core's Message and QueueEntry; commit() is called directly (the
 * tick's commit phase would call it too, and then finds the batch empty).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { open } from 'lmdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Message } from '../../src/core/message.js';
import { QueueEntry } from '../../src/core/queue-entry.js';
import type { FieldTable } from '../../src/protocol/field-table.js';
import { type BasicProperties, encodeBasicProperties } from '../../src/protocol/generated/properties.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';
import { LmdbStore, type SyncMode } from '../../src/storage/lmdb-store.js';
import { MemoryDisk } from '../../src/storage/memory-disk.js';
import { MemoryStore } from '../../src/storage/memory-store.js';
import {
  type ConfirmTarget,
  type Definition,
  EntryState,
  type RecoveredMessage,
  type Store,
  type StoredEntry,
  type StoredMessage,
} from '../../src/storage/store.js';

/**
 * Parts of the contract that apply to a subject only when it has the capability (the
 * placeholder MemoryStore keeps no messages and has nothing to reopen): they are not
 * registered for it at all, rather than reported as skipped.
 */
const itWhen = (applies: boolean): typeof it => (applies ? it : ((() => {}) as unknown as typeof it));
const describeWhen = (applies: boolean): typeof describe =>
  applies ? describe : ((() => {}) as unknown as typeof describe);

// ------------------------------------------------------------------ subjects

interface Subject {
  name: string;
  /** keeps messages (the message contract applies) */
  durable: boolean;
  /** has something to reopen (a path) */
  reopens: boolean;
  make(dir: string): Store;
  /** Records in one of the store's databases in `dir` (the store must be closed). */
  count(dir: string, db: 'bodies' | 'messages'): Promise<number>;
}

const lmdb = (sync: SyncMode): Subject => ({
  name: `LmdbStore (sync ${sync})`,
  durable: true,
  reopens: true,
  make: (dir) =>
    new LmdbStore({
      path: join(dir, 'warren.mdb'),
      sync,
      onError: (e) => {
        throw e;
      },
    }),
  count: (dir, db) => countRecords(join(dir, 'warren.mdb'), db),
});

/** The in-memory stores' disks, one per temp dir (a dir stands for where a store keeps its data). */
const disks = new Map<string, MemoryDisk>();

function diskFor(dir: string): MemoryDisk {
  let disk = disks.get(dir);
  if (disk === undefined) {
    disk = new MemoryDisk();
    disks.set(dir, disk);
  }
  return disk;
}

const SUBJECTS: Subject[] = [
  lmdb('always'),
  lmdb('off'),
  {
    name: 'MemoryStore (in memory, with a backing)',
    durable: true,
    reopens: true,
    make: (dir) => new MemoryStore(diskFor(dir)),
    count: async (dir, db) => (db === 'bodies' ? diskFor(dir).bodies.size : diskFor(dir).messageCount),
  },
  {
    name: 'MemoryStore (placeholder, no backing)',
    durable: false,
    reopens: false,
    make: () => new MemoryStore(),
    count: () => Promise.reject(new Error('the placeholder keeps nothing to count')),
  },
];

// ------------------------------------------------------------------ helpers

/** A confirm target that records what it was told, in order. */
class FakeTarget implements ConfirmTarget {
  batchConfirmSeq = 0;
  readonly events: string[] = [];
  acked = 0;
  nacked = 0;

  constructor(readonly name = 'ch') {}

  confirmUpTo(seq: number): void {
    expect(seq, `${this.name}: confirms only move forward`).toBeGreaterThan(this.acked);
    this.acked = seq;
    this.events.push(`${this.name} ack ${seq}`);
    log.push(`${this.name} ack ${seq}`);
  }

  rejectUpTo(seq: number): void {
    this.nacked = seq;
    this.events.push(`${this.name} nack ${seq}`);
    log.push(`${this.name} nack ${seq}`);
  }
}

/** every confirm of the current test, across targets, in the order they were settled */
let log: string[] = [];

async function until(pred: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

let nextConfirm = 0;
const settler = new FakeTarget('settler');

/** Commits everything recorded so far and waits until it is safe (a confirm behind it settles). */
async function commitAndSettle(store: Store): Promise<void> {
  const seq = ++nextConfirm;
  store.confirmAfterCommit(settler, seq);
  store.commit();
  await until(() => settler.acked >= seq, `confirm ${seq}`);
  expect(settler.nacked).toBe(0);
}

function props(p: BasicProperties): Buffer {
  const w = new OutBuffer();
  encodeBasicProperties(w, p);
  return Buffer.concat(w.take());
}

const HEADERS: FieldTable = { 'x-s': 'text', 'x-n': 7, 'x-nested': { a: [1, 2, 'three'] } };

function message(
  body: string | Buffer,
  over: Partial<{ exchange: string; routingKey: string }> = {},
): Message {
  return new Message(
    over.exchange ?? 'ex.äö',
    over.routingKey ?? 'rk.€',
    props({ deliveryMode: 2, contentType: 'text/plain', headers: HEADERS, messageId: 'm' }),
    Buffer.isBuffer(body) ? body : Buffer.from(body),
  );
}

/** The wire fields of what came back, for comparison with what went in. */
function wire(m: StoredMessage): { exchange: string; routingKey: string; properties: string; body: string } {
  return {
    exchange: m.exchange,
    routingKey: m.routingKey,
    properties: m.properties.toString('hex'),
    body: m.body.toString('hex'),
  };
}

/** What recovery does with stored messages (Queue.recover): entries that the store knows. */
function recoverEntries(
  list: RecoveredMessage[],
): { e: StoredEntry; m: StoredMessage; r: RecoveredMessage }[] {
  return list.map((r) => {
    const e = new QueueEntry(r.message as Message, r.seq, r.expiresAt);
    e.deliveries = r.deliveries;
    e.storeState = r.shared ? EntryState.Shared : EntryState.Inline;
    r.message.storeRefs++;
    return { e, m: r.message, r };
  });
}

/** Counts the records of one of the LMDB store's databases (the store must be closed). */
async function countRecords(path: string, db: string): Promise<number> {
  const env = open({ path, maxDbs: 8, readOnly: true, compression: false });
  try {
    const d = env.openDB<Buffer, Buffer>(db, {
      keyEncoding: 'binary',
      encoding: 'binary',
      compression: false,
    });
    let n = 0;
    for (const _ of d.getKeys()) n++;
    return n;
  } finally {
    await env.close();
  }
}

const Q1 = 11;
const Q2 = 12;
const Q3 = 13;

// ------------------------------------------------------------------ the contract

describe.each(SUBJECTS)('store contract: $name', (subject) => {
  let dir: string;
  let store: Store;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'warren-store-'));
    store = subject.make(dir);
    log = [];
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    disks.delete(dir);
  });

  /**
   * Closes and opens the store on the same path, as a restart does: recovery reads the queues'
   * messages, then cleanup() runs (as Broker.start does) before anything else touches the store.
   */
  async function reopen(live: number[] = [Q1, Q2, Q3]): Promise<RecoveredMessage[][]> {
    await store.close();
    store = subject.make(dir);
    const recovered = live.map((q) => store.messages(q));
    await store.cleanup(new Set(live));
    return recovered;
  }

  it(`reports durable = ${subject.durable}`, () => {
    expect(store.durable).toBe(subject.durable);
  });

  // ---------------------------------------------------------------- definitions

  describe('definitions', () => {
    const defs: Definition[] = [
      { kind: 'vhost', name: '/' },
      { kind: 'user', name: 'guest', hash: 'aGFzaA==', tags: ['administrator'], vhosts: ['/'] },
      {
        kind: 'exchange',
        vhost: '/',
        name: 'x',
        type: 'topic',
        autoDelete: false,
        internal: false,
        args: {},
      },
      {
        kind: 'queue',
        vhost: '/',
        name: 'q',
        autoDelete: false,
        args: { 'x-message-ttl': 60_000, 'x-dead-letter-exchange': 'dlx', 'x-max-length': 5 },
      },
      {
        kind: 'binding',
        vhost: '/',
        source: 'x',
        destinationKind: 'queue',
        destination: 'q',
        routingKey: 'a.#',
        args: { 'x-match': 'all', n: 1.5, ok: true },
      },
    ];

    it('puts get increasing ids and are listed in id order; deletes remove them', async () => {
      const ids = defs.map((d) => store.putDefinition(d));
      for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
      await commitAndSettle(store);
      expect(store.definitions()).toEqual(ids.map((id, i) => [id, defs[i]]));
      store.deleteDefinition(ids[2]!);
      store.deleteDefinition(ids[4]!);
      await commitAndSettle(store);
      expect(store.definitions()).toEqual([
        [ids[0], defs[0]],
        [ids[1], defs[1]],
        [ids[3], defs[3]],
      ]);
      // a later definition gets a later id, never one that was handed out before
      const more = store.putDefinition({ kind: 'vhost', name: 'other' });
      expect(more).toBeGreaterThan(ids[4]!);
    });

    itWhen(subject.reopens)('survive a reopen, and later ids stay above every stored one', async () => {
      const ids = defs.map((d) => store.putDefinition(d));
      store.deleteDefinition(ids[1]!);
      await reopen();
      const expected = ids.map((id, i) => [id, defs[i]] as [number, Definition]).filter((_, i) => i !== 1);
      expect(store.definitions()).toEqual(expected);
      const next = store.putDefinition({ kind: 'vhost', name: 'after' });
      expect(next).toBeGreaterThan(ids[ids.length - 1]!);
      await reopen();
      expect(store.definitions()).toEqual([...expected, [next, { kind: 'vhost', name: 'after' }]]);
    });

    itWhen(subject.reopens)('are written by close() even without a commit', async () => {
      const id = store.putDefinition(defs[0]!);
      await reopen();
      expect(store.definitions()).toEqual([[id, defs[0]]]);
    });
  });

  // ---------------------------------------------------------------- confirms

  describe('confirms', () => {
    it('a confirm recorded with no writes settles at commit', async () => {
      const t = new FakeTarget();
      store.confirmAfterCommit(t, 1);
      store.confirmAfterCommit(t, 2);
      store.commit();
      await until(() => t.acked === 2, 'ack 2');
      expect(t.events).toEqual(['ch ack 2']); // one multiple ack for the batch
    });

    it('settle in order across batches, a batch without writes waiting for an earlier one with writes', async () => {
      const a = new FakeTarget('a');
      const b = new FakeTarget('b');
      for (let batch = 1; batch <= 6; batch++) {
        if (subject.durable && batch % 2 === 1) {
          // writes in odd batches only (a definition, and for durable stores messages too)
          store.putDefinition({ kind: 'vhost', name: `v${batch}` });
          for (let i = 0; i < 50; i++) {
            const m = message(`b${batch}-${i}`);
            store.enqueue(Q1, new QueueEntry(m, batch * 1000 + i, 0), m);
          }
        }
        store.confirmAfterCommit(a, batch * 2 - 1);
        store.confirmAfterCommit(b, batch);
        store.confirmAfterCommit(a, batch * 2);
        store.commit();
      }
      await until(() => a.acked === 12 && b.acked === 6, 'every confirm');
      // each target's confirms are in order, and no batch settled before an earlier one
      expect(a.events).toEqual([2, 4, 6, 8, 10, 12].map((s) => `a ack ${s}`));
      expect(b.events).toEqual([1, 2, 3, 4, 5, 6].map((s) => `b ack ${s}`));
      const batchOf = (e: string) => {
        const [name, , seq] = e.split(' ');
        return name === 'a' ? Number(seq) / 2 : Number(seq);
      };
      const order = log.filter((e) => !e.startsWith('settler')).map(batchOf);
      expect(order).toEqual([...order].sort((x, y) => x - y));
      expect(a.nacked + b.nacked).toBe(0);
      expect(store.backlog).toBe(0);
    });

    it('a confirm waits for the batch it was recorded in, not only for earlier ones', async () => {
      const t = new FakeTarget();
      if (subject.durable) {
        const m = message('x');
        store.enqueue(Q1, new QueueEntry(m, 1, 0), m);
      }
      store.confirmAfterCommit(t, 1);
      // not yet committed: nothing may be confirmed
      expect(t.acked).toBe(0);
      store.commit();
      await until(() => t.acked === 1, 'ack 1');
      if (subject.durable) expect(store.messages(Q1)).toHaveLength(1);
    });
  });

  // ---------------------------------------------------------------- messages

  describeWhen(subject.durable)('messages', () => {
    it('come back in seq order with byte-identical wire fields, seq, expiry and delivery count', async () => {
      const big = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      const sent = [
        { seq: 3, m: message('three'), expiresAt: 0 },
        { seq: 1, m: message('one', { exchange: '', routingKey: 'q' }), expiresAt: 1_900_000_000_123 },
        { seq: 2, m: message(Buffer.alloc(0)), expiresAt: 0 },
        { seq: 2 ** 32 - 1, m: message(big), expiresAt: 0 },
        { seq: 2 ** 32, m: message('past 32 bits'), expiresAt: 0 },
        { seq: 2 ** 40 + 5, m: message('far'), expiresAt: 0 },
        { seq: 4, m: new Message('e', 'k', Buffer.from([0, 0]), Buffer.from('no properties')), expiresAt: 0 },
        // names written by the short ASCII path, past it, and not ASCII at all
        {
          seq: 5,
          m: message('names', { exchange: 'x'.repeat(64), routingKey: 'k'.repeat(65) }),
          expiresAt: 0,
        },
        {
          seq: 6,
          m: message('utf-8', { exchange: 'échange', routingKey: 'ключ.\u007f.\u0080' }),
          expiresAt: 0,
        },
        {
          seq: 7,
          m: message('long utf-8', { exchange: 'é'.repeat(64), routingKey: 'z'.repeat(255) }),
          expiresAt: 0,
        },
      ];
      for (const s of sent) store.enqueue(Q1, new QueueEntry(s.m, s.seq, s.expiresAt), s.m);
      const other = message('other queue');
      store.enqueue(Q2, new QueueEntry(other, 1, 0), other);
      await commitAndSettle(store);

      const expected = [...sent].sort((x, y) => x.seq - y.seq);
      const check = (got: RecoveredMessage[]) => {
        expect(got.map((r) => r.seq)).toEqual(expected.map((s) => s.seq));
        expect(got.map((r) => wire(r.message))).toEqual(expected.map((s) => wire(s.m)));
        expect(got.map((r) => r.expiresAt)).toEqual(expected.map((s) => s.expiresAt));
        expect(got.every((r) => r.deliveries === 0 && !r.shared)).toBe(true);
      };
      check(store.messages(Q1));
      expect(store.messages(Q2).map((r) => r.message.body.toString())).toEqual(['other queue']);
      expect(store.messages(Q3)).toEqual([]);
      // paged reads: from a seq, at most a limit
      expect(store.messages(Q1, 3, 2).map((r) => r.seq)).toEqual([3, 4]);
      expect(store.extent(Q1, 0)).toEqual({ count: sent.length, lastSeq: 2 ** 40 + 5, bytes: 0 });
      expect(store.extent(Q1, 5)).toEqual({ count: 6, lastSeq: 2 ** 40 + 5, bytes: 0 });
      expect(store.extent(Q3, 0)).toEqual({ count: 0, lastSeq: 0, bytes: 0 });

      const [q1] = await reopen([Q1, Q2]);
      check(q1!);
      expect(store.messages(Q2).map((r) => r.message.body.toString())).toEqual(['other queue']);
    });

    it('an entry removed in the batch that enqueued it is never written, and its confirm still settles', async () => {
      const m = message('cancelled');
      const e = new QueueEntry(m, 1, 0);
      store.enqueue(Q1, e, m);
      expect(e.storeState).toBe(EntryState.Pending);
      store.remove(Q1, e, m);
      expect(e.storeState).toBe(EntryState.None);
      expect(m.storeRefs).toBe(0);
      const t = new FakeTarget();
      store.confirmAfterCommit(t, 1);
      store.commit();
      expect(store.backlog).toBe(0); // nothing went to the disk
      await until(() => t.acked === 1, 'ack 1');
      expect(store.messages(Q1)).toEqual([]);
      expect(store.extent(Q1, 0).count).toBe(0);
      await reopen();
      expect(store.messages(Q1)).toEqual([]);
      expect(await closedCount('messages')).toBe(0);
    });

    it('an entry removed after its commit is deleted, and stays deleted after a reopen', async () => {
      const ms = ['a', 'b', 'c'].map((s) => message(s));
      const es = ms.map((m, i) => new QueueEntry(m, i + 1, 0));
      for (const [i, m] of ms.entries()) store.enqueue(Q1, es[i]!, m);
      await commitAndSettle(store);
      expect(es.map((e) => e.storeState)).toEqual([EntryState.Inline, EntryState.Inline, EntryState.Inline]);
      store.remove(Q1, es[1]!, ms[1]!);
      await commitAndSettle(store);
      expect(store.messages(Q1).map((r) => r.message.body.toString())).toEqual(['a', 'c']);
      const [q1] = await reopen();
      expect(q1!.map((r) => r.message.body.toString())).toEqual(['a', 'c']);
      // and a recovered entry can be removed too
      const [first] = recoverEntries(q1!);
      store.remove(Q1, first!.e, first!.m);
      await commitAndSettle(store);
      expect(store.messages(Q1).map((r) => r.message.body.toString())).toEqual(['c']);
      await reopen();
      expect(store.messages(Q1).map((r) => r.message.body.toString())).toEqual(['c']);
    });

    it('delivery counts are kept: written with a pending entry, and by a clean close for later deliveries', async () => {
      const m1 = message('delivered before its commit');
      const e1 = new QueueEntry(m1, 1, 0);
      const m2 = message('delivered after its commit');
      const e2 = new QueueEntry(m2, 2, 0);
      const m3 = message('never delivered');
      const e3 = new QueueEntry(m3, 3, 0);
      store.enqueue(Q1, e1, m1);
      store.enqueue(Q1, e2, m2);
      store.enqueue(Q1, e3, m3);
      e1.deliveries = 1;
      store.delivered(Q1, e1);
      await commitAndSettle(store);
      e2.deliveries = 1;
      store.delivered(Q1, e2);
      await commitAndSettle(store);
      e2.deliveries = 2;
      store.delivered(Q1, e2);
      await commitAndSettle(store);
      // a delivery after the commit is written by the clean close (a crash flags everything anyway)
      expect(store.messages(Q1).map((r) => r.deliveries)).toEqual([1, 0, 0]);
      const [q1] = await reopen();
      expect(q1!.map((r) => r.deliveries)).toEqual([1, 2, 0]);
      // a recovered entry delivered again
      const rec = recoverEntries(q1!);
      rec[2]!.e.deliveries = 1;
      store.delivered(Q1, rec[2]!.e);
      await commitAndSettle(store);
      await reopen();
      expect(store.messages(Q1).map((r) => r.deliveries)).toEqual([1, 2, 1]);
    });

    it('countDelivery writes the count at the next commit, with no close needed; a remove deletes it', async () => {
      const m1 = message('counted');
      const e1 = new QueueEntry(m1, 1, 0);
      const m2 = message('counted, then removed');
      const e2 = new QueueEntry(m2, 2, 0);
      store.enqueue(Q1, e1, m1);
      store.enqueue(Q1, e2, m2);
      await commitAndSettle(store);
      e1.deliveries = 1;
      store.countDelivery(Q1, e1);
      e2.deliveries = 1;
      store.countDelivery(Q1, e2);
      await commitAndSettle(store);
      e1.deliveries = 2;
      store.countDelivery(Q1, e1);
      await commitAndSettle(store);
      // on disk now, as a crash would leave it
      expect(store.messages(Q1).map((r) => [r.seq, r.deliveries])).toEqual([
        [1, 2],
        [2, 1],
      ]);
      store.remove(Q1, e2, m2);
      await commitAndSettle(store);
      // a new entry under the removed one's seq finds no count left behind
      const m3 = message('same seq, never delivered');
      store.enqueue(Q1, new QueueEntry(m3, 2, 0), m3);
      await commitAndSettle(store);
      expect(store.messages(Q1).map((r) => [r.seq, r.deliveries])).toEqual([
        [1, 2],
        [2, 0],
      ]);
      const [q1] = await reopen();
      expect(q1!.map((r) => [r.seq, r.deliveries])).toEqual([
        [1, 2],
        [2, 0],
      ]);
    });

    it('a message in several queues is stored once and kept until its last entry is removed', async () => {
      const m = message('shared');
      const e1 = new QueueEntry(m, 1, 0);
      const e2 = new QueueEntry(m, 1, 0);
      const e3 = new QueueEntry(m, 7, 0);
      store.enqueue(Q1, e1, m);
      store.enqueue(Q2, e2, m);
      store.enqueue(Q3, e3, m);
      await commitAndSettle(store);
      expect([e1, e2, e3].map((e) => e.storeState)).toEqual([
        EntryState.Shared,
        EntryState.Shared,
        EntryState.Shared,
      ]);
      expect(m.storeId).toBeGreaterThan(0);
      for (const q of [Q1, Q2, Q3]) {
        const [r] = store.messages(q);
        expect(r!.shared).toBe(true);
        expect(wire(r!.message)).toEqual(wire(m));
      }
      // removed from one queue while running: the others keep the body
      store.remove(Q1, e1, m);
      await commitAndSettle(store);
      expect(store.messages(Q1)).toEqual([]);
      expect(store.messages(Q2).map((r) => r.message.body.toString())).toEqual(['shared']);

      let [q1, q2, q3] = await reopen();
      expect(await closedCount('bodies')).toBe(1); // still one body record
      expect(q1).toEqual([]);
      expect(q2!.map((r) => r.message.body.toString())).toEqual(['shared']);
      expect(q3!.map((r) => [r.seq, r.message.body.toString()])).toEqual([[7, 'shared']]);
      // recovery hands out one message object for the shared body
      expect(q2![0]!.message).toBe(q3![0]!.message);

      // removed from one more queue after the restart: the last one still has it
      const [r2] = recoverEntries(q2!);
      store.remove(Q2, r2!.e, r2!.m);
      await commitAndSettle(store);
      [q1, q2, q3] = await reopen();
      expect(q2).toEqual([]);
      expect(q3!.map((r) => r.message.body.toString())).toEqual(['shared']);
      expect(wire(q3![0]!.message)).toEqual(wire(m));

      // and gone with the last entry
      const [last] = recoverEntries(q3!);
      store.remove(Q3, last!.e, last!.m);
      await commitAndSettle(store);
      expect(store.messages(Q3)).toEqual([]);
      // deleted with it, not left for the next start's cleanup()
      expect(await closedCount('bodies')).toBe(0);
      await reopen();
      expect(store.messages(Q3)).toEqual([]);
      expect(await closedCount('bodies')).toBe(0);
      expect(await closedCount('messages')).toBe(0);
    });

    it('a fanned-out message left in only one queue before its commit is written inline', async () => {
      const m = message('fanned');
      const e1 = new QueueEntry(m, 1, 0);
      const e2 = new QueueEntry(m, 1, 0);
      store.enqueue(Q1, e1, m);
      store.enqueue(Q2, e2, m);
      store.remove(Q1, e1, m); // acked in the same tick
      await commitAndSettle(store);
      expect(e2.storeState).toBe(EntryState.Inline);
      expect(store.messages(Q1)).toEqual([]);
      const [r] = store.messages(Q2);
      expect(r!.shared).toBe(false);
      expect(wire(r!.message)).toEqual(wire(m));
      await reopen();
      expect(await closedCount('bodies')).toBe(0);
    });

    it('lastSeqBelow() finds the highest stored seq below a bound, per queue', async () => {
      const big = 2 ** 40;
      for (const [q, seq] of [
        [Q1, 3],
        [Q1, 7],
        [Q1, big],
        [Q1, big + 5],
        [Q2, 9],
      ] as const) {
        const m = message(`s${seq}`);
        store.enqueue(q, new QueueEntry(m, seq, 0), m);
      }
      await commitAndSettle(store);
      expect(store.lastSeqBelow(Q1, big)).toBe(7);
      expect(store.lastSeqBelow(Q1, 7)).toBe(3);
      expect(store.lastSeqBelow(Q1, 3)).toBe(0);
      expect(store.lastSeqBelow(Q1, 2 ** 41)).toBe(big + 5);
      expect(store.lastSeqBelow(Q2, big)).toBe(9);
      expect(store.lastSeqBelow(Q3, big)).toBe(0);
    });

    it('extent() with bodies counts the body bytes of inline and shared records', async () => {
      const inline = message('12345');
      store.enqueue(Q1, new QueueEntry(inline, 1, 0), inline);
      const shared = message(Buffer.alloc(1000, 1));
      store.enqueue(Q1, new QueueEntry(shared, 2, 0), shared);
      store.enqueue(Q2, new QueueEntry(shared, 1, 0), shared);
      const empty = message('');
      store.enqueue(Q1, new QueueEntry(empty, 3, 0), empty);
      await commitAndSettle(store);
      expect(store.extent(Q1, 0, true)).toEqual({ count: 3, lastSeq: 3, bytes: 1005 });
      expect(store.extent(Q1, 2, true)).toEqual({ count: 2, lastSeq: 3, bytes: 1000 });
      expect(store.extent(Q2, 0, true)).toEqual({ count: 1, lastSeq: 1, bytes: 1000 });
      const [q1] = await reopen([Q1, Q2]);
      expect(q1!.length).toBe(3);
      expect(store.extent(Q1, 0, true)).toEqual({ count: 3, lastSeq: 3, bytes: 1005 });
    });

    it('a shared message whose every entry is recorded again under a new seq in one batch keeps its body', async () => {
      // a quorum queue moves a returned entry (remove, then enqueue under a new seq); a message
      // fanned out to two quorum queues can come back from both in one tick
      const m = message('moved');
      const e1 = new QueueEntry(m, 1, 0);
      const e2 = new QueueEntry(m, 1, 0);
      store.enqueue(Q1, e1, m);
      store.enqueue(Q2, e2, m);
      await commitAndSettle(store);
      const n1 = new QueueEntry(m, 9, 0);
      const n2 = new QueueEntry(m, 9, 0);
      store.remove(Q1, e1, m);
      store.enqueue(Q1, n1, m);
      store.remove(Q2, e2, m);
      store.enqueue(Q2, n2, m);
      await commitAndSettle(store);
      const [q1, q2] = await reopen();
      expect(q1!.map((r) => [r.seq, r.message.body.toString()])).toEqual([[9, 'moved']]);
      expect(q2!.map((r) => [r.seq, r.message.body.toString()])).toEqual([[9, 'moved']]);
      expect(await closedCount('bodies')).toBe(1);
      // moved again with one copy left: written inline, and the shared body goes
      const [r1, r2] = [recoverEntries(q1!)[0]!, recoverEntries(q2!)[0]!];
      store.remove(Q1, r1.e, r1.m);
      const n3 = new QueueEntry(r2.m as Message, 12, 0);
      store.remove(Q2, r2.e, r2.m);
      store.enqueue(Q2, n3, r2.m);
      await commitAndSettle(store);
      const [, again] = await reopen();
      expect(again!.map((r) => [r.seq, r.shared, r.message.body.toString()])).toEqual([[12, false, 'moved']]);
      expect(await closedCount('bodies')).toBe(0);
    });

    it('removeRange() deletes a seq range, shared bodies included when nothing else refers to them', async () => {
      const shared = message('shared');
      const sharedInQ2 = new QueueEntry(shared, 100, 0);
      for (let s = 1; s <= 10; s++) {
        const m = s === 5 ? shared : message(`m${s}`);
        store.enqueue(Q1, new QueueEntry(m, s, 0), m);
      }
      store.enqueue(Q2, sharedInQ2, shared);
      await commitAndSettle(store);
      store.removeRange(Q1, 3, 6);
      await commitAndSettle(store);
      expect(store.messages(Q1).map((r) => r.seq)).toEqual([1, 2, 7, 8, 9, 10]);
      expect(store.messages(Q2).map((r) => r.message.body.toString())).toEqual(['shared']);
      store.remove(Q2, sharedInQ2, shared);
      await commitAndSettle(store);
      // deleted with its last reference, not left for the next start's cleanup()
      expect(await closedCount('bodies')).toBe(0);
      await reopen();
      expect(store.messages(Q1).map((r) => r.seq)).toEqual([1, 2, 7, 8, 9, 10]);
      expect(store.messages(Q2)).toEqual([]);
      expect(await closedCount('bodies')).toBe(0);
    });

    it('a committed entry is marked with its batch, and settledBatch reaches it once it is safe', async () => {
      const m = message('batch');
      const e = new QueueEntry(m, 1, 0);
      store.enqueue(Q1, e, m);
      store.commit();
      expect(e.storeBatch).toBeGreaterThan(0);
      await commitAndSettle(store);
      expect(store.settledBatch).toBeGreaterThanOrEqual(e.storeBatch);
    });

    it('close() writes the open batch and settles its confirms', async () => {
      const m = message('at close');
      store.enqueue(Q1, new QueueEntry(m, 1, 0), m);
      const t = new FakeTarget();
      store.confirmAfterCommit(t, 1);
      await store.close();
      await until(() => t.acked === 1, 'ack 1');
      expect(t.events).toEqual(['ch ack 1']);
      store = subject.make(dir);
      expect(store.messages(Q1).map((r) => r.message.body.toString())).toEqual(['at close']);
    });

    it('cleanup() deletes the messages of queues that are gone and bodies nothing refers to', async () => {
      const keep = message('kept, shared with a gone queue');
      const orphan = message('shared by gone queues only');
      const inline = message('inline in a gone queue');
      store.enqueue(Q1, new QueueEntry(keep, 1, 0), keep);
      store.enqueue(Q2, new QueueEntry(keep, 1, 0), keep);
      store.enqueue(Q2, new QueueEntry(orphan, 2, 0), orphan);
      store.enqueue(Q3, new QueueEntry(orphan, 1, 0), orphan);
      store.enqueue(Q3, new QueueEntry(inline, 2, 0), inline);
      await commitAndSettle(store);
      await store.close();
      expect(await closedCount('bodies')).toBe(2);
      expect(await closedCount('messages')).toBe(5);
      // only Q1 is still declared
      await store.close();
      store = subject.make(dir);
      const [q1] = recoverEntries(store.messages(Q1));
      await store.cleanup(new Set([Q1]));
      expect(store.messages(Q2)).toEqual([]);
      expect(store.messages(Q3)).toEqual([]);
      expect(store.messages(Q1).map((r) => r.message.body.toString())).toEqual([
        'kept, shared with a gone queue',
      ]);
      await store.close();
      expect(await closedCount('bodies')).toBe(1);
      expect(await closedCount('messages')).toBe(1);
      // the kept body is deleted with its last entry
      await store.close();
      store = subject.make(dir);
      recoverEntries(store.messages(Q1));
      await store.cleanup(new Set([Q1]));
      store.remove(Q1, q1!.e, q1!.m);
      await commitAndSettle(store);
      await store.close();
      expect(await closedCount('bodies')).toBe(0);
      expect(await closedCount('messages')).toBe(0);
    });

    it('keeps copies: changing the published or the returned buffers afterwards changes nothing stored', async () => {
      const inline = message('inline');
      const shared = message('shared');
      const sent = [wire(inline), wire(shared)];
      store.enqueue(Q1, new QueueEntry(inline, 1, 0), inline);
      store.enqueue(Q1, new QueueEntry(shared, 2, 0), shared);
      store.enqueue(Q2, new QueueEntry(shared, 1, 0), shared);
      await commitAndSettle(store);
      for (const m of [inline, shared]) {
        m.body.fill(0x21);
        m.properties.fill(0);
      }
      const got = store.messages(Q1);
      expect(got.map((r) => r.shared)).toEqual([false, true]);
      expect(got.map((r) => wire(r.message))).toEqual(sent);
      for (const r of got) {
        r.message.body.fill(0x22);
        r.message.properties.fill(0);
      }
      const [q1, q2] = await reopen();
      expect(q1!.map((r) => wire(r.message))).toEqual(sent);
      expect(q2!.map((r) => wire(r.message))).toEqual([sent[1]]);
    });

    it('a run marked running that did not close makes the next start unclean', async () => {
      expect(store.uncleanStart).toBe(false); // nothing ran before
      store.markRunning();
      await reopen();
      expect(store.uncleanStart).toBe(false); // the last run closed
      store.markRunning();
      // killed: the store is opened again without a close (lmdb-js shares the environment
      // within a process, so the killed one is closed only after the new one)
      const killed = store;
      store = subject.make(dir);
      expect(store.uncleanStart).toBe(true);
      store.markRunning();
      await store.close();
      await killed.close();
      store = subject.make(dir);
      expect(store.uncleanStart).toBe(false);
    });
  });

  // ---------------------------------------------------------------- a model-based run

  itWhen(subject.durable)(
    'random publishes (fanned out), deliveries, removes, commits and reopens match a model',
    async () => {
      type Op =
        | { t: 'pub'; mask: number }
        | { t: 'rm'; q: number; i: number }
        | { t: 'deliver'; q: number; i: number }
        | { t: 'commit' }
        | { t: 'reopen' };
      const op: fc.Arbitrary<Op> = fc.oneof(
        {
          arbitrary: fc.record({ t: fc.constant('pub' as const), mask: fc.integer({ min: 1, max: 7 }) }),
          weight: 4,
        },
        { arbitrary: fc.record({ t: fc.constant('rm' as const), q: fc.nat(2), i: fc.nat(20) }), weight: 3 },
        {
          arbitrary: fc.record({ t: fc.constant('deliver' as const), q: fc.nat(2), i: fc.nat(20) }),
          weight: 1,
        },
        { arbitrary: fc.constant({ t: 'commit' as const }), weight: 2 },
        { arbitrary: fc.constant({ t: 'reopen' as const }), weight: 1 },
      );
      const queues = [Q1, Q2, Q3];
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 50 }), async (ops) => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
          disks.delete(dir);
          dir = mkdtempSync(join(tmpdir(), 'warren-store-'));
          store = subject.make(dir);
          /** per queue, the live entries in seq order */
          const live = queues.map(() => [] as { e: StoredEntry; m: StoredMessage }[]);
          const nextSeq = [1, 1, 1];
          let n = 0;
          const check = async () => {
            // close: the open batch is written; then count bodies before cleanup() could hide a leak
            await store.close();
            const bodiesOnDisk = await subject.count(dir, 'bodies');
            store = subject.make(dir);
            const recovered = queues.map((q) => store.messages(q));
            await store.cleanup(new Set(queues));
            const sharedIds = new Set<number>();
            for (const [qi, got] of recovered.entries()) {
              expect(
                got.map((r) => [r.seq, r.message.body.toString(), r.deliveries]),
                `queue ${queues[qi]}`,
              ).toEqual(live[qi]!.map(({ e, m }) => [e.seq, m.body.toString(), e.deliveries]));
              for (const r of got) if (r.shared) sharedIds.add(r.message.storeId);
            }
            expect(bodiesOnDisk, 'body records = shared bodies still referenced').toBe(sharedIds.size);
            for (const [qi, got] of recovered.entries()) live[qi] = recoverEntries(got);
          };
          for (const o of ops) {
            if (o.t === 'pub') {
              const m = message(`b${n++}`);
              for (const [qi, q] of queues.entries()) {
                if (!(o.mask & (1 << qi))) continue;
                const e = new QueueEntry(m as Message, nextSeq[qi]!++, 0);
                store.enqueue(q, e, m);
                live[qi]!.push({ e, m });
              }
            } else if (o.t === 'rm' || o.t === 'deliver') {
              const l = live[o.q]!;
              if (l.length === 0) continue;
              const i = o.i % l.length;
              const { e, m } = l[i]!;
              if (o.t === 'rm') {
                store.remove(queues[o.q]!, e, m);
                l.splice(i, 1);
              } else {
                e.deliveries++;
                store.delivered(queues[o.q]!, e);
              }
            } else if (o.t === 'commit') await commitAndSettle(store);
            else await check();
          }
          await check();
        }),
        { numRuns: 40 },
      );
    },
    30_000,
  );

  /** Records in one database of the store, read with the store closed (then reopened). */
  async function closedCount(db: 'bodies' | 'messages'): Promise<number> {
    await store.close();
    const n = await subject.count(dir, db);
    await reopen();
    return n;
  }
});
