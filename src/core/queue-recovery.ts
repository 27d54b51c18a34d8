/**
 * A durable queue's stored messages read back at startup: the first ones into memory, the rest
 * left on disk as the paged ready list's segment (core/paged-ready.ts). A quorum queue's
 * returned deliveries (stored below QUORUM_BASE) all come back into memory: they were there
 * before, and a return after the restart must go in front of every one of them.
 */
import type { Store } from '../storage/store.js';
import { PAGE_COUNT, PagedReady, type Pager } from './paged-ready.js';
import { QUORUM_BASE, type QueueEntry } from './queue-entry.js';
import type { ReadyList } from './ready-list.js';

/** Stored records per read while recovering. */
const RECOVER_PAGE = 2000;

/** The queue as recovery sees it. */
export interface Recovering extends Pager {
  readonly ready: ReadyList;
  /** a quorum queue: returns stored below QUORUM_BASE */
  readonly countsDeliveries: boolean;
  /** x-max-length-bytes is set: the ready list's body bytes matter */
  readonly countsBytes: boolean;
}

export interface ReadBack {
  /** the highest stored seq (0: none) */
  last: number;
  /** messages recovered, in memory or on disk */
  total: number;
  /** entries a crash left delivered past the delivery limit, kept out of the ready list */
  overLimit: QueueEntry[];
}

export function readBack(
  store: Store,
  q: Recovering,
  deliveryLimit: number,
  armExpiry: (at: number) => void,
): ReadBack {
  // until the ready list pages out (by count or bytes), the rest is its on-disk segment
  const ready = q.ready;
  const paged = ready instanceof PagedReady;
  const full = (): boolean => paged && (ready.pagingOut || ready.length >= PAGE_COUNT);
  const overLimit: QueueEntry[] = [];
  let last = 0;
  let total = 0;
  for (let from = 0; ; from = last + 1) {
    const page = store.messages(q.id, from, RECOVER_PAGE);
    let stopped = false;
    for (const r of page) {
      const front = q.countsDeliveries && r.seq < QUORUM_BASE;
      if (!front && full()) {
        stopped = true;
        break;
      }
      const e = q.entryFor(r);
      last = r.seq;
      total++;
      // delivered past the limit before a crash, never returned: it goes once the broker is up
      if (deliveryLimit >= 0 && e.deliveries > deliveryLimit) {
        overLimit.push(e);
        continue;
      }
      if (front && paged) ready.pushFront(e);
      else ready.push(e);
      if (e.expiresAt !== 0) armExpiry(e.expiresAt);
    }
    if (page.length < RECOVER_PAGE || stopped) break;
  }
  // (body bytes only where x-max-length-bytes counts them: it reads every record)
  const rest = paged ? store.extent(q.id, last + 1, q.countsBytes) : null;
  if (rest !== null && rest.count > 0) {
    // a quorum queue's segment holds published messages only (all returns were loaded): it
    // starts at QUORUM_BASE or later, so the store keys of returns to come lie outside it
    const from = q.countsDeliveries ? Math.max(last + 1, QUORUM_BASE) : last + 1;
    (ready as PagedReady).recoverSegment(from, rest.lastSeq, rest.count, rest.bytes);
    last = rest.lastSeq;
    total += rest.count;
  }
  return { last, total, overLimit };
}
