/**
 * A stream (x-queue-type=stream), read over AMQP 0-9-1 as RabbitMQ's streams are: an append-only
 * log every consumer reads on its own, from where basic.consume's x-stream-offset says
 * (core/stream-offset.ts), without taking anything out. Each delivery carries its offset in an
 * `x-stream-offset` header; an ack (or nack, or reject) only gives the consumer credit for the
 * next one, within its prefetch. Every message is written to the store, persistent or not, and
 * confirmed once it is on disk.
 *
 *   store:  [first ............................................ end)
 *   memory:                              [memFirst ............. end)   the tail, recent chunks
 *   readers behind memFirst read pages back from the store, each at its own pace
 *
 * The log is cut into segments of about x-stream-max-segment-size-bytes. When a segment is full
 * and the next one starts, retention runs, as in RabbitMQ: whole segments go from the front while
 * the log is over x-max-length-bytes or their newest message is older than x-max-age. A chunk is
 * what one tick appended; `last` starts at the last chunk. A message's offset is its seq in the
 * store, and its chunk's write time (ms) rides in the record's expiresAt (streams have no TTL).
 */
import type { FieldTable } from '../protocol/field-table.js';
import { EntryState, type RecoveredMessage, type Store } from '../storage/store.js';
import { Deque } from '../util/deque.js';
import { tickCount } from '../util/tick.js';
import { scheduleDelivery } from './delivery.js';
import { Message, withLongHeader } from './message.js';
import { Queue } from './queue.js';
import { type QueueConsumer, QueueEntry } from './queue-entry.js';
import { intervalMs, type StreamStart } from './stream-offset.js';

/** RabbitMQ's default x-stream-max-segment-size-bytes. */
const SEGMENT_BYTES = 500_000_000;
/** The tail kept in memory beyond what is written (older entries are read back from the store). */
const MEM_COUNT = 20_000;
const MEM_BYTES = 32 * 1024 * 1024;
/** A reader behind the tail reads about this many bytes of records per store read. */
const PAGE_BYTES = 4 * 1024 * 1024;
/** Most messages delivered per pass, over all readers, before letting others run. */
const PASS_BUDGET = 4096;

/** A message in the log: `seq` is its offset, `expiresAt` its chunk's write time. */
class LogEntry extends QueueEntry {
  /** the message as delivered (with its x-stream-offset header), made at its first delivery */
  out: Message | null = null;
}

/** One consumer's position. */
class Reader {
  /** entries read back from the store for offsets below the memory tail, from offset pageAt */
  page: LogEntry[] = [];
  pageAt = 0;
  constructor(
    readonly consumer: QueueConsumer,
    /** the next offset to deliver */
    public next: number,
  ) {}
}

interface Segment {
  first: number;
  last: number;
  bytes: number;
  /** write time of its newest chunk (ms) */
  time: number;
}

/** sizeOf() less the stored wire message's size (its length fields: 1 + 1 + 4 bytes). */
const WIRE_TO_SIZE = 24 - 6;

/** About what a message takes in the log (body, properties, names and a record header). */
function sizeOf(m: Message): number {
  return m.body.length + m.properties.length + m.exchange.length + m.routingKey.length + 24;
}

export class StreamQueue extends Queue {
  /** the offsets in the log: [first, end) */
  private first = 0;
  private end = 0;
  /** the in-memory tail: offsets [memFirst, end) */
  private readonly mem = new Deque<LogEntry>();
  private memFirst = 0;
  private memBytes = 0;
  private readonly segments = new Deque<Segment>();
  private logBytes = 0;
  /** the chunk being written: the tick it belongs to, its first offset and write time */
  private chunkTick = -1;
  private lastChunk = 0;
  private chunkTime = 0;
  private readers: Reader[] = [];
  /** the reader the next pass starts with (passes share their budget fairly) */
  private turn = 0;
  private recovering = false;
  // retention
  private readonly retainBytes: number;
  private readonly maxAge: number;
  private readonly segmentBytes: number;

  constructor(name: string, durable: boolean, autoDelete: boolean, owner: number, args: FieldTable) {
    super(name, durable, autoDelete, owner, args);
    const int = (k: string, dflt: number): number => {
      const v = args[k];
      return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : dflt;
    };
    this.retainBytes = int('x-max-length-bytes', -1);
    this.segmentBytes = Math.max(1, int('x-stream-max-segment-size-bytes', SEGMENT_BYTES));
    const age = args['x-max-age'];
    this.maxAge =
      typeof age === 'string' ? intervalMs(age) : Buffer.isBuffer(age) ? intervalMs(age.toString()) : -1;
  }

  /** Messages in the log (RabbitMQ reports a periodically sampled figure; this is the exact one). */
  override get messageCount(): number {
    return this.end - this.first;
  }

  /** declare-ok's consumer count: RabbitMQ 3.10 says 0 for streams, whoever reads them. */
  override get consumerCount(): number {
    return 0;
  }

  override attachStore(store: Store, id: number): void {
    this.store = store;
    this.id = id;
  }

  private get disk(): Store | null {
    const s = this.store;
    return s?.durable ? s : null;
  }

  // ---------------------------------------------------------------- appending

  override enqueue(msg: Message): boolean {
    const offset = this.end++;
    if (this.chunkTick !== tickCount) {
      this.chunkTick = tickCount;
      this.lastChunk = offset;
      this.chunkTime = Date.now();
    }
    msg.reusable = false; // the log keeps the body
    const e = new LogEntry(msg, offset, this.chunkTime);
    this.disk?.enqueue(this.id, e, msg);
    this.push(e);
    this.trimMemory();
    if (this.readers.length > 0) scheduleDelivery(this);
    return true;
  }

  /** Appends an entry to the memory tail and its segment; a new segment applies retention. */
  private push(e: LogEntry): void {
    const size = sizeOf(e.msg);
    this.mem.push(e);
    this.memBytes += size;
    this.account(e.seq, size, e.expiresAt);
  }

  /** Adds a message of `size` written at `time` to the last segment (or a new one). */
  private account(seq: number, size: number, time: number): void {
    let s = this.segments.peekLast();
    const rolled = s === undefined || (s.bytes > 0 && s.bytes + size > this.segmentBytes);
    if (rolled) {
      s = { first: seq, last: seq, bytes: 0, time };
      this.segments.push(s);
    }
    s!.last = seq;
    s!.bytes += size;
    s!.time = time;
    this.logBytes += size;
    if (rolled && !this.recovering) this.retain();
  }

  /** Retention: whole segments leave the front, never the one being written. */
  private retain(): void {
    const now = Date.now();
    while (this.segments.length > 1) {
      const s = this.segments.peek()!;
      const tooBig = this.retainBytes >= 0 && this.logBytes > this.retainBytes;
      const tooOld = this.maxAge > 0 && s.time < now - this.maxAge;
      if (!tooBig && !tooOld) break;
      this.segments.shift();
      this.logBytes -= s.bytes;
      this.dropUpTo(s.last);
    }
  }

  /** The log loses offsets up to `last`: the store deletes them, readers move past them. */
  private dropUpTo(last: number): void {
    const disk = this.disk;
    // what left memory is on disk, and goes as one range; what is in memory goes entry by entry
    if (disk !== null && this.memFirst > this.first) {
      disk.removeRange(this.id, this.first, Math.min(last, this.memFirst - 1));
    }
    while (this.memFirst <= last && this.mem.length > 0) {
      const e = this.mem.shift()!;
      this.memFirst++;
      this.memBytes -= sizeOf(e.msg);
      if (disk !== null && e.storeState !== EntryState.None) disk.remove(this.id, e, e.msg);
    }
    if (this.memFirst <= last) this.memFirst = last + 1;
    this.first = last + 1;
    for (const r of this.readers) {
      if (r.next < this.first) r.next = this.first;
      r.page = [];
    }
  }

  /** Entries written and settled on disk leave memory, oldest first, past the tail's bounds. */
  private trimMemory(): void {
    const disk = this.disk;
    if (disk === null) return; // no disk: the log lives in memory, bounded by retention only
    if (this.mem.length <= MEM_COUNT && this.memBytes <= MEM_BYTES) return;
    const settled = disk.settledBatch;
    while (this.mem.length > MEM_COUNT || this.memBytes > MEM_BYTES) {
      const e = this.mem.peek()!;
      const written = e.storeState === EntryState.Inline || e.storeState === EntryState.Shared;
      if (!written || e.storeBatch > settled) break;
      this.mem.shift();
      this.memFirst++;
      this.memBytes -= sizeOf(e.msg);
    }
  }

  // ---------------------------------------------------------------- reading

  /** basic.consume: `c` reads from `start` on. */
  attach(c: QueueConsumer, start: StreamStart): void {
    let at: number;
    switch (start.kind) {
      case 'first':
        at = this.first;
        break;
      case 'last':
        at = Math.max(this.first, this.lastChunk);
        break;
      case 'next':
        at = this.end;
        break;
      case 'offset':
        // an offset not written yet: the reader waits for it (RabbitMQ)
        at = Math.max(start.offset, this.first);
        break;
      case 'time':
        at = this.offsetAt(start.ms);
        break;
    }
    this.readers.push(new Reader(c, at));
    this.addConsumer(c);
    if (at < this.end) scheduleDelivery(this);
  }

  override removeConsumer(c: QueueConsumer): boolean {
    this.readers = this.readers.filter((r) => r.consumer !== c);
    return super.removeConsumer(c);
  }

  override wake(_c: QueueConsumer): void {
    if (this.readers.length > 0) scheduleDelivery(this);
  }

  override deliverPass(): boolean {
    const rs = this.readers;
    const n = rs.length;
    let budget = PASS_BUDGET;
    for (let k = 0; k < n; k++) {
      const i = (this.turn + k) % n;
      const r = rs[i]!;
      const c = r.consumer;
      while (r.next < this.end && c.canTake()) {
        if (budget === 0) {
          this.turn = i; // this reader goes first next time
          return true;
        }
        const e = this.entryAt(r);
        r.next++;
        if (e === undefined) continue; // cannot happen: the log has no holes
        budget--;
        this.unacked++;
        if (e.out === null) e.out = withLongHeader(e.msg, 'x-stream-offset', e.seq);
        c.deliver(this, new QueueEntry(e.out, e.seq, 0));
      }
    }
    this.turn = n > 0 ? (this.turn + 1) % n : 0;
    return false;
  }

  /** The entry at a reader's next offset: from memory, or from a page read back from the store. */
  private entryAt(r: Reader): LogEntry | undefined {
    const offset = r.next;
    if (offset >= this.memFirst) return this.mem.at(offset - this.memFirst);
    let i = offset - r.pageAt;
    if (i < 0 || i >= r.page.length) {
      const avg = this.logBytes / Math.max(1, this.end - this.first);
      const limit = Math.max(16, Math.min(1024, Math.floor(PAGE_BYTES / avg)));
      r.page = this.read(offset, Math.min(limit, this.memFirst - offset));
      r.pageAt = offset;
      i = 0;
    }
    const e = r.page[i];
    return e !== undefined && e.seq === offset ? e : undefined;
  }

  private read(from: number, limit: number): LogEntry[] {
    const disk = this.disk;
    if (disk === null) return [];
    return disk.messages(this.id, from, limit).map((m) => this.logEntry(m));
  }

  private logEntry(r: RecoveredMessage): LogEntry {
    const m = r.message;
    const msg = m instanceof Message ? m : new Message(m.exchange, m.routingKey, m.properties, m.body);
    msg.storeId = m.storeId;
    const e = new LogEntry(msg, r.seq, r.expiresAt);
    e.storeState = r.shared ? EntryState.Shared : EntryState.Inline;
    e.storeDeliv = r.delivRecord;
    return e;
  }

  /** The first offset of the first chunk written at or after `ms` (end when none). */
  private offsetAt(ms: number): number {
    let lo = this.first;
    let hi = this.end;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.timeAt(mid) >= ms) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private timeAt(offset: number): number {
    if (offset >= this.memFirst) return this.mem.at(offset - this.memFirst)?.expiresAt ?? 0;
    return this.disk?.messages(this.id, offset, 1)[0]?.expiresAt ?? 0;
  }

  // ---------------------------------------------------------------- settling

  /** An ack only gives credit: the message stays in the log. */
  override settle(_entry: QueueEntry): void {
    this.unacked--;
  }

  /**
   * Deliveries a closing channel held: the message stays in the log, nothing is redelivered
   * (a nack or reject of a stream delivery is refused before it gets here).
   */
  override requeue(_entry: QueueEntry): void {
    this.unacked--;
  }

  override reject(_entry: QueueEntry): void {
    this.unacked--;
  }

  /** queue.purge is refused for streams before it gets here. */
  override purge(): number {
    return 0;
  }

  /** queue.delete: the whole log goes; delete-ok counts no messages (as RabbitMQ's streams). */
  override markDeleted(): number {
    super.markDeleted();
    this.readers = [];
    if (this.end > this.first) this.dropUpTo(this.end - 1);
    this.segments.clear();
    this.logBytes = 0;
    return 0;
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Reads the log back: its extent, segments and last chunk from the records' sizes and times
   * alone (no message is read: a log of 1M x 1 KB took 1.8 s to decode whole), then the newest
   * entries, as many as the memory tail holds, in full.
   */
  override recover(store: Store): number {
    if (this.disk === null) return 0;
    this.recovering = true;
    // the last MEM_COUNT sizes, to find where the memory tail starts
    const tail = new Float64Array(MEM_COUNT);
    let kept = 0;
    let empty = true;
    store.scanSizes(this.id, 0, (seq, wire, time) => {
      const size = wire + WIRE_TO_SIZE;
      if (empty) {
        this.first = this.end = seq;
        empty = false;
      }
      // the log has no holes; should one show, the offsets after it are taken as they are
      if (seq !== this.end) kept = 0;
      this.end = seq + 1;
      if (time !== this.chunkTime || this.chunkTick === -1) {
        this.chunkTime = time;
        this.lastChunk = seq;
        this.chunkTick = -2;
      }
      this.account(seq, size, time);
      tail[(seq - this.first) % MEM_COUNT] = size;
      if (kept < MEM_COUNT) kept++;
    });
    // the tail: the newest entries within MEM_COUNT and MEM_BYTES
    let from = this.end;
    let bytes = 0;
    for (let n = 0; n < kept; n++) {
      const size = tail[(from - 1 - this.first) % MEM_COUNT]!;
      if (bytes + size > MEM_BYTES) break;
      bytes += size;
      from--;
    }
    this.memFirst = from;
    for (const r of store.messages(this.id, from)) {
      const e = this.logEntry(r);
      this.mem.push(e);
      this.memBytes += sizeOf(e.msg);
    }
    this.recovering = false;
    this.retain();
    return this.end - this.first;
  }
}
