/** Method frames to arguments, with the reply RabbitMQ gives to bytes that do not decode. */
import { type AmqpError, ConnectionError, frameError } from '../errors.js';
import { TableError } from '../protocol/field-table.js';
import { decodeMethodArgs, type MethodArgs, MethodSyntaxError } from '../protocol/generated/methods.js';
import { isKnownMethod, methodName } from '../protocol/generated/spec.js';

const MALFORMED = 'Malformed UTF-8 in shortstr';

/**
 * Decodes the arguments of method `id` from a method frame's payload `buf[off, off + len)`
 * (which starts with the method id). An unknown method is a 540 connection error; any fault in
 * the bytes is a frame error (501).
 */
export function decodeArgs(id: number, buf: Buffer, off: number, len: number): MethodArgs {
  if (!isKnownMethod(id)) throw notImplementedMethod(id);
  let args: MethodArgs | null;
  try {
    args = decodeMethodArgs(id, buf, off + 4, off + len);
  } catch (e) {
    // our own decoders say what is wrong; Node's bounds errors mean the payload ended early
    const why =
      e instanceof MethodSyntaxError || e instanceof TableError
        ? e.message
        : 'the frame is shorter than its fields';
    // RabbitMQ names a malformed string alone
    throw frameError(why === MALFORMED ? why : `cannot decode ${methodName(id)}: ${why}`);
  }
  return args!;
}

function notImplementedMethod(id: number): AmqpError {
  return new ConnectionError(540, `unknown method: class ${id >>> 16}, method ${id & 0xffff}`);
}
