/**
 * A clock read once per broker timer tick instead of once per message: hot-path timestamps
 * (such as when a delivery went out, for the consumer timeout) need only be about right.
 */

/** How often the broker updates the clock: a reading is at most this old. */
export const COARSE_PERIOD_MS = 200;

let now = Date.now();

/** Milliseconds since the epoch, as of the last update (at most a timer period old). */
export function coarseNow(): number {
  return now;
}

/** Called by the broker's periodic timer. */
export function updateCoarseClock(): void {
  now = Date.now();
}
