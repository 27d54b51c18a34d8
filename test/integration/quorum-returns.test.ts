/**
 * Where a quorum queue puts a delivery that comes back, as RabbitMQ 3.10.8 does (checked with
 * the same client calls): a nack, reject or basic.recover with requeue sends it to the back,
 * unless the queue has a delivery limit; then, and whenever a channel or connection goes with
 * deliveries unacked, it goes to the front, ahead of every ready message and behind what came
 * back before it. The store keeps those places, so a restart or a crash keeps the order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AMQPChannel, AMQPClient } from '@cloudamqp/amqp-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker.js';
import { type ChildBroker, killAll, startBroker } from '../durability/child-broker.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqpClient } from '../helpers/refusals.js';
import { waitFor } from '../helpers/wait.js';

const QUORUM = { 'x-queue-type': 'quorum' };

const tempDirs: string[] = [];
afterEach(async () => {
  await killAll();
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'warren-quorum-'));
  tempDirs.push(d);
  return d;
}

/**
 * Runs `fn` against an in-process broker on its own temp data dir; `restart()` stops it and
 * starts another on the same store. The last one is stopped afterwards.
 */
async function withStoredBroker(
  fn: (first: Broker, restart: () => Promise<Broker>) => Promise<void>,
): Promise<void> {
  const dataDir = tempDir();
  const start = () => Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
  let broker = await start();
  try {
    await fn(broker, async () => {
      await broker.stop();
      broker = await start();
      return broker;
    });
  } finally {
    await broker.stop();
  }
}

async function publish(ch: AMQPChannel, q: string, bodies: string[]): Promise<void> {
  for (const b of bodies) await ch.basicPublish('', q, b, { deliveryMode: 2 });
}

/** Takes `n` deliveries with basic.get, unacked. */
async function take(ch: AMQPChannel, q: string, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await ch.basicGet(q, { noAck: false }))!);
  return out;
}

/** Everything ready, in order, taken with basic.get no-ack; `*` marks a redelivery. */
async function drain(ch: AMQPChannel, q: string): Promise<string> {
  const got: string[] = [];
  for (;;) {
    const m = await ch.basicGet(q, { noAck: true });
    if (m === null) return got.join(' ');
    got.push(`${m.bodyString()}${m.redelivered ? '*' : ''}`);
  }
}

/**
 * q1..q5 in a quorum queue; one connection takes q1-q3 (acks q1, nacks q3 with requeue: it
 * goes to the back) and another takes q4; the connections close in the order given.
 */
async function returnTwice(url: string, order: 'holderFirst' | 'getterFirst'): Promise<AMQPClient> {
  const { client: main } = await connectAmqpClient(url);
  const ch = await main.channel();
  await ch.queueDeclare('qr', { durable: true }, QUORUM);
  await publish(ch, 'qr', ['q1', 'q2', 'q3', 'q4', 'q5']);
  const { client: holder } = await connectAmqpClient(url);
  const [q1, , q3] = await take(await holder.channel(), 'qr', 3);
  await q1!.ack();
  await q3!.nack(true);
  const { client: getter } = await connectAmqpClient(url);
  expect((await take(await getter.channel(), 'qr', 1))[0]!.bodyString()).toBe('q4');
  for (const c of order === 'holderFirst' ? [holder, getter] : [getter, holder]) await c.close();
  return main;
}

describe('quorum queues: where deliveries come back', () => {
  it('a nack, reject or recover goes to the back; what a closed channel held comes back first', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qq', { durable: true }, QUORUM);
      const order = async (settle: 'nack' | 'reject' | 'close' | 'recover') => {
        await publish(ch, 'qq', ['m0', 'm1', 'm2', 'm3']);
        const holder = await client.channel();
        const held = await take(holder, 'qq', 2);
        if (settle === 'close') await holder.close();
        else if (settle === 'recover') await holder.basicRecover(true);
        else for (const m of held) await (settle === 'nack' ? m.nack(true) : m.reject(true));
        if (settle !== 'close') await holder.close();
        return drain(ch, 'qq');
      };
      expect(await order('nack')).toBe('m2 m3 m0* m1*');
      expect(await order('reject')).toBe('m2 m3 m0* m1*');
      expect(await order('recover')).toBe('m2 m3 m0* m1*');
      expect(await order('close')).toBe('m0* m1* m2 m3');
      // a consumer's channel closing returns its deliveries the same way
      await publish(ch, 'qq', ['c0', 'c1', 'c2', 'c3', 'c4']);
      const sub = await client.channel();
      await sub.basicQos(3);
      const got: string[] = [];
      await sub.basicConsume('qq', { noAck: false }, (m) => {
        got.push(m.bodyString()!);
        if (got.length === 2) void m.ack();
      });
      await waitFor(() => got.length === 4, 'c3 after the ack of c1');
      await sub.close();
      expect(await drain(ch, 'qq')).toBe('c0* c2* c3* c4');
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('with a delivery limit, nacks come back first too, in the order they were nacked', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('ql', { durable: true }, { ...QUORUM, 'x-delivery-limit': 10 });
      await publish(ch, 'ql', ['x1', 'x2', 'x3', 'x4']);
      const [x1, x2, x3] = await take(ch, 'ql', 3);
      await x3!.nack(true);
      await x1!.nack(true);
      await x2!.ack();
      expect(await drain(ch, 'ql')).toBe('x3* x1* x4');
      // basic.recover and a nack of several at once return them in delivery order
      await publish(ch, 'ql', ['y1', 'y2', 'y3']);
      const holder = await client.channel();
      await take(holder, 'ql', 2);
      await holder.basicRecover(true);
      expect(await drain(ch, 'ql')).toBe('y1* y2* y3');
      await holder.close();
      await client.close();
    });
  });

  it('the front is the order of return, across connections', async () => {
    await withBroker(async (broker) => {
      for (const [order, expected] of [
        ['holderFirst', 'q2* q4* q5 q3*'],
        ['getterFirst', 'q4* q2* q5 q3*'],
      ] as const) {
        const main = await returnTwice(broker.url, order);
        const ch = await main.channel();
        expect(await drain(ch, 'qr')).toBe(expected);
        await ch.queueDelete('qr');
        await main.close();
      }
    });
  });

  it('x-max-length holds for what comes back: the head goes, as RabbitMQ 3.10.8', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const run = async (q: string, settle: 'close' | 'nack') => {
        await ch.queueDeclare(q, { durable: true }, { ...QUORUM, 'x-max-length': 3 });
        await publish(ch, q, ['m1', 'm2', 'm3']);
        const holder = await client.channel();
        const held = await take(holder, q, 2);
        await publish(ch, q, ['m4', 'm5', 'm6']); // m3 goes
        if (settle === 'close') await holder.close();
        else {
          for (const m of held) await m.nack(true);
          await holder.close();
        }
        return drain(ch, q);
      };
      // returned to the front, they are the head that goes; nacked to the back, m4 and m5 go
      expect(await run('ql-close', 'close')).toBe('m4 m5 m6');
      expect(await run('ql-nack', 'nack')).toBe('m6 m1* m2*');
      await client.close();
    });
  });

  it('a restart keeps the returned order and the delivery counts', async () => {
    await withStoredBroker(async (started, restart) => {
      let broker = started;
      const main = await returnTwice(broker.url, 'getterFirst');
      await main.close();
      broker = await restart();
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      // q4 is still first; returned again, it goes behind q2, the return after it
      const [first] = await take(ch, 'qr', 1);
      expect(first!.bodyString()).toBe('q4');
      await ch.close();
      const ch2 = await client.channel();
      const seen: string[] = [];
      for (;;) {
        const m = await ch2.basicGet('qr', { noAck: true });
        if (m === null) break;
        seen.push(`${m.bodyString()}:${m.properties.headers?.['x-delivery-count']}`);
      }
      expect(seen).toEqual(['q2:1', 'q4:2', 'q5:0', 'q3:1']);
      await client.close();
    });
  });

  it('a message fanned out to two quorum queues and returned by both is still there after a restart', async () => {
    await withStoredBroker(async (started, restart) => {
      let broker = started;
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.exchangeDeclare('fan', 'fanout', { durable: true });
      for (const q of ['f1', 'f2']) {
        await ch.queueDeclare(q, { durable: true }, QUORUM);
        await ch.queueBind(q, 'fan', '');
      }
      await ch.confirmSelect();
      for (const b of ['m0', 'm1', 'm2']) await ch.basicPublish('fan', '', b, { deliveryMode: 2 });
      // one channel takes every copy and closes: both queues re-record them in one tick
      const holder = await client.channel();
      await take(holder, 'f1', 3);
      await take(holder, 'f2', 3);
      await holder.close();
      await client.close();
      broker = await restart();
      const again = (await connectAmqpClient(broker.url)).client;
      const ch2 = await again.channel();
      expect(await drain(ch2, 'f1')).toBe('m0* m1* m2*');
      expect(await drain(ch2, 'f2')).toBe('m0* m1* m2*');
      await again.close();
    });
  });

  it('deliveries a crash left past the delivery limit are dead-lettered at the restart, as their return would', async () => {
    const dataDir = tempDir();
    let b: ChildBroker = await startBroker(dataDir);
    const { client } = await connectAmqpClient(b.url);
    const ch = await client.channel();
    await ch.queueDeclare('k9dlq', { durable: true });
    await ch.queueDeclare(
      'k9',
      { durable: true },
      {
        ...QUORUM,
        'x-delivery-limit': 0,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'k9dlq',
      },
    );
    await ch.confirmSelect();
    await publish(ch, 'k9', ['m1', 'm2', 'm3', 'm4', 'm5']);
    await take(await client.channel(), 'k9', 3);
    // the deliveries' counts are on disk once a later publish is confirmed
    await publish(ch, 'k9dlq', ['marker']);
    expect((await b.kill()).signal).toBe('SIGKILL');
    b = await startBroker(dataDir);
    const again = (await connectAmqpClient(b.url)).client;
    const ch2 = await again.channel();
    expect(await drain(ch2, 'k9')).toBe('m4 m5');
    expect(await drain(ch2, 'k9dlq')).toBe('marker* m1 m2 m3'); // after a crash, classic queues flag all
    await again.close();
  });

  it('after a restart, returns go behind every earlier one, also when those are more than memory pages hold', async () => {
    await withStoredBroker(async (started, restart) => {
      let broker = started;
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('big', { durable: true }, { ...QUORUM, 'x-delivery-limit': 10 });
      await ch.confirmSelect();
      const body = 'x'.repeat(128 * 1024);
      for (let i = 1; i <= 400; i++) await ch.basicPublish('', 'big', `${i}:${body}`, { deliveryMode: 2 });
      // 300 x 128 KiB returned to the front: more than the 32 MiB a queue keeps in memory
      const holder = await client.channel();
      await holder.basicQos(300);
      let held = 0;
      await holder.basicConsume('big', { noAck: false }, () => {
        held++;
      });
      await waitFor(() => held === 300, '300 held');
      await holder.close();
      await client.close();
      broker = await restart();
      const again = (await connectAmqpClient(broker.url)).client;
      const ch2 = await again.channel();
      const first = await ch2.basicGet('big', { noAck: false });
      expect(first!.bodyString()!.split(':')[0]).toBe('1');
      await first!.nack(true); // with a delivery limit: to the front, behind the 299 others
      const order: string[] = [];
      for (;;) {
        const m = await ch2.basicGet('big', { noAck: true });
        if (m === null) break;
        order.push(m.bodyString()!.split(':')[0]!);
      }
      expect(order.length).toBe(400);
      expect(order.slice(0, 3)).toEqual(['2', '3', '4']);
      expect(order.slice(298, 301)).toEqual(['300', '1', '301']);
      await again.close();
    });
  });

  it('a crash (kill -9) keeps the returned order', async () => {
    const dataDir = tempDir();
    let b: ChildBroker = await startBroker(dataDir);
    const main = await returnTwice(b.url, 'getterFirst');
    const ch = await main.channel();
    // q4 comes back first: taken and returned again, it goes behind q2
    const [q4] = await take(ch, 'qr', 1);
    expect(q4!.bodyString()).toBe('q4');
    await ch.close();
    const confirm = await main.channel();
    await confirm.confirmSelect();
    await publish(confirm, 'qr', ['q6', 'q7']); // each awaits its confirm
    expect((await b.kill()).signal).toBe('SIGKILL');
    main.close().catch(() => {});
    b = await startBroker(dataDir);
    const { client } = await connectAmqpClient(b.url);
    expect(await drain(await client.channel(), 'qr')).toBe('q2* q4* q5 q3* q6 q7');
    await client.close();
  });
});
