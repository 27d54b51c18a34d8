/** basic class: publish, consume, cancel, get, qos, ack, nack, reject, recover. */
import { randomBytes } from 'node:crypto';
import { REPLY_TO } from '../../core/exchange/default.js';
import { editProperties, Message, withDeliveryCount } from '../../core/message.js';
import { Queue } from '../../core/queue.js';
import { argTypeName, queueType } from '../../core/queue-args.js';
import { type StreamStart, streamStart } from '../../core/stream-offset.js';
import { StreamQueue } from '../../core/stream-queue.js';
import {
  accessRefused,
  frameError,
  notAllowed,
  notFound,
  notImplemented,
  preconditionFailed,
  resourceLocked,
} from '../../errors.js';
import { checkTable, FIELD_TYPE_NAMES, TableError, wireTypeOf } from '../../protocol/field-table.js';
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
  PropertyFlag,
  PropertyIndex,
  propertyListEnd,
  propertyOffset,
} from '../../protocol/generated/properties.js';
import { POOL_MIN } from '../../util/body-pool.js';
import { type Channel, Settle, type Unacked } from '../channel.js';
import { Consumer } from '../consumer.js';
import { writeContent } from '../content-writer.js';

const NO_ROUTE = 312;

// ------------------------------------------------------------------ publish

export function basicPublish(ch: Channel, a: A.BasicPublish, props: Buffer, body: Buffer): void {
  // RabbitMQ does not implement immediate delivery, and says so before anything else
  if (a.immediate) throw notImplemented('immediate=true');
  const vh = ch.vhost;
  // basic.publish: the exchange must exist → 404
  const ex = vh.exchanges.get(a.exchange);
  if (ex === undefined) throw notFound(`no exchange '${a.exchange}' in vhost '${vh.name}'`);
  if (ex.internal)
    throw accessRefused(`cannot publish to internal exchange '${a.exchange}' in vhost '${vh.name}'`);
  if (!propertiesFit(props)) throw frameError('content header properties do not match their flags');
  const msg = new Message(a.exchange, a.routingKey, props, body);
  // the assembler's body is this message's alone; a large one may go back to the pool
  msg.reusable = body.length >= POOL_MIN;
  const flags = props.readUInt16BE(0);
  if (flags & PropertyFlag.HEADERS) checkHeaders(props);
  if (flags & PropertyFlag.DELIVERY_MODE) {
    // RabbitMQ takes 1 (transient) and 2 (persistent) only
    const mode = msg.deliveryMode;
    if (mode !== 1 && mode !== 2)
      throw preconditionFailed(`invalid message: {delivery_mode_unknown,${mode}}`);
  }
  if (flags & PropertyFlag.REPLY_TO) rewriteReplyTo(ch, msg);
  if (flags & PropertyFlag.USER_ID) {
    // user-id: must name the authenticated user
    const uid = msg.shortProperty(PropertyIndex.USER_ID);
    const user = ch.conn.user!.name;
    if (uid !== user) {
      throw preconditionFailed(`user_id property set to '${uid}' but authenticated user was '${user}'`);
    }
  }
  if (flags & PropertyFlag.EXPIRATION) {
    const bad = expirationError(msg.shortProperty(PropertyIndex.EXPIRATION)!);
    if (bad) throw preconditionFailed(bad);
  }
  const queues = vh.route(ex, msg, flags & PropertyFlag.HEADERS ? senderSelected(msg) : undefined);
  if (ch.txMode) ch.txPublishes.push({ args: a, msg, queues: queues.slice() });
  else deliverRouted(ch, a, msg, queues);
}

/** The property list is exactly as long as its flags say (a truncated one reads past the end). */
function propertiesFit(props: Buffer): boolean {
  try {
    return propertyListEnd(props, 0) === props.length;
  } catch {
    return false;
  }
}

/**
 * A headers table the broker cannot read would fail later, where no client is there to hear it
 * (dead-lettering from a TTL timer). RabbitMQ decodes properties at publish and closes the
 * connection (541); this closes it with 501 and says what is wrong.
 */
function checkHeaders(props: Buffer): void {
  const o = propertyOffset(props, 0, PropertyIndex.HEADERS);
  try {
    checkTable(props, o + 4, o + 4 + props.readUInt32BE(o));
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    throw frameError(`cannot decode the headers of basic.publish's content header: ${e.message}`);
  }
}

const CC_KEY = Buffer.from('\x02CC', 'latin1');
const BCC_KEY = Buffer.from('\x03BCC', 'latin1');

/**
 * Sender-selected distribution: routing keys from the CC and BCC headers (RabbitMQ extension).
 * A byte search keeps messages without them from having their headers decoded; BCC is removed
 * from the message before it is stored or delivered.
 */
function senderSelected(msg: Message): string[] | undefined {
  const p = msg.properties;
  const hasCc = p.indexOf(CC_KEY) >= 0;
  const hasBcc = p.indexOf(BCC_KEY) >= 0;
  if (!hasCc && !hasBcc) return undefined;
  const h = msg.headers();
  if (h === null) return undefined;
  const keys: string[] = [];
  const add = (name: string): number => {
    const v = h[name];
    if (v === undefined) return 0;
    // RabbitMQ: CC and BCC must be arrays (406 "invalid message")
    if (!Array.isArray(v)) {
      const type = FIELD_TYPE_NAMES[wireTypeOf(h, name) ?? 'V'];
      throw preconditionFailed(`invalid message: {unacceptable_type_in_header,"${name}",${type}}`);
    }
    const before = keys.length;
    for (const k of v) if (typeof k === 'string') keys.push(k);
    return keys.length - before;
  };
  if (hasCc) add('CC');
  if (hasBcc && h['BCC'] !== undefined) {
    const n = add('BCC');
    if (n > 0) msg.bcc = keys.slice(keys.length - n);
    msg.properties = editProperties(p, (props) => {
      const headers = { ...props.headers };
      delete headers['BCC'];
      props.headers = headers;
    });
  }
  return keys.length > 0 ? keys : undefined;
}

/** The largest expiration RabbitMQ accepts (ms). */
const MAX_EXPIRATION = 315_360_000_000n;

/** The expiration property must be a non-negative integer in decimal (milliseconds). */
function expirationError(e: string): string | null {
  if (/^[+-]?\d+$/.test(e)) {
    // an Erlang integer: a sign is allowed; RabbitMQ caps it at ten years of milliseconds
    const n = BigInt(e.startsWith('+') ? e.slice(1) : e);
    if (n < 0n) return `invalid expiration '${e}': {value_negative,${n}}`;
    if (n > MAX_EXPIRATION) return `invalid expiration '${e}': {value_too_large,${n}}`;
    return null;
  }
  const m = /^(\d+)(.+)$/.exec(e);
  if (m) return `invalid expiration '${e}': {leftover_string,"${m[2]}"}`;
  return `invalid expiration '${e}': no_integer`;
}

/** Enqueues a routed message, or returns it to the publisher when mandatory and unroutable. */
export function deliverRouted(ch: Channel, a: A.BasicPublish, msg: Message, queues: readonly Queue[]): void {
  const n = queues.length;
  if (n !== 1) msg.reusable = false;
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
      ch.conn.gate.backedUp();
    }
  } else {
    let refused = false;
    for (let i = 0; i < n; i++) {
      const q = queues[i]!;
      if (q.deleted) continue;
      if (!q.enqueue(msg)) refused = true;
      q.congestion.check(ch.conn.gate);
    }
    // x-overflow reject-publish: the publisher hears basic.nack for this message
    if (refused && ch.confirmMode) ch.nackSeqs.push(ch.publishSeq + 1);
  }
  if (ch.confirmMode) ch.vhost.store.confirmAfterCommit(ch, ++ch.publishSeq);
}

/** Direct reply-to: a request's reply-to 'amq.rabbitmq.reply-to' names this channel's pseudo-queue. */
function rewriteReplyTo(ch: Channel, msg: Message): void {
  if (msg.shortProperty(PropertyIndex.REPLY_TO) !== REPLY_TO) return;
  const q = ch.replyQueue;
  if (q === null) throw preconditionFailed('fast reply consumer does not exist');
  // (editProperties keeps the bytes of other properties that are not UTF-8)
  msg.properties = editProperties(msg.properties, (p) => {
    p.replyTo = q.name;
  });
}

// ------------------------------------------------------------------ consume

/** An empty queue name means the last queue declared on the channel (spec and RabbitMQ). */
export function lastQueueOr(ch: Channel, name: string): string {
  if (name !== '') return name;
  if (ch.lastQueue === '') throw notFound('no previously declared queue');
  return ch.lastQueue;
}

export function basicConsume(ch: Channel, a: A.BasicConsume): void {
  const conn = ch.conn;
  // a reused tag is refused before the queue is looked at (530, a connection error)
  const tag =
    a.consumerTag === '' ? `amq.ctag-${randomBytes(16).toString('base64url').slice(0, 22)}` : a.consumerTag;
  // (the reply-to consumer is not among them: a normal consumer may reuse its tag, as in RabbitMQ)
  if (ch.consumers.has(tag)) throw notAllowed(`attempt to reuse consumer tag '${tag}'`);
  let q: Queue;
  if (a.queue === REPLY_TO) {
    q = replyQueue(ch, a);
  } else {
    q = ch.vhost.getQueue(lastQueueOr(ch, a.queue), conn.id);
    // exclusive consumers are a classic queue thing: quorum queues and streams ignore the flag
    const classic = queueType(q.args) === 'classic';
    // RabbitMQ refuses an exclusive consumer on a single-active-consumer queue, even an idle one
    const sac = q.args['x-single-active-consumer'] === true;
    if (
      classic &&
      ((a.exclusive && sac) || (q.consumerCount > 0 && (a.exclusive || q.consumers.some((c) => c.exclusive))))
    ) {
      throw accessRefused(`queue '${q.name}' in vhost '${ch.vhost.name}' in exclusive use`);
    }
  }
  const prio = a.arguments['x-priority'];
  if (prio !== undefined && !(typeof prio === 'number' && Number.isInteger(prio))) {
    throw preconditionFailed(
      `invalid arg 'x-priority' for queue '${q.name}' in vhost '${ch.vhost.name}': "expected integer, got ${argTypeName(a.arguments, 'x-priority')}"`,
    );
  }
  if (prio !== undefined && q instanceof StreamQueue) {
    throw preconditionFailed(
      `invalid arg 'x-priority' for queue '${q.name}' in vhost '${ch.vhost.name}' of queue type rabbit_stream_queue`,
    );
  }
  const priority = typeof prio === 'number' ? prio : 0;
  // RabbitMQ 3.10's quorum queues refuse a channel with a global prefetch (540)
  if (ch.globalPrefetch > 0 && queueType(q.args) === 'quorum')
    throw notImplemented(`queue '${q.name}' in vhost '${ch.vhost.name}' does not support global qos`);
  const start = streamConsume(ch, q, a);
  const c = new Consumer(tag, ch, q, a.noAck, a.exclusive, priority, a.noAck ? 0 : ch.consumerPrefetch);
  if (q === ch.replyQueue) ch.replyConsumer = c;
  else ch.consumers.set(tag, c);
  if (!a.noWait) {
    encodeBasicConsumeOk(conn.out, ch.number, { consumerTag: tag });
    conn.markDirty();
  }
  if (start !== null && q instanceof StreamQueue) q.attach(c, start);
  else q.addConsumer(c);
}

/**
 * A stream is read with acks and a prefetch, from where x-stream-offset says (RabbitMQ's
 * checks and texts); other queues refuse x-stream-offset. Returns where a stream consumer starts.
 */
function streamConsume(ch: Channel, q: Queue, a: A.BasicConsume): StreamStart | null {
  const what = `queue '${q.name}' in vhost '${ch.vhost.name}'`;
  const offset = a.arguments['x-stream-offset'];
  if (!(q instanceof StreamQueue)) {
    if (offset === undefined) return null;
    throw preconditionFailed(
      `invalid arg 'x-stream-offset' for ${what} of queue type rabbit_${queueType(q.args)}_queue`,
    );
  }
  if (ch.consumerPrefetch === 0) throw preconditionFailed(`consumer prefetch count is not set for '${what}'`);
  if (a.noAck) throw notImplemented(`automatic acknowledgement not supported by stream queues ${what}`);
  const start = streamStart(offset, Date.now());
  if (typeof start === 'string')
    throw preconditionFailed(`invalid arg 'x-stream-offset' for ${what}: ${start}`);
  return start;
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
  // the reply-to consumer first, when a normal consumer has the same tag (RabbitMQ's order)
  const c = ch.replyConsumer?.tag === a.consumerTag ? ch.replyConsumer : ch.consumers.get(a.consumerTag);
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
    ch.wakeConsumers();
  } else {
    ch.consumerPrefetch = a.prefetchCount;
    // as RabbitMQ: setting the per-consumer prefetch lifts a global one set before
    if (ch.globalPrefetch !== 0) {
      ch.globalPrefetch = 0;
      ch.wakeConsumers();
    }
  }
  encodeBasicQosOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

// ------------------------------------------------------------------ get

export function basicGet(ch: Channel, a: A.BasicGet): void {
  const q = ch.vhost.getQueue(lastQueueOr(ch, a.queue), ch.conn.id);
  if (q instanceof StreamQueue)
    throw notImplemented(
      `basic.get not supported by stream queues queue '${q.name}' in vhost '${ch.vhost.name}'`,
    );
  // RabbitMQ 3.10: a quorum queue's single active consumer rules out basic.get
  if (q.countsDeliveries && q.args['x-single-active-consumer'] === true)
    throw resourceLocked(
      `cannot obtain access to locked queue '${q.name}' in vhost '${ch.vhost.name}'. basic.get operations are not supported by quorum queues with single active consumer`,
    );
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
    const msg = q.countsDeliveries ? withDeliveryCount(entry.msg, entry.deliveries - 1) : entry.msg;
    writeContent(out, ch.number, msg, ch.conn.frameMax);
    if (a.noAck) ch.conn.bodies.settled(entry, ch.conn.bodies.next);
  }
  ch.conn.markDirty();
  ch.conn.gate.backedUp();
}

// ------------------------------------------------------------------ acknowledgements

export function basicAck(ch: Channel, a: A.BasicAck): void {
  settleOrHold(ch, ch.select(a.deliveryTag, a.multiple), Settle.Ack);
}

export function basicNack(ch: Channel, a: A.BasicNack): void {
  settleOrHold(
    ch,
    notFromStream(ch, ch.select(a.deliveryTag, a.multiple)),
    a.requeue ? Settle.Return : Settle.Reject,
  );
}

export function basicReject(ch: Channel, a: A.BasicReject): void {
  settleOrHold(
    ch,
    notFromStream(ch, ch.select(a.deliveryTag, false)),
    a.requeue ? Settle.Return : Settle.Reject,
  );
}

/** RabbitMQ 3.10 closes the connection (540) on a nack or reject of a stream delivery. */
function notFromStream(ch: Channel, list: Unacked[]): Unacked[] {
  for (const u of list) {
    if (u.queue instanceof StreamQueue) {
      throw notImplemented(
        `basic.nack and basic.reject not supported by stream queues queue '${u.queue.name}' in vhost '${ch.vhost.name}'`,
      );
    }
  }
  return list;
}

/** Outside a tx the deliveries are settled now; inside one they are held until commit. */
function settleOrHold(ch: Channel, list: Unacked[], how: Settle): void {
  if (!ch.txMode) {
    // as RabbitMQ's queue does at each ack, nack or reject: what came back, and what a consumer
    // freed by it can take, goes out now, before the next frame is read. An ack's queue that has
    // a pass due this tick anyway (publishes arriving) is left to it: smaller passes cost more.
    const idle = how === Settle.Ack ? idleQueues(list) : null;
    ch.settle(list, how);
    let last: Queue | null = null;
    for (const u of list) {
      if (u.queue === last) continue;
      last = u.queue;
      if (idle === null || idle.includes(last)) last.deliverNow();
    }
    return;
  }
  ch.take(list);
  ch.txSettles.push({ list, how });
}

/** The queues of `list` with no delivery pass due (one each). */
function idleQueues(list: Unacked[]): Queue[] {
  const out: Queue[] = [];
  for (const u of list) if (!u.queue.scheduled && !out.includes(u.queue)) out.push(u.queue);
  return out;
}

/** basic.recover(-async): every unacked delivery of the channel goes back to its queue. */
export function basicRecover(ch: Channel, requeue: boolean, sync: boolean): void {
  if (!requeue) throw notImplemented('requeue=false');
  ch.settle([...ch.unacked.values()], Settle.Return);
  if (sync) {
    encodeBasicRecoverOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}
