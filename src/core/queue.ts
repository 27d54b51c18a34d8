/**
 * A queue: ready messages in publish order (or by priority), consumers served round-robin by
 * priority, requeue back at the original position (marked redelivered). Deliveries run in
 * bounded passes from the tick (core/delivery.ts). The x-arguments RabbitMQ users rely on live
 * here: message TTL, max length and overflow, max priority, dead-lettering (through the owner).
 */
import type { FieldTable } from '../protocol/field-table.js';
import type { RecoveredMessage, Store } from '../storage/store.js';
import { ConsumerRing } from './consumer-ring.js';
import { scheduleDelivery } from './delivery.js';
import type { Binding, Destination } from './exchange/exchange.js';
import { Message } from './message.js';
import { PagedReady, type Pager } from './paged-ready.js';
import { Congestion } from './queue-congestion.js';
import {
  type DeadLetterSink,
  type DeathReason,
  QUORUM_BASE,
  type QueueConsumer,
  QueueEntry,
} from './queue-entry.js';
import { readBack } from './queue-recovery.js';
import { FifoReady, PriorityReady, type ReadyList } from './ready-list.js';

/** Most messages a queue delivers in one pass before letting others run; most expired dropped. */
const PASS_BUDGET = 4096;
const EXPIRE_CAP = 10_000;

type Overflow = 'drop-head' | 'reject-publish' | 'reject-publish-dlx';

export class Queue implements Destination, Pager {
  readonly isQueue = true;
  readonly name: string;
  readonly durable: boolean;
  readonly autoDelete: boolean;
  readonly args: FieldTable;
  /** connection id that owns an exclusive queue; 0 when not exclusive */
  readonly owner: number;
  routeEpoch = 0;
  readonly inbound = new Set<Binding>();
  ready: ReadyList;
  /** its consumers and the choice among them (x-single-active-consumer included) */
  private readonly ring: ConsumerRing<QueueConsumer>;
  /** publishers held while consumers wait on their sockets (queue-congestion.ts) */
  readonly congestion: Congestion = new Congestion(this);
  /** delivered, not yet acknowledged */
  unacked = 0;
  /** quorum queues: basic.get deliveries not yet settled; RabbitMQ 3.10 counts each as a consumer */
  gets = 0;
  deleted = false;
  /** set once a consumer has attached (auto-delete needs it) */
  hadConsumer = false;
  /** queued for the next delivery pass */
  scheduled = false;
  /** last time the queue was used (consumer, get, declare), for x-expires */
  lastUsed = Date.now();
  /** durable queues: the store and the queue's id in it (persistent messages are recorded) */
  store: Store | null = null;
  id = 0;
  /** set by the vhost when the queue has a dead-letter exchange */
  deadLetters: DeadLetterSink | null = null;
  private nextSeq = 1;
  /**
   * A quorum queue's next position for a delivery returned to its front: ahead of every ready
   * message, behind earlier returns. 0: returns keep their old places (classic queues).
   */
  private returnSeq = 0;
  /** recovered entries a crash left delivered past the delivery limit (afterRecovery) */
  private overLimit: QueueEntry[] = [];
  /** after an unclean start: entries with seq below this count as possibly delivered */
  private recoveredUpTo = 0;
  // x-arguments
  private readonly ttl: number;
  private readonly maxLength: number;
  private readonly maxBytes: number;
  get countsBytes(): boolean {
    return this.maxBytes >= 0;
  }
  private readonly overflow: Overflow;
  readonly deadLetterExchange: string | undefined;
  readonly deadLetterRoutingKey: string | undefined;
  /** quorum queues tell consumers how often a message was delivered (x-delivery-count) */
  readonly countsDeliveries: boolean;
  /** quorum x-delivery-limit: a message returned more often is dead-lettered; -1 = none */
  private readonly deliveryLimit: number;
  private expiryTimer: NodeJS.Timeout | null = null;
  /** x-expires: the timer that deletes it once unused long enough (queue-expiry.ts) */
  idleTimer: NodeJS.Timeout | null = null;
  private expiryAt = 0;

  constructor(name: string, durable: boolean, autoDelete: boolean, owner: number, args: FieldTable) {
    this.name = name;
    this.durable = durable;
    this.autoDelete = autoDelete;
    this.owner = owner;
    this.args = args;
    const num = (k: string): number => {
      const v = args[k];
      return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : -1;
    };
    const str = (k: string): string | undefined => {
      const v = args[k];
      return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : undefined;
    };
    this.ttl = num('x-message-ttl');
    this.maxLength = num('x-max-length');
    this.maxBytes = num('x-max-length-bytes');
    const o = str('x-overflow');
    // RabbitMQ 3.10's quorum queues have no reject-publish-dlx: they drop the head instead
    const quorum = args['x-queue-type'] === 'quorum';
    this.overflow = o === 'reject-publish' || (o === 'reject-publish-dlx' && !quorum) ? o : 'drop-head';
    this.deadLetterExchange = str('x-dead-letter-exchange');
    this.deadLetterRoutingKey = str('x-dead-letter-routing-key');
    this.countsDeliveries = quorum;
    if (quorum) {
      this.nextSeq = QUORUM_BASE;
      this.returnSeq = 1;
    }
    this.deliveryLimit = this.countsDeliveries ? num('x-delivery-limit') : -1;
    this.ring = new ConsumerRing(args['x-single-active-consumer'] === true);
    const maxPriority = num('x-max-priority');
    this.ready = maxPriority > 0 ? new PriorityReady(Math.min(maxPriority, 255)) : new FifoReady();
  }

  get exclusive(): boolean {
    return this.owner !== 0;
  }

  get messageCount(): number {
    return this.ready.length;
  }

  get consumerCount(): number {
    return this.ring.length + this.gets;
  }

  /** Its consumers, highest priority first. */
  get consumers(): readonly QueueConsumer[] {
    return this.ring.list;
  }

  /** Adds a published message; false when x-overflow reject-publish refuses it (a nack). */
  enqueue(msg: Message): boolean {
    if (this.maxLength >= 0 || this.maxBytes >= 0) {
      if (this.overflow !== 'drop-head' && this.full(msg.body.length)) {
        if (this.overflow === 'reject-publish-dlx') this.dead(msg, 'maxlen');
        return false;
      }
    }
    let expiresAt = 0;
    const perMessage =
      msg.properties.length > 2 && msg.properties.readUInt16BE(0) & 0x0100 ? msg.expirationMs() : -1;
    const ttl = perMessage >= 0 && (this.ttl < 0 || perMessage < this.ttl) ? perMessage : this.ttl;
    if (ttl >= 0) {
      // TTL 0: the message lives only if a consumer can take it right now; behind others it
      // waits, expired, until it reaches the head (RabbitMQ counts it until then). Taken, it
      // carries its expiry along: requeued, it has expired (dead-lettered, not redelivered).
      if (ttl === 0 && this.ready.length === 0) {
        if (!this.takeNow(new QueueEntry(msg, this.nextSeq++, Date.now()))) this.dead(msg, 'expired');
        return true;
      }
      expiresAt = Date.now() + ttl;
    }
    const e = new QueueEntry(msg, this.nextSeq++, expiresAt);
    // a quorum queue keeps every message, persistent or not, as RabbitMQ's do
    if (this.store !== null && (msg.persistent || this.countsDeliveries)) {
      this.store.enqueue(this.id, e, msg);
      msg.reusable = false;
    }
    const limited = this.maxLength >= 0 || this.maxBytes >= 0;
    // as RabbitMQ: a message a consumer takes at once never counts against a length limit, and
    // one with a TTL goes at once, not a tick later (a 1 ms TTL would otherwise expire waiting)
    if ((limited || expiresAt !== 0) && this.takeNow(e)) return true;
    this.ready.push(e);
    if (limited && this.overflow === 'drop-head') this.dropOverflow();
    if (expiresAt !== 0) this.armExpiry(expiresAt);
    if (this.ring.length > 0) scheduleDelivery(this);
    return true;
  }

  /** Hands an arriving entry straight to a consumer when nothing waits ahead of it. */
  private takeNow(e: QueueEntry): boolean {
    if (this.ready.length > 0) return false;
    const c = this.ring.pick();
    if (c === null) return false;
    this.unacked++;
    c.deliver(this, e);
    return true;
  }

  private full(incoming: number): boolean {
    // a quorum queue refuses only once it is over the limit, so it takes one message past it
    if (this.countsDeliveries)
      return (
        (this.maxLength >= 0 && this.ready.length > this.maxLength) ||
        (this.maxBytes >= 0 && this.ready.bytes > this.maxBytes)
      );
    return (
      (this.maxLength >= 0 && this.ready.length >= this.maxLength) ||
      (this.maxBytes >= 0 && this.ready.bytes + incoming > this.maxBytes)
    );
  }

  /**
   * drop-head: the oldest messages make room (dead-lettered with reason maxlen); then, as in
   * RabbitMQ, the new head goes too if it has expired (it may have expired behind the old one).
   */
  private dropOverflow(): void {
    let dropped = false;
    while (
      this.ready.length > 0 &&
      ((this.maxLength >= 0 && this.ready.length > this.maxLength) ||
        (this.maxBytes >= 0 && this.ready.bytes > this.maxBytes))
    ) {
      const e = this.ready.shift()!;
      this.dead(e.msg, 'maxlen', e);
      dropped = true;
    }
    if (dropped) this.expireHeads(Date.now(), EXPIRE_CAP);
  }

  // dead, from entry e if any: with a DLX, e's record goes when the dead letter is routed (a
  // few turns later, maybe), in one commit with its copies, so a crash never loses both
  private dead(msg: Message, reason: DeathReason, e?: QueueEntry): void {
    if (this.deadLetterExchange !== undefined && this.deadLetters !== null)
      this.deadLetters.deadLetter(this, msg, reason, e);
    else if (e !== undefined) this.forget(e);
  }

  // ---------------------------------------------------------------- expiry

  /** Drops (dead-letters) expired heads (only heads, as RabbitMQ); true when it stopped at cap. */
  expireHeads(now = Date.now(), cap = Number.POSITIVE_INFINITY): boolean {
    let h = this.ready.peek();
    while (h !== undefined && h.expiresAt !== 0 && h.expiresAt <= now) {
      // at most `cap` at a time: the store writes a tick's removals in one transaction
      if (cap-- <= 0) {
        this.armExpiry(now);
        return true;
      }
      this.ready.shift();
      this.dead(h.msg, 'expired', h);
      h = this.ready.peek();
    }
    if (h !== undefined && h.expiresAt !== 0) this.armExpiry(h.expiresAt);
    return false;
  }

  /** One timer per queue, for the earliest head expiry. */
  private armExpiry(at: number): void {
    if (this.deleted) return;
    if (this.expiryTimer !== null && this.expiryAt <= at) return;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryAt = at;
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = null;
        this.expiryAt = 0;
        this.expireHeads(Date.now(), EXPIRE_CAP);
      },
      // setTimeout takes at most 2^31-1 ms; a later expiry re-arms when this fires
      Math.min(2 ** 31 - 1, Math.max(0, at - Date.now())),
    );
    this.expiryTimer.unref();
  }

  // ---------------------------------------------------------------- delivery

  /** Puts a delivered entry back at its original position, to be redelivered. */
  requeue(entry: QueueEntry, returned = false): void {
    this.unacked--;
    if (this.deleted) {
      this.forget(entry);
      return;
    }
    // delivered once more than the limit allows: a poison message leaves (RabbitMQ quorum queues)
    if (this.deliveryLimit >= 0 && entry.deliveries > this.deliveryLimit) {
      this.dead(entry.msg, 'delivery_limit', entry);
      return;
    }
    // RabbitMQ 3.10.8's quorum queues: what a consumer nacks, rejects or recovers goes to the
    // back, or with a delivery limit to the front; what a closed channel leaves goes to the
    // front. The front is in the order deliveries came back. Classic queues keep places.
    if (!this.countsDeliveries) this.ready.requeue(entry);
    else if (returned && this.deliveryLimit < 0) this.ready.push(this.moved(entry, this.nextSeq++));
    else if (this.returnSeq > 0) this.ready.requeue(this.moved(entry, this.returnSeq++));
    else this.ready.requeue(entry);
    // the limit holds for what comes back too: the head goes, as RabbitMQ's does
    if ((this.maxLength >= 0 || this.maxBytes >= 0) && this.overflow === 'drop-head') this.dropOverflow();
    if (entry.expiresAt !== 0) this.armExpiry(entry.expiresAt);
    if (this.ring.length > 0) scheduleDelivery(this);
  }

  /** The entry again at position `seq` (re-recorded under it in the store). */
  private moved(e: QueueEntry, seq: number): QueueEntry {
    const back = new QueueEntry(e.msg, seq, e.expiresAt);
    back.deliveries = e.deliveries;
    if (e.storeState !== 0) {
      this.store!.remove(this.id, e, e.msg, true);
      this.store!.enqueue(this.id, back, e.msg);
    }
    return back;
  }

  /** A delivered entry was acknowledged (or dropped). */
  settle(entry: QueueEntry): void {
    this.unacked--;
    this.forget(entry);
  }

  /** The entry leaves the queue for good: the store deletes it (`paired`: see Store.remove). */
  forget(e: QueueEntry, paired = false): void {
    if (e.storeState !== 0) this.store!.remove(this.id, e, e.msg, paired);
  }

  /** A quorum queue's stored entry was delivered: its count is written now, to survive a crash. */
  countDelivery(e: QueueEntry): void {
    if (this.countsDeliveries && e.storeState !== 0) this.store!.countDelivery(this.id, e);
  }

  /** Its backlog is past what memory holds and pages to and from the store. */
  get paging(): boolean {
    return this.ready instanceof PagedReady && this.ready.pagingOut;
  }

  /** At a clean stop (after requeues): the store keeps the delivered entries' counts. */
  keepDeliveries(): void {
    const store = this.store;
    if (store === null) return;
    for (const e of this.ready.loaded())
      if (e.deliveries > 0 && e.storeState !== 0) store.delivered(this.id, e);
  }

  /** A durable queue on a disk store keeps deep backlogs on disk (not for priority queues). */
  attachStore(store: Store, id: number): void {
    this.store = store;
    this.id = id;
    if (store.durable && this.ready instanceof FifoReady && this.ready.length === 0) {
      this.ready = new PagedReady(this);
    }
  }

  /** A ready entry for a message read back from the store (recovery and paging). */
  entryFor(r: RecoveredMessage): QueueEntry {
    const m = r.message;
    const msg = m instanceof Message ? m : new Message(m.exchange, m.routingKey, m.properties, m.body);
    msg.storeId = m.storeId;
    const e = new QueueEntry(msg, r.seq, r.expiresAt);
    // after a crash the last deliveries may not be on disk: redeliver with the flag, to be safe
    e.deliveries = r.deliveries === 0 && r.seq < this.recoveredUpTo ? 1 : r.deliveries;
    e.storeState = r.shared ? 3 : 2;
    e.storeDeliv = r.delivRecord;
    return e;
  }

  /** Recovery: the first stored messages come back into memory, the rest stay paged out. */
  recover(store: Store): number {
    if (this.store === null) return 0;
    // after a crash, classic queues take every message as maybe delivered; quorum queues know
    if (store.uncleanStart && !this.countsDeliveries) this.recoveredUpTo = Number.MAX_SAFE_INTEGER;
    const { last, total, overLimit } = readBack(store, this, this.deliveryLimit, (at) => this.armExpiry(at));
    this.overLimit = overLimit;
    this.nextSeq = last + 1;
    if (this.countsDeliveries) {
      // returns go on after the last one stored (a crash's over-limit ones included)
      this.nextSeq = Math.max(last + 1, QUORUM_BASE);
      this.returnSeq = store.lastSeqBelow(this.id, QUORUM_BASE) + 1;
    }
    if (store.uncleanStart && !this.countsDeliveries) this.recoveredUpTo = last + 1;
    return total;
  }

  /**
   * After recovery (and the store's cleanup): what a crash left delivered past the quorum
   * delivery limit is dead-lettered (or dropped), as its return would have done.
   */
  afterRecovery(): number {
    const list = this.overLimit;
    this.overLimit = [];
    for (const e of list) this.dead(e.msg, 'delivery_limit', e);
    return list.length;
  }

  /** A delivered entry was rejected without requeue: dead-letter it (reason rejected). */
  reject(entry: QueueEntry): void {
    this.unacked--;
    // a deleted queue dead-letters nothing more (RabbitMQ: its queue process is gone)
    if (this.deleted) this.forget(entry);
    else this.dead(entry.msg, 'rejected', entry);
  }

  /** basic.get: the next ready entry, counted as delivered. */
  get(): QueueEntry | undefined {
    const now = Date.now();
    this.lastUsed = now;
    this.expireHeads(now);
    const e = this.ready.shift();
    if (e) this.unacked++;
    // an expired message now at the head goes at once (get-ok's message count leaves it out)
    if (e) this.expireHeads(now);
    return e;
  }

  purge(): number {
    const n = this.ready.length;
    for (const e of this.ready.drain()) this.forget(e);
    return n;
  }

  addConsumer(c: QueueConsumer): void {
    this.hadConsumer = true;
    this.lastUsed = Date.now();
    this.ring.add(c);
    if (this.ready.length > 0) scheduleDelivery(this);
  }

  /** Detaches a consumer; returns true when an auto-delete queue should now be deleted. */
  removeConsumer(c: QueueConsumer): boolean {
    if (!this.ring.remove(c)) return false;
    this.lastUsed = Date.now();
    this.congestion.releaseAll();
    // another consumer may take over (single active consumer, or one with room)
    if (this.ready.length > 0 && this.ring.length > 0) scheduleDelivery(this);
    return this.autoDelete && this.hadConsumer && this.ring.length === 0;
  }

  /** A consumer may take messages again (acked, drained, qos raised): it rejoins the rotation. */
  wake(c: QueueConsumer): void {
    if (c.parked) this.ring.unpark(c);
    if (this.ready.length > 0 && this.ring.length > 0) scheduleDelivery(this);
  }

  /** Delivers what consumers can take now rather than later in the tick (a nack's requeue). */
  deliverNow(): void {
    if (this.deleted || this.ready.length === 0 || this.ring.length === 0) return;
    if (this.deliverPass()) scheduleDelivery(this);
  }

  /** Delivers up to the pass budget; true when it stopped with work left (run again next tick). */
  deliverPass(): boolean {
    if (this.expiryTimer !== null) this.expireHeads(Date.now(), EXPIRE_CAP);
    const ready = this.ready;
    let n = 0;
    let more = false;
    while (ready.length > 0) {
      if (n === PASS_BUDGET) {
        more = true;
        break;
      }
      // a message that expired behind a longer-lived one goes when it reaches the head
      const h = ready.peek()!;
      if (h.expiresAt !== 0) {
        const now = Date.now();
        if (h.expiresAt <= now) {
          if (!this.expireHeads(now, EXPIRE_CAP)) continue;
          more = true;
          break;
        }
      }
      const c = this.ring.pick();
      if (c === null) break;
      const e = ready.shift()!;
      this.unacked++;
      n++;
      c.deliver(this, e);
    }
    // a head that expires, now that the one before it is gone, expires on time
    const head = ready.peek();
    if (head !== undefined && head.expiresAt !== 0 && n > 0) this.armExpiry(head.expiresAt);
    this.congestion.afterPass(n);
    return more;
  }

  /** Marks the queue deleted and tells its consumers; returns the number of ready messages dropped. */
  markDeleted(): number {
    this.deleted = true;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const n = this.purge();
    const cs = this.ring.clear();
    this.congestion.releaseAll();
    for (const c of cs) c.cancelledByQueue();
    return n;
  }
}
