/**
 * Publisher flow control, in the spirit of RabbitMQ's credit flow: a connection may publish a
 * bounded number of messages per tick; past that its socket stops being read until the tick's
 * deliveries and flushes have run. Ingest can then never outrun delivery by more than one
 * tick's worth, so queues with consumers stay short and memory stays bounded under a flood.
 */
import { Phase, requestTick, setPhase } from '../util/tick.js';

/** Messages a connection may publish per tick before its socket is paused. */
export const PUBLISH_CREDIT = 500;

export interface Pausable {
  /** reads the socket again and restores the credit */
  resumeReading(): void;
}

let paused: Pausable[] = [];

setPhase(Phase.Resume, () => {
  const list = paused;
  paused = [];
  for (const c of list) c.resumeReading();
});

/** Pauses are lifted in the resume phase, after this tick's deliveries and flushes. */
export function scheduleResume(c: Pausable): void {
  paused.push(c);
  requestTick(Phase.Resume);
}
