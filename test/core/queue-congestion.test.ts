/**
 * Pacing of a busy queue's publishers (core/queue-congestion.ts), driven tick by tick: a queue
 * with a backlog whose consumers keep taking messages lets its publishers put in about what was
 * delivered (at least BUSY_MIN_INGEST per tick) before they yield the tick; a short queue, or one
 * whose consumers took nothing, never makes them yield. On a saturated broker (util/load.ts: the
 * loop here really is kept busy) a publisher past the allowance waits instead until the queue
 * earns more, by delivering or by the floor (about a millisecond), unless the consumers are slow
 * or the publisher cannot be held that way.
 */
import { describe, expect, it } from 'vitest';
import {
  BUSY_MIN_INGEST,
  BUSY_READY,
  Congestion,
  FLOOR_GAP_MS,
  type HeldPublisher,
  PACE_FLOOR_PER_MS,
  PACE_MIN_DELIVERIES,
} from '../../src/core/queue-congestion.js';
import { updateCoarseClock } from '../../src/util/coarse-clock.js';
import { loadBusy, updateLoad } from '../../src/util/load.js';
import { Phase, requestTick } from '../../src/util/tick.js';

const nextTick = () => {
  requestTick(Phase.Deliver);
  return new Promise((r) => setImmediate(r));
};

function publisher(holdable = true) {
  const p = {
    yields: 0,
    pacedHolds: 0,
    releases: 0,
    release: () => {},
    holdLimitMs: 500,
    yieldTick(): void {
      p.yields++;
    },
    hold(): boolean {
      if (holdable) p.pacedHolds++;
      return holdable;
    },
    releaseLater(): void {
      p.releases++;
    },
  } satisfies HeldPublisher & { yields: number; pacedHolds: number; releases: number };
  return p;
}

type Publisher = ReturnType<typeof publisher>;

/** Publishes into the queue until the publisher is told to yield or held; returns how many went in. */
function publishUntilStopped(c: Congestion, p: Publisher, limit = 100_000): number {
  const before = p.yields + p.pacedHolds;
  let n = 0;
  while (p.yields + p.pacedHolds === before && n < limit) {
    n++;
    c.check(p);
  }
  return n;
}

function queue(length: number, consumerOn: HeldPublisher | null = null) {
  // consumers that read everything: the socket-congestion hold never applies here
  const consumer = { writeBlocked: () => false, readsThrough: (p: HeldPublisher) => p === consumerOn };
  return { ready: { bytes: 0, length }, consumers: [consumer] };
}

/** Keeps this thread running flat out over a few load samples: the broker's loop is saturated. */
function saturate(): void {
  for (let i = 0; i < 10 && !loadBusy(); i++) {
    const end = performance.now() + 80;
    while (performance.now() < end) {}
    updateLoad();
  }
  expect(loadBusy()).toBe(true);
}

/** Lets the loop idle until the load says it is no longer saturated. */
async function idle(): Promise<void> {
  for (let i = 0; i < 20 && loadBusy(); i++) {
    await new Promise((r) => setTimeout(r, 80));
    updateLoad();
  }
  expect(loadBusy()).toBe(false);
}

describe('pacing a busy queue', () => {
  it('lets in what its consumers took, then the minimum per tick', async () => {
    await idle();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    await nextTick();
    c.afterPass(300);
    // the 300 delivered, then the publish that finds the allowance spent
    expect(publishUntilStopped(c, p)).toBe(301);
    await nextTick();
    // nothing delivered since: the tick's minimum only
    expect(publishUntilStopped(c, p)).toBe(BUSY_MIN_INGEST + 1);
    await nextTick();
    c.afterPass(10);
    // fewer delivered than the minimum: still the minimum
    expect(publishUntilStopped(c, p)).toBe(BUSY_MIN_INGEST + 1);
    expect(p.pacedHolds).toBe(0);
  });

  it('does not pace a queue below the backlog bound', async () => {
    const c = new Congestion(queue(BUSY_READY - 1));
    const p = publisher();
    await nextTick();
    c.afterPass(1);
    expect(publishUntilStopped(c, p)).toBe(100_000);
  });

  it('does not pace a queue whose consumers have taken nothing', async () => {
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    await nextTick();
    c.afterPass(0);
    expect(publishUntilStopped(c, p)).toBe(100_000);
  });
});

describe('pacing on a saturated broker', () => {
  it('holds a publisher past half the deliveries and the floor, until the queue earns more', async () => {
    updateCoarseClock();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    const other = publisher();
    saturate();
    c.afterPass(400);
    // 200 earned for 400 delivered, the floor's first credit (FLOOR_GAP_MS), then a hold
    // rather than the tick's minimum
    const floor = FLOOR_GAP_MS * PACE_FLOOR_PER_MS;
    const n = publishUntilStopped(c, p);
    expect(n).toBeGreaterThanOrEqual(200 + floor + 1);
    expect(n).toBeLessThan(200 + floor + 30);
    expect(p.pacedHolds).toBe(1);
    expect(p.yields).toBe(0);
    // the next publisher gets what the floor earned meanwhile (microseconds' worth), then one
    // more that it owes, and is held too
    expect(publishUntilStopped(c, other)).toBeLessThan(100);
    expect(other.pacedHolds).toBe(1);
    expect(c.holding).toBe(true);
    // a delivery that pays the debt lets both read again, once each
    c.afterPass(8);
    expect([p.releases, other.releases]).toEqual([1, 1]);
    expect(c.holding).toBe(false);
    // both put one in at once: owed, so both are held again until it is repaid
    publishUntilStopped(c, p);
    publishUntilStopped(c, other);
    publishUntilStopped(c, p);
    expect(p.pacedHolds + other.pacedHolds).toBeGreaterThanOrEqual(3);
  });

  it('does not hold a publisher that consumes from the queue too; it yields after the minimum', async () => {
    updateCoarseClock();
    const p = publisher();
    const c = new Congestion(queue(BUSY_READY, p));
    saturate();
    await nextTick();
    c.afterPass(PACE_MIN_DELIVERIES);
    const n = publishUntilStopped(c, p);
    const earned = PACE_MIN_DELIVERIES >> 1;
    expect(n).toBeGreaterThan(earned);
    expect(n).toBeLessThan(earned + FLOOR_GAP_MS * PACE_FLOOR_PER_MS + 30);
    expect(p.pacedHolds).toBe(0);
    expect(p.yields).toBe(1);
  });

  it('does not hold a publisher that will not be held; it yields after the minimum', async () => {
    updateCoarseClock();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher(false);
    saturate();
    await nextTick();
    c.afterPass(PACE_MIN_DELIVERIES);
    expect(publishUntilStopped(c, p)).toBeGreaterThan(BUSY_MIN_INGEST);
    expect(p.pacedHolds).toBe(0);
    expect(p.yields).toBe(1);
  });

  it('does not hold the publishers of slow consumers', async () => {
    updateCoarseClock();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    saturate();
    await nextTick();
    const slow = PACE_MIN_DELIVERIES / 4;
    c.afterPass(slow);
    // what was earned (one for two) or the tick's minimum, then a yield
    expect(publishUntilStopped(c, p)).toBe(Math.max(slow >> 1, BUSY_MIN_INGEST) + 1);
    expect(p.pacedHolds).toBe(0);
    expect(p.yields).toBe(1);
  });

  it('lets paced publishers go within milliseconds when the queue does not deliver', async () => {
    updateCoarseClock();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    saturate();
    c.afterPass(PACE_MIN_DELIVERIES);
    publishUntilStopped(c, p);
    expect(p.pacedHolds).toBe(1);
    expect(p.releases).toBe(0);
    // the floor earns PACE_FLOOR_PER_MS publishes a millisecond whatever the consumers do, and is
    // checked every millisecond
    await new Promise((r) => setTimeout(r, 20));
    expect(p.releases).toBe(1);
    expect(c.holding).toBe(false);
    // what the floor earned lets it in again (at least one publish) before the next hold
    expect(publishUntilStopped(c, p)).toBeGreaterThanOrEqual(2);
    expect(p.pacedHolds).toBe(2);
  });

  it('stops pacing once the loop has time to spare again', async () => {
    updateCoarseClock();
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    await idle();
    c.afterPass(PACE_MIN_DELIVERIES);
    expect(publishUntilStopped(c, p)).toBe(PACE_MIN_DELIVERIES + 1);
    expect(p.pacedHolds).toBe(0);
  });
});
