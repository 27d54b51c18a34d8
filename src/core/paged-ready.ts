/**
 * The ready list of a deep durable queue: a backlog larger than memory is fine.
 *
 * While the queue is shallow it is a plain FIFO. Past PAGE_COUNT entries (or PAGE_BYTES of
 * bodies) it pages: new entries go to an in-memory tail, and every persistent entry at the front
 * of the tail whose write is safe on disk leaves memory for good, extending a contiguous
 * on-disk segment. Delivery takes the head first, refills it from the segment (read back from
 * the store in seq order), then moves on to the tail:
 *
 *   head (memory) | segment (disk only: a seq range and counters) | tail (memory)
 *
 * Transient messages never touch the disk, so one at the front of the tail stops paging until
 * it is delivered. Entries whose body is shared with other queues are not paged either.
 */
import type { RecoveredMessage, Store } from '../storage/store.js';
import { Deque } from '../util/deque.js';
import type { QueueEntry } from './queue-entry.js';
import { FifoReady, type ReadyList } from './ready-list.js';

/** Paging starts past this many entries or this many body bytes in memory. */
export const PAGE_COUNT = 20_000;
export const PAGE_BYTES = 32 * 1024 * 1024;
/** Entries read back from the store per refill. */
const REFILL = 2_000;
/** EntryState.Inline (storage/store.ts) */
const INLINE = 2;

export interface Pager {
  readonly store: Store | null;
  readonly id: number;
  /** a queue entry for a stored record */
  entryFor(r: RecoveredMessage): QueueEntry;
}

export class PagedReady implements ReadyList {
  private readonly head = new FifoReady();
  private readonly tail = new Deque<QueueEntry>();
  private tailBytes = 0;
  private paging = false;
  /** the on-disk segment: seqs [segFrom, segTo], segCount entries, segBytes body bytes */
  private segFrom = 0;
  private segTo = 0;
  private segCount = 0;
  private segBytes = 0;
  private readonly pager: Pager;

  constructor(pager: Pager) {
    this.pager = pager;
  }

  get length(): number {
    return this.head.length + this.segCount + this.tail.length;
  }

  get bytes(): number {
    return this.head.bytes + this.segBytes + this.tailBytes;
  }

  /** new entries go to disk rather than memory (a backlog is building or draining) */
  get pagingOut(): boolean {
    return this.paging;
  }

  /** entries held in memory (for tests and metrics) */
  get inMemory(): number {
    return this.head.length + this.tail.length;
  }

  push(e: QueueEntry): void {
    if (!this.paging) {
      this.head.push(e);
      if (this.head.length > PAGE_COUNT || this.head.bytes > PAGE_BYTES) this.paging = true;
      return;
    }
    this.tail.push(e);
    this.tailBytes += e.msg.body.length;
    this.pageOut();
  }

  /**
   * Recovery: an entry that goes ahead of everything (a quorum queue's returned deliveries),
   * kept in memory whatever the page limits, so the on-disk segment starts after them and
   * later returns still go in front of it.
   */
  pushFront(e: QueueEntry): void {
    this.head.push(e);
  }

  /** Moves safely stored entries from the front of the tail into the on-disk segment. */
  pageOut(): void {
    const settled = this.pager.store!.settledBatch;
    for (;;) {
      const e = this.tail.peek();
      if (e === undefined || e.storeState !== INLINE || e.storeBatch > settled) return;
      this.tail.shift();
      const size = e.msg.body.length;
      this.tailBytes -= size;
      if (this.segCount === 0) this.segFrom = e.seq;
      this.segTo = e.seq;
      this.segCount++;
      this.segBytes += size;
    }
  }

  shift(): QueueEntry | undefined {
    if (this.head.length === 0) this.refill();
    return this.head.shift();
  }

  peek(): QueueEntry | undefined {
    if (this.head.length === 0) this.refill();
    return this.head.peek();
  }

  requeue(e: QueueEntry): void {
    // a delivered entry is older than everything paged out after it was loaded
    this.head.requeue(e);
  }

  /** Refills the head from the segment, or hands over the tail once the segment is empty. */
  private refill(): void {
    if (this.segCount > 0) {
      const records = this.pager.store!.messages(
        this.pager.id,
        this.segFrom,
        Math.min(REFILL, this.segCount),
      );
      for (const r of records) {
        if (r.seq > this.segTo) break;
        const e = this.pager.entryFor(r);
        this.head.push(e);
        this.segCount--;
        this.segBytes -= e.msg.body.length;
        this.segFrom = r.seq + 1;
      }
      if (records.length === 0 || this.segFrom > this.segTo) {
        // nothing more on disk in the range (removed meanwhile): the segment is done
        this.segCount = 0;
        this.segBytes = 0;
      }
      if (this.segBytes < 0) this.segBytes = 0;
      return;
    }
    if (this.tail.length > 0) {
      while (this.tail.length > 0) this.head.push(this.tail.shift()!);
      this.tailBytes = 0;
      this.paging = this.head.length > PAGE_COUNT;
    } else {
      this.paging = false;
    }
  }

  drain(): QueueEntry[] {
    if (this.segCount > 0) {
      this.pager.store!.removeRange(this.pager.id, this.segFrom, this.segTo);
      this.segCount = 0;
      this.segBytes = 0;
    }
    const out = this.head.drain();
    while (this.tail.length > 0) out.push(this.tail.shift()!);
    this.tailBytes = 0;
    this.paging = false;
    return out;
  }

  /** The number of entries drain() would remove, including paged ones. */
  get drainCount(): number {
    return this.length;
  }

  *loaded(): IterableIterator<QueueEntry> {
    yield* this.head.loaded();
    yield* this.tail;
  }

  /** Recovery: the first stored entries are loaded, the rest of the queue stays on disk. */
  recoverSegment(fromSeq: number, toSeq: number, count: number, bytes: number): void {
    if (count <= 0) return;
    this.segFrom = fromSeq;
    this.segTo = toSeq;
    this.segCount = count;
    this.segBytes = bytes;
    this.paging = true;
  }
}
