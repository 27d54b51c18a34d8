/** exchange class: declare, delete, bind, unbind (exchange-to-exchange). */
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeExchangeBindOk,
  encodeExchangeDeclareOk,
  encodeExchangeDeleteOk,
  encodeExchangeUnbindOk,
} from '../../protocol/generated/methods.js';
import type { Channel } from '../channel.js';

/** RabbitMQ drops CR and LF from the names in exchange.declare and queue.declare. */
export function stripCrLf(name: string): string {
  return name.includes('\r') || name.includes('\n') ? name.replace(/[\r\n]/g, '') : name;
}

export function exchangeDeclare(ch: Channel, a: A.ExchangeDeclare): void {
  ch.vhost.declareExchange(
    stripCrLf(a.exchange),
    a.type,
    a.passive,
    a.durable,
    a.autoDelete,
    a.internal,
    a.arguments,
  );
  if (!a.noWait) {
    encodeExchangeDeclareOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function exchangeDelete(ch: Channel, a: A.ExchangeDelete): void {
  ch.vhost.deleteExchange(a.exchange, a.ifUnused);
  if (!a.noWait) {
    encodeExchangeDeleteOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function exchangeBind(ch: Channel, a: A.ExchangeBind): void {
  ch.vhost.bindExchange(a.destination, a.source, a.routingKey, a.arguments);
  if (!a.noWait) {
    encodeExchangeBindOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function exchangeUnbind(ch: Channel, a: A.ExchangeUnbind): void {
  ch.vhost.unbindExchange(a.destination, a.source, a.routingKey, a.arguments);
  if (!a.noWait) {
    encodeExchangeUnbindOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}
