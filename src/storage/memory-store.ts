/**
 * The in-memory store. Without a backing it is the broker's placeholder before the data dir
 * opens and after close (keeps definitions, orders confirms, keeps no messages). With a
 * MemoryDisk it is a full store with LmdbStore's observable behaviour, run by the store
 * contract suite; a new MemoryStore on the same disk is a restart.
 */
import { lowerBound, MAX_SEQ, type MemoryDisk } from './memory-disk.js';
import {
  bodyValue,
  inlineValue,
  readMessageRecord,
  recoveredMessage,
  sharedValue,
  wireBodyLength,
  wireLength,
} from './records.js';
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

/**
 * A deep copy of a definition's plain objects, arrays and buffers (other values, such as dates
 * and typed field values, are kept as they are), so the disk never shares an object with its
 * callers: LmdbStore serializes definitions, and changing one afterwards changes nothing stored.
 */
function copyValue(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(copyValue);
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = copyValue((v as Record<string, unknown>)[k]);
  return out;
}

/** The open batch of a MemoryStore with a backing (arrays reused from commit to commit). */
interface MemoryBatch {
  /** definition ids put or deleted, in order, with the definition (null: deleted) */
  defId: number[];
  defValue: (Definition | null)[];
  enqQueue: number[];
  enqEntry: StoredEntry[];
  enqMsg: StoredMessage[];
  remQueue: number[];
  remSeq: number[];
  rangeQueue: number[];
  rangeFrom: number[];
  rangeTo: number[];
  delivQueue: number[];
  delivEntry: StoredEntry[];
}

/**
 * The in-memory store. Without a backing it is the placeholder the broker holds before its data
 * dir opens and after the store closes: not durable, it keeps definitions but no messages, and
 * its batches exist only to order confirms.
 *
 * With a MemoryDisk it is a durable store with LmdbStore's semantics, its disk a MemoryDisk:
 * operations are recorded into a batch and applied at commit (a publish and its ack in one batch
 * never reach the disk), a message in several queues is stored once as a shared body, delivery
 * counts are written at close, and a run that marked itself running and did not close makes the
 * next one start unclean. Commits apply at once, so a batch settles (and its confirms go) in
 * commit() and the backlog stays 0; a range deletion is applied whole, so none is ever left for
 * finishDeletes().
 */
export class MemoryStore implements Store {
  readonly durable: boolean;
  readonly backlog = 0;
  settledBatch = 0;
  readonly uncleanStart: boolean;
  private readonly disk: MemoryDisk | null;
  private confirms = new ConfirmBatch();
  private queued = false;
  private closed = false;
  private nextDef: number;
  /** the placeholder's definitions */
  private readonly defs = new Map<number, Definition>();
  private readonly batch: MemoryBatch | null;
  private batchNo = 0;
  /** bodies read back, so queues sharing one get the same object (as LmdbStore) */
  private recoveredBodies: Map<number, StoredMessage> | null = new Map();
  /** stored entries delivered since they were written, whose count is written at close */
  private readonly undelivered = new Map<StoredEntry, number>();

  /** `disk`: where to keep messages; without it, the placeholder that keeps none. */
  constructor(disk?: MemoryDisk) {
    this.disk = disk ?? null;
    this.durable = disk !== undefined;
    this.uncleanStart = disk !== undefined && !disk.clean;
    this.nextDef = disk?.nextDef ?? 1;
    this.batch =
      disk === undefined
        ? null
        : {
            defId: [],
            defValue: [],
            enqQueue: [],
            enqEntry: [],
            enqMsg: [],
            remQueue: [],
            remSeq: [],
            rangeQueue: [],
            rangeFrom: [],
            rangeTo: [],
            delivQueue: [],
            delivEntry: [],
          };
    if (disk !== undefined) disk.owner = this;
  }

  // ---------------------------------------------------------------- definitions

  putDefinition(def: Definition): number {
    const id = this.nextDef++;
    if (this.batch === null) this.defs.set(id, def);
    else {
      this.batch.defId.push(id);
      this.batch.defValue.push(copyValue(def) as Definition);
      this.schedule();
    }
    return id;
  }

  deleteDefinition(id: number): void {
    if (this.batch === null) this.defs.delete(id);
    else {
      this.batch.defId.push(id);
      this.batch.defValue.push(null);
      this.schedule();
    }
  }

  definitions(): [number, Definition][] {
    if (this.disk === null) return [...this.defs.entries()];
    const out: [number, Definition][] = [];
    for (const [id, def] of this.disk.definitions) out.push([id, copyValue(def) as Definition]);
    return out.sort((a, b) => a[0] - b[0]);
  }

  // ---------------------------------------------------------------- messages (hot path: record only)

  enqueue(queueId: number, e: StoredEntry, m: StoredMessage): void {
    const b = this.batch;
    if (b === null) return;
    e.storeState = EntryState.Pending;
    m.storeRefs++;
    b.enqQueue.push(queueId);
    b.enqEntry.push(e);
    b.enqMsg.push(m);
    this.schedule();
  }

  /** As LmdbStore: counts are written at close; a pending entry's goes with it at commit. */
  delivered(queueId: number, e: StoredEntry): void {
    if (this.batch === null) return;
    if (e.storeState === EntryState.Inline || e.storeState === EntryState.Shared)
      this.undelivered.set(e, queueId);
  }

  countDelivery(queueId: number, e: StoredEntry): void {
    const b = this.batch;
    if (b === null || e.storeState === EntryState.None) return;
    e.storeDeliv = true;
    b.delivQueue.push(queueId);
    b.delivEntry.push(e);
    this.schedule();
  }

  remove(queueId: number, e: StoredEntry, m: StoredMessage): void {
    const b = this.batch;
    if (b === null) return;
    const state = e.storeState;
    if (state === EntryState.None) return;
    e.storeState = EntryState.None;
    this.undelivered.delete(e);
    m.storeRefs--;
    // recorded and removed within one batch: it never reaches the disk
    if (state === EntryState.Pending) return;
    b.remQueue.push(queueId);
    b.remSeq.push(e.seq);
    this.schedule();
  }

  removeRange(queueId: number, fromSeq: number, toSeq: number): void {
    const b = this.batch;
    if (b === null) return;
    b.rangeQueue.push(queueId);
    b.rangeFrom.push(fromSeq);
    b.rangeTo.push(toSeq);
    this.schedule();
  }

  confirmAfterCommit(target: ConfirmTarget, seq: number): void {
    this.confirms.add(target, seq);
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
    const disk = this.disk;
    // closed, or killed by a store opened on its disk since: nothing more is written or settled
    if (disk !== null && (this.closed || disk.owner !== this)) return;
    const confirms = this.confirms;
    this.confirms = new ConfirmBatch();
    confirms.seal();
    if (disk !== null) {
      const batchNo = ++this.batchNo;
      this.apply(disk, this.batch!, batchNo);
      this.settledBatch = batchNo;
    }
    confirms.settle(true);
  }

  /** Writes a batch to the disk, in LmdbStore's order: definitions, enqueues, removes, ranges. */
  private apply(disk: MemoryDisk, b: MemoryBatch, batchNo: number): void {
    for (let i = 0; i < b.defId.length; i++) {
      const id = b.defId[i]!;
      const def = b.defValue[i]!;
      if (def === null) disk.definitions.delete(id);
      else {
        disk.definitions.set(id, def);
        if (id >= disk.nextDef) disk.nextDef = id + 1;
      }
    }
    for (let i = 0; i < b.enqEntry.length; i++) {
      const e = b.enqEntry[i]!;
      if (e.storeState !== EntryState.Pending) continue;
      const m = b.enqMsg[i]!;
      let record: Buffer;
      if (m.storeRefs > 1) {
        // fanned out to several durable queues: the body is stored once
        if (m.storeId === 0) {
          m.storeId = disk.nextBody++;
          disk.bodies.set(m.storeId, { value: bodyValue(m), refs: 0 });
        }
        record = sharedValue(e.deliveries, e.expiresAt, m.storeId);
        e.storeState = EntryState.Shared;
      } else {
        record = inlineValue(e.deliveries, e.expiresAt, m);
        e.storeState = EntryState.Inline;
      }
      disk.put(b.enqQueue[i]!, e.seq, record);
      e.storeBatch = batchNo;
    }
    for (let i = 0; i < b.delivEntry.length; i++) {
      const e = b.delivEntry[i]!;
      if (e.storeState === EntryState.Inline || e.storeState === EntryState.Shared)
        disk.deliver(b.delivQueue[i]!, e.seq, e.deliveries);
    }
    for (let i = 0; i < b.remSeq.length; i++) disk.deleteRange(b.remQueue[i]!, b.remSeq[i]!, b.remSeq[i]!);
    for (let i = 0; i < b.rangeQueue.length; i++)
      disk.deleteRange(b.rangeQueue[i]!, b.rangeFrom[i]!, b.rangeTo[i]!);
    b.defId.length = 0;
    b.defValue.length = 0;
    b.enqQueue.length = 0;
    b.enqEntry.length = 0;
    b.enqMsg.length = 0;
    b.remQueue.length = 0;
    b.remSeq.length = 0;
    b.rangeQueue.length = 0;
    b.rangeFrom.length = 0;
    b.rangeTo.length = 0;
    b.delivQueue.length = 0;
    b.delivEntry.length = 0;
  }

  // ---------------------------------------------------------------- recovery

  messages(queueId: number, fromSeq = 0, limit = Number.POSITIVE_INFINITY): RecoveredMessage[] {
    const out: RecoveredMessage[] = [];
    const q = this.disk?.queues.get(queueId);
    if (q === undefined) return out;
    const seqs = q.seqs;
    const disk = this.disk!;
    const bodyOf = (id: number): Buffer | undefined => {
      const body = disk.bodies.get(id);
      return body === undefined ? undefined : Buffer.from(body.value);
    };
    // the limit counts messages returned: a record skipped below must not end the read early
    for (let i = lowerBound(seqs, fromSeq); i < seqs.length && out.length < limit; i++) {
      const seq = seqs[i]!;
      // a copy, as lmdb-js hands out: nothing done to the returned buffers reaches the disk
      const r = readMessageRecord(Buffer.from(q.records.get(seq)!));
      const m = recoveredMessage(seq, r, q.deliveries.get(seq), bodyOf, this.recoveredBodies);
      if (m !== null) out.push(m);
    }
    return out;
  }

  scanSizes(
    queueId: number,
    fromSeq: number,
    fn: (seq: number, wire: number, expiresAt: number) => void,
  ): void {
    const q = this.disk?.queues.get(queueId);
    if (q === undefined) return;
    for (let i = lowerBound(q.seqs, fromSeq); i < q.seqs.length; i++) {
      const seq = q.seqs[i]!;
      const r = readMessageRecord(Buffer.from(q.records.get(seq)!));
      // a shared body's size (a record whose body is gone is skipped, as messages() does)
      const wire = r.wire !== undefined ? wireLength(r.wire) : this.disk!.bodies.get(r.bodyId)?.value.length;
      if (wire !== undefined) fn(seq, wire, r.expiresAt);
    }
  }

  extent(queueId: number, fromSeq: number, bodies = false): Extent {
    const q = this.disk?.queues.get(queueId);
    if (q === undefined) return { count: 0, lastSeq: 0, bytes: 0 };
    const from = lowerBound(q.seqs, fromSeq);
    const count = q.seqs.length - from;
    let bytes = 0;
    for (let i = from; bodies && i < q.seqs.length; i++) {
      const r = readMessageRecord(q.records.get(q.seqs[i]!)!);
      const body = this.disk!.bodies.get(r.bodyId)?.value;
      bytes +=
        r.wire !== undefined
          ? r.wire.body.length
          : body !== undefined
            ? wireBodyLength(body, 0, body.length)
            : 0;
    }
    return { count, lastSeq: count > 0 ? q.seqs[q.seqs.length - 1]! : 0, bytes };
  }

  lastSeqBelow(queueId: number, below: number): number {
    const q = this.disk?.queues.get(queueId);
    if (q === undefined) return 0;
    const i = lowerBound(q.seqs, below) - 1;
    return i >= 0 ? q.seqs[i]! : 0;
  }

  /** Range deletions are applied whole at commit: none is ever left unfinished. */
  async finishDeletes(): Promise<void> {}

  markRunning(): void {
    if (this.disk !== null && this.disk.owner === this) this.disk.clean = false;
    // as LmdbStore: recovery is over, bodies read while paging are not kept
    this.recoveredBodies = null;
  }

  async cleanup(liveQueues: ReadonlySet<number>): Promise<void> {
    const disk = this.disk;
    if (disk === null || disk.owner !== this) return;
    this.recoveredBodies = new Map();
    for (const queueId of [...disk.queues.keys()])
      if (!liveQueues.has(queueId)) disk.deleteRange(queueId, 0, MAX_SEQ);
    for (const [id, body] of disk.bodies) if (body.refs <= 0) disk.bodies.delete(id);
  }

  async close(): Promise<void> {
    const disk = this.disk;
    if (disk === null || this.closed) return;
    if (disk.owner === this) {
      // a clean stop keeps the delivery counts, so those messages come back redelivered
      for (const [e, queueId] of this.undelivered) {
        if (e.storeState === EntryState.Inline || e.storeState === EntryState.Shared)
          disk.deliver(queueId, e.seq, e.deliveries);
      }
      this.commit();
      disk.clean = true;
      disk.owner = null;
    }
    this.undelivered.clear();
    this.closed = true;
  }
}
