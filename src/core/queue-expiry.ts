/**
 * x-expires: a queue unused for that many milliseconds (no consumers, no basic.get, not
 * redeclared) is deleted. One timer per such queue, re-armed for the time left.
 */
import type { Queue } from './queue.js';

/** setTimeout's longest delay (a longer one fires at once); a later expiry re-arms when it fires. */
const MAX_DELAY = 2 ** 31 - 1;

export function armQueueExpiry(q: Queue, remove: () => void): void {
  const v = q.args['x-expires'];
  const ms = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0;
  if (ms <= 0) return;
  const check = () => {
    if (q.deleted) return;
    const idle = Date.now() - q.lastUsed;
    q.idleTimer = null;
    if (q.consumerCount === 0 && idle >= ms) remove();
    else q.idleTimer = setTimeout(check, Math.min(MAX_DELAY, q.consumerCount > 0 ? ms : ms - idle)).unref();
  };
  // the queue keeps its timer: deleting it clears the timer, which would hold it until it fired
  q.idleTimer = setTimeout(check, Math.min(MAX_DELAY, ms)).unref();
}
