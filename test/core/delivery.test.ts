/**
 * The delivery phase (core/delivery.ts): a queue whose pass throws (a bug, which the tick
 * reports) must not leave the queues scheduled after it waiting for good.
 */
import { describe, expect, it } from 'vitest';
import { scheduleDelivery } from '../../src/core/delivery.js';
import { setTickErrorHandler } from '../../src/util/tick.js';

const nextTick = () => new Promise((r) => setImmediate(r));

describe('delivery passes', () => {
  it('a pass that throws leaves the queues after it scheduled', async () => {
    const errors: unknown[] = [];
    setTickErrorHandler((e) => errors.push(e));
    const passes: string[] = [];
    const queue = (name: string, fail: boolean) => ({
      scheduled: false,
      deleted: false,
      deliverPass(): boolean {
        passes.push(name);
        if (fail) throw new Error(`${name} failed`);
        return false;
      },
    });
    const bad = queue('bad', true);
    const after = [queue('b', false), queue('c', false)];
    scheduleDelivery(bad);
    for (const q of after) scheduleDelivery(q);
    await nextTick();
    await nextTick();
    expect(errors).toHaveLength(1);
    expect(passes).toEqual(['bad', 'b', 'c']);
    // all of them can be scheduled again
    for (const q of [bad, ...after]) expect(q.scheduled).toBe(false);
    scheduleDelivery(after[0]!);
    await nextTick();
    expect(passes).toEqual(['bad', 'b', 'c', 'b']);
  });
});
