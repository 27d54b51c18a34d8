/**
 * One AMQP connection per socket: protocol header, frame dispatch to channel 0 (the handshake
 * and connection methods) and to channels, heartbeats, output flushing, and the single catch
 * site of the error model (DESIGN.md §4).
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { User } from '../core/users.js';
import type { VHost } from '../core/vhost.js';
import {
  AmqpError,
  ConnectionError,
  channelError,
  frameError,
  internalError,
  notAllowed,
  unexpectedFrame,
} from '../errors.js';
import type { FieldTable } from '../protocol/field-table.js';
import { FrameError, FrameParser, type FrameSink } from '../protocol/frame-parser.js';
import {
  encodeChannelCloseOk,
  encodeChannelOpenOk,
  encodeConnectionBlocked,
  encodeConnectionClose,
  encodeConnectionCloseOk,
  encodeConnectionUnblocked,
  type MethodArgs,
} from '../protocol/generated/methods.js';
import { Method } from '../protocol/generated/spec.js';
import { OutBuffer } from '../protocol/out-buffer.js';
import { inflow } from '../util/coalesce.js';
import { readShared } from '../util/shared-read.js';
import { BodyRecycler } from './body-recycler.js';
import { Channel } from './channel.js';
import { ClosedThisTurn, type ConnectionContext, ConnState } from './connection-state.js';
import { anyConsumers, wakeAllConsumers } from './consumer.js';
import { decodeArgs } from './decode-args.js';
import { scheduleFlush } from './flush-scheduler.js';
import { connectionMethod } from './handlers/connection.js';
import { handshakeMethod, readProtocolHeader } from './handshake.js';
import { checkHeartbeatFrame, HEARTBEAT_FRAME, Heartbeat, type HeartbeatOwner } from './heartbeat.js';
import { ReadGate } from './read-gate.js';

export const PROTOCOL_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
/** After sending connection.close, wait this long for close-ok before dropping the socket. */
const CLOSE_OK_TIMEOUT = 3_000;
/** Deliveries pause while this many bytes wait in the output buffer. */
const OUT_BUFFER_LIMIT = 1024 * 1024;

export { type ConnectionContext, ConnState };

let nextConnectionId = 1;

export class Connection implements FrameSink, HeartbeatOwner {
  readonly id = nextConnectionId++;
  readonly socket: Socket;
  readonly ctx: ConnectionContext;
  readonly log: Logger;
  readonly out = new OutBuffer();
  /** bodies of finished messages waiting for the write that carries them (body-recycler.ts) */
  readonly bodies = new BodyRecycler();
  readonly parser: FrameParser;
  readonly peer: string;
  readonly openedAt = Date.now();
  state: ConnState = ConnState.Header;

  // negotiated in tune/tune-ok
  channelMax: number;
  frameMax: number;
  heartbeat = 0;

  user: User | null = null;
  vhost: VHost | null = null;
  clientProperties: FieldTable = {};
  /** Client capabilities from start-ok. */
  capAuthFailureClose = false;
  capBlocked = false;
  capConsumerCancelNotify = false;
  /** connection.blocked currently in force (sent to the client). */
  blocked = false;

  readonly channels = new Map<number, Channel>();
  /** protocol header bytes received so far; null once it is complete */
  header: Buffer | null = Buffer.alloc(0);
  private queuedForFlush = false;
  /** The socket accepted everything written so far (false until 'drain'). */
  writable = true;
  /** a consumer was refused for backpressure; wake consumers when writes resume */
  private stalled = false;
  readonly heartbeats = new Heartbeat();
  /** when the socket is read: publish credit, queue pacing and holds, alarms (read-gate.ts) */
  readonly gate = new ReadGate(this, this.heartbeats);
  private handshakeTimer: NodeJS.Timeout | null;
  private closeTimer: NodeJS.Timeout | null = null;
  private closeReason = '';

  constructor(socket: Socket, ctx: ConnectionContext) {
    this.socket = socket;
    this.ctx = ctx;
    this.channelMax = ctx.config.channelMax;
    this.frameMax = ctx.config.frameMax;
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.log = ctx.log.child({ conn: this.id, peer: this.peer });
    this.parser = new FrameParser(this, ctx.config.frameMax);
    socket.setNoDelay(true);
    const onData = (chunk: Buffer) => this.onData(chunk);
    if (!readShared(socket, onData)) socket.on('data', onData);
    socket.on('drain', () => {
      this.writable = true;
      this.wakeConsumers();
      this.gate.drained();
    });
    socket.on('error', (err) => {
      this.log.debug({ err: err.message }, 'socket error');
    });
    socket.on('close', () => this.onSocketClosed());
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = null;
      if (this.state < ConnState.Open) {
        this.log.warn({ state: this.state }, 'handshake timed out; closing the socket');
        this.destroy('handshake timeout');
      }
    }, ctx.config.handshakeTimeout);
    this.handshakeTimer.unref();
  }

  hasConsumers(): boolean {
    return anyConsumers(this.channels.values());
  }

  // ---------------------------------------------------------------- input

  private onData(chunk: Buffer): void {
    this.heartbeats.received = true;
    inflow.bytes += chunk.length;
    if (this.state === ConnState.Closed) return;
    try {
      if (this.header !== null) {
        chunk = readProtocolHeader(this, chunk);
        if (chunk.length === 0) return;
      }
      this.parser.push(chunk);
    } catch (e) {
      this.fail(e, 0, 0, 0);
    }
    if (this.heartbeat > 0 && this.state === ConnState.Open) {
      // a heartbeat frame may be due as an ACK nudge (Heartbeat.nudgeDue)
      this.heartbeats.unanswered = true;
      this.markDirty();
    }
  }

  /** A wrong protocol header: reply with ours and close (spec), logging what came. */
  rejectHeader(got: Buffer): void {
    this.log.info({ header: got.toString('latin1') }, 'bad protocol header; replying with ours and closing');
    this.state = ConnState.Closed;
    this.socket.write(PROTOCOL_HEADER);
    this.endSocket();
  }

  /** `frameLeft`: for a body frame handed over in pieces, its payload from this piece on. */
  onFrame(type: number, channel: number, buf: Buffer, off: number, len: number, frameLeft = len): void {
    if (this.state === ConnState.Closing) {
      this.onFrameWhileClosing(type, channel, buf, off, len);
      return;
    }
    let classId = 0;
    let methodId = 0;
    try {
      switch (type) {
        case 1: {
          if (len < 4) throw frameError(`method frame of ${len} bytes is too short for a method id`);
          const id = buf.readUInt32BE(off);
          classId = id >>> 16;
          methodId = id & 0xffff;
          if (channel === 0) this.channel0Method(id, decodeArgs(id, buf, off, len));
          else this.channelFrame(type, channel, buf, off, len, id);
          return;
        }
        case 2:
        case 3:
          if (channel === 0) throw unexpectedFrame(`content frame of type ${type} on channel 0`);
          // a body frame's id slot carries how much of the frame is still to come
          this.channelFrame(type, channel, buf, off, len, type === 3 ? frameLeft : 0);
          return;
        case 8:
          // heartbeat: receipt alone resets the missed-heartbeat count
          checkHeartbeatFrame(channel, buf, off, len);
          return;
        default:
          throw frameError(`unknown frame type ${type}`);
      }
    } catch (e) {
      this.fail(e, channel, classId, methodId);
    }
  }

  /** Part of a body frame that straddles socket chunks: the assembler copies it into the body. */
  onBodyPiece(channel: number, buf: Buffer, off: number, len: number, frameLeft: number): void {
    this.onFrame(3, channel, buf, off, len, frameLeft);
  }

  private channelFrame(type: number, n: number, buf: Buffer, off: number, len: number, id: number): void {
    if (this.state !== ConnState.Open) {
      throw channelError(`frame on channel ${n} before the connection is open`);
    }
    const ch = this.channels.get(n);
    if (ch === undefined) {
      if (this.closedThisTurn.has(n) && !(type === 1 && id === Method.CHANNEL_OPEN)) {
        this.afterOwnClose(n, type, id);
        return;
      }
      if (type !== 1)
        throw unexpectedFrame(`expected method frame, got non method frame on unopened channel ${n}`);
      if (id !== Method.CHANNEL_OPEN) throw channelError("expected 'channel.open'");
      decodeArgs(id, buf, off, len);
      // as RabbitMQ, channel-max bounds how many channels are open, not their numbers
      if (this.channels.size >= this.channelMax) {
        const open = this.channels.size;
        const e = notAllowed(
          `number of channels opened (${open}) has reached the negotiated channel_max (${this.channelMax})`,
        );
        e.noMethod = true; // RabbitMQ names no method (0/0)
        throw e;
      }
      this.channels.set(n, new Channel(this, n, this.vhost!));
      encodeChannelOpenOk(this.out, n, {});
      this.markDirty();
      return;
    }
    ch.onFrame(type, buf, off, len, id);
  }

  private channel0Method(id: number, args: MethodArgs): void {
    if (this.state !== ConnState.Open) handshakeMethod(this, id, args);
    else connectionMethod(this, id, args);
  }

  /**
   * Client-initiated close: release all (exclusive queues go now), confirm, and leave the socket
   * for the client to close, as RabbitMQ does: an EOF from us can beat the client's own shutdown
   * (amqp091-go reports it as a 501 to every waiting caller). Cut off after the timeout.
   */
  closedByClient(): void {
    this.closeReason = 'client closed the connection';
    this.parser.stopped = true;
    this.heartbeats.stop();
    this.releaseAll();
    encodeConnectionCloseOk(this.out, 0, {});
    this.flush();
    this.state = ConnState.Closed;
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_OK_TIMEOUT);
    this.closeTimer.unref();
  }

  /** After we sent connection.close: only close-ok (or a crossing close) matters. */
  private onFrameWhileClosing(type: number, channel: number, buf: Buffer, off: number, len: number): void {
    if (type !== 1 || channel !== 0 || len < 4) return;
    const id = buf.readUInt32BE(off);
    if (id === Method.CONNECTION_CLOSE_OK) {
      this.destroy(this.closeReason);
    } else if (id === Method.CONNECTION_CLOSE) {
      encodeConnectionCloseOk(this.out, 0, {});
      this.flush();
      this.destroy(this.closeReason);
    }
  }

  // ---------------------------------------------------------------- errors

  /**
   * The single catch site: soft errors close their channel, hard ones (and anything on
   * channel 0 or at the framing level) close the connection; anything else is a bug, logged
   * with its stack and answered with 541.
   */
  fail(e: unknown, channel: number, classId: number, methodId: number): void {
    if (this.state === ConnState.Closed || this.state === ConnState.Closing) return;
    if (e instanceof FrameError) {
      this.parser.stopped = true;
      this.closeWithError(frameError(e.message), 0, 0, true);
      return;
    }
    if (!(e instanceof AmqpError)) {
      this.out.abandonFrame();
      this.log.error({ err: e }, 'internal error; closing the connection with 541');
      this.closeWithError(internalError('internal error'), classId, methodId, false);
      return;
    }
    if (e.classId === 0 && e.methodId === 0 && !e.noMethod) {
      e.classId = classId;
      e.methodId = methodId;
    }
    const ch = channel === 0 ? undefined : this.channels.get(channel);
    if (!e.hard && ch !== undefined && !(e instanceof ConnectionError)) {
      ch.closeWithError(e);
      return;
    }
    this.closeWithError(e, e.classId, e.methodId, e.code === 501);
  }

  private closeWithError(e: AmqpError, classId: number, methodId: number, streamBroken: boolean): void {
    this.log.info({ code: e.code, text: e.replyText, classId, methodId }, 'closing connection on error');
    if (this.state < ConnState.Tune && !(this.state === ConnState.Start && this.capAuthFailureClose)) {
      // Before tune the client cannot be sent connection.close (spec: close the socket).
      this.closeReason = e.replyText;
      this.destroy(e.replyText);
      return;
    }
    this.sendClose(e.code, e.replyText, classId, methodId);
    if (streamBroken) {
      // framing is lost, so close-ok cannot be read: stop parsing and end our side now
      this.parser.stopped = true;
      this.endSocket();
    }
  }

  /** Sends connection.close and waits (bounded) for close-ok. */
  sendClose(code: number, text: string, classId: number, methodId: number): void {
    if (this.state === ConnState.Closing || this.state === ConnState.Closed) return;
    this.closeReason = text;
    this.releaseAll();
    encodeConnectionClose(this.out, 0, { replyCode: code, replyText: text, classId, methodId });
    this.flush();
    this.state = ConnState.Closing;
    this.gate.closing();
    this.heartbeats.stop();
    this.closeTimer = setTimeout(() => this.destroy(text), CLOSE_OK_TIMEOUT);
    this.closeTimer.unref();
  }

  // ---------------------------------------------------------------- channels

  /** Channels give back what they hold and exclusive queues go; safe to repeat. */
  private releaseAll(): void {
    for (const ch of this.channels.values()) ch.release();
    this.channels.clear();
    this.vhost?.connectionClosed(this.id);
  }

  /** Called by a channel once it is fully closed (close-ok sent or received). */
  channelClosed(n: number): void {
    this.channels.delete(n);
  }

  /** Channels the client closed in this turn of the loop (what it wrote with the close). */
  private readonly closedThisTurn = new ClosedThisTurn();

  /** The client closed channel `n` (channel.close answered). */
  channelClosedByClient(n: number): void {
    this.closedThisTurn.add(n);
  }

  /**
   * A frame the client sent on a channel after closing it, in the same write (read in the same
   * turn of the loop): RabbitMQ's channel is still winding down then, drops such frames and
   * answers another channel.close with close-ok, where a frame that comes later is a connection
   * error (504). A client racing a publish against its own channel.close keeps its connection.
   */
  private afterOwnClose(n: number, type: number, id: number): void {
    if (type === 1 && id === Method.CHANNEL_CLOSE) {
      encodeChannelCloseOk(this.out, n, {});
      this.markDirty();
    }
  }

  get channelCount(): number {
    return this.channels.size;
  }

  // ---------------------------------------------------------------- heartbeats & blocking

  sendHeartbeat(): void {
    this.out.bytes(HEARTBEAT_FRAME);
    this.flush();
  }

  heartbeatLost(): void {
    this.log.warn({ heartbeat: this.heartbeat }, 'missed heartbeats from client; closing the socket');
    // reset, not an orderly end: RabbitMQ's sockets linger 0, and clients tell the two apart
    // (Bunny takes an end for an empty reply and keeps the connection as open)
    this.closeReason ||= `missed heartbeats from client, timeout: ${this.heartbeat}s`;
    this.state = ConnState.Closed;
    this.socket.resetAndDestroy();
  }

  /** connection.blocked / unblocked, sent only to clients that advertise the capability. */
  setBlocked(blocked: boolean, reason = 'low on resources'): void {
    if (blocked === this.blocked || !this.capBlocked || this.state !== ConnState.Open) return;
    this.blocked = blocked;
    if (blocked) encodeConnectionBlocked(this.out, 0, { reason });
    else encodeConnectionUnblocked(this.out, 0, {});
    this.markDirty();
  }

  // ---------------------------------------------------------------- output

  markDirty(): void {
    if (!this.queuedForFlush) {
      this.queuedForFlush = true;
      scheduleFlush(this);
    }
  }

  flush(): void {
    this.queuedForFlush = false;
    const chunks = this.out.take();
    if (chunks.length === 0) {
      if (
        this.heartbeats.unanswered &&
        this.heartbeats.nudgeDue() &&
        this.writable &&
        !this.socket.destroyed
      ) {
        this.heartbeats.sent = true;
        this.socket.write(HEARTBEAT_FRAME);
      }
      return;
    }
    this.heartbeats.wrote();
    if (this.socket.destroyed) return;
    const last = chunks.length - 1;
    if (last > 0) this.socket.cork();
    for (let i = 0; i < last; i++) this.socket.write(chunks[i]!);
    // the last write's callback tells the recycler this flush is out (body-recycler.ts)
    this.bodies.started++;
    const ok = this.socket.write(chunks[last]!, this.bodies.onWritten);
    if (last > 0) this.socket.uncork();
    if (!ok) this.writable = false;
    else {
      if (this.stalled) this.wakeConsumers();
      this.gate.drained();
    }
  }

  /**
   * Backpressure: consumers on this connection take messages only while the socket accepts
   * writes and the output buffer is under its bound.
   */
  canWrite(): boolean {
    if (this.writable && this.out.length < OUT_BUFFER_LIMIT) return true;
    this.stalled = true;
    return false;
  }

  private wakeConsumers(): void {
    this.stalled = false;
    wakeAllConsumers(this.channels);
  }

  // ---------------------------------------------------------------- lifecycle

  opened(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.state = ConnState.Open;
    this.heartbeats.start(this.heartbeat, this);
  }

  /** Server-initiated close (e.g. shutdown): connection.close, then wait for close-ok. */
  forceClose(code: number, text: string): void {
    if (this.state === ConnState.Open) this.sendClose(code, text, 0, 0);
    else this.destroy(text);
  }

  /** Ends our side once queued writes are out; destroys it if the peer does not close soon. */
  private endSocket(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_OK_TIMEOUT).unref();
  }

  destroy(reason: string): void {
    if (!this.closeReason) this.closeReason = reason;
    this.state = ConnState.Closed;
    this.flush();
    this.socket.destroy();
  }

  private onSocketClosed(): void {
    const wasOpen = this.user !== null && this.vhost !== null;
    this.state = ConnState.Closed;
    this.heartbeats.stop();
    this.bodies.drop();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.releaseAll();
    if (wasOpen) {
      this.log.info(
        {
          user: this.user?.name,
          vhost: this.vhost?.name,
          durationMs: Date.now() - this.openedAt,
          reason: this.closeReason || 'client closed the socket',
        },
        'connection closed',
      );
    }
    this.ctx.connectionClosed(this);
  }
}
