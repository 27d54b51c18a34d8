/**
 * A queue's consumers, highest priority first (equal priorities in rotation order), and the
 * choice of the next one to deliver to: round-robin among the highest-priority consumers that
 * can take a message, lower priorities only getting what higher ones cannot take; or, with
 * x-single-active-consumer, the one active consumer.
 *
 * The rotation is RabbitMQ's: its queue keeps the consumers that may take messages in a queue,
 * serves the one at the front and puts it at the back. One found unable to take (at its
 * prefetch, say) leaves that queue, and joins it again at the back once it can take again. Here
 * the list is a ring read from `rr`; one found unable is `parked` where it stands (passed over,
 * as before) and `unpark` moves it to the back when it may take again (an ack, say).
 */

export interface RingMember {
  readonly priority: number;
  /** true when it may take one more message now */
  canTake(): boolean;
  /** the ring found it unable to take, and it has not taken since (the ring's own mark) */
  parked: boolean;
  /** when it was parked, on `parkClock` (orders the wake-up of several: wakeInParkOrder) */
  parkedAt: number;
}

/** Counts parkings across all rings. */
let parkClock = 0;

/**
 * Wakes consumers that may take again (a channel's shared prefetch freed, its socket drained) in
 * the order the rings found them unable, so they rejoin their rotations in that order: the one
 * passed over first is served first, as in RabbitMQ, where a channel's blocked consumers return
 * to the queue in the order they were blocked. Allocates only when two or more were parked.
 */
export function wakeInParkOrder<C extends RingMember>(
  members: () => Iterable<C>,
  wake: (c: C) => void,
): void {
  let parked = 0;
  for (const c of members()) if (c.parked) parked++;
  if (parked < 2) {
    for (const c of members()) wake(c);
    return;
  }
  const list = [...members()].sort((x, y) => rank(x) - rank(y));
  for (const c of list) wake(c);
}

function rank(c: RingMember): number {
  return c.parked ? c.parkedAt : Number.MAX_SAFE_INTEGER;
}

export class ConsumerRing<C extends RingMember> {
  /** sorted by priority, highest first */
  list: C[] = [];
  /** x-single-active-consumer: the consumer that has the queue (null: choose at the next pick) */
  private active: C | null = null;
  private rr = 0;
  private mixedPriorities = false;
  /** with mixed priorities: each priority group's own rotation (its next offset in the group) */
  private groupRr = new Map<number, number>();

  constructor(private readonly singleActive: boolean) {}

  get length(): number {
    return this.list.length;
  }

  add(c: C): void {
    const cs = this.list;
    c.parked = false;
    c.parkedAt = 0;
    if (!this.singleActive && !this.mixedPriorities && cs.length > 0 && cs[0]!.priority === c.priority) {
      this.toBack(c); // newcomers join at the back of the rotation
      return;
    }
    let i = cs.length;
    while (i > 0 && cs[i - 1]!.priority < c.priority) i--;
    cs.splice(i, 0, c);
    if (this.singleActive && this.active === null) this.active = c; // the first to come keeps it
    this.mixedPriorities = cs.some((x) => x.priority !== cs[0]!.priority);
  }

  /** Puts `c` (not in the list) at the back of the rotation: just before the next to be served. */
  private toBack(c: C): void {
    const cs = this.list;
    const at = cs.length === 0 ? 0 : this.rr % cs.length;
    cs.splice(at, 0, c);
    this.rr = at + 1;
  }

  /**
   * `c` may take messages again (its channel got an ack, say): if the ring had found it unable,
   * it rejoins at the back of the rotation, behind those that could take all along.
   */
  unpark(c: C): void {
    if (!c.parked || !c.canTake()) return;
    c.parked = false;
    // priority groups and a single active consumer keep their own order
    if (this.singleActive || this.mixedPriorities) return;
    const cs = this.list;
    const i = cs.indexOf(c);
    if (i < 0) return;
    cs.splice(i, 1);
    if (this.rr > i) this.rr--;
    this.toBack(c);
  }

  /** Takes `c` out; false when it was not in. */
  remove(c: C): boolean {
    const cs = this.list;
    const i = cs.indexOf(c);
    if (i < 0) return false;
    cs.splice(i, 1);
    if (this.active === c) this.active = null;
    if (this.rr > i) this.rr--;
    this.mixedPriorities = cs.length > 0 && cs.some((x) => x.priority !== cs[0]!.priority);
    return true;
  }

  /** Empties the ring; returns who was in it. */
  clear(): C[] {
    const cs = this.list;
    this.list = [];
    this.active = null;
    return cs;
  }

  /** The consumer to deliver to next, or null when none can take a message. */
  pick(): C | null {
    const cs = this.list;
    const n = cs.length;
    if (n === 0) return null;
    // x-single-active-consumer: the active consumer keeps the queue until it goes, even if one of
    // higher priority joins (RabbitMQ 3.10); then the highest-priority, earliest one takes over
    if (this.singleActive) {
      if (this.active === null) this.active = cs[0]!;
      return this.active.canTake() ? this.active : null;
    }
    if (!this.mixedPriorities) {
      for (let k = 0; k < n; k++) {
        const i = (this.rr + k) % n;
        const c = cs[i]!;
        if (c.canTake()) {
          c.parked = false;
          this.rr = (i + 1) % n;
          return c;
        }
        if (!c.parked) {
          c.parked = true;
          c.parkedAt = ++parkClock;
        }
      }
      return null;
    }
    // priority groups are contiguous (sorted); lower groups only get what higher ones cannot
    // take; each group goes round in turn on its own
    let start = 0;
    while (start < n) {
      const prio = cs[start]!.priority;
      let end = start + 1;
      while (end < n && cs[end]!.priority === prio) end++;
      const len = end - start;
      const rr = this.groupRr.get(prio) ?? 0;
      for (let k = 0; k < len; k++) {
        const at = (rr + k) % len;
        const c = cs[start + at]!;
        if (c.canTake()) {
          this.groupRr.set(prio, (at + 1) % len);
          return c;
        }
      }
      start = end;
    }
    return null;
  }
}
