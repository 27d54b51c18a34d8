/**
 * The dead-letter router routes dead letters one at a time: those a dead letter makes while it is
 * routed (a TTL-0 queue dead-lettering on) wait their turn instead of nesting, depth first and in
 * the order made, and at most 256 go per turn of the event loop. A fan-out of TTL-0 queues that
 * dead-letter into each other made factorially many, nested, on one turn: the broker crashed on
 * the stack or answered nobody until it was done.
 */
import { describe, expect, it } from 'vitest';
import { DeadLetterRouter } from '../../src/core/dead-letter.js';
import { Message } from '../../src/core/message.js';
import type { Queue } from '../../src/core/queue.js';
import { QueueEntry } from '../../src/core/queue-entry.js';

const queue = { deadLetterExchange: 'dlx' } as unknown as Queue;
const dead = (name: string) => new Message('', name, Buffer.from([0, 0]), Buffer.alloc(0));
const turn = () => new Promise((r) => setImmediate(r));

describe('dead-letter router', () => {
  it('routes what dead letters make one at a time, 256 per turn, depth first in the order made', async () => {
    const order: string[] = [];
    let depth = 0;
    let deepest = 0;
    const router = new DeadLetterRouter((_q, m) => {
      depth++;
      deepest = Math.max(deepest, depth);
      order.push(m.routingKey);
      // each makes two more, down to names of 12 letters: 4,095 in all
      if (m.routingKey.length < 12) {
        router.add(queue, dead(`${m.routingKey}a`), 'expired');
        router.add(queue, dead(`${m.routingKey}b`), 'expired');
      }
      depth--;
    });
    router.add(queue, dead('x'), 'expired');
    expect(order).toHaveLength(256); // the first turn
    expect(deepest).toBe(1);
    expect(order.slice(0, 13)).toEqual(
      Array.from({ length: 12 }, (_, i) => `x${'a'.repeat(i)}`).concat('xaaaaaaaaaab'),
    );
    for (let i = 0; i < 100 && order.length < 4095; i++) await turn();
    expect(order).toHaveLength(4095);
    expect(new Set(order).size).toBe(4095);
  });

  it('routes a dead letter at once when none is being routed, and drops one with no exchange', () => {
    const seen: string[] = [];
    const router = new DeadLetterRouter((_q, m) => seen.push(m.routingKey));
    router.add(queue, dead('one'), 'rejected');
    router.add({ deadLetterExchange: undefined } as unknown as Queue, dead('none'), 'rejected');
    router.add(queue, dead('two'), 'maxlen');
    expect(seen).toEqual(['one', 'two']);
  });

  it('lets a stored source go only once the chain its dead letter started is routed whole', async () => {
    // a chain through TTL-0 queues longer than a turn's budget: its copies are in memory only
    // until the last is stored, so the source's record must outlast the turn the chain began in
    const forgotten: QueueEntry[] = [];
    const source = {
      deadLetterExchange: 'dlx',
      forget: (e: QueueEntry) => forgotten.push(e),
    } as unknown as Queue;
    let routed = 0;
    const router = new DeadLetterRouter((_q, m) => {
      routed++;
      if (m.routingKey.length < 300) router.add(queue, dead(`${m.routingKey}x`), 'expired');
    });
    const entry = new QueueEntry(dead('s'), 1, 0);
    router.add(source, dead('s'), 'rejected', entry);
    expect(routed).toBe(256);
    expect(forgotten).toEqual([]);
    for (let i = 0; i < 10 && routed < 300; i++) await turn();
    expect(routed).toBe(300);
    expect(forgotten).toEqual([entry]);
  });
});
