/**
 * Routing end to end through real clients: topic patterns, headers matching, direct keys, fanout
 * to many consumers, and the refusals of queue.bind / queue.unbind. Expected routes are the ones
 * RabbitMQ 3.10 gives for the same bindings and messages. The topic trie's own property test is
 * test/core/topic-trie.test.ts; here only what clients see is checked.
 */
import type { AMQPChannel, AMQPClient } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { amqpClientConnect, drain, openChannel, openConfirmChannel, replyText } from '../helpers/routing.js';

type CloseError = Error & { code?: number; classId?: number; methodId?: number };

const QUEUE_BIND: [number, number] = [50, 20];

/** An amqp-client channel in confirm mode: each `await basicPublish` waits for the broker's ack. */
async function confirmedChannel(client: AMQPClient): Promise<AMQPChannel> {
  const ch = await client.channel();
  await ch.confirmSelect();
  return ch;
}

/** Every message in `queue` (basic.get, no-ack) as its body text. */
async function drainAc(ch: AMQPChannel, queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const m = await ch.basicGet(queue, { noAck: true });
    if (m === null) return out;
    out.push(m.bodyString() ?? '');
  }
}

/** amqplib: `op` on a fresh channel must close it with `code`, `text` and culprit; then the connection works. */
async function expectChannelClose(
  model: amqplib.ChannelModel,
  op: (ch: amqplib.Channel) => Promise<unknown>,
  code: number,
  text: string,
  method: [number, number],
): Promise<void> {
  const ch = await openChannel(model);
  const closed = new Promise<CloseError>((resolve) => ch.once('error', resolve));
  let survived = false;
  try {
    await op(ch);
    await ch.checkExchange('amq.direct');
    survived = true;
  } catch {
    // the close rejects the pending call
  }
  if (survived) {
    await ch.close();
    throw new Error('expected the broker to close the channel, but it stayed open');
  }
  const e = await closed;
  expect({ code: e.code, text: replyText(e), classId: e.classId, methodId: e.methodId }).toEqual({
    code,
    text,
    classId: method[0],
    methodId: method[1],
  });
  // still usable
  const again = await openChannel(model);
  const q = (await again.assertQueue('', { exclusive: true })).queue;
  again.sendToQueue(q, Buffer.from('still usable'));
  expect(await drain(again, q)).toEqual(['still usable']);
  await again.deleteQueue(q);
  await again.close();
}

/** amqp-client: `op` on a fresh channel must close it with `code` and `text`; then the connection works. */
async function expectAmqpClientChannelClose(
  client: AMQPClient,
  op: (ch: AMQPChannel) => Promise<unknown>,
  code: number,
  text: string,
): Promise<void> {
  const ch = await client.channel();
  const reason = new Promise<string>((resolve) => {
    ch.onerror = resolve;
  });
  let survived = false;
  try {
    await op(ch);
    await ch.exchangeDeclare('amq.direct', 'direct', { passive: true });
    survived = true;
  } catch (e) {
    expect((e as Error).message).toBe(`channel ${ch.id} closed: ${text} (${code})`);
  }
  if (survived) {
    await ch.close();
    throw new Error('expected the broker to close the channel, but it stayed open');
  }
  expect(await reason).toBe(`channel ${ch.id} closed: ${text} (${code})`);
  const again = await client.channel();
  const q = await again.queueDeclare('');
  await again.basicPublish('', q.name, 'still usable');
  expect((await again.basicGet(q.name, { noAck: true }))?.bodyString()).toBe('still usable');
  await again.queueDelete(q.name);
  await again.close();
}

/**
 * Binds one exclusive queue per entry of `bindings` to a fresh exchange of `type`, publishes
 * `messages` (routing key and headers) with confirms, and returns what each queue received.
 */
async function routeThrough(
  url: string,
  type: 'direct' | 'topic' | 'headers',
  bindings: { key: string; args?: Record<string, unknown> }[],
  messages: { key: string; headers?: Record<string, unknown>; body: string }[],
): Promise<string[][]> {
  const model = await amqplib.connect(url);
  const ch = await openConfirmChannel(model);
  await ch.assertExchange('x', type, { durable: false });
  const queues: string[] = [];
  for (const b of bindings) {
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(q, 'x', b.key, b.args);
    queues.push(q);
  }
  for (const m of messages) {
    ch.publish('x', m.key, Buffer.from(m.body), m.headers === undefined ? {} : { headers: m.headers });
  }
  await ch.waitForConfirms();
  const got: string[][] = [];
  for (const q of queues) got.push(await drain(ch, q));
  await ch.close();
  await model.close();
  return got;
}

// ------------------------------------------------------------------ topic

describe('topic exchange', () => {
  it('routes the tutorial bindings *.orange.*, *.*.rabbit and lazy.# as documented', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await confirmedChannel(client);
      const returned: string[] = [];
      ch.onReturn = (m) => returned.push(m.routingKey);
      await ch.exchangeDeclare('topic_logs', 'topic', { durable: false });
      const q1 = (await ch.queueDeclare('')).name;
      const q2 = (await ch.queueDeclare('')).name;
      await ch.queueBind(q1, 'topic_logs', '*.orange.*');
      await ch.queueBind(q2, 'topic_logs', '*.*.rabbit');
      await ch.queueBind(q2, 'topic_logs', 'lazy.#');
      const keys = [
        'quick.orange.rabbit',
        'lazy.orange.elephant',
        'quick.orange.fox',
        'lazy.brown.fox',
        'lazy.pink.rabbit',
        'quick.brown.fox',
        'orange',
        'quick.orange.male.rabbit',
        'lazy.orange.male.rabbit',
      ];
      for (const k of keys) await ch.basicPublish('topic_logs', k, k, {}, true);
      expect(await drainAc(ch, q1)).toEqual([
        'quick.orange.rabbit',
        'lazy.orange.elephant',
        'quick.orange.fox',
      ]);
      // lazy.pink.rabbit matches both of q2's patterns and arrives once
      expect(await drainAc(ch, q2)).toEqual([
        'quick.orange.rabbit',
        'lazy.orange.elephant',
        'lazy.brown.fox',
        'lazy.pink.rabbit',
        'lazy.orange.male.rabbit',
      ]);
      expect(returned).toEqual(['quick.brown.fox', 'orange', 'quick.orange.male.rabbit']);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('matches # to any number of words including none, * to exactly one (possibly empty) word', async () => {
    await withBroker(async (broker) => {
      const keys = ['', 'a', 'a.b', 'a.a', 'b.a', 'a..b', 'a.x.b', '.', 'a.', 'quick.brown.fox'];
      const patterns = ['#', '#.#', '*', '', 'a', 'a.#', '#.a', 'a.*', '*.*', 'a.*.b', 'a.#.b', '*.#', '#.*'];
      const got = await routeThrough(
        broker.url,
        'topic',
        patterns.map((key) => ({ key })),
        keys.map((key) => ({ key, body: `[${key}]` })),
      );
      const all = keys.map((k) => `[${k}]`);
      const expected: Record<string, string[]> = {
        '#': all,
        '#.#': all,
        '*': ['[a]'],
        '': ['[]'],
        a: ['[a]'],
        'a.#': ['[a]', '[a.b]', '[a.a]', '[a..b]', '[a.x.b]', '[a.]'],
        '#.a': ['[a]', '[a.a]', '[b.a]'],
        'a.*': ['[a.b]', '[a.a]', '[a.]'],
        '*.*': ['[a.b]', '[a.a]', '[b.a]', '[.]', '[a.]'],
        'a.*.b': ['[a..b]', '[a.x.b]'],
        'a.#.b': ['[a.b]', '[a..b]', '[a.x.b]'],
        '*.#': all.slice(1),
        '#.*': all.slice(1),
      };
      expect(Object.fromEntries(patterns.map((p, i) => [p, got[i]]))).toEqual(expected);
    });
  });

  it('delivers a message once to a queue bound with several matching patterns, until they are unbound', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await confirmedChannel(client);
      const returned: string[] = [];
      ch.onReturn = (m) => returned.push(m.routingKey);
      await ch.exchangeDeclare('t', 'topic', { durable: false });
      const q = (await ch.queueDeclare('')).name;
      for (const p of ['#', 'a.*', 'a.b', '*.b', 'a.#']) await ch.queueBind(q, 't', p);
      await ch.basicPublish('t', 'a.b', 'a.b 1', {}, true);
      await ch.basicPublish('t', 'c', 'c 1', {}, true);
      expect(await drainAc(ch, q)).toEqual(['a.b 1', 'c 1']);
      // with '#' gone, 'c' matches nothing; 'a.b' still matches four patterns and arrives once
      await ch.queueUnbind(q, 't', '#');
      await ch.basicPublish('t', 'a.b', 'a.b 2', {}, true);
      await ch.basicPublish('t', 'c', 'c 2', {}, true);
      expect(await drainAc(ch, q)).toEqual(['a.b 2']);
      for (const p of ['a.*', 'a.b', '*.b']) await ch.queueUnbind(q, 't', p);
      await ch.basicPublish('t', 'a.b', 'a.b 3', {}, true);
      await ch.queueUnbind(q, 't', 'a.#');
      await ch.basicPublish('t', 'a.b', 'a.b 4', {}, true);
      expect(await drainAc(ch, q)).toEqual(['a.b 3']);
      expect(returned).toEqual(['c', 'a.b']);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ headers

describe('headers exchange', () => {
  const messages = [
    { key: '', body: 'a+b', headers: { a: 'x', b: 1 } },
    { key: '', body: 'a', headers: { a: 'x' } },
    { key: '', body: 'b', headers: { b: 1 } },
    { key: '', body: 'a+b=2', headers: { a: 'x', b: 2 } },
    { key: '', body: 'a+b="1"', headers: { a: 'x', b: '1' } },
    { key: '', body: 'a+b+c', headers: { a: 'x', b: 1, c: 'extra' } },
    { key: '', body: 'empty', headers: {} },
    { key: '', body: 'no headers' },
  ];

  it('x-match all (also the default) needs every bound header with an equal value; extra headers do not matter', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'headers',
        [
          { key: '', args: { 'x-match': 'all', a: 'x', b: 1 } },
          { key: '', args: { a: 'x', b: 1 } },
        ],
        messages,
      );
      expect(got).toEqual([
        ['a+b', 'a+b+c'],
        ['a+b', 'a+b+c'],
      ]);
    });
  });

  it('x-match any needs one bound header with an equal value', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'headers',
        [{ key: '', args: { 'x-match': 'any', a: 'x', b: 1 } }],
        messages,
      );
      expect(got).toEqual([['a+b', 'a', 'b', 'a+b=2', 'a+b="1"', 'a+b+c']]);
    });
  });

  it('compares values with their type: the string "1" is not the int 1, and true is neither false nor 1', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'headers',
        [
          { key: '', args: { 'x-match': 'all', n: 1 } },
          { key: '', args: { 'x-match': 'all', n: '1' } },
          { key: '', args: { 'x-match': 'all', flag: true } },
          { key: '', args: { 'x-match': 'all', flag: false } },
        ],
        [
          { key: '', body: 'n=1', headers: { n: 1 } },
          { key: '', body: 'n="1"', headers: { n: '1' } },
          { key: '', body: 'n=2', headers: { n: 2 } },
          { key: '', body: 'flag=true', headers: { flag: true } },
          { key: '', body: 'flag=false', headers: { flag: false } },
          { key: '', body: 'flag=1', headers: { flag: 1 } },
          { key: '', body: 'flag="true"', headers: { flag: 'true' } },
        ],
      );
      expect(got).toEqual([['n=1'], ['n="1"'], ['flag=true'], ['flag=false']]);
    });
  });

  it('ignores x- headers under all and any but compares them under all-with-x and any-with-x', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'headers',
        [
          { key: '', args: { 'x-match': 'all', 'x-tag': 't' } },
          { key: '', args: { 'x-match': 'any', 'x-tag': 't' } },
          { key: '', args: { 'x-match': 'all-with-x', 'x-tag': 't', a: 'x' } },
          { key: '', args: { 'x-match': 'any-with-x', 'x-tag': 't', a: 'zz' } },
        ],
        [
          { key: '', body: 'tag', headers: { 'x-tag': 't' } },
          { key: '', body: 'tag+a', headers: { 'x-tag': 't', a: 'x' } },
          { key: '', body: 'other tag+a', headers: { 'x-tag': 'u', a: 'x' } },
          { key: '', body: 'a=zz', headers: { a: 'zz' } },
          { key: '', body: 'none' },
        ],
      );
      expect(got).toEqual([
        // all with nothing to compare matches everything
        ['tag', 'tag+a', 'other tag+a', 'a=zz', 'none'],
        // any with nothing to compare matches nothing
        [],
        ['tag+a'],
        ['tag', 'tag+a', 'a=zz'],
      ]);
    });
  });

  it('matches a message without headers only through a binding with no conditions under all', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'headers',
        [
          { key: '', args: {} },
          { key: '', args: { 'x-match': 'all' } },
          { key: '', args: { 'x-match': 'any' } },
          { key: '', args: { 'x-match': 'all', a: 'x' } },
          { key: '', args: { 'x-match': 'any', a: 'x' } },
        ],
        [
          { key: 'k', body: 'no headers' },
          { key: 'k', body: 'empty headers', headers: {} },
          { key: 'k', body: 'other header', headers: { z: 'x' } },
        ],
      );
      expect(got).toEqual([
        ['no headers', 'empty headers', 'other header'],
        ['no headers', 'empty headers', 'other header'],
        [],
        [],
        [],
      ]);
    });
  });

  it('refuses a binding with an unknown x-match value with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const text =
        'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x';
      const model = await amqplib.connect(broker.url);
      const setup = await openChannel(model);
      await setup.assertQueue('q', { exclusive: true });
      await expectChannelClose(
        model,
        (ch) => ch.bindQueue('q', 'amq.headers', '', { 'x-match': 'foo', a: 1 }),
        406,
        text,
        QUEUE_BIND,
      );
      // nothing was bound
      setup.publish('amq.headers', '', Buffer.from('m'), { headers: { a: 1 } });
      expect(await drain(setup, 'q')).toEqual([]);
      await setup.close();
      await model.close();

      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await client.channel();
      const q = (await ch.queueDeclare('')).name;
      await expectAmqpClientChannelClose(
        client,
        (c) => c.queueBind(q, 'amq.match', '', { 'x-match': 'foo' }),
        406,
        text,
      );
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('refuses a binding whose x-match is not a string with 406 naming the wire type', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const setup = await openChannel(model);
      await setup.assertQueue('q', { exclusive: true });
      // amqplib sends the number 5 as a byte ('b')
      await expectChannelClose(
        model,
        (ch) => ch.bindQueue('q', 'amq.headers', '', { 'x-match': 5, a: 1 }),
        406,
        'PRECONDITION_FAILED - Invalid x-match field type byte (value 5); expected longstr',
        QUEUE_BIND,
      );
      await setup.close();
      await model.close();
    });
  });
});

// ------------------------------------------------------------------ direct

describe('direct exchange', () => {
  it('delivers to every queue bound with the routing key, and to no other', async () => {
    await withBroker(async (broker) => {
      const got = await routeThrough(
        broker.url,
        'direct',
        [{ key: 'k' }, { key: 'k' }, { key: 'k' }, { key: 'other' }, { key: 'K' }],
        [
          { key: 'k', body: 'k' },
          { key: 'other', body: 'other' },
          { key: 'k.', body: 'k.' },
          { key: '', body: 'empty' },
        ],
      );
      expect(got).toEqual([['k'], ['k'], ['k'], ['other'], []]);
    });
  });

  it('gives a queue bound with two keys one copy per matching publish, and a repeated bind changes nothing', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await confirmedChannel(client);
      const returned: string[] = [];
      ch.onReturn = (m) => returned.push(`${m.replyCode} ${m.replyText} ${m.routingKey}`);
      await ch.exchangeDeclare('d', 'direct', { durable: false });
      const q1 = (await ch.queueDeclare('')).name;
      const q2 = (await ch.queueDeclare('')).name;
      await ch.queueBind(q1, 'd', 'k1');
      await ch.queueBind(q1, 'd', 'k2');
      await ch.queueBind(q1, 'd', 'k1');
      await ch.queueBind(q2, 'd', 'k1');
      await ch.basicPublish('d', 'k1', 'one', {}, true);
      await ch.basicPublish('d', 'k2', 'two', {}, true);
      await ch.basicPublish('d', 'k3', 'three', {}, true);
      expect(await drainAc(ch, q1)).toEqual(['one', 'two']);
      expect(await drainAc(ch, q2)).toEqual(['one']);
      expect(returned).toEqual(['312 NO_ROUTE k3']);
      // one unbind removes the (single) k1 binding
      await ch.queueUnbind(q1, 'd', 'k1');
      await ch.basicPublish('d', 'k1', 'one again', {}, true);
      expect(await drainAc(ch, q1)).toEqual([]);
      expect(await drainAc(ch, q2)).toEqual(['one again']);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ queue.bind / queue.unbind

describe('queue.bind and queue.unbind', () => {
  it('queue.bind to a missing queue or exchange is refused with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const setup = await openChannel(model);
      await setup.assertQueue('q', { exclusive: true });
      await expectChannelClose(
        model,
        (ch) => ch.bindQueue('no-queue', 'amq.direct', 'k'),
        404,
        "NOT_FOUND - no queue 'no-queue' in vhost '/'",
        QUEUE_BIND,
      );
      await expectChannelClose(
        model,
        (ch) => ch.bindQueue('q', 'no-exchange', 'k'),
        404,
        "NOT_FOUND - no exchange 'no-exchange' in vhost '/'",
        QUEUE_BIND,
      );
      await setup.close();
      await model.close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(
        client,
        (ch) => ch.queueBind('no-queue', 'amq.topic', '#'),
        404,
        "NOT_FOUND - no queue 'no-queue' in vhost '/'",
      );
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('queue.bind with both the queue and the exchange missing reports the exchange', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.bindQueue('no-queue', 'no-exchange', 'k'),
        404,
        "NOT_FOUND - no exchange 'no-exchange' in vhost '/'",
        QUEUE_BIND,
      );
      await model.close();
    });
  });

  it('unbinding a binding that does not exist succeeds and changes nothing', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const ch = await openConfirmChannel(model);
      const q = (await ch.assertQueue('', { exclusive: true })).queue;
      await ch.bindQueue(q, 'amq.direct', 'k');
      await ch.bindQueue(q, 'amq.headers', '', { 'x-match': 'all', h: 1 });
      expect(await ch.unbindQueue(q, 'amq.direct', 'other-key')).toEqual({});
      expect(await ch.unbindQueue(q, 'amq.fanout', '')).toEqual({});
      // same key, different arguments: a different binding
      expect(await ch.unbindQueue(q, 'amq.headers', '', { 'x-match': 'all', h: 2 })).toEqual({});
      ch.publish('amq.direct', 'k', Buffer.from('direct'));
      ch.publish('amq.headers', '', Buffer.from('headers'), { headers: { h: 1 } });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['direct', 'headers']);
      await ch.close();
      await model.close();
    });
  });

  it('queue.unbind naming a missing queue or exchange succeeds', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const ch = await openChannel(model);
      const q = (await ch.assertQueue('', { exclusive: true })).queue;
      expect(await ch.unbindQueue('no-queue', 'amq.direct', 'k')).toEqual({});
      expect(await ch.unbindQueue(q, 'no-exchange', 'k')).toEqual({});
      await ch.checkQueue(q);
      await ch.close();
      await model.close();
    });
  });
});

// ------------------------------------------------------------------ fanout

describe('fanout exchange', () => {
  it('ignores the routing key and stops delivering to an unbound queue', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await confirmedChannel(client);
      await ch.exchangeDeclare('f', 'fanout', { durable: false });
      const q1 = (await ch.queueDeclare('')).name;
      const q2 = (await ch.queueDeclare('')).name;
      await ch.queueBind(q1, 'f', 'ignored-1');
      await ch.queueBind(q2, 'f', 'ignored-2');
      await ch.basicPublish('f', 'any', 'first');
      await ch.basicPublish('f', '', 'second');
      // a fanout binding is identified by its key too
      await ch.queueUnbind(q2, 'f', 'ignored-2');
      await ch.basicPublish('f', 'x', 'third');
      expect(await drainAc(ch, q1)).toEqual(['first', 'second', 'third']);
      expect(await drainAc(ch, q2)).toEqual(['first', 'second']);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('delivers every one of 1000 messages to each of 20 queues in publish order, each consumer acking', async () => {
    await withBroker(async (broker) => {
      const QUEUES = 20;
      const MESSAGES = 1000;
      const { client, errors } = await amqpClientConnect(broker.url);
      const setup = await client.channel();
      await setup.exchangeDeclare('notifications', 'fanout', { durable: false });

      const received: string[][] = Array.from({ length: QUEUES }, () => []);
      let total = 0;
      let allReceived!: () => void;
      const done = new Promise<void>((resolve) => {
        allReceived = resolve;
      });
      const channels: AMQPChannel[] = [];
      for (let i = 0; i < QUEUES; i++) {
        const ch = await client.channel();
        await ch.prefetch(50);
        const q = `subscriber-${i}`;
        await ch.queueDeclare(q, { durable: false, exclusive: true, autoDelete: false });
        await ch.queueBind(q, 'notifications', '');
        await ch.basicConsume(q, { noAck: false }, async (msg) => {
          received[i]!.push(msg.bodyString() ?? '');
          await msg.ack();
          if (++total === QUEUES * MESSAGES) allReceived();
        });
        channels.push(ch);
      }

      const publisher = await amqplib.connect(broker.url);
      const pub = await openConfirmChannel(publisher);
      for (let n = 0; n < MESSAGES; n++) {
        if (!pub.publish('notifications', 'ignored', Buffer.from(String(n)))) {
          await new Promise((resolve) => pub.once('drain', resolve));
        }
      }
      await pub.waitForConfirms();
      await pub.close();
      await publisher.close();

      let timer: NodeJS.Timeout | undefined;
      const guard = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`only ${total} deliveries arrived`)), 15_000);
      });
      try {
        await Promise.race([done, guard]);
      } finally {
        clearTimeout(timer);
      }
      const expected = Array.from({ length: MESSAGES }, (_, n) => String(n));
      for (let i = 0; i < QUEUES; i++) expect(received[i], `queue subscriber-${i}`).toEqual(expected);

      // every ack was taken: closing the consumers' channels requeues nothing
      await Promise.all(channels.map((ch) => ch.close()));
      for (let i = 0; i < QUEUES; i++) {
        const ok = await setup.queueDeclare(`subscriber-${i}`, { passive: true });
        expect(ok.messageCount).toBe(0);
        expect(ok.consumerCount).toBe(0);
      }
      expect(total).toBe(QUEUES * MESSAGES);
      await setup.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});
