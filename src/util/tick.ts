/**
 * The broker's tick: one setImmediate runs every phase in order (deliveries, store commit,
 * confirms, socket flush). Work that is batched "per tick" requests a tick instead of
 * scheduling its own callback, so a burst of publishes costs one timer, not one per message.
 */

export const Phase = {
  /** queues deliver to consumers */
  Deliver: 0,
  /** the store commits the batch and settles confirms */
  Commit: 1,
  /** connections write out their buffers */
  Flush: 2,
  /** publishers paused for the tick read again */
  Resume: 3,
  /** the loop naps after a turn of crumbs (coalesce.ts) */
  Nap: 4,
} as const;

const phases: ((() => void) | undefined)[] = [];
let scheduled = false;
/** index of the phase running now, -1 outside a tick */
let running = -1;

/** Installs the single runner of a phase. */
export function setPhase(phase: number, fn: () => void): void {
  phases[phase] = fn;
}

/** Asks for `phase` to run soon: later in this tick if it has not run yet, else next tick. */
export function requestTick(phase: number): void {
  if (running >= 0 && phase > running) return;
  if (!scheduled) {
    scheduled = true;
    setImmediate(runTick);
  }
}

let onError: (e: unknown) => void = (e) => {
  queueMicrotask(() => {
    throw e;
  });
};

/** Where a phase's unexpected exception goes (the broker logs it); the other phases still run. */
export function setTickErrorHandler(fn: (e: unknown) => void): void {
  onError = fn;
}

/** True when another tick has been asked for (work is waiting). */
export function tickPending(): boolean {
  return scheduled;
}

/** Counts ticks, so per-tick budgets can tell a new tick from the current one. */
export let tickCount = 0;

function runTick(): void {
  scheduled = false;
  tickCount++;
  for (let i = 0; i < phases.length; i++) {
    running = i;
    try {
      phases[i]?.();
    } catch (e) {
      onError(e);
    }
  }
  running = -1;
}
