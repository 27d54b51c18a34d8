/**
 * The "disk" of a MemoryStore with a backing (memory-store.ts): message records as LmdbStore
 * writes them, shared bodies with their reference counts, definitions, and the clean-stop flag.
 */

import type { MemoryStore } from './memory-store.js';
import { KIND_SHARED, readMessageRecord } from './records.js';
import type { Definition } from './store.js';

/** One queue's stored messages on a MemoryDisk. */
export interface DiskQueue {
  /** seq -> the message record, byte for byte what LmdbStore writes (records.ts) */
  readonly records: Map<number, Buffer>;
  /** the seqs of `records`, ascending */
  readonly seqs: number[];
  /** seq -> the delivery count written at a clean stop (only for seqs in `records`) */
  readonly deliveries: Map<number, number>;
}

/** A body stored once for a message in several queues. */
export interface DiskBody {
  /** the wire message (records.ts bodyValue) */
  readonly value: Buffer;
  /** message records that refer to it; it is deleted with the last */
  refs: number;
}

export const MAX_SEQ = 2 ** 53 - 1;

/** Index of the first seq >= `seq` in an ascending array. */
export function lowerBound(seqs: number[], seq: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid]! < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The body id of a shared message record, 0 for an inline one. */
function recordBody(record: Buffer): number {
  return record[0] === KIND_SHARED ? readMessageRecord(record).bodyId : 0;
}

/**
 * What a MemoryStore with a backing keeps "on disk". It outlives the store: closing a store and
 * constructing a new one on the same disk is a restart, and constructing one while the last is
 * still open is a restart after that one was killed (the old store then writes nothing more).
 * Messages are kept as LmdbStore's records, so what comes back is byte-identical to what went in.
 */
export class MemoryDisk {
  /** id -> definition, in id order */
  readonly definitions = new Map<number, Definition>();
  /** queue id -> its stored messages (a queue without any has no entry) */
  readonly queues = new Map<number, DiskQueue>();
  /** body id -> shared body */
  readonly bodies = new Map<number, DiskBody>();
  /** next definition id (ids are never handed out twice) */
  nextDef = 1;
  /** next shared body id */
  nextBody = 1;
  /** the last store stopped cleanly: false from its markRunning() to its close() */
  clean = true;
  /** the store that has the disk open (null while none has) */
  owner: MemoryStore | null = null;

  /** How many message records are stored, over every queue. */
  get messageCount(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.records.size;
    return n;
  }

  /** Writes a message record (a shared one adds a reference to its body). */
  put(queueId: number, seq: number, record: Buffer): void {
    let q = this.queues.get(queueId);
    if (q === undefined) {
      q = { records: new Map(), seqs: [], deliveries: new Map() };
      this.queues.set(queueId, q);
    }
    // the new reference first: a record rewritten with the same body must not delete it
    const body = this.bodies.get(recordBody(record));
    if (body !== undefined) body.refs++;
    const old = q.records.get(seq);
    if (old === undefined) {
      const seqs = q.seqs;
      if (seqs.length === 0 || seq > seqs[seqs.length - 1]!) seqs.push(seq);
      else seqs.splice(lowerBound(seqs, seq), 0, seq);
    } else {
      this.unref(recordBody(old));
      q.deliveries.delete(seq);
    }
    q.records.set(seq, record);
  }

  /** Writes the delivery count of a stored message. */
  deliver(queueId: number, seq: number, deliveries: number): void {
    const q = this.queues.get(queueId);
    if (q?.records.has(seq)) q.deliveries.set(seq, deliveries);
  }

  /**
   * Deletes a queue's message records with seq in [from, to], with their delivery counts and
   * the shared bodies nothing else refers to then.
   */
  deleteRange(queueId: number, from: number, to: number): void {
    const q = this.queues.get(queueId);
    if (q === undefined) return;
    const seqs = q.seqs;
    const lo = lowerBound(seqs, from);
    let hi = lo;
    for (; hi < seqs.length && seqs[hi]! <= to; hi++) {
      const seq = seqs[hi]!;
      this.unref(recordBody(q.records.get(seq)!));
      q.records.delete(seq);
      q.deliveries.delete(seq);
    }
    if (hi === lo) return;
    if (hi - lo === seqs.length) this.queues.delete(queueId);
    else seqs.splice(lo, hi - lo);
  }

  private unref(bodyId: number): void {
    const body = this.bodies.get(bodyId);
    if (body !== undefined && --body.refs <= 0) this.bodies.delete(bodyId);
  }
}
