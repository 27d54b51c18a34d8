/**
 * The channel class over a raw socket: open, close (both directions), flow, channel-number limits,
 * and the soft-error path where the broker closes one channel and discards its frames until
 * close-ok. Also connection.update-secret, the other method a running connection answers.
 */
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import {
  bytes,
  declareQueue,
  expectStillServing,
  frame,
  publishBytes,
  RawClient,
} from '../helpers/raw-client.js';

/** Asserts the broker's connection.close, answers close-ok and waits for the socket to close. */
async function expectHardClose(
  c: RawClient,
  code: number,
  textPrefix: string,
  classId: number,
  methodId: number,
): Promise<M.ConnectionClose> {
  const close = await c.expectConnectionClose();
  expect(close.replyCode).toBe(code);
  expect(close.replyText.slice(0, textPrefix.length)).toBe(textPrefix);
  expect(close.classId).toBe(classId);
  expect(close.methodId).toBe(methodId);
  await c.expectClosed();
  return close;
}

async function openChannel(c: RawClient, n: number): Promise<void> {
  c.send((w) => M.encodeChannelOpen(w, n, {}));
  const ok = await c.expectMethod(Method.CHANNEL_OPEN_OK);
  expect(ok.channel).toBe(n);
}

/** Frames received since index `from`, as 'channel:name'. */
function namesSince(c: RawClient, from: number): string[] {
  return c.frames.slice(from).map((f) => `${f.channel}:${f.name ?? `type ${f.type}`}`);
}

/** A content header payload: class-id, weight 0, body-size, no properties. */
function contentHeader(classId: number, bodySize: number): Buffer {
  const p = Buffer.alloc(14);
  p.writeUInt16BE(classId, 0);
  p.writeBigUInt64BE(BigInt(bodySize), 4);
  return p;
}

describe('opening and closing channels', () => {
  it('channel.open is answered with exactly channel.open-ok on the same channel', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        const before = c.raw.length;
        c.send((w) => M.encodeChannelOpen(w, 3, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        // type 1, channel 3, size 8, method 20/11, empty longstr channel-id, frame end
        expect(c.raw.subarray(before).toString('hex')).toBe(
          '01000300000008' + '0014000b' + '00000000' + 'ce',
        );
      } finally {
        c.close();
      }
    });
  });

  it('several channels can be open at once, up to channel 65535 when negotiated', async () => {
    await withBroker(
      async (broker) => {
        const c = await RawClient.open(broker.port, { channelMax: 65535 });
        try {
          for (const n of [1, 2, 100, 65535]) await openChannel(c, n);
          c.send((w) => M.encodeChannelFlow(w, 100, { active: true }));
          const ok = await c.expectMethod(Method.CHANNEL_FLOW_OK);
          expect(ok.channel).toBe(100);
        } finally {
          c.close();
        }
      },
      { channelMax: 65535 },
    );
  });

  it('channel.close is answered with close-ok and the channel number can be opened again', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        const before = c.raw.length;
        c.send((w) =>
          M.encodeChannelClose(w, 1, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
        );
        const ok = await c.expectMethod(Method.CHANNEL_CLOSE_OK);
        expect(ok.channel).toBe(1);
        expect(c.raw.subarray(before).toString('hex')).toBe('01000100000004' + '00140029' + 'ce');
        await openChannel(c, 1);
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        await c.expectMethod(Method.CHANNEL_FLOW_OK);
      } finally {
        c.close();
      }
    });
  });

  it('a closed channel is no longer open: a method on it is a 504 expecting channel.open', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) =>
          M.encodeChannelClose(w, 1, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
        );
        await c.expectMethod(Method.CHANNEL_CLOSE_OK);
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        await expectHardClose(c, 504, "CHANNEL_ERROR - expected 'channel.open'", 20, 20);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('frames written together with a channel.close are dropped, a second close answered: the connection lives, as in RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        await openChannel(c, 2);
        c.send((w) => declareQueue(w, 2, 'q'));
        await c.expectMethod(Method.QUEUE_DECLARE_OK);
        const close = bytes((w) =>
          M.encodeChannelClose(w, 1, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
        );
        // one write: close, a publish racing it, a second close
        c.write(Buffer.concat([close, publishBytes(1, 'q', 'late'), close]));
        await c.until(
          () => c.frames.filter((f) => f.methodId === Method.CHANNEL_CLOSE_OK).length === 2,
          'two close-oks',
        );
        c.send((w) => M.encodeQueueDeclare(w, 2, { queue: 'q', passive: true } as M.QueueDeclare));
        const ok = (await c.expectMethod(Method.QUEUE_DECLARE_OK)).args as unknown as M.QueueDeclareOk;
        expect(ok.messageCount).toBe(0);
        expect(c.frames.some((f) => f.methodId === Method.CONNECTION_CLOSE)).toBe(false);
      } finally {
        c.close();
      }
    });
  });

  it("channel.close on a channel that was never opened is a 504 expecting 'channel.open'", async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) =>
          M.encodeChannelClose(w, 4, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
        );
        const close = await expectHardClose(c, 504, "CHANNEL_ERROR - expected 'channel.open'", 20, 40);
        expect(close.replyText).toBe("CHANNEL_ERROR - expected 'channel.open'");
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('channel errors that close the connection', () => {
  it('a second channel.open on an open channel is a 504 "second \'channel.open\' seen"', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        const close = await expectHardClose(c, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10);
        expect(close.replyText).toBe("CHANNEL_ERROR - second 'channel.open' seen");
        expect(c.frames.filter((f) => f.methodId === Method.CHANNEL_OPEN_OK)).toHaveLength(1);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('channel-max bounds how many channels are open (530 past it), not their numbers, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { channelMax: 3 });
      try {
        for (const n of [1, 2, 100]) await openChannel(c, n);
        c.send((w) => M.encodeChannelOpen(w, 4, {}));
        await expectHardClose(
          c,
          530,
          'NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)',
          0,
          0,
        );
        expect(c.frames.filter((f) => f.methodId === Method.CHANNEL_OPEN_OK).map((f) => f.channel)).toEqual([
          1, 2, 100,
        ]);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('channel.open on channel 0 is a 504 unexpected method', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 0, {}));
        await expectHardClose(
          c,
          504,
          'CHANNEL_ERROR - unexpected method in connection state running',
          20,
          10,
        );
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('an unsolicited channel.close-ok is a 503 COMMAND_INVALID', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) => M.encodeChannelCloseOk(w, 1, {}));
        await expectHardClose(c, 503, 'COMMAND_INVALID - ', 20, 41);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('channel.flow and connection.update-secret', () => {
  it('channel.flow active=true is answered with flow-ok; active=false is refused with 540, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        const on = await c.expectMethod(Method.CHANNEL_FLOW_OK);
        expect(on.args).toEqual({ active: true });
        expect(on.payload.toString('hex')).toBe('0014001501');
        c.send((w) => M.encodeChannelFlow(w, 1, { active: false }));
        await expectHardClose(c, 540, 'NOT_IMPLEMENTED - active=false', 20, 20);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('access.request (AMQP 0-8 tickets, sent by old clients) is granted ticket 1, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        await openChannel(c, 1);
        c.send((w) =>
          M.encodeAccessRequest(w, 1, {
            realm: '/data',
            exclusive: false,
            passive: true,
            active: true,
            write: true,
            read: true,
          }),
        );
        const ok = await c.expectMethod(Method.ACCESS_REQUEST_OK);
        expect(ok.channel).toBe(1);
        expect(ok.payload.toString('hex')).toBe('001e000b0001');
        // the channel carries on
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        await c.expectMethod(Method.CHANNEL_FLOW_OK);
      } finally {
        c.close();
      }
    });
  });

  it('connection.update-secret is answered with update-secret-ok on channel 0', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeConnectionUpdateSecret(w, 0, { newSecret: 'new-token', reason: 'refresh' }));
        const ok = await c.expectMethod(Method.CONNECTION_UPDATE_SECRET_OK);
        expect(ok.channel).toBe(0);
        expect(ok.payload.toString('hex')).toBe('000a0047');
        // the connection is still usable
        await openChannel(c, 1);
      } finally {
        c.close();
      }
    });
  });
});

describe('a soft error closes only its channel', () => {
  const TOO_BIG = 'PRECONDITION_FAILED - message size 101 is larger than configured max size 100';

  /** Publishes a 101-byte message on `ch`, over the 100-byte limit (header and body). */
  function publishTooBig(c: RawClient, ch: number): void {
    c.send((w) =>
      M.encodeBasicPublish(w, ch, { exchange: '', routingKey: 'q', mandatory: false, immediate: false }),
    );
    c.write(frame(2, ch, contentHeader(60, 101)));
    c.write(frame(3, ch, Buffer.alloc(101, 0x61)));
  }

  it('a message over the max size gets channel.close 406; its frames are discarded until close-ok', async () => {
    await withBroker(
      async (broker) => {
        const c = await RawClient.open(broker.port);
        try {
          await openChannel(c, 1);
          await openChannel(c, 2);
          publishTooBig(c, 1);
          const close = await c.expectMethod(Method.CHANNEL_CLOSE);
          expect(close.channel).toBe(1);
          expect(close.args).toEqual({ replyCode: 406, replyText: TOO_BIG, classId: 60, methodId: 40 });
          const mark = c.frames.length;
          // discarded: other methods (even one that would be a connection error), a stray body frame
          c.write(frame(3, 1, Buffer.alloc(10, 0x61)));
          c.send((w) => M.encodeChannelFlow(w, 1, { active: false }));
          c.send((w) => M.encodeBasicQos(w, 1, { prefetchSize: 0, prefetchCount: 5, global: false }));
          // the other channel is unaffected
          c.send((w) => M.encodeChannelFlow(w, 2, { active: true }));
          await c.expectMethod(Method.CHANNEL_FLOW_OK);
          // close-ok frees the number; it can be opened again
          c.send((w) => M.encodeChannelCloseOk(w, 1, {}));
          c.send((w) => M.encodeChannelOpen(w, 1, {}));
          await c.expectMethod(Method.CHANNEL_OPEN_OK);
          expect(namesSince(c, mark)).toEqual(['2:channel.flow-ok', '1:channel.open-ok']);
          expect(c.frames.some((f) => f.methodId === Method.CONNECTION_CLOSE)).toBe(false);
        } finally {
          c.close();
        }
      },
      { maxMessageSize: 100 },
    );
  });

  it("a client channel.close crossing the broker's is answered with close-ok; the channel then waits for close-ok", async () => {
    await withBroker(
      async (broker) => {
        const c = await RawClient.open(broker.port);
        try {
          await openChannel(c, 1);
          publishTooBig(c, 1);
          const close = await c.expectMethod(Method.CHANNEL_CLOSE);
          expect(close.args?.['replyCode']).toBe(406);
          const mark = c.frames.length;
          // what amqp091-go does when its Close() crosses the broker's close: both close and close-ok
          c.send((w) =>
            M.encodeChannelClose(w, 1, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
          );
          await c.expectMethod(Method.CHANNEL_CLOSE_OK);
          c.send((w) => M.encodeChannelCloseOk(w, 1, {}));
          await openChannel(c, 1);
          expect(namesSince(c, mark)).toEqual(['1:channel.close-ok', '1:channel.open-ok']);
        } finally {
          c.close();
        }
      },
      { maxMessageSize: 100 },
    );
  });

  it('channel.open on a channel still waiting for close-ok is a second open (504), as RabbitMQ', async () => {
    await withBroker(
      async (broker) => {
        const c = await RawClient.open(broker.port);
        try {
          await openChannel(c, 1);
          publishTooBig(c, 1);
          await c.expectMethod(Method.CHANNEL_CLOSE);
          c.send((w) => M.encodeChannelOpen(w, 1, {}));
          await expectHardClose(c, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10);
        } finally {
          c.close();
        }
        await expectStillServing(broker.port);
      },
      { maxMessageSize: 100 },
    );
  });
});
