/**
 * The delivery phase of the tick: queues that have ready messages and consumers mark themselves
 * here once; each pass lets every such queue deliver up to its budget, and queues with work left
 * go round again on the next tick, so one busy queue cannot starve the event loop.
 */
import { Phase, requestTick, setPhase } from '../util/tick.js';

interface Deliverable {
  scheduled: boolean;
  deleted: boolean;
  /** returns true when it stopped on its budget with work left */
  deliverPass(): boolean;
}

let dirty: Deliverable[] = [];
let spare: Deliverable[] = [];

function runDeliveries(): void {
  const list = dirty;
  dirty = spare;
  let i = 0;
  try {
    for (; i < list.length; i++) {
      const q = list[i]!;
      q.scheduled = false;
      if (q.deleted) continue;
      if (q.deliverPass()) scheduleDelivery(q);
    }
  } finally {
    // a pass that threw (a bug, reported by the tick) must not strand the queues after it
    for (i++; i < list.length; i++) {
      list[i]!.scheduled = false;
      scheduleDelivery(list[i]!);
    }
    list.length = 0;
    spare = list;
  }
}

setPhase(Phase.Deliver, runDeliveries);

export function scheduleDelivery(q: Deliverable): void {
  if (q.scheduled) return;
  q.scheduled = true;
  dirty.push(q);
  requestTick(Phase.Deliver);
}
