/**
 * What a queue holds and talks to: its entries (one message in one queue), the consumers it
 * delivers to, and where its dead messages go.
 */
import type { Message } from './message.js';
import type { Queue } from './queue.js';
import type { CongestibleConsumer } from './queue-congestion.js';

/** A quorum queue numbers published messages from here, and deliveries returned to its front below. */
export const QUORUM_BASE = 2 ** 40;

/** One message in one queue. */
export class QueueEntry {
  /** times delivered before (redelivered = deliveries > 0) */
  deliveries = 0;
  /** where it stands in the store (storage/store.ts EntryState) */
  storeState = 0;
  /** the store batch that wrote it */
  storeBatch = 0;
  /** a delivery-count record exists for it in the store */
  storeDeliv = false;
  constructor(
    readonly msg: Message,
    /** position in the queue: requeue puts the entry back in seq order */
    readonly seq: number,
    /** when it expires (ms since the epoch); 0 = never */
    readonly expiresAt: number,
  ) {}
}

/** The queue's view of a consumer (implemented by amqp/consumer). */
export interface QueueConsumer extends CongestibleConsumer {
  readonly tag: string;
  readonly priority: number;
  readonly exclusive: boolean;
  /** true when it may take one more message now (prefetch, flow, socket backpressure) */
  canTake(): boolean;
  /** the queue's rotation found it unable to take (core/consumer-ring.ts) */
  parked: boolean;
  /** when the rotation found it unable (core/consumer-ring.ts parkClock) */
  parkedAt: number;
  /** hands over one entry; the consumer owns its acknowledgement from here */
  deliver(queue: Queue, entry: QueueEntry): void;
  /** the queue is gone: tell the client (basic.cancel) if it supports that */
  cancelledByQueue(): void;
}

export type DeathReason = 'expired' | 'maxlen' | 'rejected' | 'delivery_limit';

/** Where a queue sends its dead messages (the vhost). */
export interface DeadLetterSink {
  /** Routes a dead message to the queue's dead-letter exchange (x-dead-letter-exchange). */
  /** `entry`: the stored entry it leaves, whose record goes once the dead letter is routed */
  deadLetter(queue: Queue, msg: Message, reason: DeathReason, entry?: QueueEntry): void;
}
