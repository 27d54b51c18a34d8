/**
 * The connection handshake over a raw socket: protocol header, connection.start, SASL (PLAIN and
 * AMQPLAIN), tune/tune-ok negotiation, connection.open and heartbeats. Close codes, class/method
 * ids and reply-text prefixes are those of RabbitMQ 3.10.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import {
  bytes,
  expectStillServing,
  frame,
  PROTOCOL_HEADER,
  publishBytes,
  RawClient,
} from '../helpers/raw-client.js';

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const REPLY_HEADER_HEX = '414d515000000901'; // 'AMQP' 0 0 9 1
const PLAIN_GUEST = Buffer.from('\0guest\0guest');
const CLIENT_CAPS = { authentication_failure_close: true, 'connection.blocked': true };

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

/** An AMQPLAIN response: a field table body WITHOUT its u32 length prefix, values as 'S' longstrs. */
function amqplain(login: string, password: string): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of [
    ['LOGIN', login],
    ['PASSWORD', password],
  ] as const) {
    const key = Buffer.from(k);
    const val = Buffer.from(v);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(val.length);
    parts.push(Buffer.from([key.length]), key, Buffer.from('S'), len, val);
  }
  return Buffer.concat(parts);
}

/** Connects, sends the protocol header and waits for connection.start. */
async function connectToStart(port: number): Promise<{ c: RawClient; start: M.ConnectionStart }> {
  const c = await RawClient.connect(port);
  c.write(PROTOCOL_HEADER);
  const f = await c.expectMethod(Method.CONNECTION_START);
  return { c, start: f.args as unknown as M.ConnectionStart };
}

function sendStartOk(
  c: RawClient,
  opts: { mechanism?: string; response?: Buffer; capabilities?: boolean } = {},
): void {
  c.send((w) =>
    M.encodeConnectionStartOk(w, 0, {
      clientProperties:
        opts.capabilities === false ? { product: 'wire-test' } : { capabilities: CLIENT_CAPS },
      mechanism: opts.mechanism ?? 'PLAIN',
      response: opts.response ?? PLAIN_GUEST,
      locale: 'en_US',
    }),
  );
}

/** Connects and logs in as guest; returns at connection.tune. */
async function connectToTune(port: number): Promise<{ c: RawClient; tune: M.ConnectionTune }> {
  const { c } = await connectToStart(port);
  sendStartOk(c);
  const f = await c.expectMethod(Method.CONNECTION_TUNE);
  return { c, tune: f.args as unknown as M.ConnectionTune };
}

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

describe('protocol header', () => {
  it.each([
    ['an HTTP request line', Buffer.from('HTTP/1.1 200 OK\r\n\r\n', 'latin1')],
    ['an AMQP 0-8 header', Buffer.from('AMQP\x01\x01\x08\x00', 'latin1')],
    ['an AMQP 0-9-0 header', Buffer.from('AMQP\x00\x00\x09\x00', 'latin1')],
    ['an AMQP 1.0 header', Buffer.from('AMQP\x00\x01\x00\x00', 'latin1')],
  ])('%s is answered with exactly the 0-9-1 header and the socket is closed', async (_what, header) => {
    await withBroker(async (broker) => {
      const c = await RawClient.connect(broker.port);
      try {
        c.rawOnly();
        c.write(header);
        await c.expectClosed();
        expect(c.raw.toString('hex')).toBe(REPLY_HEADER_HEX);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('a correct header written one byte at a time is accepted', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.connect(broker.port);
      try {
        c.socket.setNoDelay(true);
        for (const b of PROTOCOL_HEADER) {
          c.write(Buffer.from([b]));
          await new Promise((r) => setTimeout(r, 5));
        }
        const start = await c.expectMethod(Method.CONNECTION_START);
        expect(start.channel).toBe(0);
        sendStartOk(c);
        await c.expectMethod(Method.CONNECTION_TUNE);
        c.send((w) => {
          M.encodeConnectionTuneOk(w, 0, { channelMax: 0, frameMax: 0, heartbeat: 0 });
          M.encodeConnectionOpen(w, 0, { virtualHost: '/' });
        });
        await c.expectMethod(Method.CONNECTION_OPEN_OK);
      } finally {
        c.close();
      }
    });
  });

  it('a whole handshake pipelined in one write is served in order', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.connect(broker.port);
      try {
        c.write(
          Buffer.concat([
            PROTOCOL_HEADER,
            bytes((w) => {
              M.encodeConnectionStartOk(w, 0, {
                clientProperties: { capabilities: CLIENT_CAPS },
                mechanism: 'PLAIN',
                response: PLAIN_GUEST,
                locale: 'en_US',
              });
              M.encodeConnectionTuneOk(w, 0, { channelMax: 2047, frameMax: 131072, heartbeat: 0 });
              M.encodeConnectionOpen(w, 0, { virtualHost: '/' });
              M.encodeChannelOpen(w, 1, {});
            }),
          ]),
        );
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        expect(c.frames.map((f) => `${f.channel}:${f.name}`)).toEqual([
          '0:connection.start',
          '0:connection.tune',
          '0:connection.open-ok',
          '1:channel.open-ok',
        ]);
      } finally {
        c.close();
      }
    });
  });
});

describe('connection.start', () => {
  it('offers version 0-9, PLAIN and AMQPLAIN, locale en_US and the server properties', async () => {
    await withBroker(async (broker) => {
      const { c, start } = await connectToStart(broker.port);
      try {
        const f = c.frames[0]!;
        expect(f.type).toBe(1);
        expect(f.channel).toBe(0);
        expect(f.methodId).toBe(Method.CONNECTION_START);
        expect(start.versionMajor).toBe(0);
        expect(start.versionMinor).toBe(9);
        expect(start.mechanisms.toString('utf8')).toBe('PLAIN AMQPLAIN');
        expect(start.locales.toString('utf8')).toBe('en_US');
        const p = start.serverProperties;
        // clients gate RabbitMQ's extensions on the product name; Warren names itself elsewhere
        expect(p['product']).toBe('RabbitMQ');
        expect(p['version']).toBe('3.10.8');
        expect(p['platform']).toBe(`Warren ${PACKAGE_VERSION} on Node.js ${process.version}`);
        expect(Object.keys(p).sort()).toEqual([
          'capabilities',
          'cluster_name',
          'copyright',
          'information',
          'platform',
          'product',
          'version',
        ]);
        expect(String(p['information'])).toMatch(/^Warren .*compatible with RabbitMQ 3\.10\.8/);
        expect(p['capabilities']).toEqual({
          publisher_confirms: true,
          exchange_exchange_bindings: true,
          'basic.nack': true,
          consumer_cancel_notify: true,
          'connection.blocked': true,
          consumer_priorities: true,
          authentication_failure_close: true,
          per_consumer_qos: true,
          direct_reply_to: true,
        });
      } finally {
        c.close();
      }
    });
  });

  it('offers channel-max 2047, frame-max 131072 and heartbeat 60 in connection.tune', async () => {
    await withBroker(async (broker) => {
      const { c, tune } = await connectToTune(broker.port);
      try {
        expect(tune).toEqual({ channelMax: 2047, frameMax: 131072, heartbeat: 60 });
      } finally {
        c.close();
      }
    });
  });
});

describe('authentication', () => {
  const REFUSED_PLAIN = 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN';

  it.each([
    ['a wrong password', Buffer.from('\0guest\0wrong')],
    ['an unknown user', Buffer.from('\0nobody\0guest')],
  ])(
    '%s is refused with 403 ACCESS_REFUSED when the client has authentication_failure_close',
    async (_what, response) => {
      await withBroker(async (broker) => {
        const { c } = await connectToStart(broker.port);
        try {
          sendStartOk(c, { response });
          // RabbitMQ's close for a refused login names no method (0, 0)
          await expectHardClose(c, 403, REFUSED_PLAIN, 0, 0);
          expect(c.frames.some((f) => f.methodId === Method.CONNECTION_TUNE)).toBe(false);
        } finally {
          c.close();
        }
        await expectStillServing(broker.port);
      });
    },
  );

  it('a wrong password closes the socket without a close frame when the client lacks the capability', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToStart(broker.port);
      try {
        sendStartOk(c, { response: Buffer.from('\0guest\0wrong'), capabilities: false });
        await c.expectClosed();
        expect(c.frames.map((f) => f.name)).toEqual(['connection.start']);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('an unknown mechanism is refused with 503 COMMAND_INVALID', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToStart(broker.port);
      try {
        sendStartOk(c, { mechanism: 'EXTERNAL', response: Buffer.alloc(0) });
        await expectHardClose(c, 503, 'COMMAND_INVALID - unknown authentication mechanism', 10, 11);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it.each([
    ['a PLAIN response without NUL separators', 'PLAIN', Buffer.from('guestguest')],
    // RabbitMQ's PLAIN takes no authorization identity, nor a NUL inside the password
    ['a PLAIN response with an authorization identity', 'PLAIN', Buffer.from('guest\0guest\0guest')],
    ['a PLAIN response with a third NUL', 'PLAIN', Buffer.from('\0guest\0gu\0est')],
    ['an AMQPLAIN response that is not a field table', 'AMQPLAIN', Buffer.from([5, 0x4c])],
    ['an AMQPLAIN response without PASSWORD', 'AMQPLAIN', amqplain('guest', 'guest').subarray(0, 16)],
  ])('%s is refused with 403 ACCESS_REFUSED', async (_what, mechanism, response) => {
    await withBroker(async (broker) => {
      const { c } = await connectToStart(broker.port);
      try {
        sendStartOk(c, { mechanism, response });
        await expectHardClose(c, 403, 'ACCESS_REFUSED - ', 10, 11);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('AMQPLAIN with LOGIN and PASSWORD as long strings logs in and opens the vhost', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToStart(broker.port);
      try {
        sendStartOk(c, { mechanism: 'AMQPLAIN', response: amqplain('guest', 'guest') });
        await c.expectMethod(Method.CONNECTION_TUNE);
        c.send((w) => {
          M.encodeConnectionTuneOk(w, 0, { channelMax: 2047, frameMax: 131072, heartbeat: 0 });
          M.encodeConnectionOpen(w, 0, { virtualHost: '/' });
        });
        await c.expectMethod(Method.CONNECTION_OPEN_OK);
      } finally {
        c.close();
      }
    });
  });

  it('AMQPLAIN with a wrong password is refused with 403 naming AMQPLAIN', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToStart(broker.port);
      try {
        sendStartOk(c, { mechanism: 'AMQPLAIN', response: amqplain('guest', 'wrong') });
        await expectHardClose(
          c,
          403,
          'ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN',
          0,
          0,
        );
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('tune-ok negotiation', () => {
  it.each([
    [
      'frame-max below 4096',
      { channelMax: 2047, frameMax: 4095, heartbeat: 0 },
      'NOT_ALLOWED - negotiated frame_max = 4095 is lower than the minimum allowed value (4096)',
    ],
    [
      'frame-max above the offered 131072',
      { channelMax: 2047, frameMax: 131073, heartbeat: 0 },
      'NOT_ALLOWED - negotiated frame_max = 131073 is higher than the maximum allowed value (131072)',
    ],
    [
      'channel-max above the offered 2047',
      { channelMax: 2048, frameMax: 131072, heartbeat: 0 },
      'NOT_ALLOWED - negotiated channel_max = 2048 is higher than the maximum allowed value (2047)',
    ],
  ])('%s is refused with 530 NOT_ALLOWED on tune-ok', async (_what, tuneOk, text) => {
    await withBroker(async (broker) => {
      const { c } = await connectToTune(broker.port);
      try {
        c.send((w) => M.encodeConnectionTuneOk(w, 0, tuneOk));
        const close = await expectHardClose(c, 530, 'NOT_ALLOWED - negotiated ', 10, 31);
        expect(close.replyText).toBe(text);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('zero frame-max and channel-max mean the server maxima', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToTune(broker.port);
      try {
        c.send((w) => {
          M.encodeConnectionTuneOk(w, 0, { channelMax: 0, frameMax: 0, heartbeat: 0 });
          M.encodeConnectionOpen(w, 0, { virtualHost: '/' });
        });
        await c.expectMethod(Method.CONNECTION_OPEN_OK);
        // a frame of exactly 131072 bytes is within the limit
        const big = bytes((w) =>
          M.encodeConnectionUpdateSecret(w, 0, { newSecret: Buffer.alloc(131072 - 17, 0x61), reason: '' }),
        );
        expect(big.length).toBe(131072);
        c.write(big);
        await c.expectMethod(Method.CONNECTION_UPDATE_SECRET_OK);
        // channel-max counts open channels (2047 of them), so high numbers open
        c.send((w) => M.encodeChannelOpen(w, 2047, {}));
        expect((await c.expectMethod(Method.CHANNEL_OPEN_OK)).channel).toBe(2047);
        c.send((w) => M.encodeChannelOpen(w, 60000, {}));
        expect((await c.expectMethod(Method.CHANNEL_OPEN_OK)).channel).toBe(60000);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });
});

describe('connection.open', () => {
  it('an unknown vhost is refused with 530 naming the vhost', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToTune(broker.port);
      try {
        c.send((w) => {
          M.encodeConnectionTuneOk(w, 0, { channelMax: 2047, frameMax: 131072, heartbeat: 0 });
          M.encodeConnectionOpen(w, 0, { virtualHost: 'nope' });
        });
        const close = await expectHardClose(c, 530, 'NOT_ALLOWED - vhost nope not found', 10, 40);
        expect(close.replyText).toBe('NOT_ALLOWED - vhost nope not found');
        const expected = closeFrameBytes(530, 'NOT_ALLOWED - vhost nope not found', 10, 40);
        expect(c.raw.subarray(c.raw.length - expected.length).toString('hex')).toBe(expected.toString('hex'));
        expect(c.frames.some((f) => f.methodId === Method.CONNECTION_OPEN_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it('connection.open before tune-ok is a 504 unexpected method in state tuning', async () => {
    await withBroker(async (broker) => {
      const { c } = await connectToTune(broker.port);
      try {
        c.send((w) => M.encodeConnectionOpen(w, 0, { virtualHost: '/' }));
        await expectHardClose(c, 504, 'CHANNEL_ERROR - unexpected method in connection state tuning', 10, 40);
        expect(c.frames.some((f) => f.methodId === Method.CONNECTION_OPEN_OK)).toBe(false);
      } finally {
        c.close();
      }
      await expectStillServing(broker.port);
    });
  });

  it.each([
    ['ASCII', 'v'.repeat(255)],
    ['two-byte UTF-8', '\u00e9'.repeat(127)],
  ])(
    'a reply text that would exceed 255 bytes is cut to fit a short string (%s vhost name)',
    async (_what, vhost) => {
      await withBroker(async (broker) => {
        const { c } = await connectToTune(broker.port);
        try {
          c.send((w) => {
            M.encodeConnectionTuneOk(w, 0, { channelMax: 2047, frameMax: 131072, heartbeat: 0 });
            M.encodeConnectionOpen(w, 0, { virtualHost: vhost });
          });
          const close = await expectHardClose(c, 530, `NOT_ALLOWED - vhost ${vhost.slice(0, 20)}`, 10, 40);
          // as RabbitMQ: the first 252 bytes and "..." (here without splitting a character)
          const len = Buffer.byteLength(close.replyText);
          expect(len).toBeLessThanOrEqual(255);
          expect(len).toBeGreaterThanOrEqual(254);
          expect(close.replyText).not.toContain('\ufffd');
          expect(close.replyText.endsWith('...')).toBe(true);
          const kept = close.replyText.slice(0, -3);
          expect(`NOT_ALLOWED - vhost ${vhost} not found`.startsWith(kept)).toBe(true);
        } finally {
          c.close();
        }
        await expectStillServing(broker.port);
      });
    },
  );

  it('a client connection.close gets close-ok; exclusive queues go at once; the client closes the socket', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      const other = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        c.send((w) => M.encodeQueueDeclare(w, 1, { queue: 'mine', exclusive: true } as M.QueueDeclare));
        await c.expectMethod(Method.QUEUE_DECLARE_OK);
        const bye = (w: Parameters<typeof M.encodeConnectionClose>[0]) =>
          M.encodeConnectionClose(w, 0, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
        // two closes in one write, as amqp091-go's concurrent Close() calls can send
        c.send((w) => {
          bye(w);
          bye(w);
        });
        const ok = await c.expectMethod(Method.CONNECTION_CLOSE_OK);
        expect(ok.channel).toBe(0);
        expect(ok.payload.toString('hex')).toBe('000a0033');
        // the exclusive queue is gone by the time close-ok is out
        other.send((w) => M.encodeChannelOpen(w, 1, {}));
        await other.expectMethod(Method.CHANNEL_OPEN_OK);
        other.send((w) => M.encodeQueueDeclare(w, 1, { queue: 'mine', passive: true } as M.QueueDeclare));
        const gone = await other.expectMethod(Method.CHANNEL_CLOSE);
        expect(gone.args?.['replyCode']).toBe(404);
        // as RabbitMQ, the broker waits for the client to close: no EOF yet, nothing more sent
        expect(c.closed).toBe(false);
        expect(c.socket.readableEnded).toBe(false);
        expect(c.frames.filter((f) => f.methodId === Method.CONNECTION_CLOSE_OK)).toHaveLength(1);
        c.socket.end();
        await c.expectClosed();
      } finally {
        c.close();
        other.close();
      }
    });
  });
});

describe('closing a blocked connection', () => {
  it('a connection held by a resource alarm reads the close-ok, so the socket closes at once', async () => {
    // (RabbitMQ closes it about 1 ms after close-ok; its Erlang client, in shovels and
    // federation, gives the close 1 s and logs a crash past that)
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        broker.flow.set('a test', true);
        await c.expectMethod(Method.CONNECTION_BLOCKED);
        // a publish: the connection is held, not read, until the alarm clears
        c.write(publishBytes(1, 'nowhere', 'held'));
        c.send((w) => M.encodeBasicQos(w, 1, { prefetchSize: 0, prefetchCount: 1, global: false }));
        await new Promise((r) => setTimeout(r, 100));
        expect(c.frames.some((f) => f.methodId === Method.BASIC_QOS_OK)).toBe(false);
        const stopping = broker.stop();
        await c.expectMethod(Method.CONNECTION_CLOSE);
        c.send((w) => M.encodeConnectionCloseOk(w, 0, {}));
        await c.expectClosed(1_000);
        await stopping;
      } finally {
        c.close();
      }
    });
  });
});

describe('heartbeats', () => {
  it('a client that negotiates a 1 s heartbeat receives heartbeat frames on channel 0', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { heartbeat: 1 });
      try {
        await c.until(() => c.frames.some((f) => f.type === 8), 'a heartbeat frame', 5_000);
        const hb = c.frames.find((f) => f.type === 8)!;
        expect(hb.channel).toBe(0);
        expect(hb.payload.length).toBe(0);
        expect(c.raw.includes(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xce]))).toBe(true);
      } finally {
        c.close();
      }
    });
  });

  /** Opens channel 1 with a manual-ack consumer on a fresh queue and takes one delivery. */
  async function deliveredOne(c: RawClient): Promise<void> {
    c.send((w) => M.encodeChannelOpen(w, 1, {}));
    await c.expectMethod(Method.CHANNEL_OPEN_OK);
    c.send((w) => M.encodeQueueDeclare(w, 1, { queue: 'acked', exclusive: true } as M.QueueDeclare));
    await c.expectMethod(Method.QUEUE_DECLARE_OK);
    c.send((w) => M.encodeBasicConsume(w, 1, { queue: 'acked', consumerTag: 'c' } as M.BasicConsume));
    await c.expectMethod(Method.BASIC_CONSUME_OK);
    c.write(publishBytes(1, 'acked', 'm'));
    await c.expectMethod(Method.BASIC_DELIVER);
  }

  it('an ack that nothing answers is followed by a heartbeat frame, so the TCP acknowledgement goes at once', async () => {
    // (a client with Nagle's algorithm on holds its next small write until that acknowledgement)
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { heartbeat: 60 });
      try {
        await deliveredOne(c);
        const before = c.frames.length;
        c.send((w) => M.encodeBasicAck(w, 1, { deliveryTag: 1, multiple: false }));
        // the periodic heartbeat would come 30 s after our last write
        await c.until(() => c.frames.length > before, 'a frame after the ack');
        expect(c.frames.slice(before).map((f) => `${f.type}:${f.channel}:${f.payload.length}`)).toEqual([
          '8:0:0',
        ]);
      } finally {
        c.close();
      }
    });
  });

  it('a client that negotiated no heartbeats gets no heartbeat frame after an ack', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { heartbeat: 0 });
      try {
        await deliveredOne(c);
        const before = c.frames.length;
        c.send((w) => M.encodeBasicAck(w, 1, { deliveryTag: 1, multiple: false }));
        await new Promise((r) => setTimeout(r, 100));
        c.send((w) => M.encodeBasicQos(w, 1, { prefetchSize: 0, prefetchCount: 5, global: false }));
        await c.expectMethod(Method.BASIC_QOS_OK);
        expect(c.frames.slice(before).map((f) => f.name)).toEqual(['basic.qos-ok']);
      } finally {
        c.close();
      }
    });
  });

  it('heartbeat frames from the client on channel 0 are accepted without a reply', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        const before = c.frames.length;
        c.write(frame(8, 0, Buffer.alloc(0)));
        c.write(frame(8, 0, Buffer.alloc(0)));
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        expect(c.frames.slice(before).map((f) => `${f.channel}:${f.name}`)).toEqual(['1:channel.open-ok']);
      } finally {
        c.close();
      }
    });
  });
});
