/** basic class: publish, consume, cancel, get, qos, ack, nack, reject, recover. */
import { randomBytes } from 'node:crypto';
import { REPLY_TO } from '../../core/exchange/default.js';
import { Message } from '../../core/message.js';
import { Queue } from '../../core/queue.js';
import {
  accessRefused,
  frameError,
  notAllowed,
  notFound,
  notImplemented,
  preconditionFailed,
} from '../../errors.js';
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeBasicCancelOk,
  encodeBasicConsumeOk,
  encodeBasicGetEmpty,
  encodeBasicGetOk,
  encodeBasicQosOk,
  encodeBasicRecoverOk,
  encodeBasicReturn,
} from '../../protocol/generated/methods.js';
import {
  decodeBasicProperties,
  encodeBasicProperties,
  PropertyIndex,
  propertyListEnd,
} from '../../protocol/generated/properties.js';
import { OutBuffer } from '../../protocol/out-buffer.js';
import type { Channel } from '../channel.js';
import { Consumer } from '../consumer.js';
import { writeContent } from '../content-writer.js';

const NO_ROUTE = 312;

// ------------------------------------------------------------------ publish

export function basicPublish(ch: Channel, a: A.BasicPublish, props: Buffer, body: Buffer): void {
  const vh = ch.vhost;
  // basic.publish: the exchange must exist → 404
  const ex = vh.exchanges.get(a.exchange);
  if (ex === undefined) throw notFound(`no exchange '${a.exchange}' in vhost '${vh.name}'`);
  if (ex.internal)
    throw accessRefused(`cannot publish to internal exchange '${a.exchange}' in vhost '${vh.name}'`);
  // RabbitMQ does not implement immediate delivery
  if (a.immediate) throw notImplemented('immediate=true');
  if (!(propertyListEnd(props, 0) === props.length)) {
    throw frameError('content header properties do not match their flags');
  }
  const msg = new Message(a.exchange, a.routingKey, props, body);
  if (props.readUInt16BE(0) & 0x0010) {
    // user-id: must name the authenticated user
    const uid = msg.shortProperty(PropertyIndex.USER_ID);
    const user = ch.conn.user!.name;
    if (uid !== user) {
      throw preconditionFailed(`user_id property set to '${uid}' but authenticated user was '${user}'`);
    }
  }
  if (props.readUInt16BE(0) & 0x0040) rewriteReplyTo(ch, msg);
  if (ch.txMode) {
    ch.txPublishes.push({ args: a, msg });
    return;
  }
  route(ch, a, msg);
}

/** Routes and enqueues one message; returns it to the publisher when mandatory and unroutable. */
export function route(ch: Channel, a: A.BasicPublish, msg: Message): void {
  const vh = ch.vhost;
  const ex = vh.exchanges.get(a.exchange);
  const queues = ex === undefined ? [] : vh.route(ex, msg);
  const n = queues.length;
  if (n === 0) {
    if (a.mandatory) {
      const out = ch.conn.out;
      encodeBasicReturn(out, ch.number, {
        replyCode: NO_ROUTE,
        replyText: 'NO_ROUTE',
        exchange: a.exchange,
        routingKey: a.routingKey,
      });
      writeContent(out, ch.number, msg, ch.conn.frameMax);
      ch.conn.markDirty();
    }
  } else {
    for (let i = 0; i < n; i++) queues[i]!.enqueue(msg);
  }
  if (ch.confirmMode) vh.store.confirmAfterCommit(ch, ++ch.publishSeq);
}

/** Direct reply-to: a request's reply-to 'amq.rabbitmq.reply-to' names this channel's pseudo-queue. */
function rewriteReplyTo(ch: Channel, msg: Message): void {
  if (msg.shortProperty(PropertyIndex.REPLY_TO) !== REPLY_TO) return;
  const q = ch.replyQueue;
  if (q === null) throw preconditionFailed('fast reply consumer does not exist');
  const p = decodeBasicProperties(msg.properties, 0, msg.properties.length);
  p.replyTo = q.name;
  const w = new OutBuffer();
  encodeBasicProperties(w, p);
  msg.properties = Buffer.concat(w.take());
}

// ------------------------------------------------------------------ consume

export function basicConsume(ch: Channel, a: A.BasicConsume): void {
  const conn = ch.conn;
  let q: Queue;
  if (a.queue === REPLY_TO) {
    q = replyQueue(ch, a);
  } else {
    // an empty queue name means the last queue declared on the channel (spec); RabbitMQ too
    q = ch.vhost.getQueue(a.queue === '' ? ch.lastQueue : a.queue, conn.id);
    if (a.exclusive && q.consumerCount > 0) {
      throw accessRefused(`queue '${q.name}' in vhost '${ch.vhost.name}' in exclusive use`);
    }
    if (q.consumers.some((c) => c.exclusive)) {
      throw accessRefused(`queue '${q.name}' in vhost '${ch.vhost.name}' in exclusive use`);
    }
  }
  const tag =
    a.consumerTag === '' ? `amq.ctag-${randomBytes(16).toString('base64url').slice(0, 22)}` : a.consumerTag;
  if (ch.consumers.has(tag)) throw notAllowed(`attempt to reuse consumer tag '${tag}'`);
  const prio = a.arguments['x-priority'];
  const priority = typeof prio === 'number' && Number.isInteger(prio) ? prio : 0;
  const c = new Consumer(tag, ch, q, a.noAck, a.exclusive, priority, a.noAck ? 0 : ch.consumerPrefetch);
  ch.consumers.set(tag, c);
  if (!a.noWait) {
    encodeBasicConsumeOk(conn.out, ch.number, { consumerTag: tag });
    conn.markDirty();
  }
  q.addConsumer(c);
}

/** The channel's direct reply-to pseudo-queue (no-ack consumers only). */
function replyQueue(ch: Channel, a: A.BasicConsume): Queue {
  if (!a.noAck) throw preconditionFailed('reply consumer cannot acknowledge');
  if (ch.replyQueue !== null) throw preconditionFailed('reply consumer already set');
  const token = randomBytes(18).toString('base64url');
  const q = new Queue(`${REPLY_TO}.${token}`, false, false, ch.conn.id, {});
  ch.replyQueue = q;
  ch.vhost.defaultExchange.addReplyQueue(q);
  return q;
}

export function basicCancel(ch: Channel, a: A.BasicCancel): void {
  const c = ch.consumers.get(a.consumerTag);
  // unknown tags are answered with cancel-ok, as RabbitMQ does; deliveries stay unacked
  if (c !== undefined) ch.removeConsumer(c);
  if (!a.noWait) {
    encodeBasicCancelOk(ch.conn.out, ch.number, { consumerTag: a.consumerTag });
    ch.conn.markDirty();
  }
}

export function basicQos(ch: Channel, a: A.BasicQos): void {
  if (a.prefetchSize !== 0) throw notImplemented(`prefetch_size!=0 (${a.prefetchSize})`);
  if (a.global) {
    ch.globalPrefetch = a.prefetchCount;
    for (const c of ch.consumers.values()) c.queue.wake();
  } else {
    ch.consumerPrefetch = a.prefetchCount;
  }
  encodeBasicQosOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

// ------------------------------------------------------------------ get

export function basicGet(ch: Channel, a: A.BasicGet): void {
  const q = ch.vhost.getQueue(a.queue === '' ? ch.lastQueue : a.queue, ch.conn.id);
  const out = ch.conn.out;
  const entry = q.get();
  if (entry === undefined) {
    encodeBasicGetEmpty(out, ch.number, {});
  } else {
    const redelivered = entry.deliveries > 0;
    const tag = ch.trackGet(q, entry, a.noAck);
    encodeBasicGetOk(out, ch.number, {
      deliveryTag: tag,
      redelivered,
      exchange: entry.msg.exchange,
      routingKey: entry.msg.routingKey,
      messageCount: q.messageCount,
    });
    writeContent(out, ch.number, entry.msg, ch.conn.frameMax);
  }
  ch.conn.markDirty();
}

// ------------------------------------------------------------------ acknowledgements

export function basicAck(ch: Channel, a: A.BasicAck): void {
  const list = ch.select(a.deliveryTag, a.multiple);
  if (ch.txMode) ch.txSettles.push({ kind: 'ack', tag: a.deliveryTag, multiple: a.multiple, requeue: false });
  else ch.settle(list, false);
}

export function basicNack(ch: Channel, a: A.BasicNack): void {
  const list = ch.select(a.deliveryTag, a.multiple);
  if (ch.txMode)
    ch.txSettles.push({ kind: 'nack', tag: a.deliveryTag, multiple: a.multiple, requeue: a.requeue });
  else ch.settle(list, a.requeue);
}

export function basicReject(ch: Channel, a: A.BasicReject): void {
  const list = ch.select(a.deliveryTag, false);
  if (ch.txMode) ch.txSettles.push({ kind: 'nack', tag: a.deliveryTag, multiple: false, requeue: a.requeue });
  else ch.settle(list, a.requeue);
}

/** basic.recover(-async): every unacked delivery of the channel goes back to its queue. */
export function basicRecover(ch: Channel, requeue: boolean, sync: boolean): void {
  if (!requeue) throw notImplemented('requeue=false');
  ch.settle([...ch.unacked.values()], true);
  if (sync) {
    encodeBasicRecoverOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}
