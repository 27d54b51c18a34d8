/** What LmdbStore records between commits (the open batch). */
import { ConfirmBatch, type StoredEntry, type StoredMessage } from './store.js';

export interface Batch {
  rangeQueue: number[];
  rangeFrom: number[];
  rangeTo: number[];
  enqQueue: number[];
  enqEntry: StoredEntry[];
  enqMsg: StoredMessage[];
  rem: Removals;
  /**
   * removals that go with writes of this batch replacing them (Store.remove paired): always in
   * this batch's transaction, never carried to a later one
   */
  pairs: Removals;
  /** delivered entries whose count is written now (countDelivery) */
  delivQueue: number[];
  delivEntry: StoredEntry[];
  confirms: ConfirmBatch;
}

export function newBatch(): Batch {
  return {
    rangeQueue: [],
    rangeFrom: [],
    rangeTo: [],
    enqQueue: [],
    enqEntry: [],
    enqMsg: [],
    rem: new Removals(),
    pairs: new Removals(),
    delivQueue: [],
    delivEntry: [],
    confirms: new ConfirmBatch(),
  };
}

/**
 * Stored entries to delete, in the order they were let go. One LMDB transaction can only dirty
 * so many pages (lmdb-js's build: 2^17, and freeing pages of a fragmented store costs more
 * than the pages themselves): an ack of 70,000 unacked 1 KB messages in one frame, or 6,000 of
 * 16 KB, failed with MDB_TXN_FULL. Past REMOVE_CAP entries or REMOVE_BYTES of bodies, removals
 * wait here and go a chunk per commit, in order (a shared body is deleted with its last
 * reference, so never before the references let go earlier).
 */
export const REMOVE_CAP = 20_000;
export const REMOVE_BYTES = 16 * 1024 * 1024;

export class Removals {
  readonly queue: number[] = [];
  readonly seq: number[] = [];
  /** body to delete with the entry (last reference), else 0 */
  readonly body: number[] = [];
  /** the entry referenced a shared body (its refs record goes too) */
  readonly shared: boolean[] = [];
  /** the entry has a delivery-count record to delete */
  readonly deliv: boolean[] = [];
  /** body bytes the removal frees */
  readonly bytes: number[] = [];
  /** the first removal not yet written */
  head = 0;
  /** body bytes from head on */
  private pendingBytes = 0;

  get size(): number {
    return this.seq.length - this.head;
  }

  /** Small enough to go in one transaction. */
  get fits(): boolean {
    return this.size <= REMOVE_CAP && this.pendingBytes <= REMOVE_BYTES;
  }

  push(queue: number, seq: number, body: number, shared: boolean, deliv: boolean, bytes: number): void {
    this.queue.push(queue);
    this.seq.push(seq);
    this.body.push(body);
    this.shared.push(shared);
    this.deliv.push(deliv);
    this.bytes.push(bytes);
    this.pendingBytes += bytes;
  }

  /** Moves the other's removals (from its head) to the back of these. */
  takeAll(o: Removals): void {
    for (let i = o.head; i < o.seq.length; i++)
      this.push(o.queue[i]!, o.seq[i]!, o.body[i]!, o.shared[i]!, o.deliv[i]!, o.bytes[i]!);
  }

  /** How many from the head make one transaction's worth (at least one). */
  chunk(): number {
    const end = Math.min(this.seq.length, this.head + REMOVE_CAP);
    let bytes = 0;
    let i = this.head;
    while (i < end) {
      bytes += this.bytes[i]!;
      i++;
      if (bytes >= REMOVE_BYTES) break;
    }
    return i - this.head;
  }

  /** The first n from the head are written. */
  drop(n: number): void {
    for (let i = this.head; i < this.head + n; i++) this.pendingBytes -= this.bytes[i]!;
    this.head += n;
    if (this.head >= this.seq.length || this.head > 65_536) {
      this.queue.splice(0, this.head);
      this.seq.splice(0, this.head);
      this.body.splice(0, this.head);
      this.shared.splice(0, this.head);
      this.deliv.splice(0, this.head);
      this.bytes.splice(0, this.head);
      this.head = 0;
      if (this.seq.length === 0) this.pendingBytes = 0;
    }
  }
}
