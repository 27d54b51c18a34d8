/** queue class: declare, bind, unbind, purge, delete. */
import { REPLY_TO } from '../../core/exchange/default.js';
import { notFound } from '../../errors.js';
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeQueueBindOk,
  encodeQueueDeclareOk,
  encodeQueueDeleteOk,
  encodeQueuePurgeOk,
  encodeQueueUnbindOk,
} from '../../protocol/generated/methods.js';
import type { Channel } from '../channel.js';
import { lastQueueOr } from './basic.js';
import { stripCrLf } from './exchange.js';

export function queueDeclare(ch: Channel, a: A.QueueDeclare): void {
  const out = ch.conn.out;
  if (a.queue === REPLY_TO || isLiveReplyQueue(ch, a.queue)) {
    // direct reply-to: clients probe for it this way; RabbitMQ answers 0 messages, 1 consumer
    if (!a.noWait) {
      encodeQueueDeclareOk(out, ch.number, { queue: a.queue, messageCount: 0, consumerCount: 1 });
      ch.conn.markDirty();
    }
    return;
  }
  // a reply-to name that is no live reply consumer's: RabbitMQ looks it up, and finds none
  if (a.queue.startsWith(`${REPLY_TO}.`)) throw notFound(`no queue '${a.queue}' in vhost '${ch.vhost.name}'`);
  const q = ch.vhost.declareQueue(
    {
      name: stripCrLf(a.queue),
      passive: a.passive,
      durable: a.durable,
      exclusive: a.exclusive,
      autoDelete: a.autoDelete,
      args: a.arguments,
    },
    ch.conn.id,
  );
  ch.lastQueue = q.name;
  if (!a.noWait) {
    encodeQueueDeclareOk(out, ch.number, {
      queue: q.name,
      messageCount: q.messageCount,
      consumerCount: q.consumerCount,
    });
    ch.conn.markDirty();
  }
}

function isLiveReplyQueue(ch: Channel, name: string): boolean {
  return name.startsWith(`${REPLY_TO}.`) && ch.vhost.defaultExchange.hasReplyQueue(name);
}

export function queueBind(ch: Channel, a: A.QueueBind): void {
  const queue = lastQueueOr(ch, a.queue);
  // spec: an empty routing key with an empty queue name binds with the queue's name
  const key = a.routingKey === '' && a.queue === '' ? queue : a.routingKey;
  ch.vhost.bindQueue(queue, a.exchange, key, a.arguments, ch.conn.id);
  if (!a.noWait) {
    encodeQueueBindOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function queueUnbind(ch: Channel, a: A.QueueUnbind): void {
  ch.vhost.unbindQueue(lastQueueOr(ch, a.queue), a.exchange, a.routingKey, a.arguments, ch.conn.id);
  encodeQueueUnbindOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

export function queuePurge(ch: Channel, a: A.QueuePurge): void {
  const n = ch.vhost.purgeQueue(lastQueueOr(ch, a.queue), ch.conn.id);
  if (!a.noWait) {
    encodeQueuePurgeOk(ch.conn.out, ch.number, { messageCount: n });
    ch.conn.markDirty();
  }
}

export function queueDelete(ch: Channel, a: A.QueueDelete): void {
  const n = ch.vhost.deleteQueue(lastQueueOr(ch, a.queue), a.ifUnused, a.ifEmpty, ch.conn.id);
  if (!a.noWait) {
    encodeQueueDeleteOk(ch.conn.out, ch.number, { messageCount: n });
    ch.conn.markDirty();
  }
}
