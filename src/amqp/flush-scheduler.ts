/**
 * One flush per touched connection per tick: a connection that wrote frames marks itself dirty
 * once; the flush phase of the tick drains them all, each as one corked batch of writes.
 */
import { Phase, requestTick, setPhase } from '../util/tick.js';

export interface Flushable {
  /** Writes out whatever has been buffered. */
  flush(): void;
}

const dirty: Flushable[] = [];

function flushAll(): void {
  // a flush may mark another connection dirty; the loop picks it up in this same pass
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  dirty.length = 0;
}

setPhase(Phase.Flush, flushAll);

/** Queues `c` for the next flush pass. Callers keep their own "already queued" flag. */
export function scheduleFlush(c: Flushable): void {
  dirty.push(c);
  requestTick(Phase.Flush);
}
