/**
 * The ready messages of a queue: a FIFO, or one FIFO per priority level (x-max-priority).
 * Requeued entries go back to their original position (ordered by seq within a level).
 */
import { Deque } from '../util/deque.js';
import type { QueueEntry } from './queue-entry.js';

export interface ReadyList {
  readonly length: number;
  /** body bytes of the ready messages (x-max-length-bytes) */
  readonly bytes: number;
  push(e: QueueEntry): void;
  /** the next entry to deliver */
  shift(): QueueEntry | undefined;
  peek(): QueueEntry | undefined;
  /** puts an entry back at its seq position */
  requeue(e: QueueEntry): void;
  /** removes and returns every entry, in delivery order */
  drain(): QueueEntry[];
  /** the entries held in memory (not those paged out), in no particular order */
  loaded(): Iterable<QueueEntry>;
}

export class FifoReady implements ReadyList {
  private readonly q = new Deque<QueueEntry>();
  bytes = 0;

  get length(): number {
    return this.q.length;
  }

  push(e: QueueEntry): void {
    this.q.push(e);
    this.bytes += e.msg.body.length;
  }

  shift(): QueueEntry | undefined {
    const e = this.q.shift();
    if (e !== undefined) this.bytes -= e.msg.body.length;
    return e;
  }

  peek(): QueueEntry | undefined {
    return this.q.peek();
  }

  requeue(e: QueueEntry): void {
    const r = this.q;
    this.bytes += e.msg.body.length;
    const last = r.peekLast();
    if (last === undefined || last.seq < e.seq) {
      r.push(e);
      return;
    }
    // binary search for the first ready entry with a larger seq
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r.at(mid)!.seq < e.seq) lo = mid + 1;
      else hi = mid;
    }
    r.insertAt(lo, e);
  }

  drain(): QueueEntry[] {
    this.bytes = 0;
    return this.q.drain();
  }

  loaded(): Iterable<QueueEntry> {
    return this.q;
  }
}

/** One FIFO per priority 0..max; the highest non-empty level is delivered first. */
export class PriorityReady implements ReadyList {
  private readonly levels: FifoReady[];
  private count = 0;

  constructor(maxPriority: number) {
    this.levels = [];
    for (let i = 0; i <= maxPriority; i++) this.levels.push(new FifoReady());
  }

  get length(): number {
    return this.count;
  }

  get bytes(): number {
    let b = 0;
    for (const l of this.levels) b += l.bytes;
    return b;
  }

  private level(e: QueueEntry): FifoReady {
    const max = this.levels.length - 1;
    const p = e.msg.priority;
    return this.levels[Math.min(p, max)]!;
  }

  push(e: QueueEntry): void {
    this.level(e).push(e);
    this.count++;
  }

  shift(): QueueEntry | undefined {
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const l = this.levels[i]!;
      if (l.length > 0) {
        this.count--;
        return l.shift();
      }
    }
    return undefined;
  }

  peek(): QueueEntry | undefined {
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const e = this.levels[i]!.peek();
      if (e !== undefined) return e;
    }
    return undefined;
  }

  requeue(e: QueueEntry): void {
    this.level(e).requeue(e);
    this.count++;
  }

  drain(): QueueEntry[] {
    const out: QueueEntry[] = [];
    for (let i = this.levels.length - 1; i >= 0; i--) out.push(...this.levels[i]!.drain());
    this.count = 0;
    return out;
  }

  *loaded(): IterableIterator<QueueEntry> {
    for (const l of this.levels) yield* l.loaded();
  }
}
