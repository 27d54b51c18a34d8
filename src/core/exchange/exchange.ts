/**
 * Exchanges route a message to destinations (queues, or exchanges for exchange-to-exchange
 * bindings). Each type keeps its own index of bindings; `match` returns destinations without
 * copying where it can (callers must not mutate the result and dedupe with route epochs).
 */
import { type FieldTable, wireTypeOf, wireTypesOf } from '../../protocol/field-table.js';
import type { Message } from '../message.js';

/** A queue or an exchange, as the target of a binding. */
export interface Destination {
  readonly isQueue: boolean;
  readonly name: string;
  /** stamp of the last routing pass that reached it (dedupe without a Set) */
  routeEpoch: number;
  /** bindings that point at it, for cleanup when it is deleted */
  readonly inbound: Set<Binding>;
}

export class Binding {
  constructor(
    readonly source: Exchange,
    readonly destination: Destination,
    readonly routingKey: string,
    readonly args: FieldTable,
    /** identity of (destination, routing key, arguments) within the source */
    readonly key: string,
    /** definition id in the store (bindings between durable ends); 0 when not stored */
    public storeId = 0,
  ) {}
}

export const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers'] as const;
export type ExchangeType = (typeof EXCHANGE_TYPES)[number];

export abstract class Exchange implements Destination {
  readonly isQueue = false;
  readonly name: string;
  abstract readonly type: ExchangeType;
  readonly durable: boolean;
  readonly autoDelete: boolean;
  readonly internal: boolean;
  readonly args: FieldTable;
  routeEpoch = 0;
  /** definition id in the store (durable exchanges); 0 when not stored */
  storeId = 0;
  readonly inbound = new Set<Binding>();
  /** bindings with this exchange as source, by Binding.key */
  readonly bindings = new Map<string, Binding>();

  constructor(name: string, durable: boolean, autoDelete: boolean, internal: boolean, args: FieldTable) {
    this.name = name;
    this.durable = durable;
    this.autoDelete = autoDelete;
    this.internal = internal;
    this.args = args;
  }

  /** name of the alternate exchange, if any */
  get alternateExchange(): string | undefined {
    const ae = this.args['alternate-exchange'];
    return typeof ae === 'string' ? ae : undefined;
  }

  /** Adds the binding to the routing index (the caller has checked it is new). */
  abstract addBinding(b: Binding): void;
  abstract removeBinding(b: Binding): void;
  /** Destinations for `msg` under `routingKey`; may contain duplicates; must not be mutated. */
  abstract match(msg: Message, routingKey: string): readonly Destination[];
}

/**
 * Canonical text of an arguments table, for binding identity. Each value's wire type counts, as
 * in RabbitMQ: a byte 1 and a long 1 make different bindings (so an unbind naming one leaves the
 * other); the order of the keys does not.
 */
export function argsKey(args: FieldTable): string {
  const keys = Object.keys(args);
  if (keys.length === 0) return '';
  keys.sort();
  return JSON.stringify(keys.map((k) => [k, wireTypeOf(args, k) ?? '', canon(args[k])]));
}

function canon(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return `${v}n`;
  if (Buffer.isBuffer(v)) return { x: v.toString('hex') };
  if (v instanceof Date) return { T: v.getTime() };
  if (Array.isArray(v)) return v.map(canon);
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('type' in o && 'value' in o && Object.keys(o).length === 2)
      return { [String(o['type'])]: canon(o['value']) };
    const keys = Object.keys(o).sort();
    return keys.map((k) => [k, canon(o[k])]);
  }
  return v;
}

/**
 * The binding these arguments name. A binding recovered from a store written before bindings
 * kept their arguments' wire types has none; it is found by its values alone.
 */
export function findBinding(
  src: Exchange,
  dst: Destination,
  routingKey: string,
  args: FieldTable,
): Binding | undefined {
  const b = src.bindings.get(bindingKey(dst, routingKey, args));
  if (b !== undefined || wireTypesOf(args) === undefined) return b;
  // a copy drops the (non-enumerable) wire types: the key such an old binding has
  return src.bindings.get(bindingKey(dst, routingKey, { ...args }));
}

export function bindingKey(dst: Destination, routingKey: string, args: FieldTable): string {
  return `${dst.isQueue ? 'q' : 'e'}:${dst.name}\u0000${routingKey}\u0000${argsKey(args)}`;
}
