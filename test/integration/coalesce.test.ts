/**
 * Interrupt moderation (util/coalesce.ts): a publisher that writes every message on its own
 * makes the loop nap between turns so the next one finds a batch; round trips (requests,
 * replies, confirms, prefetch-bound consumers) never meet a nap. Messages arrive whole and in
 * order either way.
 */
import type { AMQPMessage } from '@cloudamqp/amqp-client';
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import * as coalesce from '../../src/util/coalesce.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, connectClient } from '../helpers/consumers.js';
import { publishBytes, RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

/** The broker runs in this process: a timer lets it read each burst in a turn of its own. */
const pause = () => new Promise<void>((r) => setTimeout(r, 1));

/** A raw publisher with channel 1 open. */
async function openPublisher(port: number): Promise<RawClient> {
  const c = await RawClient.open(port);
  c.send((w) => M.encodeChannelOpen(w, 1, {}));
  await c.expectMethod(Method.CHANNEL_OPEN_OK);
  return c;
}

/**
 * Publishes `n` numbered messages to `q` over a raw socket, each its own write, in bursts of
 * `burst`: what a client writing every publish on its own looks like to the broker.
 */
async function stream(port: number, q: string, n: number, burst: number): Promise<RawClient> {
  const c = await openPublisher(port);
  for (let i = 0; i < n; i++) {
    c.write(publishBytes(1, q, String(i)));
    if (i % burst === burst - 1) await pause();
  }
  return c;
}

function inOrder(seen: number[], n: number): void {
  expect(seen.length).toBe(n);
  expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
}

describe('interrupt moderation', () => {
  it('a publisher streaming one write per message makes the loop nap; every message arrives in order', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectClient(broker.url);
      const cch = await client.channel();
      await cch.queueDeclare('co.stream', { durable: false });
      const seen: number[] = [];
      await cch.basicConsume('co.stream', { noAck: true }, (m: AMQPMessage) => {
        seen.push(Number(m.bodyToString()));
      });
      const before = coalesce.naps;
      const pub = await stream(broker.port, 'co.stream', 2000, 5);
      await waitFor(() => seen.length >= 2000, '2000 deliveries', 20_000);
      inOrder(seen, 2000);
      expect(coalesce.naps).toBeGreaterThan(before);
      pub.close();
      await client.close();
    });
  });

  it('request/reply clients, confirm-mode publishers and tx publishers never meet a nap', async () => {
    await withBroker(async (broker) => {
      // an RPC server: consumes requests and publishes each reply on the same connection
      const server = await connectAmqplib(broker.url);
      const sch = await server.model.createChannel();
      await sch.assertQueue('co.rpc', { durable: false });
      await sch.consume(
        'co.rpc',
        (m) => {
          if (m)
            sch.sendToQueue(m.properties.replyTo, m.content, { correlationId: m.properties.correlationId });
        },
        { noAck: true },
      );
      const before = coalesce.naps;
      const client = async (k: number): Promise<number> => {
        const c = await connectAmqplib(broker.url);
        const ch = await c.model.createChannel();
        const q = (await ch.assertQueue('', { exclusive: true })).queue;
        let answer: ((v: string) => void) | null = null;
        await ch.consume(q, (m) => answer?.(m!.content.toString()), { noAck: true });
        let ok = 0;
        for (let i = 0; i < 60; i++) {
          const reply = new Promise<string>((r) => {
            answer = r;
          });
          ch.sendToQueue('co.rpc', Buffer.from(`${k}.${i}`), { replyTo: q, correlationId: String(i) });
          if ((await reply) === `${k}.${i}`) ok++;
        }
        await c.model.close();
        return ok;
      };
      // a publisher in confirm mode, in bursts awaiting their confirms, and one in tx mode
      const confirming = async (): Promise<void> => {
        const c = await connectAmqplib(broker.url);
        const ch = await c.model.createConfirmChannel();
        await ch.assertQueue('co.confirmed', { durable: false });
        for (let b = 0; b < 40; b++) {
          for (let i = 0; i < 10; i++) ch.sendToQueue('co.confirmed', Buffer.from('x'));
          await ch.waitForConfirms();
        }
        await c.model.close();
      };
      const transacting = async (): Promise<void> => {
        const { client: c } = await connectClient(broker.url);
        const ch = await c.channel();
        await ch.queueDeclare('co.tx', { durable: false });
        await ch.txSelect();
        for (let b = 0; b < 40; b++) {
          const sent: Promise<unknown>[] = [];
          for (let i = 0; i < 10; i++) sent.push(ch.basicPublish('', 'co.tx', 'x'));
          await Promise.all(sent);
          await ch.txCommit();
        }
        await c.close();
      };
      const results = await Promise.all([
        client(0),
        client(1),
        client(2),
        client(3),
        confirming(),
        transacting(),
      ]);
      expect(results.slice(0, 4)).toEqual([60, 60, 60, 60]);
      expect(coalesce.naps).toBe(before);
      // and what they published is all there
      const check = await server.model.createChannel();
      expect((await check.checkQueue('co.confirmed')).messageCount).toBe(400);
      expect((await check.checkQueue('co.tx')).messageCount).toBe(400);
      await server.model.close();
    });
  });

  it('naps back off for a publisher that waits for its own messages to reach a consumer on another connection', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectClient(broker.url);
      const cch = await client.channel();
      await cch.queueDeclare('co.loop', { durable: false });
      const pub = await openPublisher(broker.port);
      // 10 publishes, each its own write; the next 10 only once all have been delivered
      const CYCLES = 300;
      let got = 0;
      let cycles = 0;
      let next = 0;
      const burst = () => {
        for (let i = 0; i < 10; i++) pub.write(publishBytes(1, 'co.loop', String(next++)));
      };
      const seen: number[] = [];
      await cch.basicConsume('co.loop', { noAck: true }, (m: AMQPMessage) => {
        seen.push(Number(m.bodyToString()));
        if (++got === 10) {
          got = 0;
          if (++cycles < CYCLES) burst();
        }
      });
      const before = coalesce.naps;
      burst();
      await waitFor(() => cycles >= CYCLES, `${CYCLES} cycles`, 20_000);
      inOrder(seen, CYCLES * 10);
      // every cycle has a turn that looks like a stream; a nap there only delays the next burst
      expect(coalesce.naps - before).toBeLessThan(CYCLES / 4);
      pub.close();
      await client.close();
    });
  });

  it('a consumer at prefetch 1 keeps up its round trips while a publisher streams', async () => {
    await withBroker(async (broker) => {
      const con = await connectAmqplib(broker.url);
      const cch = await con.model.createChannel();
      await cch.assertQueue('co.p1', { durable: false });
      await cch.prefetch(1);
      const seen: number[] = [];
      await cch.consume('co.p1', (m) => {
        seen.push(Number(m!.content.toString()));
        cch.ack(m!);
      });
      const pub = await stream(broker.port, 'co.p1', 2000, 5);
      await waitFor(() => seen.length >= 2000, '2000 acked deliveries', 20_000);
      inOrder(seen, 2000);
      pub.close();
      await con.model.close();
      expect(con.errors).toEqual([]);
    });
  });
});
