/** channel class methods: open (again), close, close-ok, flow; and the legacy access.request. */
import { channelError, commandInvalid, notImplemented } from '../../errors.js';
import {
  type ChannelClose,
  type ChannelFlow,
  encodeAccessRequestOk,
  encodeChannelCloseOk,
  encodeChannelFlowOk,
} from '../../protocol/generated/methods.js';
import { type Channel, ChannelState } from '../channel.js';

/** channel.open on a channel that is already open: a connection error (504), as RabbitMQ does. */
export function channelOpenAgain(_ch: Channel): void {
  throw channelError("second 'channel.open' seen");
}

/** Client closes the channel: release what it holds, confirm, free the number. */
export function channelClose(ch: Channel, _a: ChannelClose | null): void {
  ch.release();
  encodeChannelCloseOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
  ch.closed();
  ch.conn.channelClosedByClient(ch.number);
}

export function channelCloseOk(ch: Channel): void {
  if (ch.state !== ChannelState.Closing) {
    throw commandInvalid('channel.close-ok received, but no channel.close was sent');
  }
  ch.closed();
}

/**
 * channel.flow: active=true is acknowledged; active=false is refused with a connection error 540,
 * as RabbitMQ does (clients such as amqp091-go's test suite rely on that refusal). A consumer that
 * wants fewer messages uses basic.qos.
 */
export function channelFlow(ch: Channel, a: ChannelFlow): void {
  if (!a.active) throw notImplemented('active=false');
  encodeChannelFlowOk(ch.conn.out, ch.number, { active: true });
  ch.conn.markDirty();
}

/** access.request (AMQP 0-8 tickets, sent by some old clients): RabbitMQ grants ticket 1. */
export function accessRequest(ch: Channel): void {
  encodeAccessRequestOk(ch.conn.out, ch.number, { ticket: 1 });
  ch.conn.markDirty();
}
