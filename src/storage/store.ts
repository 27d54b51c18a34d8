/**
 * The storage interface (DESIGN.md §5). The hot path only records operations into the current
 * batch; the batch commits once per tick; confirms recorded before a commit are settled when
 * that batch (and every batch before it) is safe. A publish and its ack in the same batch
 * cancel out and never touch the disk, and the publisher still gets its confirm.
 *
 * Storage imports nothing of core: messages and queue entries are seen through the small
 * structural interfaces below, which core's Message and QueueEntry satisfy.
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

/** A message as storage sees it (core's Message). */
export interface StoredMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly properties: Buffer;
  readonly body: Buffer;
  /** id of its shared body record; 0 while none is written */
  storeId: number;
  /** durable queue entries that reference it */
  storeRefs: number;
}

/** Where an entry stands in the store. */
export const EntryState = {
  /** not stored (transient, or removed) */
  None: 0,
  /** recorded in the open batch, not written yet */
  Pending: 1,
  /** written with the message inline */
  Inline: 2,
  /** written as a reference to a shared body */
  Shared: 3,
} as const;

/** A queue entry as storage sees it (core's QueueEntry). */
export interface StoredEntry {
  readonly seq: number;
  /** number of the batch that wrote it (compare with Store.settledBatch) */
  storeBatch: number;
  /** a delivery-count record exists for it in the store */
  storeDeliv: boolean;
  /** ms since the epoch, 0 = never */
  readonly expiresAt: number;
  deliveries: number;
  storeState: number;
}

/** A durable definition (vhost, user, exchange, queue or binding), stored as JSON. */
export interface Definition {
  kind: 'vhost' | 'user' | 'exchange' | 'queue' | 'binding';
  [field: string]: unknown;
}

export interface RecoveredMessage {
  seq: number;
  deliveries: number;
  expiresAt: number;
  message: StoredMessage;
  /** stored as a reference to a shared body */
  shared: boolean;
  /** a delivery-count record exists for it */
  delivRecord: boolean;
}

export interface Store {
  /** false for the placeholder MemoryStore (no backing): nothing needs recording */
  readonly durable: boolean;
  /** Stores a definition; returns its id (used to delete it). */
  putDefinition(def: Definition): number;
  deleteDefinition(id: number): void;
  /** Every stored definition with its id, in creation order. */
  definitions(): [number, Definition][];
  /** A persistent message entered a durable queue. */
  enqueue(queueId: number, e: StoredEntry, m: StoredMessage): void;
  /**
   * A stored entry that was delivered, told at a clean stop before close(): its delivery count
   * is kept across the restart.
   */
  delivered(queueId: number, e: StoredEntry): void;
  /**
   * A stored entry was delivered, and its delivery count is written with the next commit, so
   * even a crash keeps it (quorum queues: x-delivery-count and the delivery limit count on it).
   */
  countDelivery(queueId: number, e: StoredEntry): void;
  /**
   * A stored entry left its queue (acked, dropped, purged, dead-lettered). `paired`: writes
   * recorded in the same batch replace it (a re-keyed entry, a dead letter's copies), so the
   * removal goes in their transaction, never later: a crash must not leave both.
   */
  remove(queueId: number, e: StoredEntry, m: StoredMessage, paired?: boolean): void;
  /** The stored messages of a queue, in seq order (at most `limit`, from `fromSeq`). */
  messages(queueId: number, fromSeq?: number, limit?: number): RecoveredMessage[];
  /**
   * Each stored message of a queue from `fromSeq` on, in seq order, as its seq, wire size
   * (exchange, routing key, properties and body with their lengths) and expiresAt, without
   * reading the messages themselves (a stream's recovery sizes its segments with it).
   */
  scanSizes(
    queueId: number,
    fromSeq: number,
    fn: (seq: number, wire: number, expiresAt: number) => void,
  ): void;
  /**
   * How many messages of a queue are stored from `fromSeq` on, and the last seq; with
   * `bodies`, also their body bytes (else 0: counting them reads every record, not just keys).
   */
  extent(queueId: number, fromSeq: number, bodies?: boolean): Extent;
  /** The highest seq a queue has stored below `below` (0: none). */
  lastSeqBelow(queueId: number, below: number): number;
  /** Deletes a queue's stored messages with seq in [fromSeq, toSeq] (paged out, never loaded). */
  removeRange(queueId: number, fromSeq: number, toSeq: number): void;
  /**
   * The previous run was killed: deliveries recorded just before may not have reached the
   * disk, so every message stored before this start is treated as possibly delivered.
   */
  readonly uncleanStart: boolean;
  /** Highest batch number whose writes are safe (entries with storeBatch <= it can be paged out). */
  readonly settledBatch: number;
  /** Confirm `seq` on `target` once everything recorded so far is safe. */
  confirmAfterCommit(target: ConfirmTarget, seq: number): void;
  /** Writes the open batch now (the tick's commit phase calls it). */
  commit(): void;
  /** Operations written but not yet settled (flow control). */
  readonly backlog: number;
  /**
   * Finishes range deletions a previous run started but did not end (at startup, before
   * recovery reads any queue).
   */
  finishDeletes(): Promise<void>;
  /**
   * After recovery: deletes the messages of queues not in `liveQueues` and shared bodies nothing
   * refers to, and counts the references to the others.
   */
  cleanup(liveQueues: ReadonlySet<number>): Promise<void>;
  /** After a successful recovery: until close() says otherwise, this run counts as unclean. */
  markRunning(): void;
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

/** A batch's confirms: targets and the highest sequence number each may confirm. */
export class ConfirmBatch {
  private targets: ConfirmTarget[] = [];
  private seqs: number[] = [];

  add(target: ConfirmTarget, seq: number): void {
    if (target.batchConfirmSeq === 0) this.targets.push(target);
    target.batchConfirmSeq = seq;
  }

  /** Freezes the batch: remembers each target's seq and reopens the targets for the next one. */
  seal(): void {
    for (const t of this.targets) {
      this.seqs.push(t.batchConfirmSeq);
      t.batchConfirmSeq = 0;
    }
  }

  get empty(): boolean {
    return this.targets.length === 0;
  }

  settle(ok: boolean): void {
    for (let i = 0; i < this.targets.length; i++) {
      const t = this.targets[i]!;
      if (ok) t.confirmUpTo(this.seqs[i]!);
      else t.rejectUpTo(this.seqs[i]!);
    }
  }
}

/** What Store.extent reports. */
export interface Extent {
  count: number;
  lastSeq: number;
  /** body bytes, when asked for */
  bytes: number;
}
