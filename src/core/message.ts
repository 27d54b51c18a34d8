/**
 * A published message, kept in wire form: the properties exactly as the publisher sent them
 * (flags and property list) and one owned body buffer. Deliveries re-send these bytes; the
 * fields routing needs are peeked without decoding the property table.
 */
import { decodeTable, type FieldTable } from '../protocol/field-table.js';
import { PropertyIndex, propertyOffset } from '../protocol/generated/properties.js';

const NOT_READ = -2;

export class Message {
  readonly exchange: string;
  readonly routingKey: string;
  /** property flags + property list, as received */
  properties: Buffer;
  readonly body: Buffer;
  private mode = NOT_READ;
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
