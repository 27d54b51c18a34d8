/**
 * Per-channel state: frames in (methods go to handlers/dispatch.ts), content reassembly,
 * deliveries and acks, confirms, transactions, the closing handshake.
 */

import { wakeInParkOrder } from '../core/consumer-ring.js';
import { type Message, withDeliveryCount } from '../core/message.js';
import type { Queue } from '../core/queue.js';
import type { QueueEntry } from '../core/queue-entry.js';
import type { ConfirmTarget, VHost } from '../core/vhost.js';
import { type AmqpError, commandInvalid, preconditionFailed, unexpectedFrame } from '../errors.js';
import type * as A from '../protocol/generated/methods.js';
import {
  encodeBasicCancel,
  encodeBasicDeliver,
  encodeChannelClose,
  encodeChannelCloseOk,
} from '../protocol/generated/methods.js';
import { hasContent, isClientMethod, Method, methodName } from '../protocol/generated/spec.js';
import { ROUND_TRIP_WINDOW } from '../util/coalesce.js';
import { COARSE_PERIOD_MS, coarseNow } from '../util/coarse-clock.js';
import { AssemblerState, CommandAssembler } from './command-assembler.js';
import { writeAcks, writeNacks } from './confirms.js';
import type { Connection } from './connection.js';
import { type Consumer, wakeConsumer } from './consumer.js';
import { writeContent } from './content-writer.js';
import { decodeArgs } from './decode-args.js';
import * as basic from './handlers/basic.js';
import * as chan from './handlers/channel.js';
import { dispatchMethod } from './handlers/dispatch.js';
import type { TxCommits } from './handlers/tx.js';

export const ChannelState = {
  Open: 0,
  /** we sent channel.close and wait for close-ok */
  Closing: 1,
  Closed: 2,
} as const;
export type ChannelState = (typeof ChannelState)[keyof typeof ChannelState];

/** How a delivery is settled (Requeue: its channel closed; Return: nacked, rejected or recovered with requeue). */
export const Settle = { Ack: 0, Requeue: 1, Reject: 2, Return: 3 } as const;
export type Settle = (typeof Settle)[keyof typeof Settle];

/** A delivery waiting for basic.ack / nack / reject. */
export class Unacked {
  constructor(
    readonly tag: number,
    readonly queue: Queue,
    readonly entry: QueueEntry,
    readonly consumer: Consumer | null,
    /** the connection's flush that carries the delivery (body-recycler.ts) */
    readonly flush: number,
  ) {}
  /** when it was delivered (coarse), for the consumer timeout */
  readonly at = coarseNow();
}

/** A basic.publish held until tx.commit, routed when it was published (as RabbitMQ does). */
export interface PendingPublish {
  args: A.BasicPublish;
  msg: Message;
  queues: Queue[];
}

/** An acknowledgement held until tx.commit; its tags already left the unacked table. */
export interface PendingSettle {
  list: Unacked[];
  how: Settle;
}

export class Channel implements ConfirmTarget {
  readonly conn: Connection;
  readonly number: number;
  readonly vhost: VHost;
  state: ChannelState = ChannelState.Open;
  readonly assembler = new CommandAssembler();

  // consuming
  readonly consumers = new Map<string, Consumer>();
  /** basic.qos global=false: the prefetch given to consumers created from now on */
  consumerPrefetch = 0;
  /** basic.qos global=true: limit shared by all consumers of the channel; 0 = none */
  globalPrefetch = 0;
  /** consumer deliveries not yet settled (what the global prefetch limits) */
  unackedCount = 0;
  readonly unacked = new Map<number, Unacked>();
  private nextDeliveryTag = 1;

  // publisher confirms
  confirmMode = false;
  publishSeq = 0;
  batchConfirmSeq = 0;
  /** publish sequence numbers to nack instead of ack (rare: refused by x-overflow) */
  nackSeqs: number[] = [];
  /** highest publish sequence number confirmed (amqp/confirms.ts) */
  confirmedSeq = 0;

  // transactions
  txMode = false;
  txPublishes: PendingPublish[] = [];
  txSettles: PendingSettle[] = [];
  /** its tx.commit-oks, waiting for the store (set by tx.select) */
  txCommits: TxCommits | null = null;

  /** the last queue declared on this channel (an empty queue name refers to it) */
  lastQueue = '';
  /** direct reply-to: the pseudo-queue consumed on amq.rabbitmq.reply-to, if any */
  replyQueue: Queue | null = null;
  /**
   * ... and its consumer, kept out of `consumers` as RabbitMQ keeps it: a normal consumer may
   * take the same tag, and basic.cancel with that tag cancels the reply consumer first
   */
  replyConsumer: Consumer | null = null;

  constructor(conn: Connection, number: number, vhost: VHost) {
    this.conn = conn;
    this.number = number;
    this.vhost = vhost;
  }

  onFrame(type: number, buf: Buffer, off: number, len: number, id: number): void {
    if (this.state === ChannelState.Closing) {
      if (type === 1) this.whileClosing(id);
      return;
    }
    const asm = this.assembler;
    switch (type) {
      case 1: {
        if (asm.state !== AssemblerState.Method) {
          throw unexpectedFrame(
            asm.state === AssemblerState.Body
              ? 'expected content body, got non content body frame instead'
              : `expected content header for class ${asm.methodId >>> 16}, got non content header frame instead`,
            asm.methodId,
          );
        }
        const args = decodeArgs(id, buf, off, len);
        // a content-bearing method is followed by its content, whoever may send it: RabbitMQ
        // refuses a server-only one (basic.deliver, return, get-ok) once its content came (505
        // when a method frame comes instead)
        if (hasContent(id)) asm.start(id, args);
        else if (!isClientMethod(id)) throw commandInvalid(`${methodName(id)} cannot be sent by a client`);
        else dispatchMethod(this, id, args);
        return;
      }
      case 2:
        if (asm.state === AssemblerState.Method) {
          throw unexpectedFrame('expected method frame, got non method frame instead');
        }
        if (asm.header(buf, off, len, this.conn.ctx.config.maxMessageSize)) this.command();
        return;
      case 3:
        if (asm.state === AssemblerState.Header) {
          throw unexpectedFrame(
            `expected content header for class ${asm.methodId >>> 16}, got non content header frame instead`,
            asm.methodId,
          );
        }
        // for a body frame, `id` is the frame's payload from this piece on (pieces: see FrameSink)
        if (asm.bodyFrame(buf, off, len, id)) this.command();
        return;
    }
  }

  /** A complete content-bearing command (basic.publish). */
  private command(): void {
    const asm = this.assembler;
    const id = asm.methodId;
    const args = asm.args as A.BasicPublish;
    const props = asm.properties;
    const body = asm.body;
    asm.reset();
    if (id !== Method.BASIC_PUBLISH) throw commandInvalid(`${methodName(id)} cannot be sent by a client`, id);
    // a publisher in tx mode, or awaiting confirms with a small window, waits on our replies
    const openLoop =
      !this.txMode && (!this.confirmMode || this.publishSeq - this.confirmedSeq >= ROUND_TRIP_WINDOW - 1);
    this.conn.gate.published(body.length, openLoop);
    if (this.confirmMode) this.conn.heartbeats.answerLater = true;
    try {
      basic.basicPublish(this, args, props, body);
    } catch (e) {
      const err = e as AmqpError;
      if (err.classId === 0 && err.methodId === 0 && typeof err.code === 'number') {
        err.classId = id >>> 16;
        err.methodId = id & 0xffff;
      }
      throw e;
    }
  }

  // ---------------------------------------------------------------- deliveries

  /** Writes basic.deliver + content for one entry and tracks it until it is settled. */
  deliver(c: Consumer, q: Queue, entry: QueueEntry): void {
    // direct reply-to: RabbitMQ sends every reply with tag 1 and leaves the channel's count alone
    const tag = q === this.replyQueue ? 1 : this.nextDeliveryTag++;
    const redelivered = entry.deliveries > 0;
    entry.deliveries++;
    if (c.noAck) {
      q.settle(entry);
    } else {
      this.unacked.set(tag, new Unacked(tag, q, entry, c, this.conn.bodies.next));
      q.countDelivery(entry);
      c.unacked++;
      this.unackedCount++;
    }
    // RabbitMQ 3.10 tells a consumer x-delivery-count from the first redelivery (basic.get: always)
    const msg =
      q.countsDeliveries && entry.deliveries > 1
        ? withDeliveryCount(entry.msg, entry.deliveries - 1)
        : entry.msg;
    const out = this.conn.out;
    encodeBasicDeliver(out, this.number, {
      consumerTag: c.tag,
      deliveryTag: tag,
      redelivered,
      exchange: msg.exchange,
      routingKey: msg.routingKey,
    });
    writeContent(out, this.number, msg, this.conn.frameMax);
    if (c.noAck) this.conn.bodies.settled(entry, this.conn.bodies.next);
    this.conn.markDirty();
  }

  /** Allocates a delivery tag for basic.get-ok and tracks the entry unless no-ack. */
  trackGet(q: Queue, entry: QueueEntry, noAck: boolean): number {
    const tag = this.nextDeliveryTag++;
    entry.deliveries++;
    if (noAck) q.settle(entry);
    // basic.get deliveries are not limited by prefetch, so they are not counted against it
    else {
      this.unacked.set(tag, new Unacked(tag, q, entry, null, this.conn.bodies.next));
      q.countDelivery(entry);
      if (q.countsDeliveries) q.gets++;
    }
    return tag;
  }

  /**
   * The unacked deliveries an ack/nack/reject refers to, in tag order. `multiple` with tag 0
   * means all. An unknown tag is a channel error (406), as RabbitMQ replies.
   */
  select(tag: number, multiple: boolean): Unacked[] {
    if (!multiple) {
      const u = this.unacked.get(tag);
      if (!u) throw preconditionFailed(`unknown delivery tag ${tag}`);
      return [u];
    }
    // multiple: the tag itself must be outstanding (0 means everything)
    if (tag !== 0 && !this.unacked.has(tag)) throw preconditionFailed(`unknown delivery tag ${tag}`);
    const out: Unacked[] = [];
    for (const u of this.unacked.values()) {
      if (tag !== 0 && u.tag > tag) break;
      out.push(u);
    }
    return out;
  }

  /**
   * Settles deliveries: acked, requeued (back to their queues, redelivered) or rejected
   * (dropped or dead-lettered). `taken` entries already left the unacked table (a tx ack).
   */
  settle(list: Unacked[], how: Settle, taken = false): void {
    for (const u of list) {
      if (!taken && !this.unacked.delete(u.tag)) continue;
      const c = u.consumer;
      if (c !== null) {
        c.unacked--;
        this.unackedCount--;
      } else if (u.queue.countsDeliveries) u.queue.gets--;
      if (how === Settle.Ack) {
        u.queue.settle(u.entry);
        this.conn.bodies.settled(u.entry, u.flush);
      } else if (how !== Settle.Reject) u.queue.requeue(u.entry, how === Settle.Return);
      else u.queue.reject(u.entry);
      if (c?.active && this.globalPrefetch === 0) c.queue.wake(c);
    }
    if (this.globalPrefetch !== 0) this.wakeConsumers();
  }

  /** Its consumers may take again (the shared prefetch freed or raised): in the order they were passed over. */
  wakeConsumers(): void {
    wakeInParkOrder(() => this.consumers.values(), wakeConsumer);
  }

  /** An ack inside a transaction: the tags leave the table now (a second ack is an error). */
  take(list: Unacked[]): void {
    for (const u of list) this.unacked.delete(u.tag);
  }

  /** tx.rollback: acknowledgements taken by the transaction become unacked again, in tag order. */
  restore(settles: PendingSettle[]): void {
    if (settles.length === 0) return;
    const all = [...this.unacked.values()];
    for (const s of settles) all.push(...s.list);
    all.sort((a, b) => a.tag - b.tag);
    this.unacked.clear();
    for (const u of all) this.unacked.set(u.tag, u);
  }

  /** The queue of `c` was deleted: forget the consumer and tell the client if it listens. */
  consumerCancelledByQueue(c: Consumer): void {
    c.active = false;
    if (this.consumers.get(c.tag) !== c) return;
    this.consumers.delete(c.tag);
    if (this.conn.capConsumerCancelNotify && this.state === ChannelState.Open) {
      encodeBasicCancel(this.conn.out, this.number, { consumerTag: c.tag, noWait: true });
      this.conn.markDirty();
    }
  }

  /** Detaches a consumer from its queue (auto-delete may remove the queue). */
  removeConsumer(c: Consumer): void {
    c.active = false;
    if (c === this.replyConsumer) {
      this.dropReplyQueue();
      return;
    }
    this.consumers.delete(c.tag);
    if (c.queue.removeConsumer(c)) this.vhost.removeQueue(c.queue);
  }

  dropReplyQueue(): void {
    const q = this.replyQueue;
    if (!q) return;
    if (this.replyConsumer !== null) {
      this.replyConsumer.active = false;
      q.removeConsumer(this.replyConsumer);
      this.replyConsumer = null;
    }
    this.replyQueue = null;
    this.vhost.defaultExchange.removeReplyQueue(q);
    q.markDeleted();
  }

  // ---------------------------------------------------------------- confirms

  confirmUpTo(seq: number): void {
    if (this.state === ChannelState.Open && seq > this.confirmedSeq) writeAcks(this, seq);
  }

  rejectUpTo(seq: number): void {
    if (this.state === ChannelState.Open && seq > this.confirmedSeq) writeNacks(this, seq);
  }

  // ---------------------------------------------------------------- closing

  /** RabbitMQ's consumer_timeout: the oldest unacked delivery waited too long (406). */
  checkAckTimeout(now: number, timeout: number): void {
    if (this.state !== ChannelState.Open || this.unacked.size === 0) return;
    const oldest = this.unacked.values().next().value!;
    // `at` may be one clock period early: never time a delivery out before it is due
    if (now - oldest.at <= timeout + COARSE_PERIOD_MS) return;
    this.closeWithError(
      preconditionFailed(
        `delivery acknowledgement on channel ${this.number} timed out. Timeout value used: ${timeout} ms. ` +
          'This timeout value can be configured, see consumers doc guide to learn more',
      ),
    );
  }

  /** Soft error: send channel.close and discard frames until close-ok. */
  closeWithError(e: AmqpError): void {
    this.conn.log.debug(
      { channel: this.number, code: e.code, text: e.replyText },
      'closing channel on error',
    );
    // publishes handled before the error are confirmed before the close, as RabbitMQ does
    if (this.batchConfirmSeq !== 0) this.vhost.store.commit();
    this.release();
    this.state = ChannelState.Closing;
    encodeChannelClose(this.conn.out, this.number, {
      replyCode: e.code,
      replyText: e.replyText,
      classId: e.classId,
      methodId: e.methodId,
    });
    this.conn.markDirty();
  }

  /**
   * A method after our channel.close, as RabbitMQ's channel treats it: close-ok frees the number;
   * a crossing channel.close is answered with close-ok and the channel still waits for close-ok
   * (clients such as amqp091-go send both); channel.open is a second open (504); the rest is
   * discarded.
   */
  private whileClosing(id: number): void {
    if (id === Method.CHANNEL_CLOSE_OK) {
      this.closed();
    } else if (id === Method.CHANNEL_CLOSE) {
      encodeChannelCloseOk(this.conn.out, this.number, {});
      this.conn.markDirty();
    } else if (id === Method.CHANNEL_OPEN) {
      chan.channelOpenAgain(this);
    }
  }

  /** The channel is gone: its number may be reused. */
  closed(): void {
    this.state = ChannelState.Closed;
    this.conn.channelClosed(this.number);
  }

  /**
   * Frees everything the channel holds: consumers are cancelled first, then unacked messages go
   * back to their queues in delivery order, marked redelivered.
   */
  release(): void {
    this.assembler.reset();
    for (const c of [...this.consumers.values()]) this.removeConsumer(c);
    this.dropReplyQueue();
    this.restore(this.txSettles);
    this.txPublishes = [];
    this.txSettles = [];
    if (this.unacked.size > 0) this.settle([...this.unacked.values()], Settle.Requeue);
  }
}
