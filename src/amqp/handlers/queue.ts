/** queue class: declare, bind, unbind, purge, delete. */
import { REPLY_TO } from '../../core/exchange/default.js';
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeQueueBindOk,
  encodeQueueDeclareOk,
  encodeQueueDeleteOk,
  encodeQueuePurgeOk,
  encodeQueueUnbindOk,
} from '../../protocol/generated/methods.js';
import type { Channel } from '../channel.js';

export function queueDeclare(ch: Channel, a: A.QueueDeclare): void {
  const out = ch.conn.out;
  if (a.passive && a.queue === REPLY_TO) {
    // clients check for direct reply-to support this way; it always exists
    if (!a.noWait)
      encodeQueueDeclareOk(out, ch.number, { queue: REPLY_TO, messageCount: 0, consumerCount: 0 });
    ch.conn.markDirty();
    return;
  }
  const q = ch.vhost.declareQueue(
    {
      name: a.queue,
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

export function queueBind(ch: Channel, a: A.QueueBind): void {
  const queue = a.queue === '' ? ch.lastQueue : a.queue;
  ch.vhost.bindQueue(
    queue,
    a.exchange,
    a.routingKey === '' && a.queue === '' ? queue : a.routingKey,
    a.arguments,
    ch.conn.id,
  );
  if (!a.noWait) {
    encodeQueueBindOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function queueUnbind(ch: Channel, a: A.QueueUnbind): void {
  const queue = a.queue === '' ? ch.lastQueue : a.queue;
  ch.vhost.unbindQueue(queue, a.exchange, a.routingKey, a.arguments, ch.conn.id);
  encodeQueueUnbindOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

export function queuePurge(ch: Channel, a: A.QueuePurge): void {
  const n = ch.vhost.purgeQueue(a.queue === '' ? ch.lastQueue : a.queue, ch.conn.id);
  if (!a.noWait) {
    encodeQueuePurgeOk(ch.conn.out, ch.number, { messageCount: n });
    ch.conn.markDirty();
  }
}

export function queueDelete(ch: Channel, a: A.QueueDelete): void {
  const n = ch.vhost.deleteQueue(a.queue === '' ? ch.lastQueue : a.queue, a.ifUnused, a.ifEmpty, ch.conn.id);
  if (!a.noWait) {
    encodeQueueDeleteOk(ch.conn.out, ch.number, { messageCount: n });
    ch.conn.markDirty();
  }
}
