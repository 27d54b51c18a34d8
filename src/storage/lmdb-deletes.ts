/**
 * The LMDB store's deletions, issued with each commit. Most go with the commit that follows
 * them; what is too large for one transaction goes a chunk per settled commit:
 * - removals past one transaction's worth (see Removals), carried in order;
 * - ranges of paged-out messages that were never loaded (purge or delete of a deep queue),
 *   recorded in the purges db first so that a restart finishes the job.
 */
import { type Batch, Removals } from './lmdb-batch.js';
import type { Guard, LmdbTables } from './lmdb-tables.js';
import { messageKey, u64Key } from './records.js';

/** A range of paged-out messages being deleted a chunk per commit. */
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

/** What one commit's deletions wrote. */
export interface DeleteStep {
  last: Promise<unknown> | null;
  ops: number;
  /** told whether the commit went through */
  after: ((ok: boolean) => void) | undefined;
}

export class Deletes {
  private readonly purging: Purge[] = [];
  /** removals waiting for a commit of their own */
  private readonly carry = new Removals();
  /** a carried chunk is being written: the next waits for its outcome */
  carryInFlight = false;
  /** carried chunks that failed (each is written again later) */
  carryFailures = 0;
  private ops = 0;

  constructor(
    private readonly t: LmdbTables,
    private readonly guard: Guard,
    private readonly key: Buffer,
  ) {}

  /** Something is left for later commits. */
  get pending(): boolean {
    return this.purging.length > 0 || this.carry.size > 0;
  }

  get carrying(): boolean {
    return this.carry.size > 0;
  }

  /** Issues the batch's deletions (or a chunk of what waits) with this commit. */
  write(b: Batch): DeleteStep {
    let last: Promise<unknown> | null = null;
    this.ops = 0;
    let carried = 0;
    // removals replaced by writes of this batch: in its transaction, whatever waits
    if (b.pairs.size > 0) last = this.remove(b.pairs, b.pairs.size);
    if (this.carry.size === 0 && !this.carryInFlight && b.rem.fits) {
      if (b.rem.size > 0) last = this.remove(b.rem, b.rem.size) ?? last;
    } else {
      this.carry.takeAll(b.rem);
      if (!this.carryInFlight) {
        carried = this.carry.chunk();
        last = this.remove(this.carry, carried) ?? last;
        this.carryInFlight = true;
      }
    }
    for (let i = 0; i < b.rangeQueue.length; i++) {
      const recordKey = messageKey(Buffer.allocUnsafe(12), b.rangeQueue[i]!, b.rangeFrom[i]!);
      // recorded at once, so that a restart finishes it even if it never got a chunk written
      // (only the first range in line goes on; a stop or a crash may come first)
      last = this.guard(this.t.purges.put(recordKey, u64Key(b.rangeTo[i]!)));
      this.ops++;
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
        last = this.guard(this.t.purges.put(p.recordKey, u64Key(p.to)));
        this.ops++;
      }
      const step = this.t.deleteChunk(p.queueId, p.next, p.to);
      if (step.last !== null) last = step.last;
      this.ops += step.ops;
      const done = step.next > p.to;
      if (done) {
        last = this.guard(this.t.purges.remove(p.recordKey));
        this.ops++;
      }
      p.inFlight = true;
      after = (ok) => this.purgeStepDone(p, ok, step.next, done, step.released);
    }
    if (carried > 0) {
      const purged = after;
      after = (ok) => {
        purged?.(ok);
        this.carryDone(carried, ok);
      };
    }
    return { last, ops: this.ops, after };
  }

  /** Writes the first n removals from r's head; returns the last write. */
  private remove(r: Removals, n: number): Promise<unknown> | null {
    const key = this.key;
    let last: Promise<unknown> | null = null;
    for (let i = r.head; i < r.head + n; i++) {
      messageKey(key, r.queue[i]!, r.seq[i]!);
      last = this.guard(this.t.msgs.remove(key));
      this.ops++;
      if (r.deliv[i]) {
        this.guard(this.t.deliv.remove(key));
        this.ops++;
      }
      if (r.shared[i]) this.guard(this.t.refs.remove(key));
      const body = r.body[i]!;
      if (body !== 0) {
        last = this.guard(this.t.bodies.remove(u64Key(body)));
        this.ops++;
      }
    }
    return last;
  }

  /** A carried chunk's commit settled: through, it is done; failed, it goes again later. */
  private carryDone(n: number, ok: boolean): void {
    this.carryInFlight = false;
    if (ok) this.carry.drop(n);
    else this.carryFailures++;
  }

  /**
   * A purge chunk's commit settled. Through: the purge moves on (or is over). Failed: its
   * deletes did not happen, so the shared-body references it let go are taken back and the
   * same chunk (record included, if that was lost too) is written again on a later commit.
   */
  private purgeStepDone(p: Purge, ok: boolean, next: number, done: boolean, released: number[]): void {
    p.inFlight = false;
    if (!ok) {
      for (const id of released) this.t.bodyRefs.set(id, (this.t.bodyRefs.get(id) ?? 0) + 1);
      return;
    }
    p.recorded = true;
    p.next = next;
    if (done) {
      const i = this.purging.indexOf(p);
      if (i >= 0) this.purging.splice(i, 1);
    }
  }
}
