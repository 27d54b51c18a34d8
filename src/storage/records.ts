/**
 * Binary keys and values of the LMDB store. Keys are fixed-width big-endian: a message is
 * `u32 queueId | u64 seq` (so a queue's messages are one key range, in order), a shared body
 * `u64 bodyId`, a definition `u32 id`. Message values keep the message in wire form.
 *
 *   message, inline:  u8 1 | u32 deliveries | f64 expiresAt | wire message
 *   message, shared:  u8 2 | u32 deliveries | f64 expiresAt | u64 bodyId
 *   wire message:     u8 len | exchange | u8 len | routing key | u32 len | properties | body
 */
import type { RecoveredMessage, StoredMessage } from './store.js';

export const KIND_INLINE = 1;
export const KIND_SHARED = 2;
const HEAD = 1 + 4 + 8;
const TWO32 = 4294967296;

/** A message key, written into `out` (12 bytes) — callers may reuse one scratch buffer. */
export function messageKey(out: Buffer, queueId: number, seq: number): Buffer {
  out.writeUInt32BE(queueId, 0);
  const hi = Math.floor(seq / TWO32);
  out.writeUInt32BE(hi, 4);
  out.writeUInt32BE(seq - hi * TWO32, 8);
  return out;
}

export function keySeq(key: Buffer): number {
  return key.readUInt32BE(4) * TWO32 + key.readUInt32BE(8);
}

export function u64Key(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  const hi = Math.floor(n / TWO32);
  b.writeUInt32BE(hi, 0);
  b.writeUInt32BE(n - hi * TWO32, 4);
  return b;
}

export function readU64Key(b: Buffer): number {
  return b.readUInt32BE(0) * TWO32 + b.readUInt32BE(4);
}

export function u32Key(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/**
 * The body's length in a wire message at b[o, end) (u8 len | exchange | u8 len | routing key |
 * u32 len | properties | body); 0 for one too short to hold its own lengths.
 */
export function wireBodyLength(b: Buffer, o: number, end: number): number {
  if (o >= end) return 0;
  o += 1 + b[o]!;
  if (o >= end) return 0;
  o += 1 + b[o]!;
  if (o + 4 > end) return 0;
  return Math.max(0, end - (o + 4 + b.readUInt32BE(o)));
}

export function wireLength(m: StoredMessage): number {
  return 2 + utf8Length(m.exchange) + utf8Length(m.routingKey) + 4 + m.properties.length + m.body.length;
}

/** Short ASCII strings (most exchange names and routing keys) are measured and written here in JS. */
const SHORT_ASCII = 64;

function utf8Length(s: string): number {
  const n = s.length;
  if (n <= SHORT_ASCII) {
    let i = 0;
    while (i < n && s.charCodeAt(i) < 0x80) i++;
    if (i === n) return n;
  }
  return Buffer.byteLength(s, 'utf8');
}

function writeWire(b: Buffer, o: number, m: StoredMessage): number {
  o = writeShort(b, o, m.exchange);
  o = writeShort(b, o, m.routingKey);
  b.writeUInt32BE(m.properties.length, o);
  o += 4;
  m.properties.copy(b, o);
  o += m.properties.length;
  m.body.copy(b, o);
  return o + m.body.length;
}

function writeShort(b: Buffer, o: number, s: string): number {
  const len = s.length;
  if (len <= SHORT_ASCII) {
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[o + 1 + i] = c;
    }
    if (i === len) {
      b[o] = len;
      return o + 1 + len;
    }
  }
  const n = b.write(s, o + 1, 'utf8');
  b[o] = n;
  return o + 1 + n;
}

export function inlineValue(deliveries: number, expiresAt: number, m: StoredMessage): Buffer {
  const b = Buffer.allocUnsafe(HEAD + wireLength(m));
  b[0] = KIND_INLINE;
  b.writeUInt32BE(deliveries, 1);
  b.writeDoubleBE(expiresAt, 5);
  writeWire(b, HEAD, m);
  return b;
}

export function sharedValue(deliveries: number, expiresAt: number, bodyId: number): Buffer {
  const b = Buffer.allocUnsafe(HEAD + 8);
  b[0] = KIND_SHARED;
  b.writeUInt32BE(deliveries, 1);
  b.writeDoubleBE(expiresAt, 5);
  const hi = Math.floor(bodyId / TWO32);
  b.writeUInt32BE(hi, HEAD);
  b.writeUInt32BE(bodyId - hi * TWO32, HEAD + 4);
  return b;
}

export function bodyValue(m: StoredMessage): Buffer {
  const b = Buffer.allocUnsafe(wireLength(m));
  writeWire(b, 0, m);
  return b;
}

/**
 * A stored message read back. Its properties and body are views into the record when it is the
 * caller's own, or (copy = true, reading lmdb-js's shared read buffer) copies: the body from
 * Node's buffer pool when small, the properties shared with the previous record's when equal.
 */
export interface WireMessage {
  exchange: string;
  routingKey: string;
  properties: Buffer;
  body: Buffer;
  storeId: number;
  storeRefs: number;
}

export class CorruptRecord extends Error {}

/**
 * A short string field decoded from records read in a row: when its bytes repeat the previous
 * record's (a backlog's exchange and routing key mostly do), the previous string is reused
 * instead of decoding a new one.
 */
class RepeatedString {
  private readonly bytes = Buffer.alloc(255);
  private len = -1;
  private str = '';

  read(b: Buffer, at: number, len: number): string {
    const last = this.bytes;
    if (len === this.len) {
      let i = 0;
      while (i < len && b[at + i] === last[i]) i++;
      if (i === len) return this.str;
    }
    b.copy(last, 0, at, at + len);
    this.len = len;
    this.str = b.toString('utf8', at, at + len);
    return this.str;
  }
}

const LAST_EXCHANGE = new RepeatedString();
const LAST_ROUTING_KEY = new RepeatedString();

/**
 * The properties of records read in a row: when their bytes repeat the previous record's (a
 * backlog's mostly do, often just delivery-mode 2) the previous copy is shared. Properties are
 * never written to once a message has them.
 */
class RepeatedBytes {
  private last = Buffer.alloc(0);

  read(b: Buffer, at: number, len: number): Buffer {
    const last = this.last;
    if (len === last.length) {
      let i = 0;
      while (i < len && b[at + i] === last[i]) i++;
      if (i === len) return last;
    }
    const copy = Buffer.allocUnsafe(len);
    b.copy(copy, 0, at, at + len);
    this.last = copy;
    return copy;
  }
}

const LAST_PROPERTIES = new RepeatedBytes();

export function readWire(b: Buffer, o: number, end = b.length, copy = false): WireMessage {
  // bounds are checked against `end`: b may be lmdb-js's shared read buffer, longer than the record
  if (o + 1 > end) throw new CorruptRecord('message record is truncated');
  const el = b[o]!;
  if (o + 2 + el > end) throw new CorruptRecord('message record is truncated');
  const exchange = LAST_EXCHANGE.read(b, o + 1, el);
  o += 1 + el;
  const rl = b[o]!;
  if (o + 5 + rl > end) throw new CorruptRecord('message record is truncated');
  const routingKey = LAST_ROUTING_KEY.read(b, o + 1, rl);
  o += 1 + rl;
  const pl = b.readUInt32BE(o);
  o += 4;
  if (o + pl > end) throw new CorruptRecord('message record is truncated');
  if (!copy) {
    return {
      exchange,
      routingKey,
      properties: b.subarray(o, o + pl),
      body: b.subarray(o + pl, end),
      storeId: 0,
      storeRefs: 0,
    };
  }
  const properties = LAST_PROPERTIES.read(b, o, pl);
  o += pl;
  const body = Buffer.allocUnsafe(end - o);
  b.copy(body, 0, o, end);
  return { exchange, routingKey, properties, body, storeId: 0, storeRefs: 0 };
}

export interface MessageRecord {
  kind: number;
  deliveries: number;
  expiresAt: number;
  /** inline: the message; shared: undefined */
  wire: WireMessage | undefined;
  /** shared: the body id */
  bodyId: number;
}

export function readMessageRecord(b: Buffer, size = b.length, copy = false): MessageRecord {
  if (size < HEAD) throw new CorruptRecord(`message record of ${size} bytes is too short`);
  const kind = b[0]!;
  const deliveries = b.readUInt32BE(1);
  const expiresAt = b.readDoubleBE(5);
  if (kind === KIND_INLINE) {
    return { kind, deliveries, expiresAt, wire: readWire(b, HEAD, size, copy), bodyId: 0 };
  }
  if (kind === KIND_SHARED && size === HEAD + 8) {
    return {
      kind,
      deliveries,
      expiresAt,
      wire: undefined,
      bodyId: b.readUInt32BE(HEAD) * TWO32 + b.readUInt32BE(HEAD + 4),
    };
  }
  throw new CorruptRecord(`unknown message record kind ${kind}`);
}

/**
 * A stored message record as recovery hands it out, for both stores: the message (a shared
 * body is read once per `cache`, so the queues sharing it share one object), the delivery
 * count (the record's, or a clean stop's if higher), or null when its shared body is gone.
 */
export function recoveredMessage(
  seq: number,
  r: MessageRecord,
  stopCount: number | undefined,
  bodyOf: (id: number) => Buffer | undefined,
  cache: Map<number, StoredMessage> | null,
): RecoveredMessage | null {
  let m: StoredMessage | undefined;
  if (r.kind === KIND_SHARED) {
    m = cache?.get(r.bodyId);
    if (m === undefined) {
      const body = bodyOf(r.bodyId);
      if (body === undefined) return null; // nothing to deliver
      m = readWire(body, 0);
      m.storeId = r.bodyId;
      cache?.set(r.bodyId, m);
    }
  } else m = r.wire!;
  return {
    seq,
    deliveries: Math.max(r.deliveries, stopCount ?? 0),
    message: m,
    expiresAt: r.expiresAt,
    shared: r.kind === KIND_SHARED,
    delivRecord: stopCount !== undefined,
  };
}

/**
 * lmdb-js value codec of the messages db. Values are written as given (already encoded). A
 * custom decoder is handed lmdb-js's shared read buffer instead of a fresh copy of every
 * record (a separate ArrayBuffer each, costly to allocate and to collect), and copies out only
 * the properties and body.
 */
/**
 * lmdb-js key codec of the messages db. Keys are written as given; a key read back is copied
 * into one scratch buffer instead of a new ArrayBuffer per record (lmdb-js's binary keys are
 * slices). Every reader uses the key at once or copies it; lmdb-js itself only writes the last
 * key back to reposition a cursor.
 */
const KEY = Buffer.alloc(12);
export const MESSAGE_KEYS = {
  writeKey: (key: Buffer, target: Buffer, start: number): number => {
    target.set(key, start);
    return start + key.length;
  },
  readKey: (source: Buffer, start: number, end: number): Buffer => {
    if (end - start !== 12) return Buffer.from(source.subarray(start, end));
    for (let i = 0; i < 12; i++) KEY[i] = source[start + i]!;
    return KEY;
  },
};

export const MESSAGE_CODEC = {
  encode: (v: Buffer): Buffer => v,
  decode: (b: Buffer, size: number): MessageRecord => readMessageRecord(b, size, true),
};

/** What MESSAGE_META reads of a record: one object, reused for every record read. */
export interface RecordMeta {
  kind: number;
  expiresAt: number;
  /** inline: the wire message's size */
  wire: number;
  /** shared: the body id */
  bodyId: number;
  /** inline: the body's length */
  body: number;
}

const META: RecordMeta = { kind: 0, expiresAt: 0, wire: 0, bodyId: 0, body: 0 };

/** lmdb-js value codec reading a message record's head only (kind, expiry, size or body id). */
export const MESSAGE_META = {
  encode: (v: Buffer): Buffer => v,
  decode: (b: Buffer, size: number): RecordMeta => {
    if (size < HEAD) throw new CorruptRecord(`message record of ${size} bytes is too short`);
    META.kind = b[0]!;
    META.expiresAt = b.readDoubleBE(5);
    META.wire = size - HEAD;
    META.bodyId =
      META.kind === KIND_SHARED && size === HEAD + 8
        ? b.readUInt32BE(HEAD) * TWO32 + b.readUInt32BE(HEAD + 4)
        : 0;
    META.body = META.kind === KIND_SHARED ? 0 : wireBodyLength(b, HEAD, size);
    return META;
  },
};
