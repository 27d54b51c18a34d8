/**
 * Per-queue publisher flow (core/queue-congestion.ts): a queue whose consumers all wait on their
 * sockets holds its publishers once its backlog is deep, instead of reading them into memory;
 * slow acks never hold anyone, a consumer that takes nothing holds them only for the hold limit,
 * and a connection whose own output is backed up is never held. On a saturated broker a work
 * queue with a backlog paces its publishers to what its consumers take, losing nothing.
 */
import type { AMQPClient, AMQPMessage } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker.js';
import * as congestion from '../../src/core/queue-congestion.js';
import { CONGESTED_BYTES } from '../../src/core/queue-congestion.js';
import { loadBusy } from '../../src/util/load.js';
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

  it('holds publishers again once the consumers that took nothing for the hold limit read again', async () => {
    await withBroker(
      async (broker) => {
        const { client: consumer, errors } = await connectClient(broker.url);
        await declare(await consumer.channel(), 'again');
        const c = await consumeAll(consumer, 'again');
        const socket = consumer.socket!;
        socket.pause();
        const pub = await connectAmqplib(broker.url);
        // the consumer reads nothing for the hold limit: the publisher is let go
        await publishAll(pub.model, 'again', { n: 0 });
        socket.resume();
        await waitFor(() => c.seen.length === N, `the first ${N} messages`, 20_000);

        // now it reads, slowly: the queue holds the publisher again, so its backlog stays near DEEP
        socket.pause();
        const reader = setInterval(() => {
          socket.resume();
          setTimeout(() => socket.pause(), 1);
        }, 20);
        const { client: observer } = await connectClient(broker.url);
        let finished = false;
        const done = publishAll(pub.model, 'again', { n: 0 }).then(() => {
          finished = true;
        });
        let deepest = 0;
        while (!finished) {
          deepest = Math.max(deepest, await readyCount(observer, 'again'));
          await new Promise((r) => setTimeout(r, 20));
        }
        await done;
        clearInterval(reader);
        // (after the last burst's pause)
        await new Promise((r) => setTimeout(r, 20));
        socket.resume();
        await waitFor(() => c.seen.length === 2 * N, `all ${2 * N} messages`, 20_000);
        expect(deepest).toBeLessThan(DEEP + 16);
        const batch = Array.from({ length: N }, (_, i) => i);
        expect(c.seen).toEqual([...batch, ...batch]);
        expect(c.bad()).toBe(0);
        await pub.model.close();
        await observer.close();
        await consumer.close();
        expect(pub.errors).toEqual([]);
        expect(errors).toEqual([]);
      },
      { flowHoldLimit: 300 },
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

/**
 * Keeps this process's loop (the broker runs in it) saturated until stopped: a 2 ms burn on
 * every turn, which also leaves the loop no idle time.
 */
function saturateLoop(): () => void {
  let on = true;
  const burn = () => {
    if (!on) return;
    const end = performance.now() + 2;
    while (performance.now() < end) {}
    setImmediate(burn);
  };
  setImmediate(burn);
  return () => {
    on = false;
  };
}

/** Runs `fn` against a fresh broker while this process's loop is kept saturated. */
async function withSaturatedBroker(fn: (broker: Broker) => Promise<void>): Promise<void> {
  await withBroker(async (broker) => {
    const stop = saturateLoop();
    try {
      await fn(broker);
    } finally {
      stop();
    }
  });
}

describe('publisher flow on a saturated broker', () => {
  const COUNT = 30_000;
  const payload = (i: number) => {
    const b = Buffer.alloc(1024, i & 0xff);
    b.writeUInt32BE(i, 0);
    return b;
  };

  it('paces a work queue’s publisher to its consumer; every message arrives, in order', async () => {
    await withSaturatedBroker(async (broker) => {
      const { client: consumer, errors } = await connectClient(broker.url);
      const cch = await consumer.channel();
      await declare(cch, 'work');
      await cch.basicQos(100);
      const seen: number[] = [];
      await cch.basicConsume('work', { noAck: false }, (m: AMQPMessage) => {
        seen.push(Buffer.from(m.body!.buffer, m.body!.byteOffset, 4).readUInt32BE(0));
        void m.ack();
      });
      await until(async () => loadBusy(), 'the broker to count as saturated');
      const before = congestion.pacedHolds;
      const pub = await connectAmqplib(broker.url);
      const ch = await pub.model.createChannel();
      for (let i = 0; i < COUNT; i++) ch.sendToQueue('work', payload(i));
      await waitFor(() => seen.length === COUNT, `all ${COUNT} messages`, 60_000);
      expect(seen).toEqual(Array.from({ length: COUNT }, (_, i) => i));
      // the publisher was held for the consumer at least once on the way
      expect(congestion.pacedHolds).toBeGreaterThan(before);
      await pub.model.close();
      await consumer.close();
      expect(pub.errors).toEqual([]);
      expect(errors).toEqual([]);
    });
  });

  it('never holds a publisher that consumes from the queue itself', async () => {
    await withSaturatedBroker(async (broker) => {
      // one connection publishes and acks: holding its reading would hold its acks too
      const { model, errors } = await connectAmqplib(broker.url);
      const cch = await model.createChannel();
      await cch.assertQueue('self-work', { durable: false });
      await cch.prefetch(100);
      let got = 0;
      let next = 0;
      let outOfOrder = 0;
      await cch.consume('self-work', (m) => {
        if (m === null) return;
        if (m.content.readUInt32BE(0) !== next++) outOfOrder++;
        got++;
        cch.ack(m);
      });
      await until(async () => loadBusy(), 'the broker to count as saturated');
      const before = congestion.pacedHolds;
      const pch = await model.createChannel();
      for (let i = 0; i < COUNT; i++) pch.sendToQueue('self-work', payload(i));
      await waitFor(() => got === COUNT, `all ${COUNT} messages`, 60_000);
      expect(outOfOrder).toBe(0);
      expect(congestion.pacedHolds).toBe(before);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('never stalls a worker that republishes on a second connection and acks after the confirms', async () => {
    await withSaturatedBroker(async (broker) => {
      // the queue's consumer waits on the publisher's confirms: a hold that lasted until the
      // queue delivered again would last until something else let go (it took 600 ms a batch)
      const BACKLOG = 12_000;
      const ROUNDS = 20_000;
      const { model: setup } = await connectAmqplib(broker.url);
      const sch = await setup.createConfirmChannel();
      await sch.assertQueue('pipeline', { durable: false });
      for (let i = 0; i < BACKLOG; i++) sch.sendToQueue('pipeline', payload(i));
      await sch.waitForConfirms();
      await until(async () => loadBusy(), 'the broker to count as saturated');
      const wc = await connectAmqplib(broker.url);
      const wp = await connectAmqplib(broker.url);
      const cch = await wc.model.createChannel();
      await cch.prefetch(100);
      const pch = await wp.model.createConfirmChannel();
      let processed = 0;
      let batch: amqplib.ConsumeMessage[] = [];
      let waiting = false;
      await cch.consume('pipeline', (m) => {
        if (m === null || processed >= ROUNDS) return;
        batch.push(m);
        pch.sendToQueue('pipeline', m.content);
        if (batch.length < 100 || waiting) return;
        waiting = true;
        const b = batch;
        batch = [];
        void pch.waitForConfirms().then(() => {
          cch.ack(b[b.length - 1]!, true);
          processed += b.length;
          waiting = false;
        });
      });
      // a guard against a stall, with room for a loaded machine; the stall took over 100 s
      await waitFor(() => processed >= ROUNDS, `${ROUNDS} messages through the worker`, 30_000);
      await wc.model.close();
      await pch.waitForConfirms();
      // nothing lost: the backlog, plus the copies of the last batch, whose originals were
      // never acked and so went back to the queue when the consumer closed
      const ok = await sch.checkQueue('pipeline');
      expect(ok.messageCount).toBe(BACKLOG + batch.length);
      await wp.model.close();
      await setup.close();
      expect([wc.errors, wp.errors]).toEqual([[], []]);
    });
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
