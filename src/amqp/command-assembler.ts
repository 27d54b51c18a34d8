/**
 * Reassembles a content-bearing command (method → content header → body frames) on one
 * channel. A pure state machine: it owns one buffer per message (never a slice of a socket
 * chunk, which would pin the whole chunk; large ones from util/body-pool.ts) and reports when
 * the command is complete.
 */
import { frameError, preconditionFailed, unexpectedFrame } from '../errors.js';
import { readU64 } from '../protocol/field-table.js';
import { takeBody } from '../util/body-pool.js';

export const AssemblerState = {
  /** expecting a method frame */
  Method: 0,
  /** got a content method, expecting its content header */
  Header: 1,
  /** got the header, expecting body frames */
  Body: 2,
} as const;
export type AssemblerState = (typeof AssemblerState)[keyof typeof AssemblerState];

const EMPTY = Buffer.alloc(0);

export class CommandAssembler {
  state: AssemblerState = AssemblerState.Method;
  /** Method id and decoded arguments of the command being assembled. */
  methodId = 0;
  args: unknown = null;
  /** Raw content header payload after class-id, weight and body-size: flags and properties. */
  properties: Buffer = EMPTY;
  bodySize = 0;
  body: Buffer = EMPTY;
  private received = 0;
  /**
   * The properties of the previous message on this channel. A publisher mostly sends the same
   * ones again: those messages share one buffer (nothing writes into a message's properties;
   * edits make new ones), which saves a copy and ~100 bytes of heap per message held.
   */
  private lastProperties: Buffer = EMPTY;

  /** A content-bearing method arrived. */
  start(methodId: number, args: unknown): void {
    this.state = AssemblerState.Header;
    this.methodId = methodId;
    this.args = args;
  }

  /**
   * A content header frame; returns true when the command is complete (empty body).
   * Payload: class-id u16 | weight u16 | body-size u64 | property flags | properties
   */
  header(buf: Buffer, off: number, len: number, maxBodySize: number): boolean {
    const expectedClass = this.methodId >>> 16;
    if (this.state !== AssemblerState.Header) {
      throw unexpectedFrame('expected method frame, got non method frame instead');
    }
    if (len < 14) throw frameError(`content header of ${len} bytes is too short`, this.methodId);
    const classId = buf.readUInt16BE(off);
    if (classId !== expectedClass) {
      throw unexpectedFrame(
        `expected content header for class ${expectedClass}, got one for class ${classId} instead`,
        this.methodId,
      );
    }
    // a weight other than 0 is not a content header RabbitMQ recognises
    if (buf.readUInt16BE(off + 2) !== 0) {
      throw unexpectedFrame(
        `expected content header for class ${expectedClass}, got non content header frame instead`,
        this.methodId,
      );
    }
    const size = readU64(buf, off + 4);
    if (size > maxBodySize) {
      throw preconditionFailed(
        `message size ${size} is larger than configured max size ${maxBodySize}`,
        this.methodId,
      );
    }
    this.properties = this.sameProperties(buf, off + 12, off + len);
    this.bodySize = size;
    this.received = 0;
    if (size === 0) {
      this.body = EMPTY;
      this.state = AssemblerState.Method;
      return true;
    }
    this.body = takeBody(size);
    this.state = AssemblerState.Body;
    return false;
  }

  /**
   * A content body frame, or a piece of one: `frameLeft` is the frame's payload from this piece
   * on, so a frame bigger than the rest of the body is refused before any of it is taken (a
   * first piece must not complete the body of a frame that then turns out bad). Returns true
   * when the body is complete.
   */
  bodyFrame(buf: Buffer, off: number, len: number, frameLeft = len): boolean {
    if (this.state !== AssemblerState.Body) {
      throw unexpectedFrame('expected method frame, got non method frame instead');
    }
    const carried = this.received + Math.max(len, frameLeft);
    if (carried > this.bodySize) {
      throw unexpectedFrame(
        `content body frames carry ${carried} bytes, more than the ${this.bodySize} the header declared`,
        this.methodId,
      );
    }
    buf.copy(this.body, this.received, off, off + len);
    this.received += len;
    if (this.received < this.bodySize) return false;
    this.state = AssemblerState.Method;
    return true;
  }

  private sameProperties(buf: Buffer, from: number, to: number): Buffer {
    const last = this.lastProperties;
    const n = to - from;
    if (last.length === n) {
      let i = 0;
      if (n <= 64) while (i < n && buf[from + i] === last[i]) i++;
      else if (buf.compare(last, 0, n, from, to) === 0) i = n;
      if (i === n) return last;
    }
    const p = Buffer.from(buf.subarray(from, to));
    this.lastProperties = p;
    return p;
  }

  /** Forgets a partial command (channel closing). */
  reset(): void {
    this.state = AssemblerState.Method;
    this.args = null;
    this.properties = EMPTY;
    this.body = EMPTY;
    this.bodySize = 0;
    this.received = 0;
  }
}
