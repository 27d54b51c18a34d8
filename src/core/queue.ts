/**
 * A queue: ready messages in publish order, consumers served round-robin by priority, and the
 * bookkeeping for requeue (back at the original position, marked redelivered). Deliveries run
 * in bounded passes from the tick (core/delivery.ts), never per publish.
 */
import type { FieldTable } from '../protocol/field-table.js';
import { Deque } from '../util/deque.js';
import { scheduleDelivery } from './delivery.js';
import type { Binding, Destination } from './exchange/exchange.js';
import type { Message } from './message.js';

/** One message in one queue. */
export class QueueEntry {
  /** times delivered before (redelivered = deliveries > 0) */
  deliveries = 0;
  constructor(
    readonly msg: Message,
    /** position in the queue: requeue puts the entry back in seq order */
    readonly seq: number,
  ) {}
}

/** The queue's view of a consumer (implemented by amqp/consumer). */
export interface QueueConsumer {
  readonly tag: string;
  readonly priority: number;
  readonly exclusive: boolean;
  /** true when it may take one more message now (prefetch, flow, socket backpressure) */
  canTake(): boolean;
  /** hands over one entry; the consumer owns its acknowledgement from here */
  deliver(queue: Queue, entry: QueueEntry): void;
  /** the queue is gone: tell the client (basic.cancel) if it supports that */
  cancelledByQueue(): void;
}

/** Most messages a queue delivers in one pass before letting others run. */
const PASS_BUDGET = 512;

export class Queue implements Destination {
  readonly isQueue = true;
  readonly name: string;
  readonly durable: boolean;
  readonly autoDelete: boolean;
  readonly args: FieldTable;
  /** connection id that owns an exclusive queue; 0 when not exclusive */
  readonly owner: number;
  routeEpoch = 0;
  readonly inbound = new Set<Binding>();
  readonly ready = new Deque<QueueEntry>();
  consumers: QueueConsumer[] = [];
  /** delivered, not yet acknowledged */
  unacked = 0;
  deleted = false;
  /** set once a consumer has attached (auto-delete needs it) */
  hadConsumer = false;
  /** queued for the next delivery pass */
  scheduled = false;
  private nextSeq = 1;
  private rr = 0;
  private mixedPriorities = false;

  constructor(name: string, durable: boolean, autoDelete: boolean, owner: number, args: FieldTable) {
    this.name = name;
    this.durable = durable;
    this.autoDelete = autoDelete;
    this.owner = owner;
    this.args = args;
  }

  get exclusive(): boolean {
    return this.owner !== 0;
  }

  get messageCount(): number {
    return this.ready.length;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  enqueue(msg: Message): void {
    this.ready.push(new QueueEntry(msg, this.nextSeq++));
    if (this.consumers.length > 0) scheduleDelivery(this);
  }

  /** Puts a delivered entry back at its original position, to be redelivered. */
  requeue(entry: QueueEntry): void {
    this.unacked--;
    if (this.deleted) return;
    const r = this.ready;
    const last = r.peekLast();
    if (last === undefined || last.seq < entry.seq) {
      r.push(entry);
    } else {
      // binary search for the first ready entry with a larger seq
      let lo = 0;
      let hi = r.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (r.at(mid)!.seq < entry.seq) lo = mid + 1;
        else hi = mid;
      }
      r.insertAt(lo, entry);
    }
    if (this.consumers.length > 0) scheduleDelivery(this);
  }

  /** A delivered entry was acknowledged (or dropped). */
  settle(_entry: QueueEntry): void {
    this.unacked--;
  }

  /** basic.get: the next ready entry, counted as delivered. */
  get(): QueueEntry | undefined {
    const e = this.ready.shift();
    if (e) this.unacked++;
    return e;
  }

  purge(): number {
    const n = this.ready.length;
    this.ready.clear();
    return n;
  }

  addConsumer(c: QueueConsumer): void {
    this.hadConsumer = true;
    // keep consumers sorted by priority, highest first; equal priorities in arrival order
    let i = this.consumers.length;
    while (i > 0 && this.consumers[i - 1]!.priority < c.priority) i--;
    this.consumers.splice(i, 0, c);
    this.mixedPriorities = this.consumers.some((x) => x.priority !== this.consumers[0]!.priority);
    if (this.ready.length > 0) scheduleDelivery(this);
  }

  /** Detaches a consumer; returns true when an auto-delete queue should now be deleted. */
  removeConsumer(c: QueueConsumer): boolean {
    const i = this.consumers.indexOf(c);
    if (i < 0) return false;
    this.consumers.splice(i, 1);
    if (this.rr > i) this.rr--;
    this.mixedPriorities =
      this.consumers.length > 0 && this.consumers.some((x) => x.priority !== this.consumers[0]!.priority);
    return this.autoDelete && this.hadConsumer && this.consumers.length === 0;
  }

  /** A consumer may take messages again (acked, drained, flow on). */
  wake(): void {
    if (this.ready.length > 0 && this.consumers.length > 0) scheduleDelivery(this);
  }

  /**
   * Delivers up to the pass budget. Returns true if it stopped on the budget with work left
   * (the scheduler runs it again next tick); false when out of messages or willing consumers.
   */
  deliverPass(): boolean {
    let budget = PASS_BUDGET;
    const ready = this.ready;
    while (ready.length > 0) {
      if (budget-- === 0) return true;
      const c = this.pick();
      if (c === null) return false;
      const e = ready.shift()!;
      this.unacked++;
      c.deliver(this, e);
    }
    return false;
  }

  /** Round-robin among the highest-priority consumers that can take a message. */
  private pick(): QueueConsumer | null {
    const cs = this.consumers;
    const n = cs.length;
    if (n === 0) return null;
    if (!this.mixedPriorities) {
      for (let k = 0; k < n; k++) {
        const i = (this.rr + k) % n;
        const c = cs[i]!;
        if (c.canTake()) {
          this.rr = (i + 1) % n;
          return c;
        }
      }
      return null;
    }
    // priority groups are contiguous (sorted); lower groups only get what higher ones cannot take
    let start = 0;
    while (start < n) {
      let end = start + 1;
      while (end < n && cs[end]!.priority === cs[start]!.priority) end++;
      const len = end - start;
      for (let k = 0; k < len; k++) {
        const i = start + ((this.rr + k) % len);
        const c = cs[i]!;
        if (c.canTake()) {
          this.rr = i + 1 - start;
          return c;
        }
      }
      start = end;
    }
    return null;
  }

  /** Marks the queue deleted and tells its consumers; returns the number of ready messages dropped. */
  markDeleted(): number {
    this.deleted = true;
    const n = this.ready.length;
    this.ready.clear();
    const cs = this.consumers;
    this.consumers = [];
    for (const c of cs) c.cancelledByQueue();
    return n;
  }
}
