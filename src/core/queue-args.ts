/**
 * Queue arguments: which ones a redeclare must match (RabbitMQ compares only the x-arguments it
 * knows; others are free-form), and validation of x-queue-type.
 */
import {
  Decimal,
  FIELD_TYPE_NAMES,
  type FieldTable,
  type FieldType,
  type FieldValue,
  Typed,
  wireTypeOf,
} from '../protocol/field-table.js';
import { intervalMs } from './stream-offset.js';

/**
 * A classic queue's redeclare compares its own arguments and x-queue-master-locator, in this
 * order, and takes the other types' arguments without a look (RabbitMQ 3.10.8, probed).
 */
const CLASSIC_COMPARED = [
  'x-expires',
  'x-message-ttl',
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-max-length',
  'x-max-length-bytes',
  'x-max-priority',
  'x-overflow',
  'x-queue-mode',
  'x-queue-version',
  'x-single-active-consumer',
  'x-queue-type',
  'x-queue-master-locator',
];

/**
 * A quorum queue's and a stream's redeclare compare their own types' arguments, in this order
 * (the first that differs is named; RabbitMQ 3.10.8, probed).
 */
const QUORUM_COMPARED = [
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-dead-letter-strategy',
  'x-expires',
  'x-max-length',
  'x-max-length-bytes',
  'x-max-in-memory-length',
  'x-max-in-memory-bytes',
  'x-overflow',
  'x-single-active-consumer',
  'x-queue-type',
  'x-quorum-initial-group-size',
  'x-delivery-limit',
  'x-message-ttl',
  'x-queue-leader-locator',
];
const STREAM_COMPARED = [
  'x-max-length-bytes',
  'x-queue-type',
  'x-max-age',
  'x-stream-max-segment-size-bytes',
  'x-initial-cluster-size',
  'x-queue-leader-locator',
];
const COMPARED_BY_TYPE: Record<string, string[]> = {
  quorum: QUORUM_COMPARED,
  stream: STREAM_COMPARED,
};

export const QUEUE_TYPES = ['classic', 'quorum', 'stream'];

/**
 * Arguments another queue type knows that this one refuses with 406 (RabbitMQ 3.10.8, probed:
 * "invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue").
 */
const UNSUPPORTED: Record<string, string[]> = {
  classic: [
    'x-delivery-limit',
    'x-quorum-initial-group-size',
    'x-max-age',
    'x-stream-max-segment-size-bytes',
    'x-initial-cluster-size',
    'x-max-in-memory-length',
    'x-max-in-memory-bytes',
    'x-queue-leader-locator',
    'x-dead-letter-strategy',
  ],
  quorum: [
    'x-max-age',
    'x-stream-max-segment-size-bytes',
    'x-initial-cluster-size',
    'x-queue-master-locator',
    'x-queue-mode',
    'x-queue-version',
    'x-max-priority',
  ],
  stream: [
    'x-delivery-limit',
    'x-quorum-initial-group-size',
    'x-max-in-memory-length',
    'x-max-in-memory-bytes',
    'x-queue-master-locator',
    'x-queue-mode',
    'x-queue-version',
    'x-message-ttl',
    'x-expires',
    'x-max-length',
    'x-overflow',
    'x-single-active-consumer',
    'x-dead-letter-exchange',
    'x-dead-letter-routing-key',
    'x-dead-letter-strategy',
    'x-max-priority',
  ],
};

/** The queue type an arguments table asks for ('classic' when absent). */
export function queueType(args: FieldTable): string {
  const t = args['x-queue-type'];
  return typeof t === 'string' ? t : 'classic';
}

/**
 * Compares the arguments of a redeclare with the current ones. Returns null when equivalent,
 * else the tail of RabbitMQ's "inequivalent arg" text with %Q standing for the queue.
 */
export function argsEquivalence(current: FieldTable, received: FieldTable): string | null {
  for (const k of COMPARED_BY_TYPE[queueType(current)] ?? CLASSIC_COMPARED) {
    const cur = current[k];
    const got = received[k];
    // an absent x-queue-type is a classic queue
    if (k === 'x-queue-type' && queueType(current) === queueType(received)) continue;
    const curWire = wireTypeOf(current, k);
    const gotWire = wireTypeOf(received, k);
    // as RabbitMQ: integers of any width are alike, but an integer is no float of the same value
    if (sameValue(cur, got) && numberKind(cur, curWire) === numberKind(got, gotWire)) continue;
    if (cur !== undefined && got !== undefined) {
      return `'${k}' for %Q: received '${display(got, gotWire)}' but current is '${display(cur, curWire)}'`;
    }
    return `'${k}' for %Q: received ${describe(got, wireTypeOf(received, k))} but current is ${describe(cur, wireTypeOf(current, k))}`;
  }
  return null;
}

/** RabbitMQ's "the value '5' of type 'byte'" (or "none"). */
export function describe(v: FieldValue, wire?: FieldType): string {
  if (v === undefined) return 'none';
  return `the value '${display(v)}' of type '${wire ? FIELD_TYPE_NAMES[wire] : fieldTypeName(v)}'`;
}

/** 'int' or 'float' for a number (by its wire type when it came off the wire), else null. */
function numberKind(v: FieldValue, wire?: FieldType): 'int' | 'float' | null {
  if (typeof v === 'bigint') return 'int';
  if (typeof v !== 'number') return null;
  if (wire !== undefined) return wire === 'f' || wire === 'd' ? 'float' : 'int';
  return Number.isInteger(v) ? 'int' : 'float';
}

function display(v: FieldValue, wire?: FieldType): string {
  // Erlang prints a float with its point: 100.0
  if (typeof v === 'number' && (wire === 'f' || wire === 'd') && Number.isInteger(v) && Math.abs(v) < 1e16)
    return `${v}.0`;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return String(Math.floor(v.getTime() / 1000));
  if (typeof v === 'object' && v !== null)
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

/** The type name of `t[k]`, from the wire when the table was decoded from it. */
export function argTypeName(t: FieldTable, k: string): string {
  return typeName(t[k], wireTypeOf(t, k));
}

function typeName(v: FieldValue, wire?: FieldType): string {
  return wire ? FIELD_TYPE_NAMES[wire] : fieldTypeName(v);
}

/** RabbitMQ's name for a value's field type (guessed from the JS value), as its reply texts use. */
export function fieldTypeName(v: FieldValue): string {
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'string':
      return 'longstr';
    case 'bigint':
      return 'long';
    case 'number':
      return Number.isInteger(v) ? (v >= -2147483648 && v <= 2147483647 ? 'signedint' : 'long') : 'double';
    default:
      if (v === null) return 'void';
      if (Buffer.isBuffer(v)) return 'binary';
      if (Array.isArray(v)) return 'array';
      if (v instanceof Date) return 'timestamp';
      if (v instanceof Decimal) return 'decimal';
      return 'table';
  }
}

/** Value equality across integer widths (an 'l' 5 equals an 'I' 5). */
export function sameValue(a: FieldValue, b: FieldValue): boolean {
  if (a instanceof Typed) a = a.value;
  if (b instanceof Typed) b = b.value;
  if (a === b) return true;
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) {
    return typeof a === typeof b ? a === b : Number(a) === Number(b);
  }
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (typeof a === 'string' && Buffer.isBuffer(b)) return a === b.toString('utf8');
  if (Buffer.isBuffer(a) && typeof b === 'string') return a.toString('utf8') === b;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof Decimal && b instanceof Decimal) return a.scale === b.scale && a.value === b.value;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ta = a as FieldTable;
    const tb = b as FieldTable;
    const ka = Object.keys(ta);
    if (ka.length !== Object.keys(tb).length) return false;
    return ka.every((k) => k in tb && sameValue(ta[k], tb[k]));
  }
  return false;
}

/** Checks a new queue's arguments; returns a PRECONDITION_FAILED text or null. */
export function validateQueueArgs(
  d: { durable: boolean; exclusive: boolean; autoDelete: boolean; args: FieldTable },
  queue: string,
): string | null {
  const args = d.args;
  const raw = args['x-queue-type'];
  if (raw !== undefined && typeof raw !== 'string' && !Buffer.isBuffer(raw)) {
    return `invalid arg 'x-queue-type' for ${queue}: {unacceptable_type,${typeName(raw, wireTypeOf(args, 'x-queue-type'))}}`;
  }
  const type = queueType(args);
  if (!QUEUE_TYPES.includes(type)) {
    return `invalid arg 'x-queue-type' for ${queue}: "unsupported queue type '${type}'"`;
  }
  if (type !== 'classic') {
    // quorum and stream queues are replicated, durable, shared queues
    if (d.exclusive) return `invalid property 'exclusive-owner' for ${queue}`;
    if (!d.durable) return `invalid property 'non-durable' for ${queue}`;
    if (d.autoDelete) return `invalid property 'auto-delete' for ${queue}`;
  }
  for (const k of UNSUPPORTED[type]!) {
    if (args[k] !== undefined) return `invalid arg '${k}' for ${queue} of queue type rabbit_${type}_queue`;
  }
  for (const [k, rule] of RULES) {
    const v = args[k];
    if (v === undefined) continue;
    const bad = rule(v, wireTypeOf(args, k), args);
    if (bad) {
      if (bad.startsWith(WHOLE)) return bad.slice(WHOLE.length);
      return bad.startsWith('invalid type')
        ? `${bad} in ${queue}`
        : `invalid arg '${k}' for ${queue}: ${bad}`;
    }
  }
  return null;
}

type Rule = (v: FieldValue, wire: FieldType | undefined, args: FieldTable) => string | null;

const integer =
  (min: 'zero' | 'positive', max?: number, tooLarge?: number): Rule =>
  (v, wire) => {
    const n = typeof v === 'bigint' ? Number(v) : v;
    // RabbitMQ goes by the wire type: 1000.0 as a double is no integer either
    if (typeof n !== 'number' || !Number.isInteger(n) || wire === 'd' || wire === 'f')
      return `"expected integer, got ${typeName(v, wire)}"`;
    if (n < 0) return `{value_negative,${n}}`;
    if (n === 0 && min === 'positive') return `{value_zero,${n}}`;
    if (max !== undefined && n > max) return `{max_value_exceeded,${n}}`;
    if (tooLarge !== undefined && n > tooLarge) return `{value_too_large,${n}}`;
    return null;
  };

/** RabbitMQ's longest x-message-ttl and x-expires: ten years, as for a message's expiration. */
const MAX_EXPIRY = 315_360_000_000;

/** A string argument with a fixed set of values; any other type is an unacceptable type. */
const stringOf =
  (values: string[], bad: (v: string) => string): Rule =>
  (v, wire) => {
    // a byte array ('x') is no longstr
    if (typeof v !== 'string') return `{unacceptable_type,${typeName(v, wire)}}`;
    return values.includes(v) ? null : bad(v);
  };

const str =
  (arg: string): Rule =>
  (v, wire) =>
    typeof v === 'string' ? null : `invalid type '${typeName(v, wire)}' for arg '${arg}'`;

/** The dead-letter routing key: a string that fits an AMQP shortstr, with a DLX to go with it. */
const deadLetterKey: Rule = (v, wire, args) => {
  if (typeof v !== 'string' && !Buffer.isBuffer(v)) return `{unacceptable_type,${typeName(v, wire)}}`;
  if (args['x-dead-letter-exchange'] === undefined) return 'routing_key_but_no_dlx_defined';
  const n = Buffer.byteLength(v as string | Buffer);
  return n > 255 ? `"a routing key of ${n} bytes is longer than 255"` : null;
};

const RULES: [string, Rule][] = [
  ['x-expires', integer('positive', undefined, MAX_EXPIRY)],
  ['x-message-ttl', integer('zero', undefined, MAX_EXPIRY)],
  ['x-dead-letter-exchange', str('x-dead-letter-exchange')],
  ['x-dead-letter-routing-key', deadLetterKey],
  ['x-max-length', integer('zero')],
  ['x-max-length-bytes', integer('zero')],
  ['x-max-priority', integer('zero', 255)],
  ['x-overflow', stringOf(['drop-head', 'reject-publish', 'reject-publish-dlx'], () => 'invalid_overflow')],
  ['x-queue-mode', stringOf(['default', 'lazy'], (m) => `"unsupported queue mode '${m}'"`)],
  [
    'x-queue-version',
    (v, w, a) => {
      const bad = integer('zero')(v, w, a);
      if (bad) return bad;
      const n = Number(v);
      return n === 1 || n === 2 ? null : `"unsupported queue version '${n}'"`;
    },
  ],
  [
    'x-single-active-consumer',
    (v, w) => (typeof v === 'boolean' ? null : `{unacceptable_type,${typeName(v, w)}}`),
  ],
  ['x-delivery-limit', integer('zero')],
  ['x-max-age', (v, w) => maxAge(v, w)],
  ['x-stream-max-segment-size-bytes', (v, w, a) => segmentSize(v, w, a)],
  ['x-initial-cluster-size', integer('positive')],
  ['x-quorum-initial-group-size', integer('positive')],
  ['x-dead-letter-strategy', stringOf(['at-most-once', 'at-least-once'], () => 'invalid_dlx_strategy')],
  [
    'x-queue-leader-locator',
    stringOf(['client-local', 'balanced', 'random', 'least-leaders'], () => 'invalid_queue_locator_arg'),
  ],
];

/** x-max-age: digits and a unit (Y M D h m s), above zero, as RabbitMQ's streams read it. */
function maxAge(v: FieldValue, wire: FieldType | undefined): string | null {
  if (Buffer.isBuffer(v)) v = v.toString('utf8');
  if (typeof v !== 'string') return `{unacceptable_type,${typeName(v, wire)}}`;
  return intervalMs(v) > 0 ? null : 'invalid_max_age';
}

/** RabbitMQ caps stream segments at 3,000,000,000 bytes (its text has no "invalid arg" prefix). */
const MAX_SEGMENT_BYTES = 3_000_000_000;

function segmentSize(v: FieldValue, wire: FieldType | undefined, args: FieldTable): string | null {
  const bad = integer('zero')(v, wire, args);
  if (bad) return bad;
  return Number(v) > MAX_SEGMENT_BYTES
    ? `${WHOLE}Exceeded max value for x-stream-max-segment-size-bytes`
    : null;
}

/** A rule's text that is the whole reply text, not the tail of "invalid arg ...". */
const WHOLE = '\u0000';
