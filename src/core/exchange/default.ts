/**
 * The default exchange '': routes to the queue named by the routing key; cannot be bound.
 * It also reaches direct reply-to pseudo-queues (amq.rabbitmq.reply-to.<token>), which are
 * not listed among the vhost's queues.
 */
import type { Message } from '../message.js';
import type { Queue } from '../queue.js';
import { type Binding, type Destination, Exchange } from './exchange.js';

const NONE: readonly Destination[] = [];
export const REPLY_TO = 'amq.rabbitmq.reply-to';
const REPLY_PREFIX = `${REPLY_TO}.`;

export class DefaultExchange extends Exchange {
  readonly type = 'direct';
  private readonly queues: ReadonlyMap<string, Queue>;
  private readonly replyQueues = new Map<string, Queue>();
  private readonly one: Destination[] = [];

  constructor(queues: ReadonlyMap<string, Queue>) {
    super('', true, false, false, {});
    this.queues = queues;
  }

  addBinding(_b: Binding): void {
    throw new Error('the default exchange cannot be bound');
  }

  removeBinding(_b: Binding): void {}

  addReplyQueue(q: Queue): void {
    this.replyQueues.set(q.name, q);
  }

  hasReplyQueue(name: string): boolean {
    return this.replyQueues.has(name);
  }

  /** A queue was deleted: the last match may name it, and must not keep it alive. */
  forgetLastMatch(): void {
    this.one.length = 0;
  }

  removeReplyQueue(q: Queue): void {
    if (this.replyQueues.get(q.name) === q) this.replyQueues.delete(q.name);
  }

  /** The returned array is reused by the next call. */
  match(_msg: Message, routingKey: string): readonly Destination[] {
    const rk = routingKey;
    const q = this.queues.get(rk) ?? (rk.startsWith(REPLY_PREFIX) ? this.replyQueues.get(rk) : undefined);
    if (q === undefined) return NONE;
    this.one[0] = q;
    return this.one;
  }
}
