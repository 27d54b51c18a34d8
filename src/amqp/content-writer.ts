/** Writes a message's content: a header frame with the raw properties, then body frames. */
import type { Message } from '../core/message.js';
import type { OutBuffer } from '../protocol/out-buffer.js';

/** class-id 60 (basic), weight 0 */
const BASIC_CLASS_WEIGHT = 0x003c0000;

export function writeContent(out: OutBuffer, channel: number, msg: Message, frameMax: number): void {
  const props = msg.properties;
  const body = msg.body;
  const at = out.beginFrame(2, channel, 12 + props.length);
  out.u32(BASIC_CLASS_WEIGHT);
  out.u64(body.length);
  out.bytes(props);
  out.endFrame(at);
  const max = frameMax - 8;
  for (let o = 0; o < body.length; o += max) {
    out.bodyFrame(channel, body, o, Math.min(max, body.length - o));
  }
}
