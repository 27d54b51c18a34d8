/**
 * AMQP 0-9-1 field tables and arrays, with every type RabbitMQ's clients send
 * (RabbitMQ's errata table: t b B s u I i l f d D S x A T F V). py-amqp, and so Celery and
 * kombu, sends integers outside 32 bits as 'L': RabbitMQ reads that as its 64-bit 'l' (and
 * writes 'l' when it re-encodes), and so does this.
 *
 * Decoding gives plain JS values by default (what handlers want for `arguments`); with
 * `typed = true` every value is a `Typed` that remembers its wire type, so re-encoding gives
 * the same bytes (for keys and strings that are valid UTF-8, without duplicate keys: byte-exact
 * pass-through of client data keeps the raw bytes instead of decoding). Encoding accepts both.
 */

import { isUtf8 } from 'node:buffer';
import type { OutBuffer } from './out-buffer.js';

export type FieldType =
  | 't'
  | 'b'
  | 'B'
  | 's'
  | 'u'
  | 'I'
  | 'i'
  | 'l'
  | 'f'
  | 'd'
  | 'D'
  | 'S'
  | 'x'
  | 'A'
  | 'T'
  | 'F'
  | 'V';

/** A decimal: value × 10^-scale. */
export class Decimal {
  constructor(
    readonly scale: number,
    readonly value: number,
  ) {}
}

/** A value with an explicit wire type. */
export class Typed {
  constructor(
    readonly type: FieldType,
    readonly value: FieldValue,
  ) {}
}

export type FieldValue =
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | Date
  | Decimal
  | Typed
  | null
  | undefined
  | FieldValue[]
  | FieldTable;

export interface FieldTable {
  [key: string]: FieldValue;
}

/** RabbitMQ's names of the field types, as its reply texts print them. */
export const FIELD_TYPE_NAMES: Record<FieldType, string> = {
  t: 'bool',
  b: 'byte',
  B: 'unsignedbyte',
  s: 'short',
  u: 'unsignedshort',
  I: 'signedint',
  i: 'unsignedint',
  l: 'long',
  f: 'float',
  d: 'double',
  D: 'decimal',
  S: 'longstr',
  x: 'binary',
  A: 'array',
  T: 'timestamp',
  F: 'table',
  V: 'void',
};

/**
 * A plain-decoded table remembers each key's wire type under this (non-enumerable) symbol, so
 * error texts can name the type the client sent.
 */
const WIRE_TYPES: unique symbol = Symbol('warren.wireTypes');

/** The wire type a decoded table's key arrived with, if the table came off the wire. */
export function wireTypeOf(t: FieldTable, key: string): FieldType | undefined {
  const types = (t as { [WIRE_TYPES]?: Record<string, FieldType> })[WIRE_TYPES];
  return types?.[key];
}

/** The wire types of a decoded table's keys, to store with it (undefined: not off the wire). */
export function wireTypesOf(t: FieldTable): Record<string, FieldType> | undefined {
  return (t as { [WIRE_TYPES]?: Record<string, FieldType> })[WIRE_TYPES];
}

/** Gives a table read back from the store the wire types it arrived with (wireTypesOf's). */
export function withWireTypes(t: FieldTable, types: unknown): FieldTable {
  if (types !== null && typeof types === 'object' && wireTypesOf(t) === undefined)
    Object.defineProperty(t, WIRE_TYPES, { value: { ...(types as Record<string, FieldType>) } });
  return t;
}

/** Thrown on a malformed table; the connection maps it to a syntax error. */
export class TableError extends Error {}

const TWO32 = 4294967296;

/** Reads a u64 as a JS number (exact up to 2^53; callers needing more bits read the halves). */
export function readU64(b: Buffer, o: number): number {
  return b.readUInt32BE(o) * TWO32 + b.readUInt32BE(o + 4);
}

function readI64(b: Buffer, o: number): number | bigint {
  const hi = b.readInt32BE(o);
  const lo = b.readUInt32BE(o + 4);
  // Safe range is ±2^53; hi in [-2^21, 2^21) keeps the product exact.
  if (hi >= -2097152 && hi < 2097152) return hi * TWO32 + lo;
  return b.readBigInt64BE(o);
}

/**
 * Decodes the table body between `o` and `end` (the bytes after the u32 length prefix).
 */
export function decodeTable(b: Buffer, o: number, end: number, typed = false, depth = 0): FieldTable {
  if (depth > MAX_DEPTH) throw new TableError(TOO_DEEP);
  const t: FieldTable = {};
  if (o >= end) return t;
  const types: Record<string, FieldType> = Object.create(null) as Record<string, FieldType>;
  while (o < end) {
    const kl = b[o]!;
    const key = b.toString('utf8', o + 1, o + 1 + kl);
    o += 1 + kl;
    if (o >= end) throw new TableError('field table key without a value');
    if (!utf8Key(b, o - kl, o)) throw new TableError('a field table key is not valid UTF-8');
    types[key] = wireType(b[o]!);
    o = decodeValue(b, o, end, t, key, typed, depth);
  }
  if (o !== end) throw new TableError('field table overruns its length');
  if (!typed) Object.defineProperty(t, WIRE_TYPES, { value: types });
  return t;
}

export function decodeArray(b: Buffer, o: number, end: number, typed = false, depth = 0): FieldValue[] {
  if (depth > MAX_DEPTH) throw new TableError(TOO_DEEP);
  const box: FieldTable = {};
  const out: FieldValue[] = [];
  while (o < end) {
    o = decodeValue(b, o, end, box, 'v', typed, depth);
    out.push(box['v']);
  }
  if (o !== end) throw new TableError('field array overruns its length');
  return out;
}

/** Decodes one tagged value at `o` into `into[key]`; returns the offset after it. */
function decodeValue(
  b: Buffer,
  o: number,
  end: number,
  into: FieldTable,
  key: string,
  typed: boolean,
  depth: number,
): number {
  const type = wireType(b[o]!);
  o += 1;
  let v: FieldValue;
  switch (type) {
    case 't':
      v = b[o]! !== 0;
      o += 1;
      break;
    case 'b':
      v = b.readInt8(o);
      o += 1;
      break;
    case 'B':
      v = b.readUInt8(o);
      o += 1;
      break;
    case 's':
      v = b.readInt16BE(o);
      o += 2;
      break;
    case 'u':
      v = b.readUInt16BE(o);
      o += 2;
      break;
    case 'I':
      v = b.readInt32BE(o);
      o += 4;
      break;
    case 'i':
      v = b.readUInt32BE(o);
      o += 4;
      break;
    case 'l':
      v = readI64(b, o);
      o += 8;
      break;
    case 'f':
      v = b.readFloatBE(o);
      o += 4;
      break;
    case 'd':
      v = b.readDoubleBE(o);
      o += 8;
      break;
    case 'D':
      v = new Decimal(b.readUInt8(o), b.readUInt32BE(o + 1));
      o += 5;
      break;
    case 'S': {
      const n = b.readUInt32BE(o);
      checkLen(o + 4 + n, end);
      // typed (a message's headers, to be re-encoded): bytes that are not UTF-8 stay bytes
      const raw = typed ? b.subarray(o + 4, o + 4 + n) : null;
      v = raw !== null && !isUtf8(raw) ? Buffer.from(raw) : b.toString('utf8', o + 4, o + 4 + n);
      o += 4 + n;
      break;
    }
    case 'x': {
      const n = b.readUInt32BE(o);
      checkLen(o + 4 + n, end);
      v = Buffer.from(b.subarray(o + 4, o + 4 + n));
      o += 4 + n;
      break;
    }
    case 'A': {
      const n = b.readUInt32BE(o);
      checkLen(o + 4 + n, end);
      v = decodeArray(b, o + 4, o + 4 + n, typed, depth + 1);
      o += 4 + n;
      break;
    }
    case 'T': {
      const secs = readU64(b, o);
      v = typed ? secs : new Date(secs * 1000);
      o += 8;
      break;
    }
    case 'F': {
      const n = b.readUInt32BE(o);
      checkLen(o + 4 + n, end);
      v = decodeTable(b, o + 4, o + 4 + n, typed, depth + 1);
      o += 4 + n;
      break;
    }
    case 'V':
      v = null;
      break;
    default:
      throw new TableError(`unknown field type '${type}' (0x${(b[o - 1] ?? 0).toString(16)})`);
  }
  if (o > end) throw new TableError('field value overruns its table');
  const value = typed ? new Typed(type, v) : v;
  // a '__proto__' key must stay an own entry, never become the table's prototype
  if (key === '__proto__')
    Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
  return o;
}

/**
 * Walks a table body [o, end) the way decodeTable reads it, without decoding anything; throws
 * the TableError decodeTable would. Publish checks message headers with it, so that a table
 * the broker may have to decode later (dead-lettering, headers routing) is sound.
 */
export function checkTable(b: Buffer, o: number, end: number, depth = 0): void {
  if (depth > MAX_DEPTH) throw new TableError(TOO_DEEP);
  while (o < end) {
    const k = o + 1;
    o = k + b[o]!;
    if (o >= end) throw new TableError('field table key without a value');
    if (!utf8Key(b, k, o)) throw new TableError('a field table key is not valid UTF-8');
    o = skipValue(b, o, end, depth);
  }
  if (o !== end) throw new TableError('field table overruns its length');
}

/**
 * Tables and arrays nest at most this deep: deeper ones are refused as malformed, so that no
 * later walk of a stored message's headers (dead-lettering, routing) can run out of stack.
 */
export const MAX_DEPTH = 500;
const TOO_DEEP = `field tables and arrays nested more than ${MAX_DEPTH} deep`;

/** True when key bytes [o, end) are UTF-8 (ASCII checked here; anything else by Node). */
function utf8Key(b: Buffer, o: number, end: number): boolean {
  for (let i = o; i < end; i++) if (b[i]! >= 0x80) return isUtf8(b.subarray(o, end));
  return true;
}

/** Width of the fixed-size field types, by type octet (0: not fixed-size). */
const FIXED = new Uint8Array(128);
for (const [t, n] of [
  ['t', 1],
  ['b', 1],
  ['B', 1],
  ['s', 2],
  ['u', 2],
  ['I', 4],
  ['i', 4],
  ['f', 4],
  ['l', 8],
  ['L', 8],
  ['d', 8],
  ['T', 8],
  ['D', 5],
] as const)
  FIXED[t.charCodeAt(0)] = n;

function skipValue(b: Buffer, o: number, end: number, depth: number): number {
  const t = b[o]!;
  o += 1;
  const fixed = t < 128 ? FIXED[t]! : 0;
  if (fixed > 0) o += fixed;
  else if (t !== 0x56 /* V */) {
    if (t !== 0x53 && t !== 0x78 && t !== 0x41 && t !== 0x46)
      throw new TableError(`unknown field type '${String.fromCharCode(t)}' (0x${t.toString(16)})`);
    if (o + 4 > end) throw new TableError('field value overruns its table');
    const stop = o + 4 + b.readUInt32BE(o);
    checkLen(stop, end);
    if (t === 0x46 /* F */) checkTable(b, o + 4, stop, depth + 1);
    else if (t === 0x41 /* A */) {
      if (depth >= MAX_DEPTH) throw new TableError(TOO_DEEP);
      let i = o + 4;
      while (i < stop) i = skipValue(b, i, stop, depth + 1);
      if (i !== stop) throw new TableError('field array overruns its length');
    }
    o = stop;
  }
  if (o > end) throw new TableError('field value overruns its table');
  return o;
}

const L = 0x4c;

/** The field type of a type octet: 'L' (py-amqp's 64-bit integer) is RabbitMQ's 'l'. */
function wireType(octet: number): FieldType {
  return (octet === L ? 'l' : String.fromCharCode(octet)) as FieldType;
}

function checkLen(stop: number, end: number): void {
  if (stop > end) throw new TableError('field length overruns its table');
}

/** Writes a u32 length prefix followed by the table body. */
export function encodeTable(w: OutBuffer, t: FieldTable | undefined | null): void {
  const at = w.pos;
  w.u32(0);
  if (t) {
    for (const key of Object.keys(t)) {
      const v = t[key];
      if (v === undefined) continue;
      w.shortstr(key);
      encodeValue(w, v);
    }
  }
  w.buf.writeUInt32BE(w.pos - at - 4, at);
}

export function encodeArray(w: OutBuffer, a: FieldValue[]): void {
  const at = w.pos;
  w.u32(0);
  for (const v of a) encodeValue(w, v === undefined ? null : v);
  w.buf.writeUInt32BE(w.pos - at - 4, at);
}

function encodeValue(w: OutBuffer, v: FieldValue): void {
  if (v instanceof Typed) {
    encodeTyped(w, v.type, v.value);
    return;
  }
  switch (typeof v) {
    case 'boolean':
      encodeTyped(w, 't', v);
      return;
    case 'string':
      encodeTyped(w, 'S', v);
      return;
    case 'bigint':
      encodeTyped(w, 'l', v);
      return;
    case 'number':
      if (Number.isInteger(v)) {
        encodeTyped(w, v >= -2147483648 && v <= 2147483647 ? 'I' : 'l', v);
      } else {
        encodeTyped(w, 'd', v);
      }
      return;
    case 'object':
      if (v === null) encodeTyped(w, 'V', null);
      else if (Buffer.isBuffer(v)) encodeTyped(w, 'x', v);
      else if (Array.isArray(v)) encodeTyped(w, 'A', v);
      else if (v instanceof Date) encodeTyped(w, 'T', Math.floor(v.getTime() / 1000));
      else if (v instanceof Decimal) encodeTyped(w, 'D', v);
      else encodeTyped(w, 'F', v as FieldTable);
      return;
    default:
      encodeTyped(w, 'V', null);
  }
}

function encodeTyped(w: OutBuffer, type: FieldType, v: FieldValue): void {
  w.u8(type.charCodeAt(0));
  switch (type) {
    case 't':
      w.u8(v ? 1 : 0);
      return;
    case 'b':
      w.ensure(1);
      w.pos = w.buf.writeInt8(Number(v), w.pos);
      return;
    case 'B':
      w.u8(Number(v));
      return;
    case 's':
      w.ensure(2);
      w.pos = w.buf.writeInt16BE(Number(v), w.pos);
      return;
    case 'u':
      w.u16(Number(v));
      return;
    case 'I':
      w.ensure(4);
      w.pos = w.buf.writeInt32BE(Number(v), w.pos);
      return;
    case 'i':
      w.u32(Number(v));
      return;
    case 'l':
      w.ensure(8);
      w.pos = w.buf.writeBigInt64BE(BigInt(v as number | bigint), w.pos);
      return;
    case 'f':
      w.ensure(4);
      w.pos = w.buf.writeFloatBE(Number(v), w.pos);
      return;
    case 'd':
      w.ensure(8);
      w.pos = w.buf.writeDoubleBE(Number(v), w.pos);
      return;
    case 'D': {
      const d = v as Decimal;
      w.u8(d.scale);
      w.u32(d.value);
      return;
    }
    case 'S':
      if (Buffer.isBuffer(v)) w.longstr(v);
      else w.longstr(String(v));
      return;
    case 'x':
      w.longstr(v as Buffer);
      return;
    case 'A':
      encodeArray(w, v as FieldValue[]);
      return;
    case 'T':
      w.u64(v instanceof Date ? Math.floor(v.getTime() / 1000) : Number(v));
      return;
    case 'F':
      encodeTable(w, v as FieldTable);
      return;
    case 'V':
      return;
  }
}
