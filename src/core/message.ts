/**
 * A published message, kept in wire form: the properties exactly as the publisher sent them
 * (flags and property list) and one owned body buffer. Deliveries re-send these bytes; the
 * fields routing needs are peeked without decoding the property table.
 */
import { isUtf8 } from 'node:buffer';
import { decodeTable, type FieldTable, type FieldValue, Typed } from '../protocol/field-table.js';
import {
  type BasicProperties,
  decodeBasicProperties,
  encodeBasicProperties,
  PropertyIndex,
  propertyOffset,
} from '../protocol/generated/properties.js';
import { OutBuffer } from '../protocol/out-buffer.js';

const NOT_READ = -2;

export class Message {
  readonly exchange: string;
  readonly routingKey: string;
  /** property flags + property list, as received */
  properties: Buffer;
  /** replaced by an empty buffer when the body goes back to the pool (amqp/body-recycler.ts) */
  body: Buffer;
  /**
   * The body came from the pool and this message is its only user so far: published into
   * exactly one queue and not stored. Anything that shares the body clears it.
   */
  reusable = false;
  /** shared body record id in the store (0: none) */
  storeId = 0;
  /** durable queue entries referencing it in the store */
  storeRefs = 0;
  /**
   * Routing keys from a BCC header, which left the headers at publish: a dead letter is routed
   * under them again, as RabbitMQ keeps them with the message (not in the store, though).
   */
  bcc: readonly string[] | undefined = undefined;
  private mode = NOT_READ;
  private prio = NOT_READ;
  private headersCache: FieldTable | null | undefined = undefined;

  constructor(exchange: string, routingKey: string, properties: Buffer, body: Buffer) {
    this.exchange = exchange;
    this.routingKey = routingKey;
    this.properties = properties;
    this.body = body;
  }

  /** delivery-mode (2 = persistent), 0 when absent */
  get deliveryMode(): number {
    if (this.mode === NOT_READ) {
      const o = propertyOffset(this.properties, 0, PropertyIndex.DELIVERY_MODE);
      this.mode = o < 0 ? 0 : this.properties[o]!;
    }
    return this.mode;
  }

  /** priority property, 0 when absent */
  get priority(): number {
    if (this.prio === NOT_READ) {
      const o = propertyOffset(this.properties, 0, PropertyIndex.PRIORITY);
      this.prio = o < 0 ? 0 : this.properties[o]!;
    }
    return this.prio;
  }

  /** Per-message TTL from the expiration property, in ms (validated at publish); -1 when absent. */
  expirationMs(): number {
    const e = this.shortProperty(PropertyIndex.EXPIRATION);
    return e === undefined ? -1 : Number(e);
  }

  get persistent(): boolean {
    return this.deliveryMode === 2;
  }

  /** A shortstr property (reply-to, user-id, expiration…) or undefined. */
  shortProperty(index: number): string | undefined {
    const o = propertyOffset(this.properties, 0, index);
    if (o < 0) return undefined;
    const n = this.properties[o]!;
    return this.properties.toString('utf8', o + 1, o + 1 + n);
  }

  /** The headers table, decoded once (headers exchange, dead-lettering); null when absent. */
  headers(): FieldTable | null {
    if (this.headersCache === undefined) {
      const o = propertyOffset(this.properties, 0, PropertyIndex.HEADERS);
      if (o < 0) this.headersCache = null;
      else {
        const n = this.properties.readUInt32BE(o);
        this.headersCache = decodeTable(this.properties, o + 4, o + 4 + n);
      }
    }
    return this.headersCache;
  }
}

/** The short-string properties, by name and property index. */
const SHORT_STRINGS = [
  ['contentType', PropertyIndex.CONTENT_TYPE],
  ['contentEncoding', PropertyIndex.CONTENT_ENCODING],
  ['correlationId', PropertyIndex.CORRELATION_ID],
  ['replyTo', PropertyIndex.REPLY_TO],
  ['expiration', PropertyIndex.EXPIRATION],
  ['messageId', PropertyIndex.MESSAGE_ID],
  ['type', PropertyIndex.TYPE],
  ['userId', PropertyIndex.USER_ID],
  ['appId', PropertyIndex.APP_ID],
  ['clusterId', PropertyIndex.CLUSTER_ID],
] as const;

/**
 * The properties re-encoded after `edit` changed them. `props.headers` holds every header value
 * wrapped in its wire type (field-table `Typed`), so the headers not edited keep their types.
 */
export function editProperties(properties: Buffer, edit: (props: BasicProperties) => void): Buffer {
  const props = decodeBasicProperties(properties, 0, properties.length);
  const o = propertyOffset(properties, 0, PropertyIndex.HEADERS);
  if (o >= 0) props.headers = decodeTable(properties, o + 4, o + 4 + properties.readUInt32BE(o), true);
  // a short string that is not UTF-8 decoded with replacement characters: keep its bytes
  for (const [name, index] of SHORT_STRINGS) {
    const v = props[name];
    if (typeof v !== 'string' || !v.includes('\uFFFD')) continue;
    const at = propertyOffset(properties, 0, index);
    const raw = properties.subarray(at + 1, at + 1 + properties[at]!);
    if (!isUtf8(raw)) (props as Record<string, unknown>)[name] = Buffer.from(raw); // OutBuffer.shortstr writes it as is
  }
  edit(props);
  const w = new OutBuffer();
  encodeBasicProperties(w, props);
  return Buffer.concat(w.take());
}

/** The plain value of a header from `editProperties` (unwrapped from its wire type). */
export function plain(v: FieldValue): FieldValue {
  return v instanceof Typed ? v.value : v;
}

/** A copy of `msg` whose headers say how often it was delivered before (quorum queues). */
export function withDeliveryCount(msg: Message, count: number): Message {
  return withLongHeader(msg, 'x-delivery-count', count);
}

/** A copy of `msg` with header `name` set to the long (`l`) `n`, after the headers it has. */
export function withLongHeader(msg: Message, name: string, n: number): Message {
  msg.reusable = false;
  const properties = editProperties(msg.properties, (props) => {
    props.headers = { ...(props.headers ?? {}), [name]: new Typed('l', n) };
  });
  return new Message(msg.exchange, msg.routingKey, properties, msg.body);
}
