/**
 * A virtual host: exchanges, queues and the bindings between them, with the checks and reply
 * texts RabbitMQ gives for each refusal. Routing walks exchange-to-exchange bindings and
 * alternate exchanges, deduplicating destinations with a route epoch instead of a Set.
 */

import { randomBytes } from 'node:crypto';
import {
  accessRefused,
  commandInvalid,
  notFound,
  notImplemented,
  preconditionFailed,
  resourceLocked,
} from '../errors.js';
import { type FieldTable, wireTypeOf, wireTypesOf, withWireTypes } from '../protocol/field-table.js';
import type { Store } from '../storage/store.js';
import { ERLANG_ATOMS } from './erlang-atoms.js';

export type { ConfirmTarget } from '../storage/store.js';

import { DeadLetterRouter, deadLettered, extraKeys, isDeadLetterCycle } from './dead-letter.js';
import { DefaultExchange } from './exchange/default.js';
import {
  Binding,
  bindingKey,
  type Destination,
  EXCHANGE_TYPES,
  type Exchange,
  type ExchangeType,
  findBinding,
} from './exchange/exchange.js';
import { validateXMatch } from './exchange/headers-match.js';
import { makeExchange } from './exchange/make.js';
import { RouteWalk } from './exchange/walk.js';
import type { Message } from './message.js';
import { Queue } from './queue.js';
import { argsEquivalence, argTypeName, describe, queueType, validateQueueArgs } from './queue-args.js';
import type { DeathReason, QueueEntry } from './queue-entry.js';
import { armQueueExpiry } from './queue-expiry.js';
import { StreamQueue } from './stream-queue.js';

export interface QueueDeclare {
  name: string;
  passive: boolean;
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  args: FieldTable;
}

const PREDECLARED: [string, ExchangeType][] = [
  ['amq.direct', 'direct'],
  ['amq.fanout', 'fanout'],
  ['amq.topic', 'topic'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
];

export class VHost {
  readonly name: string;
  readonly store: Store;
  readonly exchanges = new Map<string, Exchange>();
  readonly queues = new Map<string, Queue>();
  readonly defaultExchange: DefaultExchange;
  /** the routing walk through exchanges (exchange/walk.ts) */
  private readonly walk = new RouteWalk((name) => this.exchanges.get(name));
  private routed: Queue[] = [];
  /** dead letters, routed one at a time (core/dead-letter.ts) */
  private readonly deadLetters = new DeadLetterRouter((q, m, r) => this.routeDead(q, m, r));

  constructor(name: string, store: Store) {
    this.name = name;
    this.store = store;
    this.defaultExchange = new DefaultExchange(this.queues);
    this.exchanges.set('', this.defaultExchange);
    for (const [n, t] of PREDECLARED) this.exchanges.set(n, makeExchange(n, t, true, false, false, {}));
    // RabbitMQ's firehose tracer publishes here; it exists (internal) so clients find it
    this.exchanges.set(
      'amq.rabbitmq.trace',
      makeExchange('amq.rabbitmq.trace', 'topic', true, false, true, {}),
    );
  }

  private q(name: string): string {
    return `queue '${name}' in vhost '${this.name}'`;
  }

  private x(name: string): string {
    return `exchange '${name}' in vhost '${this.name}'`;
  }

  // ------------------------------------------------------------------ exchanges

  /** exchange.declare; returns the (new or existing) exchange. */
  declareExchange(
    name: string,
    type: string,
    passive: boolean,
    durable: boolean,
    autoDelete: boolean,
    internal: boolean,
    args: FieldTable,
    recoveredId = 0,
  ): Exchange {
    if (name === '') throw accessRefused('operation not permitted on the default exchange');
    const existing = this.exchanges.get(name);
    if (passive) {
      if (!existing) throw notFound(`no ${this.x(name)}`);
      return existing;
    }
    if (!(EXCHANGE_TYPES as readonly string[]).includes(type)) {
      // RabbitMQ: "invalid" when the name is an existing Erlang atom (erlang-atoms.ts), else "unknown"
      const atom = type === '' || ERLANG_ATOMS.has(type);
      throw commandInvalid(`${atom ? 'invalid' : 'unknown'} exchange type '${type}'`);
    }
    if (!existing && name.startsWith('amq.')) {
      throw accessRefused(`exchange name '${name}' contains reserved prefix 'amq.*'`);
    }
    const ae = args['alternate-exchange'];
    if (ae !== undefined && typeof ae !== 'string') {
      throw preconditionFailed(
        `invalid type '${argTypeName(args, 'alternate-exchange')}' for arg 'alternate-exchange' in ${this.x(name)}`,
      );
    }
    if (existing) {
      const diff = (arg: string, got: unknown, cur: unknown) => {
        throw preconditionFailed(
          `inequivalent arg '${arg}' for ${this.x(name)}: received '${String(got)}' but current is '${String(cur)}'`,
        );
      };
      if (existing.type !== type) diff('type', type, existing.type);
      if (existing.durable !== durable) diff('durable', durable, existing.durable);
      if (existing.autoDelete !== autoDelete) diff('auto_delete', autoDelete, existing.autoDelete);
      if (existing.internal !== internal) diff('internal', internal, existing.internal);
      const cur = existing.args['alternate-exchange'];
      const got = args['alternate-exchange'];
      if (cur !== got) {
        const text =
          cur !== undefined && got !== undefined
            ? `received '${String(got)}' but current is '${String(cur)}'`
            : `received ${describe(got, wireTypeOf(args, 'alternate-exchange'))} but current is ${describe(cur, wireTypeOf(existing.args, 'alternate-exchange'))}`;
        throw preconditionFailed(`inequivalent arg 'alternate-exchange' for ${this.x(name)}: ${text}`);
      }
      return existing;
    }
    const ex = makeExchange(name, type as ExchangeType, durable, autoDelete, internal, args);
    if (durable) {
      ex.storeId =
        recoveredId ||
        this.store.putDefinition({
          kind: 'exchange',
          vhost: this.name,
          name,
          type,
          autoDelete,
          internal,
          args,
          argTypes: wireTypesOf(args),
        });
    }
    this.exchanges.set(name, ex);
    return ex;
  }

  /** exchange.delete; deleting a missing exchange is not an error (as RabbitMQ 3.x). */
  deleteExchange(name: string, ifUnused: boolean): void {
    if (name === '') throw accessRefused('operation not permitted on the default exchange');
    if (name.startsWith('amq.')) {
      throw accessRefused(`deletion of system exchange '${name}' in vhost '${this.name}' not allowed`);
    }
    const ex = this.exchanges.get(name);
    if (!ex) return;
    if (ifUnused && ex.bindings.size > 0) throw preconditionFailed(`${this.x(name)} in use`);
    this.removeExchange(ex);
  }

  private removeExchange(ex: Exchange): void {
    this.exchanges.delete(ex.name);
    if (ex.storeId !== 0) this.store.deleteDefinition(ex.storeId);
    for (const b of [...ex.bindings.values()]) this.dropBinding(b, false);
    for (const b of [...ex.inbound]) this.dropBinding(b, true);
  }

  getExchange(name: string): Exchange {
    const ex = this.exchanges.get(name);
    if (!ex) throw notFound(`no ${this.x(name)}`);
    return ex;
  }

  // ------------------------------------------------------------------ queues

  /** queue.declare; `owner` is the declaring connection's id. */
  declareQueue(d: QueueDeclare, owner: number, recoveredId = 0): Queue {
    // as RabbitMQ: an exclusive queue is never durable, whatever the declare says (so a redeclare
    // that differs only in durable is no inequivalence)
    if (d.exclusive && d.durable) d = { ...d, durable: false };
    let name = d.name;
    if (name === '') {
      if (d.passive) throw notFound(`no ${this.q(name)}`);
      const t = d.args['x-queue-type'];
      if (t === 'quorum' || t === 'stream') {
        throw preconditionFailed(`Cannot declare a server-named queue for type rabbit_${t}_queue`);
      }
      name = `amq.gen-${randomBytes(16).toString('base64url').slice(0, 22)}`;
    }
    const existing = this.queues.get(name);
    if (d.passive) {
      if (!existing) throw notFound(`no ${this.q(name)}`);
      this.checkExclusive(existing, owner);
      existing.lastUsed = Date.now(); // a passive declare is use, for x-expires (as RabbitMQ)
      return existing;
    }
    if (existing) {
      this.checkExclusive(existing, owner);
      if (existing.exclusive !== d.exclusive) throw this.lockedError(existing);
      existing.lastUsed = Date.now();
      const diff = (arg: string, got: boolean, cur: boolean) => {
        throw preconditionFailed(
          `inequivalent arg '${arg}' for ${this.q(name)}: received '${got}' but current is '${cur}'`,
        );
      };
      if (existing.durable !== d.durable) diff('durable', d.durable, existing.durable);
      if (existing.autoDelete !== d.autoDelete) diff('auto_delete', d.autoDelete, existing.autoDelete);
      const argDiff = argsEquivalence(existing.args, d.args);
      if (argDiff) throw preconditionFailed(`inequivalent arg ${argDiff.replace('%Q', this.q(name))}`);
      return existing;
    }
    // (a server-named queue is amq.gen-…, and a durable one comes back from the store so named)
    if (name.startsWith('amq.') && d.name !== '' && recoveredId === 0) {
      throw accessRefused(`queue name '${name}' contains reserved prefix 'amq.*'`);
    }
    // a queue recovered from the store was valid when declared; later, stricter checks must not drop it
    const invalid = recoveredId === 0 ? validateQueueArgs(d, this.q(name)) : null;
    if (invalid) throw preconditionFailed(invalid);
    const Type = queueType(d.args) === 'stream' ? StreamQueue : Queue;
    const q = new Type(name, d.durable, d.autoDelete, d.exclusive ? owner : 0, d.args);
    q.deadLetters = this;
    if (d.durable && !d.exclusive) {
      // exclusive queues die with their connection, so only shared durable queues are stored
      const id =
        recoveredId ||
        this.store.putDefinition({
          kind: 'queue',
          vhost: this.name,
          name,
          autoDelete: d.autoDelete,
          args: d.args,
          argTypes: wireTypesOf(d.args),
        });
      q.attachStore(this.store, id);
    }
    this.queues.set(name, q);
    this.armQueueExpiry(q);
    return q;
  }

  /** The queue, checked for existence and exclusive ownership. */
  getQueue(name: string, owner: number): Queue {
    const q = this.queues.get(name);
    if (!q) throw notFound(`no ${this.q(name)}`);
    this.checkExclusive(q, owner);
    return q;
  }

  private checkExclusive(q: Queue, owner: number): void {
    if (q.owner !== 0 && q.owner !== owner) throw this.lockedError(q);
  }

  private lockedError(q: Queue) {
    return resourceLocked(
      `cannot obtain exclusive access to locked ${this.q(q.name)}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`,
    );
  }

  /** queue.delete; returns the number of ready messages deleted. Missing queue: 0. */
  deleteQueue(name: string, ifUnused: boolean, ifEmpty: boolean, owner: number): number {
    const q = this.queues.get(name);
    if (!q) return 0;
    this.checkExclusive(q, owner);
    // RabbitMQ's streams ignore if-unused and if-empty; its quorum queues refuse them (540)
    const stream = q instanceof StreamQueue;
    if (queueType(q.args) === 'quorum' && (ifUnused || ifEmpty)) {
      const flag = ifUnused ? 'if-unused' : 'if-empty';
      throw notImplemented(
        `cannot delete ${this.q(name)}. queue.delete operations with ${flag} flag set are not supported by quorum queues`,
      );
    }
    if (ifUnused && !stream && q.consumerCount > 0) throw preconditionFailed(`${this.q(name)} in use`);
    if (ifEmpty && !stream && q.messageCount > 0) throw preconditionFailed(`${this.q(name)} not empty`);
    return this.removeQueue(q);
  }

  /** Recovery: a stored binding comes back through the live path; false if an end is gone. */
  recoverBinding(def: Record<string, unknown>, id: number): boolean {
    const src = this.exchanges.get(String(def['source']));
    const name = String(def['destination']);
    const dst = def['destinationKind'] === 'queue' ? this.queues.get(name) : this.exchanges.get(name);
    if (src === undefined || dst === undefined) return false;
    const args = withWireTypes((def['args'] ?? {}) as FieldTable, def['argTypes']);
    this.addBinding(src, dst, String(def['routingKey']), args, id);
    return true;
  }

  /** x-expires: the queue is deleted once unused that long (core/queue-expiry.ts). */
  private armQueueExpiry(q: Queue): void {
    armQueueExpiry(q, () => {
      if (this.queues.get(q.name) === q) this.removeQueue(q);
    });
  }

  /** DeadLetterSink: republishes a dead message to the queue's dead-letter exchange. */
  deadLetter(queue: Queue, msg: Message, reason: DeathReason, entry?: QueueEntry): void {
    this.deadLetters.add(queue, msg, reason, entry);
  }

  /** Routes one dead letter (the dead-letter router calls it, one at a time). */
  private routeDead(queue: Queue, msg: Message, reason: DeathReason): void {
    const ex = this.exchanges.get(queue.deadLetterExchange ?? '');
    if (ex === undefined) return; // RabbitMQ drops it when the exchange does not exist
    const dead = deadLettered(queue, msg, reason);
    const keys = queue.deadLetterRoutingKey === undefined ? extraKeys(msg) : undefined;
    for (const q of this.route(ex, dead, keys, [])) if (!isDeadLetterCycle(dead, q)) q.enqueue(dead);
  }

  /** Removes a queue and its bindings, cancelling its consumers. */
  removeQueue(q: Queue): number {
    if (this.queues.get(q.name) !== q) return 0;
    this.queues.delete(q.name);
    if (q.id !== 0) this.store.deleteDefinition(q.id);
    for (const b of [...q.inbound]) this.dropBinding(b, true);
    // the last publish's routing scratch may name it: a deleted queue is not kept alive (a
    // new array, not a truncated one: a publish may still be walking the old one)
    this.routed = [];
    this.defaultExchange.forgetLastMatch();
    return q.markDeleted();
  }

  purgeQueue(name: string, owner: number): number {
    const q = this.getQueue(name, owner);
    if (q instanceof StreamQueue)
      throw notImplemented(`queue.purge not supported by stream queues ${this.q(name)}`);
    return q.purge();
  }

  /** Exclusive queues die with their connection. */
  connectionClosed(owner: number): void {
    for (const q of [...this.queues.values()]) if (q.owner === owner) this.removeQueue(q);
  }

  // ------------------------------------------------------------------ bindings

  bindQueue(queue: string, exchange: string, routingKey: string, args: FieldTable, owner: number): void {
    const ex = this.bindableSource(exchange);
    const q = this.getQueue(queue, owner);
    this.addBinding(ex, q, routingKey, args);
  }

  /** Unbinding what does not exist (binding, queue or exchange) succeeds, as in RabbitMQ 3.x. */
  unbindQueue(queue: string, exchange: string, routingKey: string, args: FieldTable, owner: number): void {
    if (exchange === '') throw accessRefused('operation not permitted on the default exchange');
    const ex = this.exchanges.get(exchange);
    const q = this.queues.get(queue);
    if (ex === undefined || q === undefined) return;
    const b = findBinding(ex, q, routingKey, args);
    if (b === undefined) return;
    this.checkExclusive(q, owner);
    this.dropBinding(b, true);
  }

  bindExchange(destination: string, source: string, routingKey: string, args: FieldTable): void {
    const src = this.bindableSource(source);
    const dst = this.bindableSource(destination);
    this.addBinding(src, dst, routingKey, args);
  }

  unbindExchange(destination: string, source: string, routingKey: string, args: FieldTable): void {
    if (source === '' || destination === '')
      throw accessRefused('operation not permitted on the default exchange');
    const src = this.exchanges.get(source);
    const dst = this.exchanges.get(destination);
    if (src === undefined || dst === undefined) return;
    const b = findBinding(src, dst, routingKey, args);
    if (b) this.dropBinding(b, true);
  }

  private bindableSource(name: string): Exchange {
    if (name === '') throw accessRefused('operation not permitted on the default exchange');
    return this.getExchange(name);
  }

  private addBinding(
    src: Exchange,
    dst: Destination,
    routingKey: string,
    args: FieldTable,
    recoveredId = 0,
  ): void {
    if (src.type === 'headers') {
      const bad = validateXMatch(args);
      if (bad) throw preconditionFailed(bad);
    }
    const key = bindingKey(dst, routingKey, args);
    if (findBinding(src, dst, routingKey, args) !== undefined) return;
    const b = new Binding(src, dst, routingKey, args, key);
    const durableDst = dst.isQueue ? (dst as Queue).id !== 0 : (dst as Exchange).durable;
    if (src.durable && src.name !== '' && durableDst) {
      b.storeId =
        recoveredId ||
        this.store.putDefinition({
          kind: 'binding',
          vhost: this.name,
          source: src.name,
          destinationKind: dst.isQueue ? 'queue' : 'exchange',
          destination: dst.name,
          routingKey,
          args,
          argTypes: wireTypesOf(args),
        });
    }
    src.bindings.set(key, b);
    dst.inbound.add(b);
    src.addBinding(b);
  }

  /** Removes a binding; an auto-delete source goes when its last binding does. */
  private dropBinding(b: Binding, cascade: boolean): void {
    const src = b.source;
    if (!src.bindings.delete(b.key)) return;
    if (b.storeId !== 0) this.store.deleteDefinition(b.storeId);
    b.destination.inbound.delete(b);
    src.removeBinding(b);
    if (cascade && src.autoDelete && src.bindings.size === 0 && this.exchanges.get(src.name) === src) {
      this.removeExchange(src);
    }
  }

  // ------------------------------------------------------------------ routing

  /**
   * The queues `msg` reaches from `ex`, each once; alternate exchanges are tried when nothing
   * matched. The returned array is reused by the next call.
   */
  route(ex: Exchange, msg: Message, extraKeys?: readonly string[], out: Queue[] = this.routed): Queue[] {
    return this.walk.route(ex, msg, extraKeys, out);
  }
}

export class VHostRegistry {
  private readonly vhosts = new Map<string, VHost>();

  add(v: VHost): VHost {
    this.vhosts.set(v.name, v);
    return v;
  }

  get(name: string): VHost | undefined {
    return this.vhosts.get(name);
  }

  all(): IterableIterator<VHost> {
    return this.vhosts.values();
  }
}
