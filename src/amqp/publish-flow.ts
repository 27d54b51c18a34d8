/**
 * Publisher flow control, in the spirit of RabbitMQ's credit flow: a connection may publish a
 * bounded number of messages per tick; past that its socket stops being read until the tick's
 * deliveries and flushes have run. Ingest can then never outrun delivery by more than one
 * tick's worth, so queues with consumers stay short and memory stays bounded under a flood.
 */
import { Phase, requestTick, setPhase, tickCount } from '../util/tick.js';

/** Messages a connection may publish per tick before its socket is paused. */
export const PUBLISH_CREDIT = 500;
/** Messages all connections together may publish per tick (so many publishers cannot outrun delivery). */
export const BROKER_CREDIT = 2000;
/** Body bytes all connections together may publish per tick (large messages). */
export const BROKER_BYTE_CREDIT = 1024 * 1024;

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

/** A connection told of alarms: connection.blocked / unblocked to clients that support it. */
export interface Blockable {
  setBlocked(blocked: boolean, reason?: string): void;
}

/** A connection's reading as flow control sees it (amqp/read-gate.ts). */
export interface FlowConnection extends Pausable, Blockable {
  /** pauses reading until resumeReading() */
  pauseReading(): void;
}

/**
 * Resource alarms (store backlog, memory, disk): while any is raised, a connection that
 * publishes is paused and told connection.blocked; all resume when the last alarm clears.
 */
export class FlowControl {
  private readonly alarms = new Set<string>();
  private credit = BROKER_CREDIT;
  private byteCredit = BROKER_BYTE_CREDIT;
  private creditTick = -1;

  /** Takes one publish of `bytes` from this tick's broker-wide credit; false when it is used up. */
  take(bytes: number): boolean {
    if (this.creditTick !== tickCount) {
      this.creditTick = tickCount;
      this.credit = BROKER_CREDIT;
      this.byteCredit = BROKER_BYTE_CREDIT;
    }
    this.byteCredit -= bytes;
    return --this.credit > 0 && this.byteCredit > 0;
  }
  private waiting: FlowConnection[] = [];
  private readonly connections: () => Iterable<Blockable>;

  constructor(connections: () => Iterable<Blockable>) {
    this.connections = connections;
  }

  get blocked(): boolean {
    return this.alarms.size > 0;
  }

  get reasons(): string[] {
    return [...this.alarms];
  }

  set(alarm: string, on: boolean): void {
    if (on === this.alarms.has(alarm)) return;
    if (on) {
      this.alarms.add(alarm);
      if (this.alarms.size === 1) for (const c of this.connections()) c.setBlocked(true, `low on ${alarm}`);
      return;
    }
    this.alarms.delete(alarm);
    if (this.alarms.size > 0) return;
    for (const c of this.connections()) c.setBlocked(false);
    const w = this.waiting;
    this.waiting = [];
    for (const c of w) c.resumeReading();
  }

  /**
   * A connection published while blocked: stop reading it until the alarms clear. One that
   * opened after the alarm went up is told connection.blocked now (setBlocked sends it once).
   */
  hold(c: FlowConnection): void {
    c.setBlocked(true, `low on ${this.alarms.values().next().value ?? 'resources'}`);
    c.pauseReading();
    this.waiting.push(c);
  }
}
