/**
 * The error model (DESIGN.md §4). Handlers throw; the connection is the one catch site that
 * stamps the failing method's ids, formats the RabbitMQ-shaped reply text and closes the
 * channel (soft) or the connection (hard).
 */

import { isHardError, ReplyCode, replyCodeName } from './protocol/generated/spec.js';

export class AmqpError extends Error {
  /** Class and method id of the frame that caused it; filled in by the connection if 0. */
  classId = 0;
  methodId = 0;
  /** The close names no method (0, 0), as RabbitMQ's refused login does. */
  noMethod = false;
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }

  /** True when this error closes the whole connection rather than one channel. */
  get hard(): boolean {
    return isHardError(this.code);
  }

  /**
   * `NOT_FOUND - no queue 'q' in vhost '/'`. Over the 255 bytes a shortstr allows it keeps its
   * first 252 bytes and ends in "...", as RabbitMQ does (but never splits a character).
   */
  get replyText(): string {
    const text = `${replyCodeName(this.code)} - ${this.message}`;
    return Buffer.byteLength(text) <= 255 ? text : `${truncateUtf8(text, 252)}...`;
  }
}

/** A soft error: closes the channel. */
export class ChannelError extends AmqpError {}
/** A hard error: closes the connection. */
export class ConnectionError extends AmqpError {}

/** An error factory for one reply code; `method` (class << 16 | method) stamps the culprit. */
function make(code: number): (text: string, method?: number) => AmqpError {
  return (text: string, method?: number) => {
    const e = isHardError(code) ? new ConnectionError(code, text) : new ChannelError(code, text);
    if (method !== undefined) {
      e.classId = method >>> 16;
      e.methodId = method & 0xffff;
    }
    return e;
  };
}

export const contentTooLarge = make(ReplyCode.CONTENT_TOO_LARGE);
export const noRoute = make(ReplyCode.NO_ROUTE);
export const noConsumers = make(ReplyCode.NO_CONSUMERS);
export const connectionForced = make(ReplyCode.CONNECTION_FORCED);
export const invalidPath = make(ReplyCode.INVALID_PATH);
export const accessRefused = make(ReplyCode.ACCESS_REFUSED);
export const notFound = make(ReplyCode.NOT_FOUND);
export const resourceLocked = make(ReplyCode.RESOURCE_LOCKED);
export const preconditionFailed = make(ReplyCode.PRECONDITION_FAILED);
export const frameError = make(ReplyCode.FRAME_ERROR);
export const syntaxError = make(ReplyCode.SYNTAX_ERROR);
export const commandInvalid = make(ReplyCode.COMMAND_INVALID);
export const channelError = make(ReplyCode.CHANNEL_ERROR);
export const unexpectedFrame = make(ReplyCode.UNEXPECTED_FRAME);
export const resourceError = make(ReplyCode.RESOURCE_ERROR);
export const notAllowed = make(ReplyCode.NOT_ALLOWED);
export const notImplemented = make(ReplyCode.NOT_IMPLEMENTED);
export const internalError = make(ReplyCode.INTERNAL_ERROR);

/** Cuts a string to at most `max` UTF-8 bytes without splitting a character. */
export function truncateUtf8(s: string, max: number): string {
  if (s.length <= max / 3 || Buffer.byteLength(s) <= max) return s;
  let b = Buffer.from(s).subarray(0, max);
  // drop a trailing partial multi-byte sequence
  let i = b.length - 1;
  while (i >= 0 && (b[i]! & 0xc0) === 0x80) i--;
  if (i >= 0) {
    const lead = b[i]!;
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (b.length - i < need) b = b.subarray(0, i);
  }
  return b.toString('utf8');
}
