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
}

/** The consumer side of the test: is this consumer waiting on its socket? */
export interface CongestibleConsumer {
  /** true when the consumer's connection refuses writes (socket backpressure) */
  writeBlocked(): boolean;
}

interface Congestible {
  readonly ready: { readonly bytes: number };
  readonly consumers: readonly CongestibleConsumer[];
}

/** Ready body bytes past which a queue whose consumers all wait on their sockets holds publishers. */
export const CONGESTED_BYTES = 8 * 1024 * 1024;

export class Congestion {
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
    if (this.queue.ready.bytes < CONGESTED_BYTES || this.stuck || !this.allBlocked()) return;
    if (!p.hold()) return;
    this.held.push(p);
    if (this.timer === null) this.arm(p.holdLimitMs);
  }

  /** After a delivery pass that delivered `delivered` messages. */
  afterPass(delivered: number): void {
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
