/**
 * The LMDB store's commits in flight, settled in order. Each commit (or definition write)
 * joins the queue with the lmdb-js promise of its transaction; when it is safe (committed, and
 * fsynced with sync 'always') its confirms go out, but never before an earlier commit's. The
 * queue also keeps the store's flow control and its reaction to failing writes:
 *
 * - busy: writes (or their bytes) not yet safe are over the high-water mark, or writes are
 *   failing; publishers are blocked until both are over.
 * - a failed commit nacks its confirms, stops paging for good (settledBatch freezes: entries
 *   that believe they are stored may not be), and makes commits wait (retryIn) for a growing
 *   interval, 0.5 s doubling to 10 s: retrying every tick would fail every tick, and lmdb-js
 *   does not stand a stream of failing transactions well (a file-size-limit test ended in a
 *   glibc heap assertion). The first commit that succeeds again ends the wait.
 */
import type { ConfirmBatch } from './store.js';

export type SyncMode = 'always' | 'off';

/**
 * Unsettled writes (and their bytes) above which publishers are paused, and below which they
 * resume. lmdb-js blocks the JS thread near 300,000 queued writes; the byte bound keeps the
 * messages waiting for the disk (held here and copied into lmdb-js's write buffer) from
 * dominating the broker's memory when bodies are large.
 */
export const BACKLOG_HIGH = 100_000;
export const BACKLOG_LOW = 25_000;
export const BACKLOG_BYTES_HIGH = 8 * 1024 * 1024;
export const BACKLOG_BYTES_LOW = 2 * 1024 * 1024;

const ignore = (): void => {};

/** A commit in flight, waiting to settle its confirms. */
interface InFlight {
  batchNo: number;
  done: boolean;
  ok: boolean;
  ops: number;
  /** message bytes it writes */
  bytes: number;
  confirms: ConfirmBatch;
  /** told whether the commit went through, after its confirms */
  after: ((ok: boolean) => void) | undefined;
}

export interface SettleHooks {
  sync: SyncMode;
  /** a commit failed (its confirms are nacked) */
  onError: (e: unknown) => void;
  /** publishers should pause / may resume */
  onBusy: () => void;
  onDrained: () => void;
  /** after settling (the store goes on with a range deletion) */
  afterSettle: () => void;
}

export class SettleQueue {
  private readonly inflight: InFlight[] = [];
  private pendingOps = 0;
  private pendingBytes = 0;
  private busy = false;
  /** a write has failed: nothing is paged out any more */
  private writeFailed = false;
  /** the newest batch that failed: only a later one succeeding means writes work again */
  private failedBatch = 0;
  private retryAt = 0;
  private retryDelay = 0;
  /** the last write promise given a rejection handler (guard) */
  private guarded: Promise<unknown> | null = null;
  /** highest batch whose writes are safe (entries with storeBatch <= it can be paged out) */
  settledBatch = 0;

  constructor(private readonly hooks: SettleHooks) {}

  /** Writes not yet safe. */
  get backlog(): number {
    return this.pendingOps;
  }

  get empty(): boolean {
    return this.inflight.length === 0;
  }

  /** Milliseconds until commits may go on after a failure (0: now). */
  retryIn(): number {
    return this.retryAt === 0 ? 0 : Math.max(0, this.retryAt - Date.now());
  }

  /** Lets the next commit go now even while writes are failing (the store's close). */
  retryNow(): void {
    if (this.retryAt !== 0) this.retryAt = Date.now();
  }

  /**
   * Every write returns its lmdb-js batch's promise (one per transaction, shared by its
   * writes). Each distinct one gets a rejection handler: a failed commit rejects them all, and
   * only one is waited on per commit, so the others would be unhandled rejections.
   */
  guard<T>(p: Promise<T>): Promise<T> {
    if (p !== this.guarded) {
      this.guarded = p;
      p.then(undefined, ignore);
      (p as { flushed?: Promise<unknown> }).flushed?.then(undefined, ignore);
    }
    return p;
  }

  /** A batch with nothing to write and no confirms: safe once everything before it is. */
  emptyBatch(batchNo: number): void {
    if (!this.writeFailed && this.inflight.length === 0) this.settledBatch = batchNo;
  }

  /** A commit joins the queue; `last` is its last write (null: nothing written, only confirms). */
  add(
    batchNo: number,
    ops: number,
    bytes: number,
    confirms: ConfirmBatch,
    last: Promise<unknown> | null,
    after?: (ok: boolean) => void,
  ): void {
    const f: InFlight = { batchNo, done: false, ok: true, ops, bytes, confirms, after };
    this.inflight.push(f);
    this.pendingOps += ops;
    this.pendingBytes += bytes;
    if (!this.busy && (this.pendingOps > BACKLOG_HIGH || this.pendingBytes > BACKLOG_BYTES_HIGH)) {
      this.busy = true;
      this.hooks.onBusy();
    }
    if (last === null) {
      f.done = true;
      this.settle();
    } else this.wait(last, f);
  }

  private wait(p: Promise<unknown>, f: InFlight): void {
    const flushed = (p as Promise<unknown> & { flushed?: Promise<unknown> }).flushed;
    const always = this.hooks.sync === 'always';
    // with sync off nobody waits for the fsync; its failure is still reported, never unhandled
    if (!always) flushed?.then(undefined, (e: unknown) => this.hooks.onError(e));
    const safe = always && flushed !== undefined ? Promise.all([p, flushed]) : p;
    safe.then(
      () => {
        f.done = true;
        this.settle();
      },
      (e: unknown) => {
        // lmdb-js attaches the underlying error as a promise of its own, rejected with it
        (e as { commitError?: Promise<unknown> } | null)?.commitError?.then(undefined, ignore);
        f.done = true;
        f.ok = false;
        // known at once, not when it reaches the head: an earlier commit settling meanwhile must
        // not count as writes working again
        this.failedBatch = Math.max(this.failedBatch, f.batchNo);
        this.failed();
        this.hooks.onError(e);
        this.settle();
      },
    );
  }

  private failed(): void {
    this.retryDelay = Math.min(Math.max(this.retryDelay * 2, 500), 10_000);
    this.retryAt = Date.now() + this.retryDelay;
    if (!this.busy) {
      this.busy = true;
      this.hooks.onBusy();
    }
  }

  /** Settles finished commits from the head, so confirms keep their order. */
  private settle(): void {
    while (this.inflight.length > 0 && this.inflight[0]!.done) {
      const f = this.inflight.shift()!;
      this.pendingOps -= f.ops;
      this.pendingBytes -= f.bytes;
      if (!f.ok) {
        this.writeFailed = true;
        this.failedBatch = Math.max(this.failedBatch, f.batchNo);
      } else {
        if (this.retryAt !== 0 && f.ops > 0 && f.batchNo > this.failedBatch) {
          // a write went through again
          this.retryAt = 0;
          this.retryDelay = 0;
        }
        if (!this.writeFailed && f.batchNo > this.settledBatch) this.settledBatch = f.batchNo;
      }
      f.confirms.settle(f.ok);
      f.after?.(f.ok);
    }
    this.hooks.afterSettle();
    if (
      this.busy &&
      this.retryAt === 0 &&
      this.pendingOps < BACKLOG_LOW &&
      this.pendingBytes < BACKLOG_BYTES_LOW
    ) {
      this.busy = false;
      this.hooks.onDrained();
    }
  }
}
