/**
 * Publisher confirms over a raw socket, where every basic.ack can be counted exactly: 100,000
 * publishes each confirmed once with strictly increasing ack tags, basic.return before the ack
 * of a mandatory unroutable message, confirm.select (again, nowait) and the 406s for mixing
 * confirm and tx modes. Expected frames and texts are those RabbitMQ 3.10 sends.
 */
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { type BasicProperties, encodeBasicProperties } from '../../src/protocol/generated/properties.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { bytes, declareQueue as declareFrame, type Frame, frame, RawClient } from '../helpers/raw-client.js';

/** A content header payload for class basic: weight 0, body size, then the property list. */
function contentHeader(bodySize: number, props: BasicProperties = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(60, 0);
  h.writeBigUInt64BE(BigInt(bodySize), 4);
  return Buffer.concat([h, bytes((w) => encodeBasicProperties(w, props))]);
}

/** basic.publish + content header + one body frame, as bytes. */
function publishBytes(
  channel: number,
  routingKey: string,
  body: string,
  opts: { exchange?: string; mandatory?: boolean } = {},
): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([
    bytes((w) =>
      M.encodeBasicPublish(w, channel, {
        exchange: opts.exchange ?? '',
        routingKey,
        mandatory: opts.mandatory ?? false,
        immediate: false,
      }),
    ),
    frame(2, channel, contentHeader(b.length)),
    ...(b.length > 0 ? [frame(3, channel, b)] : []),
  ]);
}

async function openChannel(c: RawClient, n: number): Promise<void> {
  c.send((w) => M.encodeChannelOpen(w, n, {}));
  const ok = await c.expectMethod(Method.CHANNEL_OPEN_OK);
  expect(ok.channel).toBe(n);
}

async function confirmSelect(c: RawClient, n: number): Promise<void> {
  c.send((w) => M.encodeConfirmSelect(w, n, { nowait: false }));
  const ok = await c.expectMethod(Method.CONFIRM_SELECT_OK);
  expect(ok.channel).toBe(n);
}

async function declareQueue(
  c: RawClient,
  n: number,
  queue: string,
  passive = false,
): Promise<M.QueueDeclareOk> {
  c.send((w) => declareFrame(w, n, queue, {}, { passive }));
  return (await c.expectMethod(Method.QUEUE_DECLARE_OK)).args as unknown as M.QueueDeclareOk;
}

/** Writes `b`, waiting for the socket to drain when its buffer is full. */
async function writeAndDrain(c: RawClient, b: Buffer): Promise<void> {
  if (!c.socket.write(b)) await new Promise<void>((resolve) => c.socket.once('drain', () => resolve()));
}

/**
 * Counts publisher confirms the way a client must read them: an ack with multiple=false covers
 * its own tag; with multiple=true it covers every tag up to its own not covered yet (RabbitMQ
 * may ack an unroutable message before earlier routed ones, so tags are not always in order).
 * An ack whose own tag is already covered counts as a duplicate.
 */
class ConfirmLedger {
  /** for each tag, the index in the frame list of the ack that covered it, or -1 */
  readonly coveredBy: Int32Array;
  readonly ackTags: number[] = [];
  readonly nacks: number[] = [];
  coveredTwice = 0;
  coveredCount = 0;
  beyondLast = 0;
  private lowestUncovered = 1;
  private seen = 0;

  constructor(readonly total: number) {
    this.coveredBy = new Int32Array(total + 1).fill(-1);
  }

  /** Reads the ack/nack frames of `channel` received since the last call. */
  absorb(frames: Frame[], channel: number): void {
    for (; this.seen < frames.length; this.seen++) {
      const f = frames[this.seen]!;
      if (f.channel !== channel) continue;
      if (f.methodId === Method.BASIC_NACK) this.nacks.push((f.args as unknown as M.BasicNack).deliveryTag);
      if (f.methodId !== Method.BASIC_ACK) continue;
      const a = f.args as unknown as M.BasicAck;
      const tag = a.deliveryTag;
      this.ackTags.push(tag);
      if (tag < 1 || tag > this.total) {
        this.beyondLast++;
        continue;
      }
      if (this.coveredBy[tag] !== -1) {
        this.coveredTwice++;
        continue;
      }
      if (a.multiple) {
        for (let t = this.lowestUncovered; t <= tag; t++) if (this.coveredBy[t] === -1) this.cover(t);
      } else {
        this.cover(tag);
      }
      while (this.lowestUncovered <= this.total && this.coveredBy[this.lowestUncovered] !== -1) {
        this.lowestUncovered++;
      }
    }
  }

  private cover(tag: number): void {
    this.coveredBy[tag] = this.seen;
    this.coveredCount++;
  }

  get complete(): boolean {
    return this.coveredCount === this.total;
  }
}

describe('publisher confirms counted on the wire', () => {
  it('100,000 publishes with confirms are all confirmed, ack tags strictly increasing, none twice', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await declareQueue(c, 1, 'confirm-100k');
        await confirmSelect(c, 1);
        const total = 100_000;
        const batch = 1_000;
        const one = publishBytes(1, 'confirm-100k', 'm');
        const batchBytes = Buffer.concat(Array.from({ length: batch }, () => one));
        const ledger = new ConfirmLedger(total);
        for (let sent = 0; sent < total; sent += batch) {
          await writeAndDrain(c, batchBytes);
          ledger.absorb(c.frames, 1);
        }
        await c.until(
          () => {
            ledger.absorb(c.frames, 1);
            return ledger.complete;
          },
          'every publish to be confirmed',
          20_000,
        );
        expect(ledger.nacks).toEqual([]);
        expect(ledger.coveredTwice).toBe(0);
        expect(ledger.beyondLast).toBe(0);
        expect(ledger.coveredCount).toBe(total);
        for (let i = 1; i < ledger.ackTags.length; i++) {
          if (!(ledger.ackTags[i]! > ledger.ackTags[i - 1]!)) {
            throw new Error(`ack tag ${ledger.ackTags[i]} follows ${ledger.ackTags[i - 1]}`);
          }
        }
        expect(ledger.ackTags.at(-1)).toBe(total);
        // every confirmed message is in the queue
        const ok = await declareQueue(c, 1, 'confirm-100k', true);
        expect(ok.messageCount).toBe(total);
        // and nothing more arrives: no late or duplicate ack
        ledger.absorb(c.frames, 1);
        expect(ledger.coveredTwice).toBe(0);
        expect(ledger.beyondLast).toBe(0);
      } finally {
        c.close();
      }
    });
  });

  it('confirms on two channels of one connection are numbered independently', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await openChannel(c, 2);
        await confirmSelect(c, 1);
        await confirmSelect(c, 2);
        const l1 = new ConfirmLedger(300);
        const l2 = new ConfirmLedger(200);
        const writes: Buffer[] = [];
        for (let i = 0; i < 300; i++) {
          writes.push(publishBytes(1, 'nowhere', `a${i}`));
          if (i < 200) writes.push(publishBytes(2, 'nowhere', `b${i}`));
        }
        c.write(Buffer.concat(writes));
        await c.until(() => {
          l1.absorb(c.frames, 1);
          l2.absorb(c.frames, 2);
          return l1.complete && l2.complete;
        }, 'both channels to be confirmed');
        for (const l of [l1, l2]) {
          expect(l.coveredTwice).toBe(0);
          expect(l.beyondLast).toBe(0);
          expect(l.nacks).toEqual([]);
        }
        expect(l1.ackTags.at(-1)).toBe(300);
        expect(l2.ackTags.at(-1)).toBe(200);
      } finally {
        c.close();
      }
    });
  });

  it('a mandatory unroutable message gets its basic.return before the basic.ack that covers it', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await declareQueue(c, 1, 'routable');
        await confirmSelect(c, 1);
        const start = c.frames.length;
        // tags 1..4: routable, unroutable mandatory, routable, unroutable mandatory
        c.write(
          Buffer.concat([
            publishBytes(1, 'routable', 'one'),
            publishBytes(1, 'nowhere', 'two', { mandatory: true }),
            publishBytes(1, 'routable', 'three'),
            publishBytes(1, 'nowhere-else', 'four', { mandatory: true }),
          ]),
        );
        const ledger = new ConfirmLedger(4);
        await c.until(() => {
          ledger.absorb(c.frames, 1);
          return ledger.complete;
        }, 'the four publishes to be confirmed');
        const returns = c.frames.flatMap((f, i) =>
          i >= start && f.methodId === Method.BASIC_RETURN ? [i] : [],
        );
        expect(returns).toHaveLength(2);
        const expected = [
          { tag: 2, routingKey: 'nowhere', body: 'two' },
          { tag: 4, routingKey: 'nowhere-else', body: 'four' },
        ];
        for (const [k, i] of returns.entries()) {
          const want = expected[k]!;
          expect(c.frames[i]!.args).toEqual({
            replyCode: 312,
            replyText: 'NO_ROUTE',
            exchange: '',
            routingKey: want.routingKey,
          });
          // the returned content follows the return: header, then body
          expect(c.frames[i + 1]!.type).toBe(2);
          expect(c.frames[i + 1]!.payload.readBigUInt64BE(4)).toBe(BigInt(want.body.length));
          expect(c.frames[i + 2]!.type).toBe(3);
          expect(c.frames[i + 2]!.payload.toString()).toBe(want.body);
          // the ack that covers this message's tag comes after the returned content
          expect(ledger.coveredBy[want.tag]).toBeGreaterThan(i + 2);
        }
        expect(ledger.coveredTwice).toBe(0);
        expect(ledger.nacks).toEqual([]);
        const ok = await declareQueue(c, 1, 'routable', true);
        expect(ok.messageCount).toBe(2);
      } finally {
        c.close();
      }
    });
  });

  it('an unroutable message without mandatory is acked and not returned', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await confirmSelect(c, 1);
        const start = c.frames.length;
        c.write(publishBytes(1, 'nowhere', 'dropped'));
        const ack = await c.expectMethod(Method.BASIC_ACK);
        expect(ack.args).toEqual({ deliveryTag: 1, multiple: false });
        // a round trip after the ack: nothing else was sent in between
        await declareQueue(c, 1, 'amq.rabbitmq.reply-to', true);
        expect(c.frames.slice(start).map((f) => f.name)).toEqual(['basic.ack', 'queue.declare-ok']);
      } finally {
        c.close();
      }
    });
  });

  it('publishes made before confirm.select are not counted: the first confirmed publish is tag 1', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.write(
          Buffer.concat([publishBytes(1, 'nowhere', 'before-1'), publishBytes(1, 'nowhere', 'before-2')]),
        );
        await confirmSelect(c, 1);
        c.write(publishBytes(1, 'nowhere', 'after'));
        const ack = await c.expectMethod(Method.BASIC_ACK);
        expect(ack.args).toEqual({ deliveryTag: 1, multiple: false });
      } finally {
        c.close();
      }
    });
  });
});

describe('confirm.select', () => {
  it('is idempotent: a second confirm.select is answered with select-ok and tags keep counting', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await confirmSelect(c, 1);
        c.write(publishBytes(1, 'nowhere', 'a'));
        const first = await c.expectMethod(Method.BASIC_ACK);
        expect(first.args).toEqual({ deliveryTag: 1, multiple: false });
        await confirmSelect(c, 1);
        c.write(publishBytes(1, 'nowhere', 'b'));
        const second = await c.expectMethod(Method.BASIC_ACK);
        expect(second.args).toEqual({ deliveryTag: 2, multiple: false });
        expect(c.frames.filter((f) => f.methodId === Method.CHANNEL_CLOSE)).toEqual([]);
      } finally {
        c.close();
      }
    });
  });

  it('with nowait sends no select-ok and still confirms publishes', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        const start = c.frames.length;
        c.send((w) => M.encodeConfirmSelect(w, 1, { nowait: true }));
        c.write(publishBytes(1, 'nowhere', 'a'));
        const ack = await c.expectMethod(Method.BASIC_ACK);
        expect(ack.args).toEqual({ deliveryTag: 1, multiple: false });
        // a synchronous round trip: no select-ok was sent before its answer
        await declareQueue(c, 1, 'amq.rabbitmq.reply-to', true);
        expect(c.frames.slice(start).map((f) => f.name)).toHaveLength(2);
        expect(c.frames.filter((f) => f.methodId === Method.CONFIRM_SELECT_OK)).toEqual([]);
      } finally {
        c.close();
      }
    });
  });

  it('on a transactional channel closes the channel with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) => M.encodeTxSelect(w, 1, {}));
        await c.expectMethod(Method.TX_SELECT_OK);
        c.send((w) => M.encodeConfirmSelect(w, 1, { nowait: false }));
        const close = await c.expectMethod(Method.CHANNEL_CLOSE);
        expect(close.channel).toBe(1);
        expect(close.args).toEqual({
          replyCode: 406,
          replyText: 'PRECONDITION_FAILED - cannot switch from tx to confirm mode',
          classId: 85,
          methodId: 10,
        });
        expect(c.frames.filter((f) => f.methodId === Method.CONFIRM_SELECT_OK)).toEqual([]);
        // the connection survives: close-ok, then the channel number can be opened again
        c.send((w) => M.encodeChannelCloseOk(w, 1, {}));
        await openChannel(c, 1);
      } finally {
        c.close();
      }
    });
  });

  it('tx.commit-ok waits for the store, and replies to methods pipelined behind it follow it', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) => declareFrame(w, 1, 'txq', {}, { durable: true }));
        await c.expectMethod(Method.QUEUE_DECLARE_OK);
        c.send((w) => M.encodeTxSelect(w, 1, {}));
        await c.expectMethod(Method.TX_SELECT_OK);
        const persistent = (body: string) => {
          const b = Buffer.from(body);
          return Buffer.concat([
            bytes((w) =>
              M.encodeBasicPublish(w, 1, {
                exchange: '',
                routingKey: 'txq',
                mandatory: false,
                immediate: false,
              }),
            ),
            frame(2, 1, contentHeader(b.length, { deliveryMode: 2 })),
            frame(3, 1, b),
          ]);
        };
        // one write: two publishes, the commit, then a passive declare and a get
        c.write(
          Buffer.concat([
            persistent('p1'),
            persistent('p2'),
            bytes((w) => M.encodeTxCommit(w, 1, {})),
            bytes((w) => declareFrame(w, 1, 'txq', {}, { passive: true })),
            bytes((w) => M.encodeBasicGet(w, 1, { queue: 'txq', noAck: true })),
          ]),
        );
        await c.expectMethod(Method.BASIC_GET_OK);
        const replies = c.frames
          .filter((f) => f.type === 1 && f.channel === 1)
          .map((f) => f.name)
          .slice(-3);
        expect(replies).toEqual(['tx.commit-ok', 'queue.declare-ok', 'basic.get-ok']);
        const declared = c.frames.filter((f) => f.methodId === Method.QUEUE_DECLARE_OK).at(-1)!;
        expect(declared.args?.['messageCount']).toBe(2);
      } finally {
        c.close();
      }
    });
  });

  it('tx.select on a confirm channel closes the channel with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await confirmSelect(c, 1);
        c.send((w) => M.encodeTxSelect(w, 1, {}));
        const close = await c.expectMethod(Method.CHANNEL_CLOSE);
        expect(close.channel).toBe(1);
        expect(close.args).toEqual({
          replyCode: 406,
          replyText: 'PRECONDITION_FAILED - cannot switch from confirm to tx mode',
          classId: 90,
          methodId: 10,
        });
        expect(c.frames.filter((f) => f.methodId === Method.TX_SELECT_OK)).toEqual([]);
        c.send((w) => M.encodeChannelCloseOk(w, 1, {}));
        await openChannel(c, 1);
      } finally {
        c.close();
      }
    });
  });

  it('an unroutable publish confirmed before a channel error is acked before the channel.close', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await confirmSelect(c, 1);
        const start = c.frames.length;
        c.write(
          Buffer.concat([
            publishBytes(1, 'nowhere', 'fine'),
            publishBytes(1, 'x', 'broken', { exchange: 'no-such-exchange' }),
          ]),
        );
        const close = await c.expectMethod(Method.CHANNEL_CLOSE);
        expect(close.args).toEqual({
          replyCode: 404,
          replyText: "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'",
          classId: 60,
          methodId: 40,
        });
        expect(c.frames.slice(start).map((f) => `${f.name} ${JSON.stringify(f.args)}`)).toEqual([
          `basic.ack ${JSON.stringify({ deliveryTag: 1, multiple: false })}`,
          `channel.close ${JSON.stringify(close.args)}`,
        ]);
      } finally {
        c.close();
      }
    });
  });
});
