/**
 * One flush per touched connection per tick: a connection that wrote frames marks itself dirty
 * once; a single setImmediate drains them all, each as one corked batch of writes (one writev).
 */

export interface Flushable {
  /** Writes out whatever has been buffered. */
  flush(): void;
}

const dirty: Flushable[] = [];
let scheduled = false;

function run(): void {
  scheduled = false;
  // a flush may mark another connection dirty; the loop picks it up in this same pass
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  dirty.length = 0;
}

/** Queues `c` for the next flush pass. Callers keep their own "already queued" flag. */
export function scheduleFlush(c: Flushable): void {
  dirty.push(c);
  if (!scheduled) {
    scheduled = true;
    setImmediate(run);
  }
}
