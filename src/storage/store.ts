/**
 * The storage interface (DESIGN.md §5). The hot path only records operations into the current
 * batch; the batch commits once per tick; confirms recorded before a commit are settled by it.
 * The in-memory store commits at the next tick; the LMDB store (durability issue) commits to
 * disk and settles after the data is synced.
 */
import { Phase, requestTick, setPhase } from '../util/tick.js';

/** Something that sends publisher confirms (a channel in confirm mode). */
export interface ConfirmTarget {
  /** Highest publish sequence number recorded in the open batch (0 if none). */
  batchConfirmSeq: number;
  /** All publishes up to `seq` are safe: send basic.ack. */
  confirmUpTo(seq: number): void;
  /** All publishes up to `seq` failed to be stored: send basic.nack. */
  rejectUpTo(seq: number): void;
}

export interface Store {
  /** Confirm `seq` on `target` once everything recorded so far is committed. */
  confirmAfterCommit(target: ConfirmTarget, seq: number): void;
  /** Commits the open batch now (called by the tick's commit phase). */
  commit(): void;
  close(): Promise<void>;
}

const pending: Store[] = [];

setPhase(Phase.Commit, () => {
  for (let i = 0; i < pending.length; i++) pending[i]!.commit();
  pending.length = 0;
});

/** Queues a store for the commit phase of this tick (callers keep their own queued flag). */
export function scheduleCommit(s: Store): void {
  pending.push(s);
  requestTick(Phase.Commit);
}

/** A store that keeps nothing on disk: batches exist only to order confirms. */
export class MemoryStore implements Store {
  private targets: ConfirmTarget[] = [];
  private queued = false;

  confirmAfterCommit(target: ConfirmTarget, seq: number): void {
    if (target.batchConfirmSeq === 0) this.targets.push(target);
    target.batchConfirmSeq = seq;
    if (!this.queued) {
      this.queued = true;
      scheduleCommit(this);
    }
  }

  commit(): void {
    this.queued = false;
    const ts = this.targets;
    this.targets = [];
    for (const t of ts) {
      const seq = t.batchConfirmSeq;
      t.batchConfirmSeq = 0;
      t.confirmUpTo(seq);
    }
  }

  async close(): Promise<void> {}
}
