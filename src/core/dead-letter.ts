/**
 * Dead-lettering (x-dead-letter-exchange): a message that expires, overflows or is rejected
 * without requeue is republished to the queue's dead-letter exchange with RabbitMQ's x-death
 * history in its headers.
 */
import type { FieldTable, FieldValue } from '../protocol/field-table.js';
import { decodeBasicProperties, encodeBasicProperties } from '../protocol/generated/properties.js';
import { OutBuffer } from '../protocol/out-buffer.js';
import { Message } from './message.js';
import type { DeathReason, Queue } from './queue.js';

/**
 * The message as it leaves `queue` for its dead-letter exchange: x-death gains (or counts) an
 * entry for this queue and reason, the x-first-death-* headers are set once, and a per-message
 * expiration moves into the entry as original-expiration.
 */
export function deadLettered(queue: Queue, msg: Message, reason: DeathReason): Message {
  const props = decodeBasicProperties(msg.properties, 0, msg.properties.length);
  const headers: FieldTable = { ...(props.headers ?? {}) };
  const deaths = Array.isArray(headers['x-death']) ? [...(headers['x-death'] as FieldValue[])] : [];
  const routingKeys: string[] = [msg.routingKey];
  const cc = headers['CC'];
  if (Array.isArray(cc)) for (const k of cc) if (typeof k === 'string') routingKeys.push(k);
  const i = deaths.findIndex((d) => isTable(d) && d['queue'] === queue.name && d['reason'] === reason);
  if (i >= 0) {
    // the same death again: count it and move it to the front, as RabbitMQ does
    const d = { ...(deaths[i] as FieldTable) };
    d['count'] = Number(d['count'] ?? 0) + 1;
    d['time'] = new Date();
    deaths.splice(i, 1);
    deaths.unshift(d);
  } else {
    const d: FieldTable = {
      count: 1,
      reason,
      queue: queue.name,
      time: new Date(),
      exchange: msg.exchange,
      'routing-keys': routingKeys,
    };
    if (props.expiration !== undefined) d['original-expiration'] = props.expiration;
    deaths.unshift(d);
  }
  headers['x-death'] = deaths;
  if (headers['x-first-death-exchange'] === undefined) {
    headers['x-first-death-exchange'] = msg.exchange;
    headers['x-first-death-queue'] = queue.name;
    headers['x-first-death-reason'] = reason;
  }
  props.headers = headers;
  props.expiration = undefined;
  const w = new OutBuffer();
  encodeBasicProperties(w, props);
  const rk = queue.deadLetterRoutingKey ?? msg.routingKey;
  msg.reusable = false;
  return new Message(queue.deadLetterExchange ?? '', rk, Buffer.concat(w.take()), msg.body);
}

/**
 * True when delivering to `target` would close a dead-letter cycle with no rejection in it;
 * RabbitMQ drops the message for that queue instead of looping forever.
 */
export function isDeadLetterCycle(msg: Message, target: Queue): boolean {
  const deaths = msg.headers()?.['x-death'];
  if (!Array.isArray(deaths)) return false;
  let seen = false;
  for (const d of deaths) {
    if (!isTable(d)) continue;
    if (d['reason'] === 'rejected') return false;
    if (d['queue'] === target.name) seen = true;
  }
  return seen;
}

function isTable(v: FieldValue): v is FieldTable {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Date)
  );
}

/** The CC routing keys of a message (kept when dead-lettering without a new routing key). */
export function ccKeys(msg: Message): string[] | undefined {
  const cc = msg.headers()?.['CC'];
  if (!Array.isArray(cc)) return undefined;
  const keys = cc.filter((k): k is string => typeof k === 'string');
  return keys.length > 0 ? keys : undefined;
}
