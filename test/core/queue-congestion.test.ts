/**
 * Pacing of a busy queue's publishers (core/queue-congestion.ts), driven tick by tick: a queue
 * with a backlog whose consumers keep taking messages lets its publishers put in about what was
 * delivered (at least BUSY_MIN_INGEST per tick) before they yield the tick; a short queue, or one
 * whose consumers took nothing, never makes them yield.
 */
import { describe, expect, it } from 'vitest';
import {
  BUSY_MIN_INGEST,
  BUSY_READY,
  Congestion,
  type HeldPublisher,
} from '../../src/core/queue-congestion.js';
import { Phase, requestTick } from '../../src/util/tick.js';

const nextTick = () => {
  requestTick(Phase.Deliver);
  return new Promise((r) => setImmediate(r));
};

function publisher() {
  const p = {
    yields: 0,
    hold: () => true,
    release: () => {},
    holdLimitMs: 500,
    yieldTick(): void {
      p.yields++;
    },
  } satisfies HeldPublisher & { yields: number };
  return p;
}

/** Publishes into the queue until the publisher is told to yield; returns how many went in. */
function publishUntilYield(c: Congestion, p: ReturnType<typeof publisher>, limit = 100_000): number {
  const before = p.yields;
  let n = 0;
  while (p.yields === before && n < limit) {
    n++;
    c.check(p);
  }
  return n;
}

function queue(length: number) {
  // consumers that read everything: the socket-congestion hold never applies here
  return { ready: { bytes: 0, length }, consumers: [{ writeBlocked: () => false }] };
}

describe('pacing a busy queue', () => {
  it('lets in what its consumers took, then the minimum per tick', async () => {
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    await nextTick();
    c.afterPass(300);
    // the 300 delivered, then the publish that finds the allowance spent
    expect(publishUntilYield(c, p)).toBe(301);
    await nextTick();
    // nothing delivered since: the tick's minimum only
    expect(publishUntilYield(c, p)).toBe(BUSY_MIN_INGEST + 1);
    await nextTick();
    c.afterPass(10);
    // fewer delivered than the minimum: still the minimum
    expect(publishUntilYield(c, p)).toBe(BUSY_MIN_INGEST + 1);
  });

  it('does not pace a queue below the backlog bound', async () => {
    const c = new Congestion(queue(BUSY_READY - 1));
    const p = publisher();
    await nextTick();
    c.afterPass(1);
    expect(publishUntilYield(c, p)).toBe(100_000);
  });

  it('does not pace a queue whose consumers have taken nothing', async () => {
    const c = new Congestion(queue(BUSY_READY));
    const p = publisher();
    await nextTick();
    c.afterPass(0);
    expect(publishUntilYield(c, p)).toBe(100_000);
  });
});
