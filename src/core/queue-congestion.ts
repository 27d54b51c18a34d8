/**
 * Publisher flow per queue, in the spirit of RabbitMQ's credit flow between a channel and a
 * queue: while every consumer of a queue is held up by its socket (the clients read slower than
 * the broker writes) and the queue's backlog is deep, connections publishing to it stop being
 * read until a consumer takes messages again. Ingest then cannot outrun delivery by more than
 * the backlog bound, so the broker does not spend its time and memory growing a queue that its
 * consumers drain at a fixed speed (large bodies: every queued MiB is memory to allocate,
 * collect and fault in).
 *
 * Slow acks do not make that hold (a consumer at its prefetch limit is not held up by its
 * socket); they only pace publishers while the broker's thread is saturated (pace() below). A
 * queue whose consumers take nothing for the publisher's hold limit (500 ms by default) lets
 * its publishers go and holds none until one does, so a dead peer cannot stall publishers until
 * its heartbeat fails.
 */
import { COARSE_PERIOD_MS, coarseNow } from '../util/coarse-clock.js';
import { loadBusy } from '../util/load.js';
import { tickCount } from '../util/tick.js';

/** A connection the queue can stop reading (amqp/connection). */
export interface HeldPublisher {
  /**
   * Stops reading until a matching release() or releaseLater(); false when it will not be held
   * (its own output is backed up: a single-threaded client blocked writing to us may be the one
   * not reading).
   */
  hold(): boolean;
  release(): void;
  /** longest hold without a delivery from the queue, ms (config flowHoldLimit) */
  readonly holdLimitMs: number;
  /** Stops reading for the rest of this tick (resumed after the tick's deliveries and flushes). */
  yieldTick(): void;
  /** Ends a hold(); reading resumes after this tick's deliveries and flushes (pacing). */
  releaseLater(): void;
}

/** The consumer side of the test: is this consumer waiting on its socket? */
export interface CongestibleConsumer {
  /** true when the consumer's connection refuses writes (socket backpressure) */
  writeBlocked(): boolean;
  /** true when its acks come in on this publisher's connection */
  readsThrough(p: HeldPublisher): boolean;
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
/**
 * Deliveries over the last coarse period or two (about 500 msg/s or more) that make a busy
 * queue's consumers fast enough to pace its publishers to on a saturated broker.
 */
export const PACE_MIN_DELIVERIES = 200;
/** Coarse clock readings this far apart or closer are consecutive periods (timer jitter). */
const PERIOD_GAP_MS = (3 * COARSE_PERIOD_MS) / 2;
/**
 * Publishes per ms a paced queue earns whatever it delivers (50k msg/s): a held publisher reads
 * again at the next floor check, so no client whose consumers wait on its publishes (confirms
 * before acks, a blocking write) can stall on a hold, and no queue is paced below this.
 */
export const PACE_FLOOR_PER_MS = 50;
/** How often held publishers are checked against the floor, ms. */
const FLOOR_CHECK_MS = 1;
/** Most time the floor credits at once, ms (it pays for the gaps between holds, not idle time). */
export const FLOOR_GAP_MS = 4;

export class Congestion {
  /** coarse time of the queue's last delivery pass that delivered anything */
  private deliveredAt = -Infinity;
  /** messages delivered and not yet matched by a paced publish (at most BUSY_ALLOWANCE) */
  private allowance = 0;
  /** tick of the last paced publish past the allowance, and how many more that tick may take */
  private freeTick = -1;
  private free = 0;
  private held: HeldPublisher[] = [];
  /** coarse time the current period's deliveries are counted from, and the counts */
  private periodAt = -Infinity;
  private inPeriod = 0;
  private lastPeriod = 0;
  /** publishers waiting for the queue to earn more (pace(), saturated broker) */
  private paced = new Set<HeldPublisher>();
  /** performance.now() when the floor last added to the allowance */
  private floorAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  /** a delivery happened since the timer was armed */
  private progressed = false;
  /** consumers took nothing for HOLD_LIMIT_MS: hold no one until they do */
  private stuck = false;

  constructor(private readonly queue: Congestible) {}

  get holding(): boolean {
    return this.held.length > 0 || this.paced.size > 0;
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
   * Pacing: a queue with a backlog whose consumers took messages within BUSY_IDLE_MS lets its
   * publishers put in what its consumers took since (banked up to BUSY_ALLOWANCE). Past that:
   *
   * - while the broker's thread is saturated (util/load.ts) and the consumers take
   *   PACE_MIN_DELIVERIES or more per period, the queue lets in only what it earns: one
   *   publish for every two deliveries plus PACE_FLOOR_PER_MS whatever it delivers, so a
   *   backlog built before pacing set in drains while the consumers take 100k msg/s or more. A
   *   publisher past that is not read until the queue has earned one more publish (the 1 ms
   *   floor check, or a delivery); what several released publishers put in at once is owed and
   *   repaid before anyone goes again. Without it a
   *   saturated broker spends itself reading publishes its consumers cannot take: ticks
   *   lengthen, prefetch-bound consumers get one window per tick, and the backlog and its
   *   collection cost grow (2→2 on one queue, 1 KiB, prefetch 100: 203k msg/s in, 43k out;
   *   with the Java client, whose threads share the cores with the broker, 213k in and 75k
   *   out). RabbitMQ's credit flow holds the publishers of a queue process that cannot keep up
   *   likewise. The floor keeps holds short: one that waited for a delivery stalled any client
   *   whose consumers wait on its publishes (a worker that acks after its republished messages
   *   are confirmed; a client blocked writing) and held a queue to the trickle of its consumers
   *   when the load came from elsewhere. A publisher that consumes from the queue itself is not
   *   held (that would hold its acks);
   * - otherwise it may still put in BUSY_MIN_INGEST per tick, then yields the rest of the tick.
   *   A broker with time to spare takes bursts into a queue whose consumers are slow, as
   *   RabbitMQ does.
   */
  private pace(p: HeldPublisher): void {
    if (this.freeTick !== tickCount) {
      this.freeTick = tickCount;
      this.free = BUSY_MIN_INGEST;
    }
    this.free--;
    if (this.allowance >= 1) {
      this.allowance--;
      return;
    }
    if (loadBusy() && this.deliversFast()) {
      this.refill(performance.now());
      // the publish is in: owed, even when several publishers overshoot after a release
      this.allowance = Math.max(this.allowance - 1, -BUSY_ALLOWANCE);
      if (this.allowance >= 0 || this.paced.has(p)) return;
      if (!this.consumesHere(p) && p.hold()) {
        if (this.paced.size === 0) {
          pacing.add(this);
          armFloor();
        }
        this.paced.add(p);
        pacedHolds++;
        return;
      }
    }
    if (this.free < 0) p.yieldTick();
  }

  /**
   * A publisher that consumes from this queue too: holding it would hold its acks, and so the
   * deliveries it is waiting for (a worker that republishes what it takes). It only yields.
   */
  private consumesHere(p: HeldPublisher): boolean {
    const cs = this.queue.consumers;
    for (let i = 0; i < cs.length; i++) if (cs[i]!.readsThrough(p)) return true;
    return false;
  }

  /** The queue delivered PACE_MIN_DELIVERIES or more over the last coarse period or two. */
  private deliversFast(): boolean {
    const now = coarseNow();
    if (now === this.periodAt) return this.inPeriod + this.lastPeriod >= PACE_MIN_DELIVERIES;
    // nothing delivered yet in this period: the one before counts if it was the last
    return now - this.periodAt <= PERIOD_GAP_MS && this.inPeriod >= PACE_MIN_DELIVERIES;
  }

  /** After a delivery pass that delivered `delivered` messages. */
  afterPass(delivered: number): void {
    if (delivered > 0) {
      const now = coarseNow();
      this.deliveredAt = now;
      if (now !== this.periodAt) {
        this.lastPeriod = now - this.periodAt <= PERIOD_GAP_MS ? this.inPeriod : 0;
        this.inPeriod = 0;
        this.periodAt = now;
      }
      this.inPeriod += delivered;
      // paced: one in for every two out, besides the floor (pace())
      const earned = loadBusy() ? delivered >> 1 : delivered;
      this.allowance = Math.min(this.allowance + earned, BUSY_ALLOWANCE);
      if (this.paced.size > 0 && this.allowance >= 1) this.releasePaced();
      // the consumers take again: a stuck queue holds publishers again (it holds none while stuck,
      // so this cannot wait for a held one)
      this.progressed = true;
      this.stuck = false;
    }
    if (this.held.length > 0 && !this.congested()) this.releaseAll();
  }

  /** Lets the paced publishers read again (after this tick's deliveries and flushes). */
  releasePaced(): void {
    const paced = this.paced;
    if (paced.size === 0) return;
    this.paced = new Set();
    pacing.delete(this);
    for (const p of paced) p.releaseLater();
  }

  /** The floor: PACE_FLOOR_PER_MS publishes a ms; paced publishers go once one is earned. */
  refill(now: number): void {
    const gap = Math.min(now - this.floorAt, FLOOR_GAP_MS);
    this.allowance = Math.min(this.allowance + gap * PACE_FLOOR_PER_MS, BUSY_ALLOWANCE);
    this.floorAt = now;
    if (this.paced.size > 0 && this.allowance >= 1) this.releasePaced();
  }

  /** Lets every held publisher go (consumers changed, queue deleted, congestion over). */
  releaseAll(): void {
    this.releasePaced();
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

/** Publishers held by pacing since the start (read by tests). */
export let pacedHolds = 0;

/** Queues holding paced publishers. */
const pacing = new Set<Congestion>();
let floorTimer: NodeJS.Timeout | null = null;

function armFloor(): void {
  if (floorTimer !== null) return;
  floorTimer = setTimeout(checkFloor, FLOOR_CHECK_MS);
  floorTimer.unref();
}

function checkFloor(): void {
  floorTimer = null;
  const now = performance.now();
  for (const c of [...pacing]) c.refill(now);
  if (pacing.size > 0) armFloor();
}
