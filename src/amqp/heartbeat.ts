/**
 * Heartbeats at the negotiated interval, checked every quarter of it: a heartbeat frame goes
 * out after half an interval in which nothing was written (as RabbitMQ does; some clients give
 * up after one silent interval). The peer's side is looked at once per interval, as RabbitMQ
 * does: two looks in a row that find nothing read drop it, so a peer goes 2 to 3 intervals after
 * its last byte (3 when it never sent one after the handshake), not sooner than under RabbitMQ.
 * The connection only flips two flags per read/flush; the timer does the rest.
 */

import { frameError, unexpectedFrame } from '../errors.js';

export const HEARTBEAT_FRAME = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xce]);

/** A heartbeat frame from the peer: on channel 0 (else 505) and empty (else 501, RabbitMQ's text). */
export function checkHeartbeatFrame(channel: number, buf: Buffer, off: number, len: number): void {
  if (channel === 0 && len === 0) return;
  const octets = `type 8, all octets = ${erlangBinary(buf.subarray(off, off + len))}`;
  if (channel !== 0) throw unexpectedFrame(octets);
  throw frameError(`${octets}: unknown_frame`);
}

/** Bytes as Erlang prints a binary: <<"text">> when printable, else <<1,2,3>>. */
function erlangBinary(b: Buffer): string {
  if (b.length > 0 && b.every((c) => c >= 0x20 && c < 0x7f))
    return `<<"${b.toString('latin1').replace(/["\\]/g, '\\$&')}">>`;
  return `<<${[...b].join(',')}>>`;
}

export interface HeartbeatOwner {
  /** writes and flushes one heartbeat frame */
  sendHeartbeat(): void;
  /** the peer went silent for two intervals */
  heartbeatLost(): void;
}

export class Heartbeat {
  /** set on every read from the socket */
  received = true;
  /** set on every flush to the socket */
  sent = false;
  /**
   * Set while the broker is not reading the socket (flow control): the peer's heartbeats wait
   * unread in the socket, so silence then says nothing about the peer (RabbitMQ also pauses its
   * heartbeat monitor for a blocked connection).
   */
  paused = false;
  /** quarter-interval ticks since the last look at the peer's side */
  private ticks = 0;
  /** looks in a row that found nothing read */
  private silentLooks = 0;
  private quietTicks = 0;
  private timer: NodeJS.Timeout | null = null;

  start(seconds: number, owner: HeartbeatOwner): void {
    if (seconds === 0) return;
    this.timer = setInterval(() => this.tick(owner), (seconds * 1000) / 4);
    this.timer.unref();
  }

  private tick(owner: HeartbeatOwner): void {
    if (++this.ticks === 4) {
      this.ticks = 0;
      if (this.received || this.paused) {
        this.received = false;
        this.silentLooks = 0;
      } else if (++this.silentLooks >= 2) {
        this.stop();
        owner.heartbeatLost();
        return;
      }
    }
    if (this.sent) {
      this.sent = false;
      this.quietTicks = 0;
    } else if (++this.quietTicks >= 2) {
      this.quietTicks = 0;
      owner.sendHeartbeat();
      this.sent = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  // ---------------------------------------------------------------- ACK nudges

  /** set on a read; what it read may be answered by nothing (nudgeDue) */
  unanswered = false;
  /** something read is answered once the store has it (a confirm, a commit-ok) */
  answerLater = false;
  /** performance.now() of the last flush that wrote frames */
  private wroteAt = Number.NEGATIVE_INFINITY;

  /** A flush wrote frames: they carry the TCP acknowledgement of what was read. */
  wrote(): void {
    this.sent = true;
    this.unanswered = false;
    this.answerLater = false;
    this.wroteAt = performance.now();
  }

  /**
   * A tick read something and writes nothing: should a heartbeat frame go now, so the TCP
   * acknowledgement of what was read goes at once? Else, on a connection with traffic both
   * ways, the kernel holds it back up to 40 ms (delayed ACK), and a client with Nagle's
   * algorithm on (amqplib's default) holds its next small write until it comes: 5 confirm
   * channels publishing persistent messages, on a connection that also acks deliveries, did a
   * round per 44 ms. Not when an answer follows from the store (a confirm, a commit-ok carries
   * the acknowledgement as soon), nor on a connection not written to for NUDGE_WINDOW_MS (one
   * way traffic is acknowledged promptly). Only where heartbeats were negotiated (the caller's
   * test): such a client takes a heartbeat frame at any time (a peer not using them must
   * discard them, says the spec).
   */
  nudgeDue(): boolean {
    this.unanswered = false;
    if (this.answerLater) {
      this.answerLater = false;
      return false;
    }
    return performance.now() - this.wroteAt <= NUDGE_WINDOW_MS;
  }
}

/** A connection written to this recently (ms) has traffic both ways (Heartbeat.nudgeDue). */
const NUDGE_WINDOW_MS = 200;
