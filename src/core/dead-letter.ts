/**
 * Dead-lettering (x-dead-letter-exchange): a message that expires, overflows or is rejected
 * without requeue is republished to the queue's dead-letter exchange with RabbitMQ's x-death
 * history in its headers.
 */
import { type FieldTable, type FieldValue, Typed } from '../protocol/field-table.js';
import { Deque } from '../util/deque.js';
import { editProperties, Message, plain } from './message.js';
import type { Queue } from './queue.js';
import type { DeathReason, QueueEntry } from './queue-entry.js';

/**
 * The message as it leaves `queue` for its dead-letter exchange, as RabbitMQ 3.10 writes it:
 * x-death gains an entry for this queue and reason (or counts the same death again, keeping its
 * first time, and moves it to the front, its keys sorted; older entries stay as they were); the
 * x-first-death-* headers come with the first x-death; a per-message expiration moves into the
 * entry as original-expiration; CC goes when a
 * dead-letter routing key replaces the routing keys; the headers are sorted by key. Every other
 * header keeps its wire type.
 */
export function deadLettered(queue: Queue, msg: Message, reason: DeathReason): Message {
  const properties = editProperties(msg.properties, (props) => {
    const headers: FieldTable = { ...(props.headers ?? {}) };
    const had = plain(headers['x-death']);
    const deaths = Array.isArray(had) ? grouped(had) : [];
    const routingKeys: string[] = [msg.routingKey, ...(ccKeys(msg) ?? [])];
    const i = deaths.findIndex((d) => sameDeath(d, queue.name, reason));
    if (i >= 0) {
      const d = { ...(plain(deaths[i]!) as FieldTable) };
      d['count'] = new Typed('l', nextCount(plain(d['count'])));
      deaths.splice(i, 1);
      deaths.unshift(d);
    } else {
      const d: FieldTable = {
        count: new Typed('l', 1),
        reason,
        queue: queue.name,
        time: new Date(),
        exchange: msg.exchange,
        'routing-keys': routingKeys,
      };
      if (props.expiration !== undefined) d['original-expiration'] = props.expiration;
      deaths.unshift(d);
    }
    // once a message has an x-death history, RabbitMQ writes the entry it adds or counts again
    // with sorted keys, and leaves the others (a client's own included) exactly as they were
    headers['x-death'] = Array.isArray(had) ? [sortedTable(plain(deaths[0]!)), ...deaths.slice(1)] : deaths;
    if (had === undefined) {
      headers['x-first-death-exchange'] = msg.exchange;
      headers['x-first-death-queue'] = queue.name;
      headers['x-first-death-reason'] = reason;
    }
    if (queue.deadLetterRoutingKey !== undefined) delete headers['CC'];
    props.headers = sortedTable(headers) as FieldTable;
    props.expiration = undefined;
  });
  const rk = queue.deadLetterRoutingKey ?? msg.routingKey;
  msg.reusable = false;
  const dead = new Message(queue.deadLetterExchange ?? '', rk, properties, msg.body);
  // a new routing key replaces all the others; without one, BCC keys go along to the next hop
  if (queue.deadLetterRoutingKey === undefined) dead.bcc = msg.bcc;
  return dead;
}

/** True when `d` is an x-death entry for this queue and reason. */
function sameDeath(d: FieldValue, queue: FieldValue, reason: FieldValue): boolean {
  const t = plain(d);
  return isTable(t) && plain(t['queue']) === queue && plain(t['reason']) === reason;
}

/**
 * An x-death history of two or more entries as RabbitMQ 3.10 regroups it before adding to it:
 * one entry per queue and reason (the first of each kept as it is), in reverse order. So after
 * a third death its older entries come out reversed, which also decides what its cycle check
 * sees. A history of one entry stays as it is.
 */
function grouped(deaths: FieldValue[]): FieldValue[] {
  if (deaths.length < 2) return [...deaths];
  const out: FieldValue[] = [];
  const seen = new Set<string>();
  for (const d of deaths) {
    const t = plain(d);
    if (isTable(t)) {
      const key = deathKey(t);
      if (key !== null) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
    }
    out.push(d);
  }
  return out.reverse();
}

/**
 * An entry's queue and reason as a key that two entries share exactly when sameDeath() would
 * match them; null for values that match nothing else (tables, arrays, byte strings, NaN).
 */
function deathKey(t: FieldTable): string | null {
  const q = keyPart(plain(t['queue']));
  const r = keyPart(plain(t['reason']));
  return q === null || r === null ? null : `${q.length}|${q}|${r}`;
}

function keyPart(v: FieldValue): string | null {
  if (v === null) return 'null';
  if (typeof v === 'object' || (typeof v === 'number' && Number.isNaN(v))) return null;
  return `${typeof v}:${String(v)}`;
}

const MAX_LONG = 2n ** 63n - 1n;

/**
 * The count after `v`, as a 64-bit long: one more, stopping at the largest long; a count that is
 * no integer (a client may write anything into x-death) starts again at 1.
 */
function nextCount(v: FieldValue): bigint {
  const n = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : 0n;
  return n >= MAX_LONG ? MAX_LONG : n + 1n;
}

/** A table with its keys in byte order (RabbitMQ keeps header tables sorted); other values as is. */
function sortedTable(v: FieldValue): FieldValue {
  if (!isTable(v)) return v;
  const out: FieldTable = {};
  for (const k of Object.keys(v).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))))
    out[k] = v[k];
  return out;
}

/**
 * True when delivering to `target` would close a dead-letter cycle with no rejection in it;
 * RabbitMQ drops the message for that queue instead of looping forever. As RabbitMQ reads it:
 * the x-death entries from the newest up to the first one for `target` make the cycle, and a
 * rejection among them (or an entry that is no table) makes it a cycle a client is part of.
 */
export function isDeadLetterCycle(msg: Message, target: Queue): boolean {
  const deaths = msg.headers()?.['x-death'];
  if (!Array.isArray(deaths)) return false;
  let automatic = true;
  for (const d of deaths) {
    if (!isTable(d)) {
      automatic = false;
      continue;
    }
    if (d['reason'] === 'rejected') automatic = false;
    if (d['queue'] === target.name) return automatic;
  }
  return false;
}

function isTable(v: FieldValue): v is FieldTable {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    !Buffer.isBuffer(v) &&
    !(v instanceof Date) &&
    !(v instanceof Typed)
  );
}

/** The CC routing keys of a message (kept when dead-lettering without a new routing key). */
function ccKeys(msg: Message): string[] | undefined {
  const cc = msg.headers()?.['CC'];
  if (!Array.isArray(cc)) return undefined;
  const keys = cc.filter((k): k is string => typeof k === 'string');
  return keys.length > 0 ? keys : undefined;
}

/** The keys a dead letter is routed under besides its own (no dead-letter routing key): CC, BCC. */
export function extraKeys(msg: Message): readonly string[] | undefined {
  const cc = ccKeys(msg);
  if (msg.bcc === undefined) return cc;
  return cc === undefined ? msg.bcc : [...cc, ...msg.bcc];
}

/** Dead letters routed per turn of the event loop (DeadLetterRouter). */
const DEAD_BUDGET = 256;

class DeadJob {
  constructor(
    readonly queue: Queue,
    readonly msg: Message,
    readonly reason: DeathReason,
    /** the stored entry it left, forgotten once it is routed */
    readonly entry: QueueEntry | undefined,
  ) {}
}

/**
 * Routes a vhost's dead letters one at a time: a dead letter that makes more (a TTL-0 queue
 * dead-lettering on) waits its turn instead of nesting, since cycles and fan-outs of such queues
 * would otherwise run the stack out, or hold the event loop for as long as they last. At most
 * DEAD_BUDGET go per turn of the loop, the rest on the next; depth first, so what waits stays
 * small, and each one's own in the order it made them.
 */
export class DeadLetterRouter {
  /** dead letters made by dead letters, depth first */
  private readonly stack: DeadJob[] = [];
  private nested: DeadJob[] = [];
  /** dead letters from queues (expiry, rejects, overflow), in the order they came */
  private readonly waiting = new Deque<DeadJob>();
  /**
   * routed jobs whose stored entries wait for the chain they started to be routed whole (dead
   * letters through TTL-0 queues are copies only in memory until the last is stored): a crash
   * meanwhile must not find the source gone and the copies not yet there
   */
  private readonly forgets: DeadJob[] = [];
  private routing = false;
  /** routed in this turn of the loop (reset by the next) */
  private turn = 0;
  private continuing = false;

  constructor(private readonly routeOne: (queue: Queue, msg: Message, reason: DeathReason) => void) {}

  add(queue: Queue, msg: Message, reason: DeathReason, entry?: QueueEntry): void {
    if (queue.deadLetterExchange === undefined) {
      if (entry !== undefined) queue.forget(entry);
      return;
    }
    const j = new DeadJob(queue, msg, reason, entry);
    if (this.routing) this.nested.push(j);
    else {
      this.waiting.push(j);
      if (!this.continuing) this.run();
    }
  }

  private run(): void {
    const stack = this.stack;
    this.continuing = false;
    this.routing = true;
    if (this.turn === 0) setImmediate(() => (this.turn = 0));
    try {
      while (stack.length > 0 || this.waiting.length > 0) {
        if (this.turn++ >= DEAD_BUDGET) {
          this.continuing = true;
          setImmediate(() => this.run());
          break;
        }
        const j = stack.length > 0 ? stack.pop()! : this.waiting.shift()!;
        this.routeOne(j.queue, j.msg, j.reason);
        if (j.entry !== undefined) this.forgets.push(j);
        const nested = this.nested;
        for (let i = nested.length - 1; i >= 0; i--) stack.push(nested[i]!);
        nested.length = 0;
        // the chain is routed: the sources' deletions go to the store in the commit that stores
        // the last copies (or a later one, should the budget have split the chain)
        if (stack.length === 0) {
          for (const f of this.forgets) f.queue.forget(f.entry!, true);
          this.forgets.length = 0;
        }
      }
      this.routing = false;
    } catch (e) {
      // a bug: report it (the caller's tick does), and leave the router usable
      stack.length = 0;
      this.nested.length = 0;
      this.forgets.length = 0;
      this.waiting.clear();
      this.routing = false;
      throw e;
    }
  }
}
