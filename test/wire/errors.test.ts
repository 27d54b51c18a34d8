/**
 * Connection errors over a raw socket: framing faults (501), content out of order (505), frames
 * on channels that are not open (504), undecodable and unknown methods. Each case asserts the exact
 * close code, class/method id and reply-text prefix (as RabbitMQ 3.10 sends them), that the socket
 * then closes, and that the broker goes on serving other clients.
 */
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import type { OutBuffer } from '../../src/protocol/out-buffer.js';
import { withBroker } from '../helpers/broker.js';
import {
  bytes,
  declareQueue,
  expectStillServing,
  frame,
  publishBytes,
  RawClient,
} from '../helpers/raw-client.js';

/** connection.close as exact frame bytes, built without the codec under test. */
function closeFrameBytes(code: number, text: string, classId: number, methodId: number): Buffer {
  const t = Buffer.from(text, 'utf8');
  const p = Buffer.alloc(4 + 2 + 1 + t.length + 4);
  p.writeUInt32BE(0x000a0032, 0);
  p.writeUInt16BE(code, 4);
  p[6] = t.length;
  t.copy(p, 7);
  p.writeUInt16BE(classId, 7 + t.length);
  p.writeUInt16BE(methodId, 9 + t.length);
  return frame(1, 0, p);
}

/**
 * Asserts the broker's connection.close and that the socket then closes. `answer` sends
 * close-ok; after a framing fault the broker stops reading, so the test does not answer.
 */
async function expectHardClose(
  c: RawClient,
  expected: { code: number; text: string; exact?: boolean; classId: number; methodId: number },
  answer = true,
): Promise<void> {
  const close = await c.expectConnectionClose(answer);
  expect(close.replyCode).toBe(expected.code);
  if (expected.exact) expect(close.replyText).toBe(expected.text);
  else expect(close.replyText.slice(0, expected.text.length)).toBe(expected.text);
  expect(close.classId).toBe(expected.classId);
  expect(close.methodId).toBe(expected.methodId);
  await c.expectClosed();
  if (expected.exact) {
    // the close frame is the last thing the broker sent, byte for byte
    const want = closeFrameBytes(expected.code, expected.text, expected.classId, expected.methodId);
    expect(c.raw.subarray(c.raw.length - want.length).toString('hex')).toBe(want.toString('hex'));
  }
}

/** A connection with channel 1 open. */
async function openWithChannel(port: number, tune: { frameMax?: number } = {}): Promise<RawClient> {
  const c = await RawClient.open(port, tune);
  c.send((w) => M.encodeChannelOpen(w, 1, {}));
  await c.expectMethod(Method.CHANNEL_OPEN_OK);
  return c;
}

/** A content header payload: class-id, weight 0, body-size, no properties. */
function contentHeader(classId: number, bodySize: number): Buffer {
  const p = Buffer.alloc(14);
  p.writeUInt16BE(classId, 0);
  p.writeUInt16BE(0, 2);
  p.writeBigUInt64BE(BigInt(bodySize), 4);
  p.writeUInt16BE(0, 12);
  return p;
}

function publish(c: RawClient, channel: number): void {
  c.send((w) =>
    M.encodeBasicPublish(w, channel, { exchange: '', routingKey: 'q', mandatory: false, immediate: false }),
  );
}

describe('framing faults close the connection with 501 FRAME_ERROR', () => {
  it('a frame larger than the negotiated frame-max is refused and the socket is closed', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port, { frameMax: 4096 });
      try {
        // a payload longer than frame-max itself (RabbitMQ lets the payload, not the frame, reach it)
        c.write(frame(3, 1, Buffer.alloc(4097)));
        await expectHardClose(
          c,
          {
            code: 501,
            text: 'FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}',
            classId: 0,
            methodId: 0,
          },
          false,
        );
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a body frame whose payload is the whole frame-max is accepted, as RabbitMQ does', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { frameMax: 4096 });
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        c.send((w) => declareQueue(w, 1, 'q'));
        await c.expectMethod(Method.QUEUE_DECLARE_OK);
        const body = Buffer.alloc(4096, 0x62);
        c.write(publishBytes(1, 'q', body));
        c.send((w) => M.encodeBasicGet(w, 1, { queue: 'q', noAck: true } as M.BasicGet));
        await c.expectMethod(Method.BASIC_GET_OK);
        // our frame-max is 4096 too: the body comes back in two frames
        await c.until(
          () => c.frames.filter((f) => f.type === 3).reduce((n, f) => n + f.payload.length, 0) === 4096,
          'the whole body',
        );
        expect(c.frames.some((x) => x.methodId === Method.CONNECTION_CLOSE)).toBe(false);
      } finally {
        c.close();
      }
    });
  });

  it('a frame of exactly the negotiated frame-max is accepted', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { frameMax: 4096 });
      try {
        const f = bytes((w) =>
          M.encodeConnectionUpdateSecret(w, 0, { newSecret: Buffer.alloc(4096 - 17, 0x61), reason: '' }),
        );
        expect(f.length).toBe(4096);
        c.write(f);
        await c.expectMethod(Method.CONNECTION_UPDATE_SECRET_OK);
        expect(c.frames.some((x) => x.methodId === Method.CONNECTION_CLOSE)).toBe(false);
      } finally {
        c.close();
      }
    });
  });

  it('a frame whose end octet is not 0xCE is refused and the socket is closed', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        const f = bytes((w) => M.encodeChannelOpen(w, 1, {}));
        f[f.length - 1] = 0x00;
        c.write(f);
        await expectHardClose(c, { code: 501, text: 'FRAME_ERROR - ', classId: 0, methodId: 0 }, false);
        expect(c.frames.some((x) => x.methodId === Method.CHANNEL_OPEN_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('an unknown frame type is refused', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.write(frame(9, 0, Buffer.alloc(0)));
        await expectHardClose(c, { code: 501, text: 'FRAME_ERROR - ', classId: 0, methodId: 0 }, false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a method frame too short to hold a method id is refused', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.write(frame(1, 0, Buffer.from([0x00, 0x14])));
        await expectHardClose(c, { code: 501, text: 'FRAME_ERROR - ', classId: 0, methodId: 0 }, false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('undecodable and unknown methods', () => {
  it('a truncated channel.flow cannot be decoded and is a 501 naming channel.flow', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        // method id only, the 'active' bit is missing
        c.write(frame(1, 1, Buffer.from([0x00, 0x14, 0x00, 0x14])));
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - cannot decode',
          classId: 20,
          methodId: 20,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a truncated channel.close cannot be decoded and is a 501', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        // reply-code only
        c.write(frame(1, 1, Buffer.from([0x00, 0x14, 0x00, 0x28, 0x00, 0xc8])));
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - cannot decode',
          classId: 20,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it.each([
    // table of 3 bytes: key 'x' with the unknown field type 'Z'
    ['an unknown field type', Buffer.from([0, 0, 0, 3, 1, 0x78, 0x5a])],
    // table length 100, but the frame ends right after it
    ['a length that overruns the frame', Buffer.from([0, 0, 0, 100])],
    // key 'x', type 'S' with a long string length of 200 in a 10-byte table
    [
      'a long string that overruns its table',
      Buffer.from([0, 0, 0, 10, 1, 0x78, 0x53, 0, 0, 0, 200, 0x61, 0x62, 0x63]),
    ],
  ])('a queue.declare whose arguments table has %s is a 501 cannot decode', async (_what, table) => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        const payload = Buffer.concat([
          Buffer.from([0x00, 0x32, 0x00, 0x0a]), // queue.declare
          Buffer.from([0x00, 0x00]), // reserved-1
          Buffer.from([1, 0x71]), // queue 'q'
          Buffer.from([0x00]), // passive, durable, exclusive, auto-delete, no-wait
          table,
        ]);
        c.write(frame(1, 1, payload));
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - cannot decode',
          classId: 50,
          methodId: 10,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('an unknown method id is a 540 NOT_IMPLEMENTED connection error', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        // class 20 (channel), method 153
        c.write(frame(1, 1, Buffer.from([0x00, 0x14, 0x00, 0x99])));
        const close = await c.expectConnectionClose();
        expect(close.replyCode).toBe(540);
        expect(close.replyText.slice(0, 'NOT_IMPLEMENTED - '.length)).toBe('NOT_IMPLEMENTED - ');
        await c.expectClosed();
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('methods a client has no business sending there are 503 COMMAND_INVALID, as RabbitMQ', () => {
  it.each([
    [
      'an unsolicited channel.flow-ok',
      (w: OutBuffer) => M.encodeChannelFlowOk(w, 1, { active: true }),
      20,
      21,
    ],
    [
      'connection.close on a channel other than 0',
      (w: OutBuffer) =>
        M.encodeConnectionClose(w, 1, { replyCode: 200, replyText: '', classId: 0, methodId: 0 }),
      10,
      50,
    ],
  ])('%s', async (_what, send, classId, methodId) => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.send(send);
        await expectHardClose(c, { code: 503, text: 'COMMAND_INVALID - ', classId, methodId });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('a server-only method with content (basic.deliver, return, get-ok), sent by a client', () => {
  const deliver = (w: OutBuffer) =>
    M.encodeBasicDeliver(w, 1, {
      consumerTag: 't',
      deliveryTag: 1,
      redelivered: false,
      exchange: '',
      routingKey: 'q',
    });

  it('is 503 COMMAND_INVALID once its content came, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.send(deliver);
        c.write(Buffer.concat([frame(2, 1, contentHeader(60, 3)), frame(3, 1, Buffer.from('abc'))]));
        await expectHardClose(c, { code: 503, text: 'COMMAND_INVALID - ', classId: 60, methodId: 60 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('is 505 UNEXPECTED_FRAME when a method frame comes where its content header belongs, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.send(deliver);
        c.send((w) => declareQueue(w, 1, 'x'));
        await expectHardClose(c, {
          code: 505,
          text: 'UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead',
          exact: true,
          classId: 60,
          methodId: 60,
        });
        expect(c.frames.some((f) => f.methodId === Method.QUEUE_DECLARE_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('an unsolicited connection.close-ok', () => {
  it('is 504 CHANNEL_ERROR naming the connection state, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.send((w) => M.encodeConnectionCloseOk(w, 0, {}));
        await expectHardClose(c, {
          code: 504,
          text: 'CHANNEL_ERROR - unexpected method in connection state running',
          classId: 10,
          methodId: 51,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('frames on the wrong channel', () => {
  it("a method on a channel that is not open is a 504 expecting 'channel.open'", async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => declareQueue(w, 5, 'q'));
        await expectHardClose(c, {
          code: 504,
          text: "CHANNEL_ERROR - expected 'channel.open'",
          exact: true,
          classId: 50,
          methodId: 10,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('basic.qos on channel 0 after open is a 504 unexpected method', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeBasicQos(w, 0, { prefetchSize: 0, prefetchCount: 10, global: false }));
        await expectHardClose(c, {
          code: 504,
          text: 'CHANNEL_ERROR - unexpected method in connection state running',
          exact: true,
          classId: 60,
          methodId: 10,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a second connection.open is a 504 unexpected method', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeConnectionOpen(w, 0, { virtualHost: '/' }));
        await expectHardClose(c, {
          code: 504,
          text: 'CHANNEL_ERROR - unexpected method in connection state running',
          exact: true,
          classId: 10,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a heartbeat frame on a channel other than 0 is a 505', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.write(frame(8, 1, Buffer.alloc(0)));
        await expectHardClose(c, {
          code: 505,
          text: 'UNEXPECTED_FRAME - type 8, all octets = <<>>',
          exact: true,
          classId: 0,
          methodId: 0,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a heartbeat frame with a payload is a 501, in RabbitMQ words', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.write(frame(8, 0, Buffer.from('xy')));
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - type 8, all octets = <<"xy">>: unknown_frame',
          exact: true,
          classId: 0,
          methodId: 0,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a name that is not UTF-8 is a 501 (Malformed UTF-8 in shortstr)', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        const b = bytes((w) => M.encodeQueueDeclare(w, 1, { queue: 'ab', arguments: {} } as M.QueueDeclare));
        b[b.indexOf(Buffer.from([2, 0x61, 0x62])) + 1] = 0xff;
        c.write(b);
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - Malformed UTF-8 in shortstr',
          exact: true,
          classId: 50,
          methodId: 10,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a content header on channel 0 is a 505', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.write(frame(2, 0, contentHeader(60, 0)));
        await expectHardClose(c, { code: 505, text: 'UNEXPECTED_FRAME - ', classId: 0, methodId: 0 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a body frame on a channel that is not open is a 505 expecting a method frame', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.write(frame(3, 7, Buffer.from('hello')));
        await expectHardClose(c, {
          code: 505,
          text: 'UNEXPECTED_FRAME - expected method frame',
          classId: 0,
          methodId: 0,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('a body frame bigger than the body it belongs to', () => {
  for (const split of [false, true]) {
    it(`is a 505 and publishes nothing${split ? ', also when it arrives in pieces' : ''}`, async () => {
      await withBroker(async (broker) => {
        const c = await openWithChannel(broker.port);
        try {
          c.send((w) => declareQueue(w, 1, 'q'));
          await c.expectMethod(Method.QUEUE_DECLARE_OK);
          publish(c, 1);
          c.write(frame(2, 1, contentHeader(60, 10)));
          // 20 payload bytes for a 10-byte body, and a bad end octet: the first 10 alone would
          // complete the body, so a piece must not be taken before the frame's size is checked
          const body = frame(3, 1, Buffer.from('0123456789abcdefghij'), 0x00);
          if (split) {
            c.write(body.subarray(0, 7 + 10));
            await new Promise((r) => setTimeout(r, 50));
            c.write(body.subarray(7 + 10));
          } else c.write(body);
          const close = await c.expectMethod(Method.CONNECTION_CLOSE);
          expect([501, 505]).toContain((close.args as { replyCode: number }).replyCode);
        } finally {
          c.close();
        }
        await expectStillServing(broker.port);
        expect(broker.vhosts.get('/')!.queues.get('q')?.messageCount ?? 0).toBe(0);
      });
    });
  }
});

describe('content out of order is a 505 UNEXPECTED_FRAME', () => {
  const NON_METHOD = 'UNEXPECTED_FRAME - expected method frame, got non method frame instead';
  const NON_HEADER =
    'UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead';

  it('a body frame with no publish before it', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.write(frame(3, 1, Buffer.from('hello')));
        await expectHardClose(c, { code: 505, text: NON_METHOD, exact: true, classId: 0, methodId: 0 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a content header with no publish before it', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.write(frame(2, 1, contentHeader(60, 5)));
        await expectHardClose(c, { code: 505, text: NON_METHOD, exact: true, classId: 0, methodId: 0 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a method frame where the content header of a basic.publish is expected', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        await expectHardClose(c, { code: 505, text: NON_HEADER, exact: true, classId: 60, methodId: 40 });
        expect(c.frames.some((f) => f.methodId === Method.CHANNEL_FLOW_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a content header with a weight other than 0 is not a content header (505)', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        const h = contentHeader(60, 1);
        h.writeUInt16BE(1, 2);
        c.write(frame(2, 1, h));
        await expectHardClose(c, { code: 505, text: NON_HEADER, exact: true, classId: 60, methodId: 40 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a method frame where a body frame is expected', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        c.write(frame(2, 1, contentHeader(60, 3)));
        c.send((w) => M.encodeChannelFlow(w, 1, { active: true }));
        await expectHardClose(c, {
          code: 505,
          text: 'UNEXPECTED_FRAME - expected content body, got non content body frame instead',
          exact: true,
          classId: 60,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a content header whose flags promise more than it carries is a 501, not an internal error', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        const h = contentHeader(60, 0);
        h.writeUInt16BE(0x0001, 12); // a continuation flag, and no continuation word
        c.write(frame(2, 1, h));
        await expectHardClose(c, {
          code: 501,
          text: 'FRAME_ERROR - content header properties do not match their flags',
          exact: true,
          classId: 60,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a headers table with an unknown field type is a 501 at publish, before anything is queued', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        c.send((w) =>
          // dead-lettered from a timer, where a table that cannot be read has no one to answer
          declareQueue(w, 1, 'q', { 'x-message-ttl': 10, 'x-dead-letter-exchange': '' }),
        );
        await c.expectMethod(Method.QUEUE_DECLARE_OK);
        publish(c, 1);
        // headers { a: 'Z' 01020304 }
        const table = Buffer.from([0, 0, 0, 7, 1, 0x61, 0x5a, 1, 2, 3, 4]);
        const h = Buffer.concat([contentHeader(60, 0), table]);
        h.writeUInt16BE(0x2000, 12);
        c.write(frame(2, 1, h));
        await expectHardClose(c, {
          code: 501,
          text: "FRAME_ERROR - cannot decode the headers of basic.publish's content header: unknown field type 'Z' (0x5a)",
          exact: true,
          classId: 60,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      const d = await RawClient.open(broker.port);
      d.send((w) => M.encodeChannelOpen(w, 1, {}));
      await d.expectMethod(Method.CHANNEL_OPEN_OK);
      d.send((w) => declareQueue(w, 1, 'q', {}, { passive: true }));
      const ok = await d.expectMethod(Method.QUEUE_DECLARE_OK);
      expect(ok.args?.['messageCount']).toBe(0);
      d.close();
    });
  });

  it('a body frame where the content header of a basic.publish is expected', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        c.write(frame(3, 1, Buffer.from('hello')));
        await expectHardClose(c, { code: 505, text: NON_HEADER, exact: true, classId: 60, methodId: 40 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a content header of the wrong class after basic.publish', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        c.write(frame(2, 1, contentHeader(50, 5)));
        await expectHardClose(c, {
          code: 505,
          text: 'UNEXPECTED_FRAME - expected content header for class 60',
          classId: 60,
          methodId: 40,
        });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('body frames carrying more bytes than the content header declared', async () => {
    await withBroker(async (broker) => {
      const c = await openWithChannel(broker.port);
      try {
        publish(c, 1);
        c.write(frame(2, 1, contentHeader(60, 5)));
        c.write(frame(3, 1, Buffer.from('abc')));
        c.write(frame(3, 1, Buffer.from('def')));
        await expectHardClose(c, { code: 505, text: 'UNEXPECTED_FRAME - ', classId: 60, methodId: 40 });
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('after the broker sends connection.close', () => {
  it('frames other than close-ok are discarded until close-ok arrives', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.write(frame(3, 1, Buffer.from('hello'))); // 505 on a channel that is not open
        const close = await c.expectConnectionClose(false);
        expect(close.replyCode).toBe(505);
        c.send((w) => {
          M.encodeChannelOpen(w, 1, {});
          M.encodeConnectionUpdateSecret(w, 0, { newSecret: 'x', reason: 'r' });
          M.encodeConnectionCloseOk(w, 0, {});
        });
        await c.expectClosed();
        expect(c.frames.map((f) => `${f.channel}:${f.name}`).slice(-1)).toEqual(['0:connection.close']);
        expect(c.frames.some((f) => f.methodId === Method.CHANNEL_OPEN_OK)).toBe(false);
        expect(c.frames.some((f) => f.methodId === Method.CONNECTION_UPDATE_SECRET_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a connection.close from the client crossing it is answered with close-ok', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeBasicQos(w, 0, { prefetchSize: 0, prefetchCount: 1, global: false }));
        const close = await c.expectConnectionClose(false);
        expect(close.replyCode).toBe(504);
        c.send((w) =>
          M.encodeConnectionClose(w, 0, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
        );
        const ok = await c.expectMethod(Method.CONNECTION_CLOSE_OK);
        expect(ok.channel).toBe(0);
        await c.expectClosed();
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});
