/**
 * Per-queue publisher flow (core/queue-congestion.ts): a queue whose consumers all wait on their
 * sockets holds its publishers once its backlog is deep, instead of reading them into memory;
 * slow acks never hold anyone, a consumer that takes nothing holds them only for the hold limit,
 * and a connection whose own output is backed up is never held.
 */
import type { AMQPClient, AMQPMessage } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { CONGESTED_BYTES } from '../../src/core/queue-congestion.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, connectClient, declare, readyCount } from '../helpers/consumers.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 256 * 1024;
const N = 120;
/** ready messages at which a queue counts as congested */
const DEEP = CONGESTED_BYTES / SIZE;

function body(i: number): Buffer {
  const b = Buffer.alloc(SIZE, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

/** Publishes N numbered bodies to `q` on a confirm channel; resolves once all are confirmed. */
async function publishAll(model: amqplib.ChannelModel, q: string, confirmed: { n: number }): Promise<void> {
  const ch = await model.createConfirmChannel();
  const all: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    all.push(
      new Promise((resolve, reject) => {
        ch.sendToQueue(q, body(i), {}, (err) => {
          if (err) reject(err);
          else {
            confirmed.n++;
            resolve();
          }
        });
      }),
    );
  }
  await Promise.all(all);
}

/** A no-ack consumer on `q` that records each body's number and checks its bytes. */
async function consumeAll(client: AMQPClient, q: string, prefetch = 0) {
  const ch = await client.channel();
  if (prefetch > 0) await ch.basicQos(prefetch);
  const seen: number[] = [];
  let bad = 0;
  const consumer = await ch.basicConsume(q, { noAck: prefetch === 0 }, (m: AMQPMessage) => {
    const b = Buffer.from(m.body!.buffer, m.body!.byteOffset, m.body!.byteLength);
    const i = b.readUInt32BE(0);
    if (b.length !== SIZE || b[SIZE - 1] !== (i & 0xff)) bad++;
    seen.push(i);
  });
  return { ch, consumer, seen, bad: () => bad };
}

describe('publisher flow per queue', () => {
  it('holds publishers while every consumer waits on its socket, and lets them go as it reads', async () => {
    await withBroker(
      async (broker) => {
        const { client: consumer, errors } = await connectClient(broker.url);
        await declare(await consumer.channel(), 'slow');
        const c = await consumeAll(consumer, 'slow');
        const socket = consumer.socket!;
        socket.pause();

        const pub = await connectAmqplib(broker.url);
        const confirmed = { n: 0 };
        const done = publishAll(pub.model, 'slow', confirmed);
        const { client: observer } = await connectClient(broker.url);
        await until(async () => (await readyCount(observer, 'slow')) >= DEEP, 'a deep queue');
        // held: more time changes nothing while the consumer reads nothing
        await new Promise((r) => setTimeout(r, 500));
        const depth = await readyCount(observer, 'slow');
        expect(depth).toBeGreaterThanOrEqual(DEEP);
        expect(depth).toBeLessThan(DEEP + 16);
        expect(confirmed.n).toBeLessThan(N);

        socket.resume();
        await done;
        await waitFor(() => c.seen.length === N, `all ${N} messages`, 20_000);
        expect(c.seen).toEqual(Array.from({ length: N }, (_, i) => i));
        expect(c.bad()).toBe(0);
        await pub.model.close();
        await observer.close();
        await consumer.close();
        expect(pub.errors).toEqual([]);
        expect(errors).toEqual([]);
      },
      { flowHoldLimit: 60_000 },
    );
  });

  it('does not hold publishers for consumers that are slow to ack', async () => {
    await withBroker(
      async (broker) => {
        const { client: consumer, errors } = await connectClient(broker.url);
        await declare(await consumer.channel(), 'unacked');
        // reads everything, acks nothing: five deliveries, the rest stays ready
        const c = await consumeAll(consumer, 'unacked', 5);
        const pub = await connectAmqplib(broker.url);
        const confirmed = { n: 0 };
        await publishAll(pub.model, 'unacked', confirmed);
        expect(confirmed.n).toBe(N);
        expect(await readyCount(consumer, 'unacked')).toBe(N - 5);
        expect(c.seen).toEqual([0, 1, 2, 3, 4]);
        await pub.model.close();
        await consumer.close();
        expect(pub.errors).toEqual([]);
        expect(errors).toEqual([]);
      },
      { flowHoldLimit: 60_000 },
    );
  });

  it('lets publishers go when the consumers take nothing for the hold limit', async () => {
    await withBroker(
      async (broker) => {
        const { client: consumer, errors } = await connectClient(broker.url);
        await declare(await consumer.channel(), 'stuck');
        const c = await consumeAll(consumer, 'stuck');
        const socket = consumer.socket!;
        socket.pause();
        const pub = await connectAmqplib(broker.url);
        const confirmed = { n: 0 };
        // a consumer that never reads (a dead peer) must not stall the publisher
        await publishAll(pub.model, 'stuck', confirmed);
        expect(confirmed.n).toBe(N);
        socket.resume();
        await waitFor(() => c.seen.length === N, `all ${N} messages`, 20_000);
        expect(c.seen).toEqual(Array.from({ length: N }, (_, i) => i));
        await pub.model.close();
        await consumer.close();
        expect(pub.errors).toEqual([]);
        expect(errors).toEqual([]);
      },
      { flowHoldLimit: 200 },
    );
  });

  it('never holds a connection whose own output is backed up', async () => {
    await withBroker(
      async (broker) => {
        // one connection publishes to and consumes from the queue, and stops reading: holding
        // its input too would leave a single-threaded client blocked on both sides
        const { client, errors } = await connectClient(broker.url);
        const cch = await client.channel();
        await declare(cch, 'self');
        await cch.basicConsume('self', { noAck: true }, () => {});
        const pch = await client.channel();
        client.socket!.pause();
        for (let i = 0; i < 2 * N; i++) void pch.basicPublish('', 'self', body(i));
        const { client: observer } = await connectClient(broker.url);
        // a hold would stop the queue near DEEP messages; unheld, it takes what the socket refused
        await until(
          async () => (await readyCount(observer, 'self')) >= DEEP + 32,
          'publishes read past a hold',
        );
        client.socket!.resume();
        await observer.close();
        await client.close();
        expect(errors).toEqual([]);
      },
      { flowHoldLimit: 60_000 },
    );
  });
});

/** Polls an async condition (a guard against hangs, not a timing assertion). */
async function until(pred: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
