/** Publisher confirms as a channel writes them: basic.ack and basic.nack, `multiple` where it can. */
import { encodeBasicAck, encodeBasicNack } from '../protocol/generated/methods.js';
import type { Channel } from './channel.js';

/** Everything up to `seq` is safe: acks, with the publishes a queue refused nacked one by one. */
export function writeAcks(ch: Channel, seq: number): void {
  const out = ch.conn.out;
  // publishes refused by a queue (x-overflow reject-publish) are nacked one by one
  while (ch.nackSeqs.length > 0 && ch.nackSeqs[0]! <= seq) {
    const n = ch.nackSeqs.shift()!;
    if (n - 1 > ch.confirmedSeq) {
      encodeBasicAck(out, ch.number, { deliveryTag: n - 1, multiple: n - 1 > ch.confirmedSeq + 1 });
    }
    // RabbitMQ's nacks carry requeue=1 (the field's default there)
    encodeBasicNack(out, ch.number, { deliveryTag: n, multiple: false, requeue: true });
    ch.confirmedSeq = n;
  }
  if (seq > ch.confirmedSeq) {
    encodeBasicAck(out, ch.number, { deliveryTag: seq, multiple: seq > ch.confirmedSeq + 1 });
    ch.confirmedSeq = seq;
  }
  ch.conn.markDirty();
}

/** Everything up to `seq` failed to be stored: one nack, multiple. */
export function writeNacks(ch: Channel, seq: number): void {
  encodeBasicNack(ch.conn.out, ch.number, {
    deliveryTag: seq,
    multiple: seq > ch.confirmedSeq + 1,
    // not requeue=1 as RabbitMQ's: @cloudamqp/amqp-client reads multiple only from a bits byte of 1
    requeue: false,
  });
  ch.confirmedSeq = seq;
  ch.conn.markDirty();
}
