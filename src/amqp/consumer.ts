/**
 * A consumer: the link between a queue and a channel. The queue asks `canTake()` before each
 * delivery (prefetch, channel.flow, socket backpressure) and hands entries to `deliver()`.
 */
import { wakeInParkOrder } from '../core/consumer-ring.js';
import type { Queue } from '../core/queue.js';
import type { QueueConsumer, QueueEntry } from '../core/queue-entry.js';
import { inflow, ROUND_TRIP_WINDOW } from '../util/coalesce.js';
import type { Channel } from './channel.js';

export class Consumer implements QueueConsumer {
  readonly tag: string;
  readonly channel: Channel;
  readonly queue: Queue;
  readonly noAck: boolean;
  readonly exclusive: boolean;
  readonly priority: number;
  /** per-consumer prefetch (basic.qos global=false at consume time); 0 = unlimited */
  readonly prefetch: number;
  /** deliveries not yet settled */
  unacked = 0;
  active = true;
  parked = false;
  parkedAt = 0;

  constructor(
    tag: string,
    channel: Channel,
    queue: Queue,
    noAck: boolean,
    exclusive: boolean,
    priority: number,
    prefetch: number,
  ) {
    this.tag = tag;
    this.channel = channel;
    this.queue = queue;
    this.noAck = noAck;
    this.exclusive = exclusive;
    this.priority = priority;
    this.prefetch = prefetch;
  }

  canTake(): boolean {
    const ch = this.channel;
    if (!this.active || !ch.conn.canWrite()) return false;
    // a channel at its global limit holds back no-ack consumers too, as RabbitMQ's limiter does
    if (ch.globalPrefetch !== 0 && ch.unackedCount >= ch.globalPrefetch) return false;
    return this.noAck || this.prefetch === 0 || this.unacked < this.prefetch;
  }

  writeBlocked(): boolean {
    return !this.channel.conn.canWrite();
  }

  readsThrough(gate: unknown): boolean {
    return this.channel.conn.gate === gate;
  }

  deliver(queue: Queue, entry: QueueEntry): void {
    const ch = this.channel;
    ch.deliver(this, queue, entry);
    // at a small prefetch limit (its own or the channel's), its next delivery waits on an ack:
    // no nap may delay that
    if (this.noAck) return;
    const own = this.prefetch;
    const shared = ch.globalPrefetch;
    if (
      (own !== 0 && own < ROUND_TRIP_WINDOW && this.unacked >= own) ||
      (shared !== 0 && shared < ROUND_TRIP_WINDOW && ch.unackedCount >= shared)
    )
      inflow.roundTrip = true;
  }

  cancelledByQueue(): void {
    this.channel.consumerCancelledByQueue(this);
  }
}

/** `c` may take again: its queue lets it rejoin the rotation (core/consumer-ring.ts wakeInParkOrder). */
export function wakeConsumer(c: Consumer): void {
  c.queue.wake(c);
}

/** Whether any of these channels has a consumer (a direct reply-to one included). */
export function anyConsumers(channels: Iterable<Channel>): boolean {
  for (const ch of channels) if (ch.consumers.size > 0 || ch.replyConsumer !== null) return true;
  return false;
}

/** A connection's socket drained: its channels' consumers may take again, in the order parked. */
export function wakeAllConsumers(channels: Map<number, Channel>): void {
  wakeInParkOrder(() => consumersOf(channels), wakeConsumer);
}

function* consumersOf(channels: Map<number, Channel>): Iterable<Consumer> {
  for (const ch of channels.values()) {
    yield* ch.consumers.values();
    if (ch.replyConsumer !== null) yield ch.replyConsumer;
  }
}
