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

import { residentFileBytes } from '../util/resident.js';
import { newBatch, REMOVE_CAP } from './lmdb-batch.js';
import { Deletes } from './lmdb-deletes.js';
import { LmdbTables } from './lmdb-tables.js';
import { bodyValue, inlineValue, messageKey, sharedValue, u32Key, u64Key } from './records.js';
import { SettleQueue, type SyncMode } from './settle-queue.js';

export { PURGE_CHUNK, STORE_PAGE_SIZE } from './lmdb-tables.js';
export type { SyncMode } from './settle-queue.js';

import {
  ConfirmBatch,
  type ConfirmTarget,
  type Definition,
  EntryState,
  type Extent,
  type RecoveredMessage,
  type Store,
  type StoredEntry,
  type StoredMessage,
  scheduleCommit,
} from './store.js';

/** Longest a commit waits for the writes in flight to settle so that the store can reopen. */
const REMAP_WAIT_MS = 100;
/** Retry interval while the store cannot be opened again after a reopen. */
const REOPEN_RETRY_MS = 500;

export interface LmdbStoreOptions {
  path: string;
  sync: SyncMode;
  /** called when a batch fails to commit (the confirms are nacked) */
  onError: (e: unknown) => void;
  /** called when the backlog of unsettled writes drops below the low-water mark */
  onDrained?: () => void;
  /** called when the backlog of unsettled writes rises above the high-water mark */
  onBusy?: () => void;
  /** bytes of store pages that may stay mapped before the store reopens (default 8 MiB) */
  mapLimit?: number;
}

export class LmdbStore implements Store {
  readonly durable = true;
  readonly path: string;
  private readonly t: LmdbTables;
  private readonly deletes: Deletes;
  private inCommit = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** writes failed: the next commit writes something even when its batch is empty */
  private probeDue = false;
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
  /** stored entries that were delivered (told at a clean stop), whose count is written at close */
  private readonly undelivered = new Map<StoredEntry, number>();
  private batchNo = 0;
  /** resident file-backed bytes just after the store was last opened (-1: not measurable) */
  private mapBase: number;
  private readonly mapLimit: number;
  /** the mapped pages grew past mapLimit: the next commit with nothing in flight reopens */
  private remapWanted = false;
  private remapSince = 0;
  /** a reopen is under way */
  private remapping = false;
  /** times the store was closed and opened again to unmap its pages */
  remaps = 0;

  constructor(o: LmdbStoreOptions) {
    this.path = o.path;
    this.onError = o.onError;
    this.onDrained = o.onDrained;
    this.onBusy = o.onBusy;
    this.settler = new SettleQueue({
      sync: o.sync,
      onError: (e) => {
        this.onError(e);
        // when the wait is over a write is tried even if nobody has anything to write (blocked
        // publishers cannot): its success is what ends the block
        this.probeDue = true;
        this.retryAfter(this.settler.retryIn());
      },
      onBusy: () => this.onBusy?.(),
      onDrained: () => this.onDrained?.(),
      // a range deletion goes on a chunk per settled commit, paced by the disk
      afterSettle: () => {
        if ((this.deletes.pending || this.remapWanted) && !this.inCommit) this.schedule();
      },
    });
    this.t = new LmdbTables(o.path, (p) => this.settler.guard(p));
    this.deletes = new Deletes(this.t, (p) => this.settler.guard(p), this.key);
    this.nextDef = this.t.firstDef;
    this.nextBody = this.t.firstBody;
    this.mapLimit = o.mapLimit ?? 8 * 1024 * 1024;
    this.mapBase = residentFileBytes();
  }

  /** the previous run did not stop cleanly: stored messages may have been delivered */
  get uncleanStart(): boolean {
    return this.t.uncleanStart;
  }

  get backlog(): number {
    return this.settler.backlog;
  }

  // ---------------------------------------------------------------- definitions

  putDefinition(def: Definition): number {
    const id = this.nextDef++;
    this.track(this.t.defs.put(u32Key(id), def), 1);
    return id;
  }

  deleteDefinition(id: number): void {
    this.track(this.t.defs.remove(u32Key(id)), 1);
  }

  definitions(): [number, Definition][] {
    const out: [number, Definition][] = [];
    for (const { key, value } of this.t.defs.getRange()) out.push([(key as Buffer).readUInt32BE(0), value]);
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
   * nothing; the broker tells the store at a clean stop (Queue.keepDeliveries). A pending
   * entry is written with its current count at commit.
   */
  delivered(queueId: number, e: StoredEntry): void {
    if (e.storeState === EntryState.Inline || e.storeState === EntryState.Shared)
      this.undelivered.set(e, queueId);
  }

  countDelivery(queueId: number, e: StoredEntry): void {
    if (e.storeState === EntryState.None) return;
    e.storeDeliv = true; // a remove from now on deletes the record too
    this.batch.delivQueue.push(queueId);
    this.batch.delivEntry.push(e);
    this.schedule();
  }

  remove(queueId: number, e: StoredEntry, m: StoredMessage, paired = false): void {
    const state = e.storeState;
    if (state === EntryState.None) return;
    e.storeState = EntryState.None;
    this.undelivered.delete(e);
    m.storeRefs--;
    // recorded and removed within one batch: it never reaches the disk
    if (state === EntryState.Pending) return;
    let body = 0;
    if (state === EntryState.Shared) {
      const refs = (this.t.bodyRefs.get(m.storeId) ?? 1) - 1;
      if (refs <= 0) {
        this.t.bodyRefs.delete(m.storeId);
        body = m.storeId;
      } else this.t.bodyRefs.set(m.storeId, refs);
    }
    const bytes = state === EntryState.Inline || body !== 0 ? m.body.length : 0;
    const to = paired ? this.batch.pairs : this.batch.rem;
    to.push(queueId, e.seq, body, state === EntryState.Shared, e.storeDeliv, bytes);
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
      this.retryAfter(wait);
      return;
    }
    // a reopen under way: the batch goes to the reopened store (its completion schedules us)
    if (this.remapping || (this.remapWanted && this.remap())) return;

    // a reopen that failed to open the store again: the batch waits, whole, for a later try
    const closed = this.t.ensureOpen();
    if (closed !== null) {
      this.onError(closed);
      this.retryAfter(REOPEN_RETRY_MS);
      return;
    }
    this.inCommit = true;
    try {
      this.commitBatch();
    } finally {
      this.inCommit = false;
    }
  }

  private retryAfter(ms: number): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.schedule();
    }, ms);
    this.retryTimer.unref();
  }

  /**
   * Called a few times a second. LMDB maps the store file in chunks and keeps every chunk it
   * has touched mapped (lmdb-js unmaps only past 8,192 of them), so filling or draining a deep
   * queue would leave the whole file resident: 80+ MiB for a million small messages. Past
   * mapLimit bytes of growth since the last open, the store is reopened, which unmaps it all.
   */
  checkMapped(): void {
    if (this.mapBase < 0 || this.remapWanted || this.remapping || this.closed) return;
    const now = residentFileBytes();
    if (now < 0) return; // unreadable this time (no descriptor left, say)
    if (now < this.mapBase) this.mapBase = now;
    else if (now - this.mapBase > this.mapLimit) this.requestRemap();
  }

  /** Reopens the store at the next commit with no write in flight. */
  requestRemap(): void {
    if (this.closed) return;
    if (!this.remapWanted) this.remapSince = Date.now();
    this.remapWanted = true;
    this.schedule();
  }

  /**
   * Reopens the store once no write is in flight (until then the open batch waits; afterSettle
   * schedules the commit again). With sync always the close completes before the next tick;
   * with sync off it may wait for the last fsync. Commits wait for it either way and go to the
   * reopened store. Returns whether this commit is put off: if writes (definitions, say) keep
   * the store busy past REMAP_WAIT_MS, the reopen is given up for now.
   */
  private remap(): boolean {
    if (!this.settler.empty) {
      if (Date.now() - this.remapSince < REMAP_WAIT_MS) return true;
      this.remapWanted = false;
      return false;
    }
    this.remapWanted = false;
    this.remapping = true;
    this.t.reopen().then(
      () => {
        this.remapping = false;
        this.remaps++;
        const now = residentFileBytes();
        if (now >= 0) this.mapBase = now;
        this.schedule();
      },
      (e: unknown) => {
        // the store stays closed: the next commit tries to open it (ensureOpen)
        this.remapping = false;
        this.onError(e);
        this.schedule();
      },
    );
    return true;
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
        // fanned out to several durable queues: the body is stored once. A body whose last
        // stored reference went (its deletion is under way, maybe in a later chunk) is stored
        // again under a new id: a quorum queue moved every entry of the message in this batch
        if (m.storeId === 0 || !this.t.bodyRefs.has(m.storeId)) {
          m.storeId = this.nextBody++;
          last = this.guard(this.t.bodies.put(u64Key(m.storeId), bodyValue(m)));
          bytes += m.body.length;
          ops++;
        }
        last = this.guard(this.t.msgs.put(key, sharedValue(e.deliveries, e.expiresAt, m.storeId)));
        this.guard(this.t.refs.put(key, u64Key(m.storeId)));
        this.t.bodyRefs.set(m.storeId, (this.t.bodyRefs.get(m.storeId) ?? 0) + 1);
        e.storeState = EntryState.Shared;
      } else {
        last = this.guard(this.t.msgs.put(key, inlineValue(e.deliveries, e.expiresAt, m)));
        bytes += m.body.length;
        e.storeState = EntryState.Inline;
      }
      e.storeBatch = batchNo;
      ops++;
    }
    for (let i = 0; i < b.delivEntry.length; i++) {
      const e = b.delivEntry[i]!;
      // written (now or before) and not removed since; removes below delete the record again
      if (e.storeState !== EntryState.Inline && e.storeState !== EntryState.Shared) continue;
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32BE(e.deliveries, 0);
      last = this.guard(this.t.deliv.put(Buffer.from(messageKey(key, b.delivQueue[i]!, e.seq)), v));
      this.t.deliveryWritten();
      ops++;
    }
    const d = this.deletes.write(b);
    if (d.last !== null) last = d.last;
    ops += d.ops;
    if (this.probeDue) {
      this.probeDue = false;
      if (ops === 0) {
        last = this.guard(this.t.env.put('probe', batchNo));
        ops = 1;
      }
    }
    if (last === null && b.confirms.empty) this.settler.emptyBatch(batchNo);
    else this.settler.add(batchNo, ops, bytes, b.confirms, last, d.after);
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

  // ---------------------------------------------------------------- recovery (LmdbTables)

  messages(queueId: number, fromSeq = 0, limit = Number.POSITIVE_INFINITY): RecoveredMessage[] {
    return this.t.messages(queueId, fromSeq, limit);
  }

  scanSizes(
    queueId: number,
    fromSeq: number,
    fn: (seq: number, wire: number, expiresAt: number) => void,
  ): void {
    this.t.scanSizes(queueId, fromSeq, fn);
  }

  extent(queueId: number, fromSeq: number, bodies = false): Extent {
    return this.t.extent(queueId, fromSeq, bodies);
  }

  lastSeqBelow(queueId: number, below: number): number {
    return this.t.lastSeqBelow(queueId, below);
  }

  finishDeletes(): Promise<void> {
    return this.t.finishDeletes();
  }

  markRunning(): void {
    this.t.markRunning();
  }

  /** Drops what no live queue refers to, then waits for startup's own writes to settle. */
  async cleanup(liveQueues: ReadonlySet<number>): Promise<void> {
    await this.t.cleanup(liveQueues);
    // a client's first confirms then never wait behind the default definitions' writes
    while (!this.settler.empty) await new Promise((r) => setTimeout(r, 1));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // the last commit below goes to the store as it is
    this.remapWanted = false;
    while (this.remapping) await sleep(1);
    // a clean stop keeps the delivery counts, so those messages come back redelivered; a
    // transaction's worth at a time (a million unacked deliveries would not fit in one)
    const key = this.key;
    let n = 0;
    let last: Promise<unknown> | null = null;
    for (const [e, queueId] of this.undelivered) {
      if (e.storeState !== EntryState.Inline && e.storeState !== EntryState.Shared) continue;
      const v = Buffer.allocUnsafe(4);
      v.writeUInt32BE(e.deliveries, 0);
      last = this.t.deliv.put(Buffer.from(messageKey(key, queueId, e.seq)), v);
      if (++n % REMOVE_CAP === 0) {
        this.track(last, REMOVE_CAP);
        await last.catch(ignore);
        last = null;
      }
    }
    if (last !== null) this.track(last, n % REMOVE_CAP);
    this.undelivered.clear();
    // a last attempt even while writes are failing: what fails is nacked, not left hanging
    this.settler.retryNow();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.commit();
    // carried removals go a chunk per commit: a clean stop leaves no acked message behind,
    // unless a chunk fails (then they come back at the next start, as after a crash)
    const failures = this.deletes.carryFailures;
    while (this.deletes.carrying && this.deletes.carryFailures === failures) {
      while (this.deletes.carryInFlight) await sleep(1);
      if (!this.deletes.carrying || this.deletes.carryFailures !== failures) break;
      this.settler.retryNow();
      this.commit();
      // the store could not be written to at all
      if (!this.deletes.carryInFlight) break;
    }
    this.closed = true;
    await this.t.env.flushed;
    this.t.env.putSync('clean', 1);
    await this.t.env.close();
  }
}

const ignore = (): void => {};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
