/**
 * When a connection's socket is read. Reading stops for the rest of the tick once the
 * connection used its publish credit (publish-flow.ts) or a busy queue paces it (on a saturated
 * broker, until the queue earns one more publish), until release while congested queues hold it
 * (core/queue-congestion.ts), and until the alarms clear while the broker is blocked
 * (FlowControl). Resuming restores the credit and parses what was held.
 */
import type { Socket } from 'node:net';
import type { HeldPublisher } from '../core/queue-congestion.js';
import type { FrameParser } from '../protocol/frame-parser.js';
import { inflow, STREAMING, turn } from '../util/coalesce.js';
import { type ConnectionContext, ConnState } from './connection-state.js';
import type { Heartbeat } from './heartbeat.js';
import { type FlowConnection, PUBLISH_CREDIT, scheduleResume } from './publish-flow.js';

/** The connection as its gate sees it. */
export interface GatedConnection {
  readonly socket: Socket;
  readonly parser: FrameParser;
  readonly ctx: ConnectionContext;
  readonly state: ConnState;
  setBlocked(blocked: boolean, reason?: string): void;
  /** false while its own output is backed up */
  canWrite(): boolean;
  fail(e: unknown, channel: number, classId: number, methodId: number): void;
  /** true when some channel consumes (its publishes may be replies to our deliveries) */
  hasConsumers(): boolean;
}

export class ReadGate implements FlowConnection, HeldPublisher {
  /** publishes left this tick before reading pauses */
  private credit = PUBLISH_CREDIT;
  private paused = false;
  /** queues holding this connection's reading */
  private holds = 0;
  /** reading waits for the socket to drain (backedUp) */
  private drainWait = false;
  /** tx.commit-oks not yet sent: nothing more is read until they are (handlers/tx.ts) */
  private commits = 0;
  /** reading paused for its publishing (credit, a congested queue): an alarm holds it then */
  private publishing = false;
  /** the turn this connection's publishes are counted for, and how many so far (coalesce.ts) */
  private turn = -1;
  private turnPublishes = 0;

  constructor(
    private readonly conn: GatedConnection,
    private readonly heartbeats: Heartbeat,
  ) {}

  setBlocked(blocked: boolean, reason?: string): void {
    this.conn.setBlocked(blocked, reason);
  }

  /** Counts one publish against this tick's credit; pauses reading when it runs out. */
  published(bytes: number, openLoop: boolean): void {
    if (openLoop) {
      inflow.publishes++;
      if (this.turn !== turn) {
        this.turn = turn;
        this.turnPublishes = 0;
      }
      if (++this.turnPublishes === STREAMING && !this.conn.hasConsumers()) inflow.streams++;
    }
    if (this.paused) return;
    const flow = this.conn.ctx.flow;
    if (flow.blocked) {
      this.publishing = true;
      flow.hold(this);
      return;
    }
    const broker = flow.take(bytes);
    if (--this.credit <= 0 || !broker) {
      this.publishing = true;
      this.yieldTick();
    }
  }

  pauseReading(): void {
    this.paused = true;
    this.heartbeats.paused = true;
    this.conn.parser.hold = true;
    this.conn.socket.pause();
  }

  /** A congested queue stops reading this connection until release(). */
  hold(): boolean {
    if (!this.conn.canWrite()) return false;
    this.publishing = true;
    this.holds++;
    if (!this.paused) this.pauseReading();
    return true;
  }

  release(): void {
    if (--this.holds === 0) this.resumeReading();
  }

  releaseLater(): void {
    if (--this.holds === 0) scheduleResume(this);
  }

  /**
   * The peer asks for replies (basic.get, mandatory publishes that come back) without reading
   * them: read nothing more from it until its socket drains, so its output cannot grow without
   * bound. Consumer deliveries need not this: they wait for canWrite() themselves.
   */
  backedUp(): void {
    if (this.drainWait || this.conn.canWrite()) return;
    this.drainWait = true;
    if (!this.paused) this.pauseReading();
  }

  /** A tx.commit waits for the store: read nothing more until commitDone(). */
  waitCommit(): void {
    this.commits++;
    if (!this.paused) this.pauseReading();
  }

  /** A tx.commit was answered: reading goes on (next tick) once no other waits. */
  commitDone(): void {
    if (--this.commits === 0) scheduleResume(this);
  }

  /** The socket took what was written: reading goes on (next tick) if backedUp() stopped it. */
  drained(): void {
    if (!this.drainWait) return;
    this.drainWait = false;
    scheduleResume(this);
  }

  /** Stops reading until the resume phase of this tick. */
  yieldTick(): void {
    if (this.paused) return;
    this.pauseReading();
    scheduleResume(this);
  }

  get holdLimitMs(): number {
    return this.conn.ctx.config.flowHoldLimit;
  }

  /**
   * connection.close went out: whatever held the connection (an alarm, a hold, a commit), it is
   * read again, so the client's close-ok is seen and the socket closed at once, as RabbitMQ does
   * (the Erlang client gives a close 1 s).
   */
  closing(): void {
    this.holds = 0;
    this.drainWait = false;
    this.commits = 0;
    this.publishing = false;
    if (!this.paused) return;
    this.paused = false;
    this.heartbeats.paused = false;
    this.conn.socket.resume();
    try {
      this.conn.parser.resume();
    } catch {
      // the connection is closing anyway
    }
  }

  resumeReading(): void {
    this.credit = PUBLISH_CREDIT;
    if (!this.paused || this.holds > 0 || this.drainWait || this.commits > 0) return;
    const flow = this.conn.ctx.flow;
    // a connection paused for anything but its publishing (a tx.commit, replies it does not
    // read) reads on: RabbitMQ blocks only publishers, and holding it would stall its acks
    if (flow.blocked && this.publishing) {
      flow.hold(this);
      return;
    }
    this.publishing = false;
    this.paused = false;
    this.heartbeats.paused = false;
    if (this.conn.state === ConnState.Closed) return;
    this.conn.socket.resume();
    try {
      this.conn.parser.resume();
    } catch (e) {
      this.conn.fail(e, 0, 0, 0);
    }
  }
}
