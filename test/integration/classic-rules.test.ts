/**
 * Classic-queue rules a differential probe against RabbitMQ 3.10.8 found Warren missing: a
 * message that expired behind a longer-lived one is never delivered, a length limit holds for
 * requeued messages too, an exclusive consumer is refused on a single-active-consumer queue,
 * direct reply-to deliveries carry tag 1, and a classic queue's redeclare compares RabbitMQ's
 * set of arguments.
 */
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, nextChannelError } from '../helpers/consumers.js';
import { RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Takes everything with basic.get: [body, message count after it]. */
async function getAll(ch: amqplib.Channel, q: string): Promise<[string, number][]> {
  const out: [string, number][] = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (m === false) return out;
    out.push([m.content.toString(), m.fields.messageCount]);
  }
}

/**
 * A confirm channel and queue 'q' (dead-lettering into 'dlq' when `dlx`), holding 'live', then
 * `middle` with `expiration`, then 'live2' unless `last` is false.
 */
async function queueWithExpiring(
  url: string,
  o: { dlx: boolean; middle: string; expiration: string; last?: boolean },
): Promise<{ model: amqplib.ChannelModel; ch: amqplib.ConfirmChannel }> {
  const { model } = await connectAmqplib(url);
  const ch = await model.createConfirmChannel();
  if (o.dlx) await ch.assertQueue('dlq');
  await ch.assertQueue('q', {
    arguments: o.dlx ? { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' } : {},
  });
  ch.sendToQueue('q', Buffer.from('live'));
  ch.sendToQueue('q', Buffer.from(o.middle), { expiration: o.expiration });
  if (o.last !== false) ch.sendToQueue('q', Buffer.from('live2'));
  await ch.waitForConfirms();
  return { model, ch };
}

describe('a message that expired behind a longer-lived one', () => {
  it('is dropped when it reaches the head of a basic.get queue', async () => {
    await withBroker(async (broker) => {
      const { model, ch } = await queueWithExpiring(broker.url, {
        dlx: false,
        middle: 'exp',
        expiration: '50',
      });
      await sleep(150);
      expect(await getAll(ch, 'q')).toEqual([
        ['live', 1],
        ['live2', 0],
      ]);
      await model.close();
    });
  });

  it('with expiration 0 is counted until it reaches the head, then dropped', async () => {
    await withBroker(async (broker) => {
      const { model, ch } = await queueWithExpiring(broker.url, {
        dlx: false,
        middle: 'zero',
        expiration: '0',
      });
      expect((await ch.checkQueue('q')).messageCount).toBe(3);
      expect(await getAll(ch, 'q')).toEqual([
        ['live', 1],
        ['live2', 0],
      ]);
      await model.close();
    });
  });

  it('is dead-lettered, not delivered, when a consumer reaches it', async () => {
    await withBroker(async (broker) => {
      const { model, ch } = await queueWithExpiring(broker.url, {
        dlx: true,
        middle: 'exp',
        expiration: '50',
      });
      await sleep(150);
      const got: string[] = [];
      await ch.consume('q', (m) => got.push(m!.content.toString()), { noAck: true });
      await waitFor(() => got.length === 2, 'the live messages');
      const dead = await getAll(ch, 'dlq');
      expect(got).toEqual(['live', 'live2']);
      expect(dead).toEqual([['exp', 0]]);
      await model.close();
    });
  });

  it('expires on time once the message in front of it is taken', async () => {
    await withBroker(async (broker) => {
      const { model, ch } = await queueWithExpiring(broker.url, {
        dlx: true,
        middle: 'exp',
        expiration: '100',
        last: false,
      });
      expect((await ch.get('q', { noAck: true })) !== false).toBe(true);
      // nobody consumes: the new head's own expiry dead-letters it
      await sleep(400);
      expect((await ch.checkQueue('q')).messageCount).toBe(0);
      expect((await ch.checkQueue('dlq')).messageCount).toBe(1);
      await model.close();
    });
  });
});

describe('x-max-length with drop-head', () => {
  it('drops the head when a requeued message takes the queue over its limit', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('dlq');
      await ch.assertQueue('q', {
        arguments: { 'x-max-length': 1, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
      });
      ch.sendToQueue('q', Buffer.from('a'));
      await ch.waitForConfirms();
      const a = await ch.get('q');
      if (a === false) throw new Error('no message');
      ch.sendToQueue('q', Buffer.from('b'));
      ch.sendToQueue('q', Buffer.from('c'));
      await ch.waitForConfirms();
      ch.nack(a, false, true);
      expect((await ch.checkQueue('q')).messageCount).toBe(1);
      expect(await getAll(ch, 'q')).toEqual([['c', 0]]);
      const dead = await ch.get('dlq', { noAck: true });
      if (dead === false) throw new Error('nothing dead-lettered');
      expect(dead.content.toString()).toBe('b');
      const requeued = await ch.get('dlq', { noAck: true });
      if (requeued === false) throw new Error('the requeued head was not dead-lettered');
      expect(requeued.content.toString()).toBe('a');
      expect(requeued.properties.headers?.['x-death']?.[0]?.reason).toBe('maxlen');
      await model.close();
    });
  });
});

describe('single active consumer', () => {
  it('refuses an exclusive consumer, even on an idle queue', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('sac', { arguments: { 'x-single-active-consumer': true } });
      const err = nextChannelError(ch);
      await ch.consume('sac', () => {}, { exclusive: true }).catch(() => {});
      expect((await err).message).toContain("ACCESS_REFUSED - queue 'sac' in vhost '/' in exclusive use");
      await model.close();
    });
  });
});

describe('direct reply-to', () => {
  it('delivers every reply with tag 1 and leaves the channel’s tags alone', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const tags: number[] = [];
      await ch.consume('amq.rabbitmq.reply-to', (m) => tags.push(m!.fields.deliveryTag), { noAck: true });
      for (let i = 0; i < 3; i++) ch.sendToQueue('', Buffer.from('x'), { replyTo: 'amq.rabbitmq.reply-to' });
      // the requests go nowhere; the replies are sent to the reply-to name directly
      const server = await model.createChannel();
      await server.assertQueue('req');
      ch.sendToQueue('req', Buffer.from('r1'), { replyTo: 'amq.rabbitmq.reply-to' });
      ch.sendToQueue('req', Buffer.from('r2'), { replyTo: 'amq.rabbitmq.reply-to' });
      let served = 0;
      await server.consume(
        'req',
        (m) => {
          served++;
          server.sendToQueue(m!.properties.replyTo, Buffer.from('re'));
        },
        { noAck: true },
      );
      await waitFor(() => served === 2 && tags.length === 2, 'two replies');
      expect(tags).toEqual([1, 1]);
      await ch.assertQueue('plain');
      ch.sendToQueue('plain', Buffer.from('p'));
      const got = await (async () => {
        for (let i = 0; i < 50; i++) {
          const m = await ch.get('plain', { noAck: true });
          if (m !== false) return m;
          await sleep(10);
        }
        throw new Error('nothing in plain');
      })();
      expect(got.fields.deliveryTag).toBe(1);
      await model.close();
    });
  });
});

describe('redeclaring a classic queue', () => {
  it("ignores the other queue types' arguments and compares x-queue-master-locator", async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('c', { arguments: { 'x-queue-master-locator': 'min-masters' } });
      for (const extra of [
        { 'x-max-age': '1D' },
        { 'x-delivery-limit': 5 },
        { 'x-initial-cluster-size': 3 },
      ]) {
        await ch.assertQueue('c', { arguments: { 'x-queue-master-locator': 'min-masters', ...extra } });
      }
      const err = nextChannelError(ch);
      await ch.assertQueue('c', { arguments: { 'x-queue-master-locator': 'random' } }).catch(() => {});
      expect((await err).message).toContain(
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-master-locator' for queue 'c' in vhost '/': received 'random' but current is 'min-masters'",
      );
      await model.close();
    });
  });
});

describe('x-dead-letter-exchange', () => {
  it('as a byte array is refused as RabbitMQ does: it must be a longstr', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const err = nextChannelError(ch);
      await ch
        .assertQueue('q', { arguments: { 'x-dead-letter-exchange': Buffer.from('dlx') } })
        .catch(() => {});
      expect((await err).message).toContain(
        "PRECONDITION_FAILED - invalid type 'binary' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'",
      );
      await model.close();
    });
  });
});

describe('round robin', () => {
  it('puts a consumer that joins at the back of the rotation, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('rr');
      const got: Record<string, string[]> = { A: [], B: [], C: [] };
      const join = async (name: string) =>
        ch.consume('rr', (m) => got[name]!.push(m!.content.toString()), { noAck: true });
      await join('A');
      await join('B');
      ch.sendToQueue('rr', Buffer.from('m0'));
      await waitFor(() => got['A']!.length === 1, 'm0 to A');
      await join('C');
      for (let i = 1; i <= 5; i++) ch.sendToQueue('rr', Buffer.from(`m${i}`));
      await waitFor(() => got['A']!.length + got['B']!.length + got['C']!.length === 6, 'all six');
      // served A; the rotation is then B A, and C joins behind them
      expect(got).toEqual({ A: ['m0', 'm2', 'm5'], B: ['m1', 'm4'], C: ['m3'] });
      await model.close();
    });
  });
});

describe('rotation after a consumer could not take', () => {
  it('puts a consumer found at its prefetch at the back once its ack frees it, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('rr');
      const a = await model.createChannel();
      await a.prefetch(1);
      const got: Record<string, string[]> = { A: [], B: [], C: [] };
      const held: amqplib.Message[] = [];
      await a.consume('rr', (m) => {
        got['A']!.push(m!.content.toString());
        held.push(m!);
      });
      await ch.consume('rr', (m) => got['B']!.push(m!.content.toString()), { noAck: true });
      await ch.consume('rr', (m) => got['C']!.push(m!.content.toString()), { noAck: true });
      const total = () => got['A']!.length + got['B']!.length + got['C']!.length;
      for (let i = 0; i < 4; i++) ch.sendToQueue('rr', Buffer.from(`m${i}`));
      await waitFor(() => total() === 4, 'the first four');
      // m3 found A at its prefetch, so the rotation went on as C B; the ack puts A behind them
      a.ack(held[0]!);
      for (let i = 4; i < 8; i++) ch.sendToQueue('rr', Buffer.from(`m${i}`));
      await waitFor(() => total() === 8, 'all eight');
      expect(got).toEqual({ A: ['m0', 'm6'], B: ['m1', 'm3', 'm5'], C: ['m2', 'm4', 'm7'] });
      await model.close();
    });
  });

  it('hands what a nack requeues to the next in the rotation at once, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('rq');
      const c1 = await model.createChannel();
      await c1.prefetch(2);
      const first: string[] = [];
      const held: amqplib.Message[] = [];
      await c1.consume('rq', (m) => {
        first.push(m!.content.toString());
        held.push(m!);
      });
      for (let i = 0; i < 6; i++) ch.sendToQueue('rq', Buffer.from(`m${i}`));
      await waitFor(() => first.length === 2, 'm0 and m1 to the first consumer');
      await ch.prefetch(10);
      const second: string[] = [];
      await ch.consume('rq', (m) => second.push(`${m!.content}${m!.fields.redelivered ? '*' : ''}`));
      await waitFor(() => second.length === 4, 'the rest to the second consumer');
      // each requeue is delivered before the next nack is read: m1 to the second consumer, which
      // is next in turn, and m0 to the first, which the nack of m1 put back behind it
      c1.nack(held[1]!, false, true);
      c1.nack(held[0]!, false, true);
      await waitFor(() => first.length === 3 && second.length === 5, 'both requeues delivered');
      expect(first).toEqual(['m0', 'm1', 'm0']);
      expect(second).toEqual(['m2', 'm3', 'm4', 'm5', 'm1*']);
      await model.close();
    });
  });
});

describe('delivery at each settle', () => {
  it('delivers to a consumer its ack freed before reading a basic.get in the same packet, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('ag');
      for (let i = 0; i < 3; i++) ch.sendToQueue('ag', Buffer.from(`m${i}`));
      await ch.waitForConfirms();
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => {
          M.encodeChannelOpen(w, 1, {});
          M.encodeChannelOpen(w, 2, {});
          M.encodeBasicQos(w, 1, { prefetchSize: 0, prefetchCount: 1, global: false });
          M.encodeBasicConsume(w, 1, {
            queue: 'ag',
            consumerTag: 'A',
            noLocal: false,
            noAck: false,
            exclusive: false,
            noWait: false,
            arguments: {},
          });
        });
        await c.expectMethod(Method.BASIC_DELIVER);
        // one write: the ack frees A, which takes m1 before the get is read; the get has m2
        c.send((w) => {
          M.encodeBasicAck(w, 1, { deliveryTag: 1, multiple: false });
          M.encodeBasicGet(w, 2, { queue: 'ag', noAck: true });
        });
        await c.expectMethod(Method.BASIC_GET_OK);
        const bodies = c.frames.filter((f) => f.type === 3).map((f) => `${f.channel}:${f.payload}`);
        expect(bodies).toEqual(['1:m0', '1:m1', '2:m2']);
      } finally {
        c.close();
      }
      await model.close();
    });
  });
});
