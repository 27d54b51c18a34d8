/**
 * Publisher flow per queue, in the spirit of RabbitMQ's credit flow between a channel and a
 * queue: while every consumer of a queue is held up by its socket (the clients read slower than
 * the broker writes) and the queue's backlog is deep, connections publishing to it stop being
 * read until a consumer takes messages again. Ingest then cannot outrun delivery by more than
 * the backlog bound, so the broker does not spend its time and memory growing a queue that its
 * consumers drain at a fixed speed (large bodies: every queued MiB is memory to allocate,
 * collect and fault in).
 *
 * Slow acks never hold publishers: a consumer at its prefetch limit is not held up by its
 * socket. A queue whose consumers take nothing for the publisher's hold limit (500 ms by
 * default) lets its publishers go and holds none until one does, so a dead peer cannot stall
 * publishers until its heartbeat fails.
 */
import { COARSE_PERIOD_MS, coarseNow } from '../util/coarse-clock.js';
import { tickCount } from '../util/tick.js';

/** A connection the queue can stop reading (amqp/connection). */
export interface HeldPublisher {
  /**
   * Stops reading until a matching release(); false when it will not be held (its own output
   * is backed up: a single-threaded client blocked writing to us may be the one not reading).
   */
  hold(): boolean;
  release(): void;
  /** longest hold without a delivery from the queue, ms (config flowHoldLimit) */
  readonly holdLimitMs: number;
  /** Stops reading for the rest of this tick (resumed after the tick's deliveries and flushes). */
  yieldTick(): void;
}

/** The consumer side of the test: is this consumer waiting on its socket? */
export interface CongestibleConsumer {
  /** true when the consumer's connection refuses writes (socket backpressure) */
  writeBlocked(): boolean;
}

interface Congestible {
  readonly ready: { readonly bytes: number; readonly length: number };
  readonly consumers: readonly CongestibleConsumer[];
}

/** Ready body bytes past which a queue whose consumers all wait on their sockets holds publishers. */
export const CONGESTED_BYTES = 8 * 1024 * 1024;

/** Ready messages past which a queue whose consumers keep taking messages paces its publishers. */
export const BUSY_READY = 10_000;
/** Messages publishers may put into a busy queue per tick when its consumers took fewer. */
export const BUSY_MIN_INGEST = 32;
/** A busy queue whose consumers took nothing for this long stops pacing its publishers. */
export const BUSY_IDLE_MS = 2 * COARSE_PERIOD_MS;
/** Most deliveries a busy queue's publishers may bank for later ticks. */
export const BUSY_ALLOWANCE = 4096;

export class Congestion {
  /** coarse time of the queue's last delivery pass that delivered anything */
  private deliveredAt = -Infinity;
  /** messages delivered and not yet matched by a paced publish (at most BUSY_ALLOWANCE) */
  private allowance = 0;
  /** tick of the last paced publish past the allowance, and how many more that tick may take */
  private freeTick = -1;
  private free = 0;
  private held: HeldPublisher[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** a delivery happened since the timer was armed */
  private progressed = false;
  /** consumers took nothing for HOLD_LIMIT_MS: hold no one until they do */
  private stuck = false;

  constructor(private readonly queue: Congestible) {}

  get holding(): boolean {
    return this.held.length > 0;
  }

  /** After a publish into the queue: holds the publisher when the queue is congested. */
  check(p: HeldPublisher): void {
    if (this.queue.ready.length >= BUSY_READY && coarseNow() - this.deliveredAt <= BUSY_IDLE_MS) this.pace(p);
    if (this.queue.ready.bytes < CONGESTED_BYTES || this.stuck || !this.allBlocked()) return;
    if (!p.hold()) return;
    this.held.push(p);
    if (this.timer === null) this.arm(p.holdLimitMs);
  }

  /**
   * Pacing: a queue with a backlog whose consumers took messages within BUSY_IDLE_MS takes, per
   * tick, what its consumers took since (banked up to BUSY_ALLOWANCE) or BUSY_MIN_INGEST, whichever
   * is more; past that its publisher yields the rest of the tick. Without it a saturated broker
   * reads 500 publishes per connection per tick, ticks lengthen, prefetch-bound consumers get one
   * window per tick, the backlog and its collection cost grow, and they fall further behind
   * (2→2 publishers and consumers, 1 KiB, prefetch 100: 203k msg/s in, 43k out). Paced, ticks
   * stay short while the broker is busy and ingest settles near the consumers' pace, as RabbitMQ's
   * credit flow holds a busy queue process's publishers. On an idle broker ticks are short anyway,
   * so pacing costs publishers little; consumers that take nothing turn it off.
   */
  private pace(p: HeldPublisher): void {
    if (this.freeTick !== tickCount) {
      this.freeTick = tickCount;
      this.free = BUSY_MIN_INGEST;
    }
    this.free--;
    if (this.allowance > 0) this.allowance--;
    else if (this.free < 0) p.yieldTick();
  }

  /** After a delivery pass that delivered `delivered` messages. */
  afterPass(delivered: number): void {
    if (delivered > 0) {
      this.deliveredAt = coarseNow();
      this.allowance = Math.min(this.allowance + delivered, BUSY_ALLOWANCE);
    }
    if (this.held.length === 0) return;
    if (delivered > 0) {
      this.progressed = true;
      this.stuck = false;
    }
    if (this.held.length > 0 && !this.congested()) this.releaseAll();
  }

  /** Lets every held publisher go (consumers changed, queue deleted, congestion over). */
  releaseAll(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const held = this.held;
    if (held.length === 0) return;
    this.held = [];
    for (const p of held) p.release();
  }

  private congested(): boolean {
    return this.queue.ready.bytes >= CONGESTED_BYTES && this.allBlocked();
  }

  private allBlocked(): boolean {
    const cs = this.queue.consumers;
    if (cs.length === 0) return false;
    for (const c of cs) if (!c.writeBlocked()) return false;
    return true;
  }

  private arm(ms: number): void {
    this.progressed = false;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.held.length === 0) return;
      if (this.progressed) {
        this.arm(ms);
        return;
      }
      this.stuck = true;
      this.releaseAll();
    }, ms);
    this.timer.unref();
  }
}
