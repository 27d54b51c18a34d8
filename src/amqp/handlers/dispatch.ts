/**
 * A channel's methods without content: the integer switch on the method id to each class's
 * handlers (DESIGN.md: no string lookups on the hot path).
 */
import { commandInvalid, notImplemented } from '../../errors.js';
import type * as A from '../../protocol/generated/methods.js';
import type { MethodArgs } from '../../protocol/generated/methods.js';
import { Method, methodName } from '../../protocol/generated/spec.js';
import { inflow } from '../../util/coalesce.js';
import type { Channel } from '../channel.js';
import * as basic from './basic.js';
import * as chan from './channel.js';
import * as exchange from './exchange.js';
import * as queue from './queue.js';
import * as tx from './tx.js';

/** A method without content: the integer switch to its handler. */
export function dispatchMethod(ch: Channel, id: number, a: MethodArgs): void {
  switch (id) {
    case Method.BASIC_ACK:
      basic.basicAck(ch, a as A.BasicAck);
      return;
    case Method.BASIC_NACK:
      basic.basicNack(ch, a as A.BasicNack);
      return;
    case Method.BASIC_REJECT:
      basic.basicReject(ch, a as A.BasicReject);
      return;
  }
  // every other method is a request its client awaits the reply to: no nap may delay the next
  inflow.roundTrip = true;
  switch (id) {
    case Method.BASIC_QOS:
      basic.basicQos(ch, a as A.BasicQos);
      return;
    case Method.BASIC_CONSUME:
      basic.basicConsume(ch, a as A.BasicConsume);
      return;
    case Method.BASIC_CANCEL:
      basic.basicCancel(ch, a as A.BasicCancel);
      return;
    case Method.BASIC_GET:
      basic.basicGet(ch, a as A.BasicGet);
      return;
    case Method.BASIC_RECOVER:
      basic.basicRecover(ch, (a as A.BasicRecover).requeue, true);
      return;
    case Method.BASIC_RECOVER_ASYNC:
      basic.basicRecover(ch, (a as A.BasicRecoverAsync).requeue, false);
      return;
    case Method.QUEUE_DECLARE:
      queue.queueDeclare(ch, a as A.QueueDeclare);
      return;
    case Method.QUEUE_BIND:
      queue.queueBind(ch, a as A.QueueBind);
      return;
    case Method.QUEUE_UNBIND:
      queue.queueUnbind(ch, a as A.QueueUnbind);
      return;
    case Method.QUEUE_PURGE:
      queue.queuePurge(ch, a as A.QueuePurge);
      return;
    case Method.QUEUE_DELETE:
      queue.queueDelete(ch, a as A.QueueDelete);
      return;
    case Method.EXCHANGE_DECLARE:
      exchange.exchangeDeclare(ch, a as A.ExchangeDeclare);
      return;
    case Method.EXCHANGE_DELETE:
      exchange.exchangeDelete(ch, a as A.ExchangeDelete);
      return;
    case Method.EXCHANGE_BIND:
      exchange.exchangeBind(ch, a as A.ExchangeBind);
      return;
    case Method.EXCHANGE_UNBIND:
      exchange.exchangeUnbind(ch, a as A.ExchangeUnbind);
      return;
    case Method.CONFIRM_SELECT:
      tx.confirmSelect(ch, a as A.ConfirmSelect);
      return;
    case Method.TX_SELECT:
      tx.txSelect(ch);
      return;
    case Method.TX_COMMIT:
      tx.txCommit(ch);
      return;
    case Method.TX_ROLLBACK:
      tx.txRollback(ch);
      return;
    case Method.CHANNEL_OPEN:
      chan.channelOpenAgain(ch);
      return;
    case Method.ACCESS_REQUEST:
      chan.accessRequest(ch);
      return;
    case Method.CHANNEL_CLOSE:
      chan.channelClose(ch, a as A.ChannelClose);
      return;
    case Method.CHANNEL_CLOSE_OK:
      chan.channelCloseOk(ch);
      return;
    case Method.CHANNEL_FLOW:
      chan.channelFlow(ch, a as A.ChannelFlow);
      return;
    case Method.CHANNEL_FLOW_OK:
      // the answer to a channel.flow, which Warren never sends: 503, as RabbitMQ
      throw commandInvalid('channel.flow-ok received, but no channel.flow was sent');
    default:
      // connection methods belong on channel 0 (RabbitMQ: 503 as well)
      if (id >>> 16 === 10)
        throw commandInvalid(
          `${methodName(id)} is not valid on channel ${ch.number}; connection methods go on channel 0`,
        );
      throw notImplemented(`${methodName(id)} is not implemented`);
  }
}
