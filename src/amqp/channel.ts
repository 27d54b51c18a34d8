/**
 * Per-channel state and dispatch: an integer switch on the method id to the handlers of each
 * class, content reassembly, and the closing handshake (after we send channel.close, frames are
 * discarded until close-ok).
 */
import { type AmqpError, commandInvalid, notImplemented, unexpectedFrame } from '../errors.js';
import {
  type ChannelClose,
  type ChannelFlow,
  encodeChannelClose,
  type MethodArgs,
} from '../protocol/generated/methods.js';
import { hasContent, isClientMethod, Method, methodName } from '../protocol/generated/spec.js';
import { AssemblerState, CommandAssembler } from './command-assembler.js';
import type { Connection } from './connection.js';
import { channelClose, channelCloseOk, channelFlow, channelOpenAgain } from './handlers/channel.js';

export const ChannelState = {
  Open: 0,
  /** we sent channel.close and wait for close-ok */
  Closing: 1,
  Closed: 2,
} as const;
export type ChannelState = (typeof ChannelState)[keyof typeof ChannelState];

export class Channel {
  readonly conn: Connection;
  readonly number: number;
  state: ChannelState = ChannelState.Open;
  /** channel.flow: false while the client asked us to stop sending content. */
  flowActive = true;
  readonly assembler = new CommandAssembler();

  constructor(conn: Connection, number: number) {
    this.conn = conn;
    this.number = number;
  }

  onFrame(type: number, buf: Buffer, off: number, len: number, id: number): void {
    if (this.state === ChannelState.Closing) {
      // only close-ok (or a crossing close) is looked at while closing
      if (type === 1 && (id === Method.CHANNEL_CLOSE_OK || id === Method.CHANNEL_CLOSE)) {
        this.finishClose(id === Method.CHANNEL_CLOSE);
      }
      return;
    }
    const asm = this.assembler;
    switch (type) {
      case 1: {
        if (asm.state !== AssemblerState.Method) {
          throw unexpectedFrame(
            `expected content header for class ${asm.methodId >>> 16}, got non content header frame instead`,
            asm.methodId,
          );
        }
        const args = this.conn.decode(id, buf, off, len);
        if (!isClientMethod(id)) throw commandInvalid(`${methodName(id)} cannot be sent by a client`);
        if (hasContent(id)) asm.start(id, args);
        else this.method(id, args);
        return;
      }
      case 2:
        if (asm.state === AssemblerState.Method) {
          throw unexpectedFrame('expected method frame, got non method frame instead');
        }
        if (asm.header(buf, off, len, this.conn.ctx.config.maxMessageSize)) this.command();
        return;
      case 3:
        if (asm.state === AssemblerState.Header) {
          throw unexpectedFrame(
            `expected content header for class ${asm.methodId >>> 16}, got non content header frame instead`,
            asm.methodId,
          );
        }
        if (asm.bodyFrame(buf, off, len)) this.command();
        return;
    }
  }

  /** A method without content. */
  private method(id: number, args: MethodArgs): void {
    switch (id) {
      case Method.CHANNEL_OPEN:
        channelOpenAgain(this);
        return;
      case Method.CHANNEL_CLOSE:
        channelClose(this, args as ChannelClose);
        return;
      case Method.CHANNEL_CLOSE_OK:
        channelCloseOk(this);
        return;
      case Method.CHANNEL_FLOW:
        channelFlow(this, args as ChannelFlow);
        return;
      case Method.CHANNEL_FLOW_OK:
        // the answer to a channel.flow we sent; we never send one, so there is nothing to do
        return;
      default:
        throw notImplemented(`${methodName(id)} is not implemented yet`);
    }
  }

  /** A complete content-bearing command (basic.publish). */
  private command(): void {
    const asm = this.assembler;
    const id = asm.methodId;
    asm.reset();
    throw notImplemented(`${methodName(id)} is not implemented yet`, id);
  }

  /** Soft error: send channel.close and discard frames until close-ok. */
  closeWithError(e: AmqpError): void {
    this.conn.log.debug(
      { channel: this.number, code: e.code, text: e.replyText },
      'closing channel on error',
    );
    this.release();
    this.state = ChannelState.Closing;
    encodeChannelClose(this.conn.out, this.number, {
      replyCode: e.code,
      replyText: e.replyText,
      classId: e.classId,
      methodId: e.methodId,
    });
    this.conn.markDirty();
  }

  /** close-ok arrived for our channel.close (or the client's close crossed ours). */
  private finishClose(replyCloseOk: boolean): void {
    if (replyCloseOk) channelClose(this, null);
    else this.closed();
  }

  /** The channel is gone: its number may be reused. */
  closed(): void {
    this.state = ChannelState.Closed;
    this.conn.channelClosed(this.number);
  }

  /** Frees everything the channel holds (consumers, unacked messages, partial content). */
  release(): void {
    this.assembler.reset();
  }
}
