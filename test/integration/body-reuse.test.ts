/**
 * Large bodies are recycled (util/body-pool.ts, amqp/body-recycler.ts). Recycling must never
 * let a client see another message's bytes: every body received here is compared byte for byte
 * with what was published, across the paths a body can take (manual ack, no-ack, basic.get,
 * requeue, dead-lettering, fanout) while new publishes reuse freed buffers, and with a client
 * that acknowledges deliveries the broker is still writing to its socket.
 */
import type { Socket } from 'node:net';
import type { AMQPChannel, AMQPMessage } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker.js';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { bodyPoolStats } from '../../src/util/body-pool.js';
import { withBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { connectAmqpClient, connectAmqplib } from '../helpers/refusals.js';
import { waitFor } from '../helpers/wait.js';

/** A body no other (salt, index) pair produces: 32-bit words from a multiplicative hash. */
function body(salt: number, i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = (salt * 1_000_003 + i * 7919 + 1) >>> 0;
  let o = 0;
  for (; o + 4 <= size; o += 4) {
    x = Math.imul(x ^ (x >>> 15), 2_654_435_761) >>> 0;
    b.writeUInt32LE(x, o);
  }
  for (; o < size; o++) b[o] = (x >>> (8 * (o & 3))) & 0xff;
  return b;
}

const SIZES = [4096, 5000, 65_536, 131_079, 262_144, 300_001];

/** Checks a received message against body(salt, id, size) named by its message-id "salt:i:size". */
function intact(id: string | undefined, got: Uint8Array | Buffer | null): boolean {
  const [salt, i, size] = (id ?? '').split(':').map(Number);
  const want = body(salt!, i!, size!);
  return got !== null && Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want);
}

function queueOf(broker: Broker, name: string) {
  const q = broker.vhosts.get('/')!.queues.get(name);
  if (q === undefined) throw new Error(`no queue ${name}`);
  return q;
}

const SIZE = 262_144;

/**
 * Publishes SIZE-byte bodies (salt 7, in order) to `queue`, one delivered at a time, until the
 * broker's connection to the consumer at local port `port` stops accepting writes: the client
 * does not read, so the last deliveries are still queued on the broker's side of the socket.
 * Returns how many were published.
 */
async function publishUntilBackedUp(
  broker: Broker,
  pch: AMQPChannel,
  queue: string,
  port: number,
): Promise<number> {
  const q = queueOf(broker, queue);
  const conn = [...broker.connections].find((c) => c.peer.endsWith(`:${port}`))!;
  let i = 0;
  while (conn.writable) {
    await pch.basicPublish('', queue, body(7, i, SIZE), { messageId: `7:${i}:${SIZE}` });
    i++;
    await waitFor(() => q.messageCount === 0 || !conn.writable, 'the delivery');
    if (i > 400) throw new Error('the consumer socket never backed up');
  }
  return i;
}

describe('recycled body buffers', () => {
  it('every body arrives intact while freed buffers are reused (ack, no-ack, get, requeue, dead-letter, fanout, stored)', async () => {
    await withBroker(async (broker) => {
      const before = bodyPoolStats().reused;
      const pub = await connectAmqpClient(broker.url);
      const sub = await connectAmqpClient(broker.url);
      const pch = await pub.client.channel();
      const sch = await sub.client.channel();
      await sch.prefetch(8);
      await sch.queueDeclare('acked', { durable: false });
      await sch.queueDeclare('noack', { durable: false });
      await sch.queueDeclare('polled', { durable: false });
      await sch.queueDeclare('dlq', { durable: false });
      await sch.queueDeclare(
        'rejected',
        { durable: false },
        { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
      );
      await sch.exchangeDeclare('fan', 'fanout');
      await sch.queueDeclare('fan1', { durable: false });
      await sch.queueDeclare('fan2', { durable: false });
      await sch.queueBind('fan1', 'fan', '');
      await sch.queueBind('fan2', 'fan', '');

      const bad: string[] = [];
      const seen = new Map<string, number>();
      const check = (q: string, m: AMQPMessage) => {
        seen.set(q, (seen.get(q) ?? 0) + 1);
        if (!intact(m.properties.messageId, m.body)) bad.push(`${q} ${m.properties.messageId}`);
      };
      await sch.basicConsume('acked', { noAck: false }, (m) => {
        check('acked', m);
        void m.ack();
      });
      const nch = await sub.client.channel();
      await nch.basicConsume('noack', { noAck: true }, (m) => check('noack', m));
      // requeued once, then acked: the second delivery's ack must not recycle (it was sent twice)
      const rch = await sub.client.channel();
      await rch.prefetch(4);
      await rch.basicConsume('rejected', { noAck: false }, (m) => {
        check('rejected', m);
        if (m.redelivered) void m.reject(false);
        else void m.nack(true);
      });
      const dch = await sub.client.channel();
      await dch.basicConsume('dlq', { noAck: false }, (m) => {
        check('dlq', m);
        void m.ack();
      });
      const fch = await sub.client.channel();
      await fch.basicConsume('fan1', { noAck: false }, (m) => {
        check('fan1', m);
        void m.ack();
      });
      // stored on disk: not recycled, and acked bodies must still be whole when written
      await sch.queueDeclare('stored', { durable: true });
      const tch = await sub.client.channel();
      await tch.basicConsume('stored', { noAck: false }, (m) => {
        check('stored', m);
        void m.ack();
      });

      const N = 120;
      let polled = 0;
      const gch = await sub.client.channel();
      for (let i = 0; i < N; i++) {
        const size = SIZES[i % SIZES.length]!;
        for (const [salt, ex, rk] of [
          [1, '', 'acked'],
          [2, '', 'noack'],
          [3, '', 'polled'],
          [4, '', 'rejected'],
          [5, 'fan', ''],
          [6, '', 'stored'],
        ] as const) {
          await pch.basicPublish(ex, rk, body(salt, i, size), {
            messageId: `${salt}:${i}:${size}`,
            deliveryMode: salt === 6 ? 2 : 1,
          });
        }
        // basic.get, alternately acked and no-ack, as the publishes go on
        const got = await gch.basicGet('polled', { noAck: i % 2 === 0 });
        if (got !== null) {
          polled++;
          check('polled', got);
          if (i % 2 === 1) await got.ack();
        }
      }
      for (;;) {
        const got = await gch.basicGet('polled', { noAck: false });
        if (got === null) break;
        polled++;
        check('polled', got);
        await got.ack();
      }
      // fan2 is read only now: fan1's acks came long before, and reused buffers since
      await fch.basicConsume('fan2', { noAck: true }, (m) => check('fan2', m));
      await waitFor(
        () => ['acked', 'noack', 'dlq', 'fan1', 'fan2', 'stored'].every((q) => seen.get(q) === N),
        'every message consumed',
        20_000,
      );
      expect(polled).toBe(N);
      expect(seen.get('rejected')).toBe(2 * N);
      expect(bad).toEqual([]);
      // the test did exercise reuse
      expect(bodyPoolStats().reused - before).toBeGreaterThan(N);
      await pub.client.close();
      await sub.client.close();
    });
  });

  it('a body the broker is still writing is not reused when the client acknowledges it early', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('slow', { durable: false });
      await ch.prefetch(500);
      const received: amqplib.ConsumeMessage[] = [];
      await ch.consume('slow', (m) => received.push(m!), { noAck: false });
      // the client stops reading from its socket: the broker's writes back up behind it
      const stream = (model.connection as unknown as { stream: Socket }).stream;
      const handle = (stream as unknown as { _handle: { readStop(): void; readStart(): void } })._handle;
      handle.readStop();

      const pub = await connectAmqpClient(broker.url);
      const pch = await pub.client.channel();
      const q = queueOf(broker, 'slow');
      await publishUntilBackedUp(broker, pch, 'slow', stream.localPort!);
      // deliveries stop while the socket is backed up; the last ones are still being written
      const delivered = q.unacked;
      const waiting = q.messageCount;
      expect(delivered).toBeGreaterThan(0);
      // a client acking tags it has not read yet (it can count them)
      ch.ack({ fields: { deliveryTag: delivered } } as amqplib.Message, true);
      await waitFor(() => q.unacked === 0, 'the early ack');
      // new bodies of the same size now need buffers; the unsent ones must not be among them
      const more = 40;
      for (let k = 0; k < more; k++) {
        await pch.basicPublish('', 'slow', body(8, k, SIZE), { messageId: `8:${k}:${SIZE}` });
      }
      await waitFor(() => q.messageCount === waiting + more, 'the second batch queued');

      handle.readStart();
      const total = delivered + waiting + more;
      await waitFor(() => received.length === total, 'everything delivered', 20_000);
      const bad = received.filter((m) => !intact(m.properties.messageId, m.content));
      expect(bad.map((m) => m.properties.messageId)).toEqual([]);
      ch.ack({ fields: { deliveryTag: total } } as amqplib.Message, true);
      await pub.client.close();
      await model.close();
    });
  });

  it('a body still being written to one consumer is not reused when another acknowledges its redelivery', async () => {
    await withBroker(async (broker) => {
      const pub = await connectAmqpClient(broker.url);
      const pch = await pub.client.channel();
      await pch.queueDeclare('moved', { durable: false });
      await pch.queueDeclare('other', { durable: false });
      // a raw consumer that stops reading once the broker's writes to it back up
      const a = await RawClient.open(broker.port);
      a.send((w) => M.encodeChannelOpen(w, 1, {}));
      await a.expectMethod(Method.CHANNEL_OPEN_OK);
      a.send((w) =>
        M.encodeBasicConsume(w, 1, {
          queue: 'moved',
          consumerTag: 'a',
          noLocal: false,
          noAck: false,
          exclusive: false,
          noWait: false,
          arguments: {},
        }),
      );
      await a.expectMethod(Method.BASIC_CONSUME_OK);
      a.socket.pause();
      const q = queueOf(broker, 'moved');
      const i = await publishUntilBackedUp(broker, pch, 'moved', a.socket.localPort!);
      const delivered = q.unacked;
      expect(delivered).toBeGreaterThan(0);
      // closing the channel requeues them; the bytes already queued for the socket stay queued
      a.send((w) => M.encodeChannelClose(w, 1, { replyCode: 200, replyText: '', classId: 0, methodId: 0 }));
      await waitFor(() => q.unacked === 0 && q.messageCount === i, 'the requeue');
      // another consumer gets them redelivered and acks them
      const b = await connectAmqpClient(broker.url);
      const bch = await b.client.channel();
      const bad: string[] = [];
      let got = 0;
      await bch.basicConsume('moved', { noAck: false }, (m) => {
        got++;
        if (!intact(m.properties.messageId, m.body)) bad.push(`b ${m.properties.messageId}`);
        void m.ack();
      });
      await waitFor(() => got === i && q.unacked === 0, 'the redeliveries acked');
      // new bodies of the same size need buffers meanwhile
      for (let k = 0; k < 40; k++) {
        await pch.basicPublish('', 'other', body(8, k, SIZE), { messageId: `8:${k}:${SIZE}` });
      }
      await waitFor(() => queueOf(broker, 'other').messageCount === 40, 'the other queue filled');

      a.socket.resume();
      await a.expectMethod(Method.CHANNEL_CLOSE_OK, 20_000);
      // what reached the first consumer: deliveries 0..delivered-1 in publish order
      const bodies: Buffer[] = [];
      let current: Buffer[] | null = null;
      for (const f of a.frames) {
        if (f.channel !== 1) continue;
        if (f.methodId === Method.BASIC_DELIVER) {
          current = [];
          bodies.push(Buffer.alloc(0));
        } else if (f.type === 3 && current !== null) {
          current.push(f.payload);
          bodies[bodies.length - 1] = Buffer.concat(current);
        }
      }
      expect(bodies.length).toBe(delivered);
      bodies.forEach((got, n) => {
        if (!got.equals(body(7, n, SIZE))) bad.push(`a ${n}`);
      });
      expect(bad).toEqual([]);
      a.close();
      await b.client.close();
      await pub.client.close();
    });
  });

  it('an idle broker lets go of the buffers it kept', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('q', { durable: false });
      const before = bodyPoolStats().reused;
      for (let i = 0; i < 20; i++) {
        await ch.basicPublish('', 'q', body(9, i, 65_536), { messageId: `9:${i}:65536` });
        const m = await ch.basicGet('q', { noAck: false });
        expect(intact(m?.properties.messageId, m?.body ?? null)).toBe(true);
        await m!.ack();
      }
      // each publish after the first reuses the body acked just before it (same connection, in order)
      expect(bodyPoolStats().reused - before).toBeGreaterThanOrEqual(19);
      await waitFor(() => bodyPoolStats().keptBytes === 0, 'the idle pool emptied');
      await client.close();
    });
  });
});
