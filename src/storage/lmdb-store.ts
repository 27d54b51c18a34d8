/**
 * The LMDB store: one environment in the data dir, group commit once per tick.
 *
 * The hot path records operations into the open batch (arrays, no I/O). The tick's commit
 * phase issues the batch as lmdb-js writes, which lmdb-js commits in one transaction on its
 * write thread. lmdb-js resolves a write's promise when the transaction is committed (visible,
 * and safe from a process crash) and, with overlappingSync (the default on Linux), fsyncs
 * afterwards; `separateFlushed` gives each commit promise a `flushed` promise for that. With
 * sync 'always' confirms wait for `flushed`; with 'off' they go at commit. Batches settle in
 * order, so a channel's confirms never overtake an earlier batch.
 */
import { type Database, type DatabaseOptions, open, type RootDatabase } from 'lmdb';
import { checkStoreFile } from './file-check.js';
import { SettleQueue, type SyncMode } from './settle-queue.js';

export type { SyncMode } from './settle-queue.js';

import {
  bodyValue,
  inlineValue,
  KIND_SHARED,
  keySeq,
  MESSAGE_CODEC,
  type MessageRecord,
  messageKey,
  readU64Key,
  readWire,
  sharedValue,
  u32Key,
  u64Key,
} from './records.js';
import {
  ConfirmBatch,
  type ConfirmTarget,
  type Definition,
  EntryState,
  type RecoveredMessage,
  type Store,
  type StoredEntry,
  type StoredMessage,
  scheduleCommit,
} from './store.js';

interface Batch {
  rangeQueue: number[];
  rangeFrom: number[];
  rangeTo: number[];
  enqQueue: number[];
  enqEntry: StoredEntry[];
  enqMsg: StoredMessage[];
  remQueue: number[];
  remSeq: number[];
  /** body to delete with the entry (last reference), else 0 */
  remBody: number[];
  /** the entry referenced a shared body (its refs record goes too) */
  remShared: boolean[];
  /** the entry has a delivery-count record to delete */
  remDeliv: boolean[];
  confirms: ConfirmBatch;
}

function newBatch(): Batch {
  return {
    rangeQueue: [],
    rangeFrom: [],
    rangeTo: [],
    enqQueue: [],
    enqEntry: [],
    enqMsg: [],
    remQueue: [],
    remSeq: [],
    remBody: [],
    remShared: [],
    remDeliv: [],
    confirms: new ConfirmBatch(),
  };
}

/** A range of paged-out messages being deleted a chunk per commit (purge or delete of a deep queue). */
interface Purge {
  queueId: number;
  next: number;
  to: number;
  /** its record in the purges db, deleted with the last chunk */
  recordKey: Buffer;
  /** the record is on disk (a failed first commit writes it again) */
  recorded: boolean;
  /** a chunk is being written: the next waits for its outcome */
  inFlight: boolean;
}

/**
 * Keys deleted per transaction when a range goes: one transaction deleting millions of keys
 * would overflow LMDB's dirty-page limit (MDB_TXN_FULL) and stall every other write.
 */
/**
 * LMDB page size for new stores (an existing store keeps its own). With remapChunks lmdb-js
 * maps the file in chunks of 16 pages and unmaps unused ones only once 8,192 chunks are
 * mapped, so the page size sets how much of a draining store stays resident: 512 MiB with
 * 4 KiB pages, 256 MiB with 2 KiB. A 1 KiB message then takes one 2 KiB overflow page, the
 * same space as two per 4 KiB leaf, and small messages pack as before. Measured on 2M x 1 KiB:
 * peak RSS 765 -> 459 MiB with fill and drain as fast (README, durability figures).
 */
export const STORE_PAGE_SIZE = 2048;

export const PURGE_CHUNK = 10_000;
const MAX_SEQ = 2 ** 53 - 1;

export interface LmdbStoreOptions {
  path: string;
  sync: SyncMode;
  /** called when a batch fails to commit (the confirms are nacked) */
  onError: (e: unknown) => void;
  /** called when the backlog of unsettled writes drops below the low-water mark */
  onDrained?: () => void;
  /** called when the backlog of unsettled writes rises above the high-water mark */
  onBusy?: () => void;
}

export class LmdbStore implements Store {
  readonly durable = true;
  readonly path: string;
  private readonly env: RootDatabase;
  /** values are written as encoded Buffers and read back decoded (MESSAGE_CODEC) */
  private readonly msgs: Database<Buffer | MessageRecord, Buffer>;
  private readonly deliv: Database<Buffer, Buffer>;
  private readonly bodies: Database<Buffer, Buffer>;
  /** message key -> body id, for entries that reference a shared body (recovery counts these) */
  private readonly refs: Database<Buffer, Buffer>;
  private readonly defs: Database<Definition, Buffer>;
  /** queueId|fromSeq -> toSeq: ranges whose deletion has started but not finished */
  private readonly purges: Database<Buffer, Buffer>;
  private readonly purging: Purge[] = [];
  private inCommit = false;
  /** the deliveries db has records (it is only written at close, so this holds for the run) */
  private hasDeliv = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly sync: SyncMode;
  private readonly onError: (e: unknown) => void;
  onDrained: (() => void) | undefined;
  onBusy: (() => void) | undefined;
  private batch = newBatch();
  private queued = false;
  private nextDef = 1;
  private nextBody = 1;
  private readonly key = Buffer.allocUnsafe(12);
  private readonly settler: SettleQueue;
  private closed = false;
  /** bodies read during recovery, so queues sharing one get the same object */
  private recoveredBodies: Map<number, StoredMessage> | null = new Map();
  /** references to each shared body from stored entries (counted here, not on the message) */
  private readonly bodyRefs = new Map<number, number>();
  /** stored entries delivered since they were written, whose count is written at close */
  private readonly undelivered = new Map<StoredEntry, number>();
  private batchNo = 0;
  /** the previous run did not stop cleanly: stored messages may have been delivered */
  readonly uncleanStart: boolean;

  constructor(o: LmdbStoreOptions) {
    this.path = o.path;
    this.sync = o.sync;
    this.onError = o.onError;
    this.onDrained = o.onDrained;
    this.onBusy = o.onBusy;
    this.settler = new SettleQueue({
      sync: o.sync,
      onError: (e) => this.onError(e),
      onBusy: () => this.onBusy?.(),
      onDrained: () => this.onDrained?.(),
      // a range deletion goes on a chunk per settled commit, paced by the disk
      afterSettle: () => {
        if (this.purging.length > 0 && !this.inCommit) this.schedule();
      },
    });
    checkStoreFile(o.path);
    this.env = open({
      path: o.path,
      maxDbs: 8,
      separateFlushed: true,
      compression: false,
      remapChunks: true,
      pageSize: STORE_PAGE_SIZE,
    });
    // a clean stop leaves 'clean' = 1; anything else means the last run was killed
    this.uncleanStart = this.env.get('clean') === 0;
    const bin = { keyEncoding: 'binary' as const, encoding: 'binary' as const, compression: false };
    // lmdb-js takes an encoder per db; its typings only declare one on the root
    this.msgs = this.env.openDB<Buffer | MessageRecord, Buffer>('messages', {
      keyEncoding: 'binary',
      encoder: MESSAGE_CODEC,
      compression: false,
    } as DatabaseOptions);
    this.deliv = this.env.openDB<Buffer, Buffer>('deliveries', bin);
    this.bodies = this.env.openDB<Buffer, Buffer>('bodies', bin);
    this.refs = this.env.openDB<Buffer, Buffer>('shared-refs', bin);
    this.purges = this.env.openDB<Buffer, Buffer>('purges', bin);
    for (const _ of this.deliv.getKeys({ limit: 1 })) this.hasDeliv = true;
    this.defs = this.env.openDB<Definition, Buffer>('definitions', {
      keyEncoding: 'binary',
      compression: false,
    });
    for (const k of this.defs.getKeys({ reverse: true, limit: 1 }))
      this.nextDef = (k as Buffer).readUInt32BE(0) + 1;
    for (const k of this.bodies.getKeys({ reverse: true, limit: 1 }))
      this.nextBody = readU64Key(k as Buffer) + 1;
  }

  get backlog(): number {
    return this.settler.backlog;
  }

  // ---------------------------------------------------------------- definitions

  putDefinition(def: Definition): number {
    const id = this.nextDef++;
    this.track(this.defs.put(u32Key(id), def), 1);
    return id;
  }

  deleteDefinition(id: number): void {
    this.track(this.defs.remove(u32Key(id)), 1);
  }

  definitions(): [number, Definition][] {
    const out: [number, Definition][] = [];
    for (const { key, value } of this.defs.getRange()) out.push([(key as Buffer).readUInt32BE(0), value]);
    return out;
  }

  // ---------------------------------------------------------------- messages (hot path: record only)

  enqueue(queueId: number, e: StoredEntry, m: StoredMessage): void {
    e.storeState = EntryState.Pending;
    m.storeRefs++;
    const b = this.batch;
    b.enqQueue.push(queueId);
    b.enqEntry.push(e);
    b.enqMsg.push(m);
    this.schedule();
  }

  /**
   * Delivery counts are written only at a clean stop: after a crash every recovered message
   * counts as possibly delivered anyway (uncleanStart), so writing them per delivery would buy
   * nothing. A pending entry is written with its current count at commit.
   */
  delivered(queueId: number, e: StoredEntry): void {
    if (e.storeState === EntryState.Inline || e.storeState === EntryState.Shared)
      this.undelivered.set(e, queueId);
  }

  remove(queueId: number, e: StoredEntry, m: StoredMessage): void {
    const state = e.storeState;
    if (state === EntryState.None) return;
    e.storeState = EntryState.None;
    this.undelivered.delete(e);
    m.storeRefs--;
    // recorded and removed within one batch: it never reaches the disk
    if (state === EntryState.Pending) return;
    const b = this.batch;
    b.remQueue.push(queueId);
    b.remSeq.push(e.seq);
    let body = 0;
    if (state === EntryState.Shared) {
      const refs = (this.bodyRefs.get(m.storeId) ?? 1) - 1;
      if (refs <= 0) {
        this.bodyRefs.delete(m.storeId);
        body = m.storeId;
      } else this.bodyRefs.set(m.storeId, refs);
    }
    b.remBody.push(body);
    b.remShared.push(state === EntryState.Shared);
    b.remDeliv.push(e.storeDeliv);
    this.schedule();
  }

  removeRange(queueId: number, fromSeq: number, toSeq: number): void {
    const b = this.batch;
    b.rangeQueue.push(queueId);
    b.rangeFrom.push(fromSeq);
    b.rangeTo.push(toSeq);
    this.schedule();
  }

  confirmAfterCommit(target: ConfirmTarget, seq: number): void {
    this.batch.confirms.add(target, seq);
    this.schedule();
  }

  private schedule(): void {
    if (!this.queued) {
      this.queued = true;
      scheduleCommit(this);
    }
  }

  // ---------------------------------------------------------------- commit

  commit(): void {
    this.queued = false;
    if (this.closed) return;
    // writes are failing: the open batch waits for the next attempt (publishers are blocked)
    const wait = this.settler.retryIn();
    if (wait > 0) {
      if (this.retryTimer === null) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.schedule();
        }, wait);
        this.retryTimer.unref();
      }
      return;
    }
    this.inCommit = true;
    try {
      this.commitBatch();
    } finally {
      this.inCommit = false;
    }
  }

  private commitBatch(): void {
    const b = this.batch;
    this.batch = newBatch();
    b.confirms.seal();
    const batchNo = ++this.batchNo;
    let last: Promise<unknown> | null = null;
    let ops = 0;
    let bytes = 0;
    const key = this.key;
    for (let i = 0; i < b.enqEntry.length; i++) {
      const e = b.enqEntry[i]!;
      if (e.storeState !== EntryState.Pending) continue;
      const m = b.enqMsg[i]!;
      messageKey(key, b.enqQueue[i]!, e.seq);
      if (m.storeRefs > 1) {
        // fanned out to several durable queues: the body is stored once
        if (m.storeId === 0) {
          m.storeId = this.nextBody++;
          last = this.guard(this.bodies.put(u64Key(m.storeId), bodyValue(m)));
          bytes += m.body.length;
          ops++;
        }
        last = this.guard(this.msgs.put(key, sharedValue(e.deliveries, e.expiresAt, m.storeId)));
        this.guard(this.refs.put(key, u64Key(m.storeId)));
        this.bodyRefs.set(m.storeId, (this.bodyRefs.get(m.storeId) ?? 0) + 1);
        e.storeState = EntryState.Shared;
      } else {
        last = this.guard(this.msgs.put(key, inlineValue(e.deliveries, e.expiresAt, m)));
        bytes += m.body.length;
        e.storeState = EntryState.Inline;
      }
      e.storeBatch = batchNo;
      ops++;
    }
    for (let i = 0; i < b.remSeq.length; i++) {
      messageKey(key, b.remQueue[i]!, b.remSeq[i]!);
      last = this.guard(this.msgs.remove(key));
      ops++;
      if (b.remDeliv[i]) {
        this.guard(this.deliv.remove(key));
        ops++;
      }
      if (b.remShared[i]) this.guard(this.refs.remove(key));
      const body = b.remBody[i]!;
      if (body !== 0) {
        last = this.guard(this.bodies.remove(u64Key(body)));
        ops++;
      }
    }
    for (let i = 0; i < b.rangeQueue.length; i++) {
      // paged-out messages that were never loaded: recorded first, so a restart finishes the job
      const recordKey = messageKey(Buffer.allocUnsafe(12), b.rangeQueue[i]!, b.rangeFrom[i]!);
      this.purging.push({
        queueId: b.rangeQueue[i]!,
        next: b.rangeFrom[i]!,
        to: b.rangeTo[i]!,
        recordKey,
        recorded: false,
        inFlight: false,
      });
    }
    let after: ((ok: boolean) => void) | undefined;
    const p = this.purging[0];
    if (p !== undefined && !p.inFlight) {
      // one chunk per commit; its progress counts only once the commit is through
      if (!p.recorded) {
        last = this.guard(this.purges.put(p.recordKey, u64Key(p.to)));
        ops++;
      }
      const step = this.deleteChunk(p.queueId, p.next, p.to);
      if (step.last !== null) last = step.last;
      ops += step.ops;
      const done = step.next > p.to;
      if (done) {
        last = this.guard(this.purges.remove(p.recordKey));
        ops++;
      }
      p.inFlight = true;
      after = (ok) => this.purgeStepDone(p, ok, step.next, done, step.released);
    }
    if (last === null && b.confirms.empty) this.settler.emptyBatch(batchNo);
    else this.settler.add(batchNo, ops, bytes, b.confirms, last, after);
  }

  /**
   * A purge chunk's commit settled. Through: the purge moves on (or is over). Failed: its
   * deletes did not happen, so the shared-body references it let go are taken back and the
   * same chunk (record included, if that was lost too) is written again on a later commit.
   */
  private purgeStepDone(p: Purge, ok: boolean, next: number, done: boolean, released: number[]): void {
    p.inFlight = false;
    if (!ok) {
      for (const id of released) this.bodyRefs.set(id, (this.bodyRefs.get(id) ?? 0) + 1);
      return;
    }
    p.recorded = true;
    p.next = next;
    if (done) {
      const i = this.purging.indexOf(p);
      if (i >= 0) this.purging.splice(i, 1);
    }
  }

  /**
   * Deletes up to PURGE_CHUNK stored messages of a queue with seq in [from, to] (with their
   * delivery counts, and shared bodies nothing else refers to). Returns where to go on from
   * (past `to` when the range is done) and the last write.
   */
  private deleteChunk(
    queueId: number,
    from: number,
    to: number,
    countBodies = true,
  ): { next: number; ops: number; last: Promise<unknown> | null; released: number[] } {
    const start = messageKey(Buffer.allocUnsafe(12), queueId, from);
    const released: number[] = [];
    const end = messageKey(Buffer.allocUnsafe(12), queueId, Math.min(to, MAX_SEQ - 1) + 1);
    const keys: Buffer[] = [];
    for (const k of this.msgs.getKeys({ start, end, limit: PURGE_CHUNK }))
      keys.push(Buffer.from(k as Buffer));
    let last: Promise<unknown> | null = null;
    let ops = 0;
    for (const k of keys) {
      last = this.guard(this.msgs.remove(k));
      this.guard(this.deliv.remove(k));
      ops += 2;
    }
    const done = keys.length < PURGE_CHUNK;
    // the span this chunk covered: to the range's end when done, else past its last key
    const next = done ? to + 1 : keySeq(keys[keys.length - 1]!) + 1;
    const spanEnd = done ? end : messageKey(Buffer.allocUnsafe(12), queueId, next);
    for (const { key: k, value } of this.refs.getRange({ start, end: spanEnd })) {
      this.guard(this.refs.remove(k as Buffer));
      // before recovery nothing is counted yet: cleanup() deletes the bodies left unreferenced
      if (!countBodies) continue;
      const id = readU64Key(value);
      released.push(id);
      const n = (this.bodyRefs.get(id) ?? 1) - 1;
      if (n > 0) this.bodyRefs.set(id, n);
      else {
        this.bodyRefs.delete(id);
        last = this.guard(this.bodies.remove(u64Key(id)));
        ops++;
      }
    }
    return { next, ops, last, released };
  }

  /**
   * Finishes range deletions a previous run started (before recovery reads any queue), one
   * transaction per chunk.
   */
  async finishDeletes(): Promise<void> {
    const ranges: [Buffer, number][] = [];
    for (const { key, value } of this.purges.getRange())
      ranges.push([Buffer.from(key as Buffer), readU64Key(value)]);
    for (const [recordKey, to] of ranges) {
      const queueId = recordKey.readUInt32BE(0);
      let next = keySeq(recordKey);
      while (next <= to) {
        const step = this.deleteChunk(queueId, next, to, false);
        next = step.next;
        if (next > to) await this.purges.remove(recordKey);
        else if (step.last !== null) await step.last;
      }
    }
  }

  /** Definition writes join the current lmdb-js transaction; their failures are reported too. */
  private track(p: Promise<unknown>, ops: number): void {
    this.settler.add(this.batchNo, ops, 0, new ConfirmBatch(), this.guard(p));
  }

  private guard<T>(p: Promise<T>): Promise<T> {
    return this.settler.guard(p);
  }

  get settledBatch(): number {
    return this.settler.settledBatch;
  }

  // ---------------------------------------------------------------- recovery

  messages(queueId: number, fromSeq = 0, limit = Number.POSITIVE_INFINITY): RecoveredMessage[] {
    const out: RecoveredMessage[] = [];
    const start = messageKey(Buffer.allocUnsafe(12), queueId, fromSeq);
    const end = messageKey(Buffer.allocUnsafe(12), queueId + 1, 0);
    const shared = this.recoveredBodies;
    // the limit counts messages returned: a record skipped below must not end the read early
    for (const { key, value } of this.msgs.getRange({ start, end })) {
      if (out.length >= limit) break;
      const k = key as Buffer;
      const r = value as MessageRecord;
      const seq = k.readUInt32BE(4) * 4294967296 + k.readUInt32BE(8);
      // delivery counts are written at a clean stop only: most runs have none to look up
      const d = this.hasDeliv ? this.deliv.get(k) : undefined;
      const deliveries = Math.max(r.deliveries, d ? d.readUInt32BE(0) : 0);
      let m: StoredMessage | undefined;
      if (r.kind === KIND_SHARED) {
        m = shared?.get(r.bodyId);
        if (m === undefined) {
          const body = this.bodies.get(u64Key(r.bodyId));
          if (body === undefined) continue; // its body is gone: nothing to deliver
          m = readWire(body, 0);
          m.storeId = r.bodyId;
          shared?.set(r.bodyId, m);
        }
      } else {
        m = r.wire!;
      }
      out.push({
        seq,
        deliveries,
        message: m,
        expiresAt: r.expiresAt,
        shared: r.kind === KIND_SHARED,
        delivRecord: d !== undefined,
      });
    }
    return out;
  }

  extent(queueId: number, fromSeq: number): { count: number; lastSeq: number } {
    const start = messageKey(Buffer.allocUnsafe(12), queueId, fromSeq);
    const end = messageKey(Buffer.allocUnsafe(12), queueId + 1, 0);
    let count = 0;
    let lastSeq = 0;
    for (const k of this.msgs.getKeys({ start, end })) {
      count++;
      lastSeq = (k as Buffer).readUInt32BE(4) * 4294967296 + (k as Buffer).readUInt32BE(8);
    }
    return { count, lastSeq };
  }

  /** After a successful recovery: until close() says otherwise, this run counts as unclean. */
  markRunning(): void {
    this.env.putSync('clean', 0);
    // recovery is over: bodies read while paging are not kept (the map would only grow)
    this.recoveredBodies = null;
  }

  /**
   * Deletes messages of queues that no longer exist and bodies nothing refers to, and counts
   * the references to each shared body. Reads keys and the small refs records only, never the
   * message values, so a deep store recovers quickly.
   */
  async cleanup(liveQueues: ReadonlySet<number>): Promise<void> {
    this.recoveredBodies = new Map();
    // the queues that have stored messages, found by skipping from one queue's keys to the next
    const dead: number[] = [];
    for (let q = 0; ; ) {
      let found = -1;
      for (const k of this.msgs.getKeys({ start: u32Key(q), limit: 1 }))
        found = (k as Buffer).readUInt32BE(0);
      if (found < 0) break;
      if (!liveQueues.has(found)) dead.push(found);
      if (found === 0xffffffff) break;
      q = found + 1;
    }
    for (const q of dead) {
      let next = 0;
      while (next <= MAX_SEQ) {
        const step = this.deleteChunk(q, next, MAX_SEQ, false);
        next = step.next;
        if (step.last !== null) await step.last;
      }
    }
    for (const { value } of this.refs.getRange()) {
      const id = readU64Key(value);
      this.bodyRefs.set(id, (this.bodyRefs.get(id) ?? 0) + 1);
    }
    let last: Promise<unknown> | null = null;
    let n = 0;
    for (const k of this.bodies.getKeys()) {
      if (this.bodyRefs.has(readU64Key(k as Buffer))) continue;
      last = this.bodies.remove(Buffer.from(k as Buffer));
      if (++n % PURGE_CHUNK === 0) await last;
    }
    if (last !== null) await last;
    // startup's own writes (default definitions) settle before clients come: a client's first
    // confirms then never wait behind them
    while (!this.settler.empty) await new Promise((r) => setTimeout(r, 1));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // a clean stop keeps the delivery counts, so those messages come back redelivered
    const key = this.key;
    for (const [e, queueId] of this.undelivered) {
      if (e.storeState !== EntryState.Inline && e.storeState !== EntryState.Shared) continue;
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32BE(e.deliveries, 0);
      this.track(this.deliv.put(Buffer.from(messageKey(key, queueId, e.seq)), v), 1);
    }
    this.undelivered.clear();
    // a last attempt even while writes are failing: what fails is nacked, not left hanging
    this.settler.retryNow();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.commit();
    this.closed = true;
    await this.env.flushed;
    this.env.putSync('clean', 1);
    await this.env.close();
  }
}
