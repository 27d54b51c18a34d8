/**
 * Exchanges end to end through real clients (amqplib and @cloudamqp/amqp-client): declare,
 * delete, the predeclared and default exchanges, exchange-to-exchange bindings, alternate
 * exchanges, auto-delete and internal exchanges, and publishing to a missing exchange. Every
 * refusal is checked for its exact reply code and text (as RabbitMQ 3.10 gives them), and the
 * connection is shown to be still usable after each channel error.
 */
import type { AMQPChannel, AMQPClient } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { amqpClientConnect, drain, openChannel, openConfirmChannel, replyText } from '../helpers/routing.js';

/** What amqplib attaches to the errors it reports for a channel or connection close. */
type CloseError = Error & { code?: number; classId?: number; methodId?: number };

interface Closed {
  code: number | undefined;
  text: string | undefined;
  classId?: number | undefined;
  methodId?: number | undefined;
}

const EXCHANGE_DECLARE: [number, number] = [40, 10];
const EXCHANGE_DELETE: [number, number] = [40, 20];
const EXCHANGE_BIND: [number, number] = [40, 30];
const EXCHANGE_UNBIND: [number, number] = [40, 40];
const QUEUE_BIND: [number, number] = [50, 20];
const QUEUE_UNBIND: [number, number] = [50, 50];
const BASIC_PUBLISH: [number, number] = [60, 40];

const xr = (name: string) => `exchange '${name}' in vhost '/'`;

/** An amqplib connection that records connection-level errors; `close()` asserts there were none. */
async function amqplibConnect(url: string): Promise<{
  model: amqplib.ChannelModel;
  errors: Error[];
  close: () => Promise<void>;
}> {
  const model = await amqplib.connect(url);
  const errors: Error[] = [];
  model.on('error', (e: Error) => errors.push(e));
  return {
    model,
    errors,
    close: async () => {
      await model.close();
      expect(errors).toEqual([]);
    },
  };
}

/** A confirm channel that records basic.return as `code:text:exchange:routingKey:body`. */
async function confirmChannel(
  model: amqplib.ChannelModel,
): Promise<{ ch: amqplib.ConfirmChannel; returned: string[] }> {
  const ch = await openConfirmChannel(model);
  const returned: string[] = [];
  ch.on('return', (m: amqplib.Message) => {
    // basic.return's fields; the typings only know the common ones
    const f = m.fields as amqplib.MessageFields & { replyCode: number; replyText: string };
    returned.push(`${f.replyCode}:${f.replyText}:${f.exchange}:${f.routingKey}:${m.content}`);
  });
  return { ch, returned };
}

/** An exclusive queue with a server-chosen name. */
async function tempQueue(ch: amqplib.Channel): Promise<string> {
  return (await ch.assertQueue('', { exclusive: true })).queue;
}

/** The connection still works: a new channel declares a queue, publishes to it and gets the message. */
async function expectUsable(model: amqplib.ChannelModel): Promise<void> {
  const ch = await openChannel(model);
  const q = await tempQueue(ch);
  ch.sendToQueue(q, Buffer.from('still usable'));
  expect(await drain(ch, q)).toEqual(['still usable']);
  await ch.deleteQueue(q);
  await ch.close();
}

/**
 * Runs `op` on a fresh amqplib channel; the broker must close that channel. Returns the close's
 * code, text and culprit method. A round trip after `op` makes an op that wrongly succeeds (or a
 * publish, which has no reply) fail fast instead of waiting for a close that never comes.
 */
async function channelClose(
  model: amqplib.ChannelModel,
  op: (ch: amqplib.Channel) => Promise<unknown> | unknown,
): Promise<Closed> {
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
  return { code: e.code, text: replyText(e), classId: e.classId, methodId: e.methodId };
}

/** channelClose(), asserting code, text and culprit, then that the connection is still usable. */
async function expectChannelClose(
  model: amqplib.ChannelModel,
  op: (ch: amqplib.Channel) => Promise<unknown> | unknown,
  code: number,
  text: string,
  method: [number, number],
): Promise<void> {
  expect(await channelClose(model, op)).toEqual({
    code,
    text,
    classId: method[0],
    methodId: method[1],
  });
  await expectUsable(model);
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
    // a pending call is rejected with the close itself
    if (!(e as Error).message.startsWith('Channel is closed'))
      expect((e as Error).message).toBe(`channel ${ch.id} closed: ${text} (${code})`);
  }
  if (survived) {
    await ch.close();
    throw new Error('expected the broker to close the channel, but it stayed open');
  }
  expect(await reason).toBe(`channel ${ch.id} closed: ${text} (${code})`);
  expect(ch.closed).toBe(true);
  // still usable: a new channel round-trips a message
  const again = await client.channel();
  const q = await again.queueDeclare('');
  await again.basicPublish('', q.name, 'still usable');
  const m = await again.basicGet(q.name, { noAck: true });
  expect(m?.bodyString()).toBe('still usable');
  await again.queueDelete(q.name);
  await again.close();
}

/** Opens an amqplib connection, runs `op` on a channel and expects the broker to close the connection. */
async function connectionClose(url: string, op: (ch: amqplib.Channel) => Promise<unknown>): Promise<Closed> {
  const model = await amqplib.connect(url);
  const errored = new Promise<CloseError>((resolve) => model.once('error', resolve));
  const closed = new Promise<void>((resolve) => model.once('close', () => resolve()));
  const ch = await openChannel(model);
  // amqplib emits a channel 'error' only for a channel close, not when the connection closes
  const channelClosed = new Promise<CloseError>((resolve) => ch.once('error', resolve));
  let survived = false;
  try {
    await op(ch);
    survived = true;
  } catch {
    // the connection close rejects the pending call
  }
  if (survived) {
    await model.close();
    throw new Error('expected the broker to close the connection, but it stayed open');
  }
  const outcome = await Promise.race([
    errored.then((e) => ({ connection: true, e })),
    channelClosed.then((e) => ({ connection: false, e })),
  ]);
  if (!outcome.connection) {
    await model.close();
    throw new Error(`expected a connection close, got a channel close: ${outcome.e.message}`);
  }
  await closed;
  return { code: outcome.e.code, text: replyText(outcome.e) };
}

// ------------------------------------------------------------------ exchange.declare

describe('exchange.declare', () => {
  it('declares direct, fanout, topic and headers exchanges that route, redeclare and are found passively', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await client.channel();
      for (const type of ['direct', 'fanout', 'topic', 'headers']) {
        await ch.exchangeDeclare(`x-${type}`, type, { durable: false });
        // the same declaration again is a no-op, and a passive one finds it
        await ch.exchangeDeclare(`x-${type}`, type, { durable: false });
        await ch.exchangeDeclare(`x-${type}`, 'ignored-when-passive', { passive: true });
      }
      const q = await ch.queueDeclare('');
      await ch.queueBind(q.name, 'x-direct', 'key');
      await ch.queueBind(q.name, 'x-fanout', '');
      await ch.queueBind(q.name, 'x-topic', 'key.#');
      await ch.queueBind(q.name, 'x-headers', '', { h: 'v' });
      await ch.basicPublish('x-direct', 'key', 'via direct');
      await ch.basicPublish('x-direct', 'other', 'not routed');
      await ch.basicPublish('x-fanout', 'anything', 'via fanout');
      await ch.basicPublish('x-topic', 'key.a.b', 'via topic');
      await ch.basicPublish('x-headers', '', 'via headers', { headers: { h: 'v' } });
      const got: (string | null)[] = [];
      for (;;) {
        const m = await ch.basicGet(q.name, { noAck: true });
        if (m === null) break;
        got.push(`${m.exchange}|${m.routingKey}|${m.bodyString()}`);
      }
      expect(got).toEqual([
        'x-direct|key|via direct',
        'x-fanout|anything|via fanout',
        'x-topic|key.a.b|via topic',
        'x-headers||via headers',
      ]);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('passive declare of a missing exchange closes the channel with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.checkExchange('x'),
        404,
        "NOT_FOUND - no exchange 'x' in vhost '/'",
        EXCHANGE_DECLARE,
      );
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(
        client,
        (ch) => ch.exchangeDeclare('x', 'direct', { passive: true }),
        404,
        "NOT_FOUND - no exchange 'x' in vhost '/'",
      );
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('redeclaring with a different type, durable, auto-delete or internal flag is refused with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('x', 'direct', { durable: true, autoDelete: false, internal: false });
      await ch.close();
      const cases: [amqplib.Options.AssertExchange & { type?: string }, string][] = [
        [
          { type: 'fanout' },
          "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'",
        ],
        [
          { durable: false },
          "inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'false' but current is 'true'",
        ],
        [
          { autoDelete: true },
          "inequivalent arg 'auto_delete' for exchange 'x' in vhost '/': received 'true' but current is 'false'",
        ],
        [
          { internal: true },
          "inequivalent arg 'internal' for exchange 'x' in vhost '/': received 'true' but current is 'false'",
        ],
      ];
      for (const [change, text] of cases) {
        const { type = 'direct', ...opts } = change;
        await expectChannelClose(
          model,
          (c) => c.assertExchange('x', type, { durable: true, ...opts }),
          406,
          `PRECONDITION_FAILED - ${text}`,
          EXCHANGE_DECLARE,
        );
      }
      // the exchange kept its original properties
      const again = await openChannel(model);
      await again.assertExchange('x', 'direct', { durable: true, autoDelete: false, internal: false });
      await again.close();
      await close();
    });
  });

  it('redeclaring with a different alternate exchange is refused with 406 while other arguments are not compared', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('x', 'direct', { alternateExchange: 'ae1', arguments: { 'x-foo': 1 } });
      // RabbitMQ compares only alternate-exchange among the arguments
      await ch.assertExchange('x', 'direct', { alternateExchange: 'ae1', arguments: { 'x-foo': 2 } });
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.assertExchange('x', 'direct', { alternateExchange: 'ae2' }),
        406,
        `PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for ${xr('x')}: received 'ae2' but current is 'ae1'`,
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('redeclaring with the alternate exchange added or left out is refused with 406 naming none and the typed value', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('with-ae', 'direct', { alternateExchange: 'ae' });
      await ch.assertExchange('without-ae', 'direct');
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.assertExchange('with-ae', 'direct'),
        406,
        `PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for ${xr('with-ae')}: received none but current is the value 'ae' of type 'longstr'`,
        EXCHANGE_DECLARE,
      );
      await expectChannelClose(
        model,
        (c) => c.assertExchange('without-ae', 'direct', { alternateExchange: 'ae' }),
        406,
        `PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for ${xr('without-ae')}: received the value 'ae' of type 'longstr' but current is none`,
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('declaring an exchange whose name starts with amq. is refused with 403 ACCESS_REFUSED', async () => {
    await withBroker(async (broker) => {
      const text = "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'";
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.assertExchange('amq.foo', 'direct'),
        403,
        text,
        EXCHANGE_DECLARE,
      );
      // and it was not created
      await expectChannelClose(
        model,
        (ch) => ch.checkExchange('amq.foo'),
        404,
        "NOT_FOUND - no exchange 'amq.foo' in vhost '/'",
        EXCHANGE_DECLARE,
      );
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(client, (ch) => ch.exchangeDeclare('amq.foo', 'fanout'), 403, text);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('redeclaring a predeclared amq.* exchange with its own type succeeds and with another type is refused with 406', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      // common in client code: assertExchange('amq.topic', 'topic') before binding
      await ch.assertExchange('amq.direct', 'direct', { durable: true });
      await ch.assertExchange('amq.topic', 'topic', { durable: true });
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.assertExchange('amq.direct', 'fanout', { durable: true }),
        406,
        `PRECONDITION_FAILED - inequivalent arg 'type' for ${xr('amq.direct')}: received 'fanout' but current is 'direct'`,
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('an unknown exchange type closes the connection with 503 COMMAND_INVALID and declares nothing', async () => {
    await withBroker(async (broker) => {
      expect(await connectionClose(broker.url, (ch) => ch.assertExchange('x', 'x-nope'))).toEqual({
        code: 503,
        text: "COMMAND_INVALID - unknown exchange type 'x-nope'",
      });

      const { client } = await amqpClientConnect(broker.url);
      const ch = await client.channel();
      await expect(ch.exchangeDeclare('x', 'x-unknown')).rejects.toThrow(
        "connection closed: COMMAND_INVALID - unknown exchange type 'x-unknown' (503)",
      );
      expect(client.closed).toBe(true);

      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (c) => c.checkExchange('x'),
        404,
        "NOT_FOUND - no exchange 'x' in vhost '/'",
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('a misspelt type name is reported as an unknown exchange type', async () => {
    await withBroker(async (broker) => {
      // RabbitMQ says "invalid exchange type" only for names that happen to be existing Erlang
      // atoms (such as 'foo' or 'queue'); typos of the real types are "unknown"
      for (const type of ['fanot', 'Direct']) {
        expect(await connectionClose(broker.url, (ch) => ch.assertExchange('x', type))).toEqual({
          code: 503,
          text: `COMMAND_INVALID - unknown exchange type '${type}'`,
        });
      }
    });
  });

  it('a type name that is an Erlang atom in RabbitMQ (none, infinity, queue) is an invalid exchange type', async () => {
    await withBroker(async (broker) => {
      // the wording amqp-client's own suite expects for type 'none', checked against RabbitMQ 3.10.8
      for (const type of ['none', 'infinity', 'queue']) {
        expect(await connectionClose(broker.url, (ch) => ch.assertExchange('x', type))).toEqual({
          code: 503,
          text: `COMMAND_INVALID - invalid exchange type '${type}'`,
        });
      }
    });
  });

  it('an unknown type is reported before the reserved amq. prefix', async () => {
    await withBroker(async (broker) => {
      expect(await connectionClose(broker.url, (ch) => ch.assertExchange('amq.foo', 'x-nope'))).toEqual({
        code: 503,
        text: "COMMAND_INVALID - unknown exchange type 'x-nope'",
      });
    });
  });

  it('the predeclared amq.direct, amq.fanout, amq.topic, amq.headers and amq.match exist and route', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      for (const name of ['amq.direct', 'amq.fanout', 'amq.topic', 'amq.headers', 'amq.match']) {
        expect(await ch.checkExchange(name)).toEqual({});
      }
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'amq.direct', 'dk');
      await ch.bindQueue(q, 'amq.fanout', '');
      await ch.bindQueue(q, 'amq.topic', 'p.*');
      await ch.bindQueue(q, 'amq.headers', '', { h: 'v' });
      await ch.bindQueue(q, 'amq.match', '', { 'x-match': 'any', m: 1, n: 2 });
      ch.publish('amq.direct', 'dk', Buffer.from('direct'));
      ch.publish('amq.direct', 'other', Buffer.from('direct-miss'), { mandatory: true });
      ch.publish('amq.fanout', 'x', Buffer.from('fanout'));
      ch.publish('amq.topic', 'p.q', Buffer.from('topic'));
      ch.publish('amq.topic', 'p.q.r', Buffer.from('topic-miss'), { mandatory: true });
      ch.publish('amq.headers', '', Buffer.from('headers'), { headers: { h: 'v' } });
      ch.publish('amq.headers', '', Buffer.from('headers-miss'), { headers: { h: 'w' }, mandatory: true });
      ch.publish('amq.match', '', Buffer.from('match'), { headers: { n: 2 } });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['direct', 'fanout', 'topic', 'headers', 'match']);
      expect(returned).toEqual([
        '312:NO_ROUTE:amq.direct:other:direct-miss',
        '312:NO_ROUTE:amq.topic:p.q.r:topic-miss',
        '312:NO_ROUTE:amq.headers::headers-miss',
      ]);
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ the default exchange

describe('the default exchange', () => {
  it('routes a message to the queue named by the routing key and returns it when there is none', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertQueue('orders', { exclusive: true });
      await ch.assertQueue('other', { exclusive: true });
      ch.publish('', 'orders', Buffer.from('o1'), { mandatory: true });
      ch.publish('', 'no-such-queue', Buffer.from('lost'), { mandatory: true });
      ch.sendToQueue('orders', Buffer.from('o2'));
      await ch.waitForConfirms();
      const m = await ch.get('orders', { noAck: true });
      expect(m && [m.fields.exchange, m.fields.routingKey, m.content.toString()]).toEqual([
        '',
        'orders',
        'o1',
      ]);
      expect(await drain(ch, 'orders')).toEqual(['o2']);
      expect(await drain(ch, 'other')).toEqual([]);
      expect(returned).toEqual(['312:NO_ROUTE::no-such-queue:lost']);
      await ch.close();
      await close();
    });
  });

  it('cannot be declared, bound, bound to, unbound or deleted: 403 ACCESS_REFUSED', async () => {
    await withBroker(async (broker) => {
      const text = 'ACCESS_REFUSED - operation not permitted on the default exchange';
      const { model, close } = await amqplibConnect(broker.url);
      const setup = await openChannel(model);
      await setup.assertQueue('q', { exclusive: true });
      await setup.assertExchange('x', 'fanout', { durable: false });
      await expectChannelClose(model, (ch) => ch.assertExchange('', 'direct'), 403, text, EXCHANGE_DECLARE);
      await expectChannelClose(model, (ch) => ch.checkExchange(''), 403, text, EXCHANGE_DECLARE);
      await expectChannelClose(model, (ch) => ch.bindQueue('q', '', 'q'), 403, text, QUEUE_BIND);
      await expectChannelClose(model, (ch) => ch.bindExchange('x', '', ''), 403, text, EXCHANGE_BIND);
      await expectChannelClose(model, (ch) => ch.bindExchange('', 'x', ''), 403, text, EXCHANGE_BIND);
      await expectChannelClose(model, (ch) => ch.unbindQueue('q', '', 'q'), 403, text, QUEUE_UNBIND);
      await expectChannelClose(model, (ch) => ch.unbindExchange('x', '', ''), 403, text, EXCHANGE_UNBIND);
      await expectChannelClose(model, (ch) => ch.unbindExchange('', 'x', ''), 403, text, EXCHANGE_UNBIND);
      await expectChannelClose(model, (ch) => ch.deleteExchange(''), 403, text, EXCHANGE_DELETE);
      // it still routes after all that
      setup.sendToQueue('q', Buffer.from('still routed'));
      expect(await drain(setup, 'q')).toEqual(['still routed']);
      await setup.close();
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(client, (ch) => ch.exchangeDelete(''), 403, text);
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ exchange.delete

describe('exchange.delete', () => {
  it('with if-unused is refused with 406 while the exchange is the source of a binding', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch } = await confirmChannel(model);
      await ch.assertExchange('x', 'fanout', { durable: false });
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'x', '');
      await expectChannelClose(
        model,
        (c) => c.deleteExchange('x', { ifUnused: true }),
        406,
        "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use",
        EXCHANGE_DELETE,
      );
      // the exchange and its binding survived the refusal
      ch.publish('x', '', Buffer.from('still bound'));
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['still bound']);
      // once unbound it is unused and goes
      await ch.unbindQueue(q, 'x', '');
      await ch.deleteExchange('x', { ifUnused: true });
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.checkExchange('x'),
        404,
        "NOT_FOUND - no exchange 'x' in vhost '/'",
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('with if-unused deletes an exchange that is only the destination of a binding', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('src', 'fanout', { durable: false });
      await ch.assertExchange('dst', 'fanout', { durable: false });
      await ch.bindExchange('dst', 'src', '');
      await ch.deleteExchange('dst', { ifUnused: true });
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.checkExchange('dst'),
        404,
        "NOT_FOUND - no exchange 'dst' in vhost '/'",
        EXCHANGE_DECLARE,
      );
      await close();
    });
  });

  it('deleting a missing exchange succeeds', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      expect(await ch.deleteExchange('never-declared')).toEqual({});
      expect(await ch.deleteExchange('never-declared', { ifUnused: true })).toEqual({});
      await ch.checkExchange('amq.direct');
      await ch.close();
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      const c = await client.channel();
      await c.exchangeDelete('never-declared');
      await c.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('deleting a predeclared amq.* exchange is refused with 403 ACCESS_REFUSED', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.deleteExchange('amq.direct'),
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        EXCHANGE_DELETE,
      );
      const ch = await openChannel(model);
      await ch.checkExchange('amq.direct');
      await ch.close();
      await close();
    });
  });

  it('deleting an exchange removes its bindings as source and as destination', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('src', 'fanout', { durable: false });
      await ch.assertExchange('x', 'fanout', { durable: false });
      await ch.bindExchange('x', 'src', '');
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'x', '');
      ch.publish('src', '', Buffer.from('before'));
      await ch.deleteExchange('x');
      // a new exchange with the same name starts without bindings, in or out
      await ch.assertExchange('x', 'fanout', { durable: false });
      ch.publish('x', '', Buffer.from('x after'), { mandatory: true });
      await ch.bindQueue(q, 'x', '');
      ch.publish('src', '', Buffer.from('src after'), { mandatory: true });
      ch.publish('x', '', Buffer.from('rebound'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['before', 'rebound']);
      expect(returned).toEqual(['312:NO_ROUTE:x::x after', '312:NO_ROUTE:src::src after']);
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ exchange-to-exchange bindings

describe('exchange-to-exchange bindings', () => {
  it('route a message on through the destination exchange by its own bindings', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await amqpClientConnect(broker.url);
      const ch = await client.channel();
      await ch.confirmSelect();
      const returned: string[] = [];
      ch.onReturn = (m) => returned.push(`${m.replyCode}:${m.exchange}:${m.routingKey}`);
      await ch.exchangeDeclare('orders', 'topic', { durable: false });
      await ch.exchangeDeclare('eu', 'direct', { durable: false });
      await ch.exchangeBind('eu', 'orders', 'orders.*');
      const q = await ch.queueDeclare('');
      await ch.queueBind(q.name, 'eu', 'orders.eu');
      await ch.basicPublish('orders', 'orders.eu', 'eu order', {}, true);
      await ch.basicPublish('orders', 'orders.us', 'us order', {}, true);
      await ch.basicPublish('orders', 'refunds.eu', 'refund', {}, true);
      const m = await ch.basicGet(q.name, { noAck: true });
      expect(m && [m.exchange, m.routingKey, m.bodyString()]).toEqual(['orders', 'orders.eu', 'eu order']);
      expect(await ch.basicGet(q.name, { noAck: true })).toBeNull();
      expect(returned).toEqual(['312:orders:orders.us', '312:orders:refunds.eu']);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a binding cycle a→b→a delivers each publish exactly once to every bound queue', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch } = await confirmChannel(model);
      await ch.assertExchange('a', 'fanout', { durable: false });
      await ch.assertExchange('b', 'fanout', { durable: false });
      await ch.bindExchange('b', 'a', '');
      await ch.bindExchange('a', 'b', '');
      const qa = await tempQueue(ch);
      const qb = await tempQueue(ch);
      await ch.bindQueue(qa, 'a', '');
      await ch.bindQueue(qb, 'b', '');
      ch.publish('a', 'k', Buffer.from('to a'));
      ch.publish('b', 'k', Buffer.from('to b'));
      await ch.waitForConfirms();
      expect(await drain(ch, qa)).toEqual(['to a', 'to b']);
      expect(await drain(ch, qb)).toEqual(['to a', 'to b']);
      await ch.close();
      await close();
    });
  });

  it('a queue reached along two paths gets one copy', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch } = await confirmChannel(model);
      await ch.assertExchange('a', 'fanout', { durable: false });
      await ch.assertExchange('b', 'fanout', { durable: false });
      await ch.assertExchange('c', 'topic', { durable: false });
      await ch.bindExchange('b', 'a', '');
      await ch.bindExchange('c', 'a', '');
      await ch.bindExchange('c', 'b', '');
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'a', '');
      await ch.bindQueue(q, 'b', '');
      await ch.bindQueue(q, 'c', '#');
      ch.publish('a', 'k', Buffer.from('once'));
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['once']);
      await ch.close();
      await close();
    });
  });

  it('exchange.unbind stops routing, and unbinding a binding that does not exist succeeds', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('src', 'direct', { durable: false });
      await ch.assertExchange('dst', 'fanout', { durable: false });
      await ch.bindExchange('dst', 'src', 'k');
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'dst', '');
      ch.publish('src', 'k', Buffer.from('bound'), { mandatory: true });
      await ch.waitForConfirms();
      // a different routing key is a different binding: nothing to remove
      await ch.unbindExchange('dst', 'src', 'other');
      ch.publish('src', 'k', Buffer.from('still bound'), { mandatory: true });
      await ch.unbindExchange('dst', 'src', 'k');
      ch.publish('src', 'k', Buffer.from('unbound'), { mandatory: true });
      // unbinding again is fine
      await ch.unbindExchange('dst', 'src', 'k');
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['bound', 'still bound']);
      expect(returned).toEqual(['312:NO_ROUTE:src:k:unbound']);
      await ch.close();
      await close();
    });
  });

  it('exchange.bind with a missing source or destination is refused with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.bindExchange('no-dst', 'amq.fanout', ''),
        404,
        "NOT_FOUND - no exchange 'no-dst' in vhost '/'",
        EXCHANGE_BIND,
      );
      await expectChannelClose(
        model,
        (ch) => ch.bindExchange('amq.fanout', 'no-src', ''),
        404,
        "NOT_FOUND - no exchange 'no-src' in vhost '/'",
        EXCHANGE_BIND,
      );
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(
        client,
        (ch) => ch.exchangeBind('amq.topic', 'no-src', '#'),
        404,
        "NOT_FOUND - no exchange 'no-src' in vhost '/'",
      );
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('exchange.bind with both exchanges missing reports the source', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.bindExchange('no-dst', 'no-src', ''),
        404,
        "NOT_FOUND - no exchange 'no-src' in vhost '/'",
        EXCHANGE_BIND,
      );
      await close();
    });
  });

  it('exchange.unbind naming a missing exchange succeeds', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      expect(await ch.unbindExchange('no-dst', 'amq.direct', 'k')).toEqual({});
      expect(await ch.unbindExchange('amq.fanout', 'no-src', 'k')).toEqual({});
      await ch.checkExchange('amq.direct');
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ alternate exchanges

describe('alternate exchanges', () => {
  it('take the messages their exchange cannot route, and only those', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('ae', 'fanout', { durable: false });
      await ch.assertExchange('x', 'direct', { durable: false, alternateExchange: 'ae' });
      const q = await tempQueue(ch);
      const qae = await tempQueue(ch);
      await ch.bindQueue(q, 'x', 'known');
      await ch.bindQueue(qae, 'ae', '');
      ch.publish('x', 'known', Buffer.from('routed'), { mandatory: true });
      ch.publish('x', 'unknown', Buffer.from('unroutable'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['routed']);
      const m = await ch.get(qae, { noAck: true });
      // the message keeps the exchange and routing key it was published with
      expect(m && [m.fields.exchange, m.fields.routingKey, m.content.toString()]).toEqual([
        'x',
        'unknown',
        'unroutable',
      ]);
      // a mandatory message the alternate exchange routed is not returned
      expect(returned).toEqual([]);
      await ch.close();
      await close();
    });
  });

  it('a mandatory message is returned when the alternate exchange cannot route it or does not exist', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('empty-ae', 'direct', { durable: false });
      await ch.assertExchange('x', 'direct', { durable: false, alternateExchange: 'empty-ae' });
      await ch.assertExchange('y', 'direct', { durable: false, alternateExchange: 'missing-ae' });
      ch.publish('x', 'k', Buffer.from('via empty ae'), { mandatory: true });
      ch.publish('y', 'k', Buffer.from('via missing ae'), { mandatory: true });
      await ch.waitForConfirms();
      expect(returned).toEqual(['312:NO_ROUTE:x:k:via empty ae', '312:NO_ROUTE:y:k:via missing ae']);
      await ch.close();
      await close();
    });
  });

  it('chain: what the alternate exchange cannot route goes to its own alternate exchange', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('ae2', 'fanout', { durable: false });
      await ch.assertExchange('ae1', 'direct', { durable: false, alternateExchange: 'ae2' });
      await ch.assertExchange('x', 'direct', { durable: false, alternateExchange: 'ae1' });
      const q1 = await tempQueue(ch);
      const q2 = await tempQueue(ch);
      await ch.bindQueue(q1, 'ae1', 'one');
      await ch.bindQueue(q2, 'ae2', '');
      ch.publish('x', 'one', Buffer.from('first alternate'), { mandatory: true });
      ch.publish('x', 'two', Buffer.from('second alternate'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, q1)).toEqual(['first alternate']);
      expect(await drain(ch, q2)).toEqual(['second alternate']);
      expect(returned).toEqual([]);
      await ch.close();
      await close();
    });
  });

  it('alternate exchanges that name each other return the message instead of looping', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('a', 'direct', { durable: false, alternateExchange: 'b' });
      await ch.assertExchange('b', 'direct', { durable: false, alternateExchange: 'a' });
      ch.publish('a', 'z', Buffer.from('nowhere'), { mandatory: true });
      await ch.waitForConfirms();
      expect(returned).toEqual(['312:NO_ROUTE:a:z:nowhere']);
      await ch.close();
      await close();
    });
  });

  it('an internal exchange can be the alternate exchange', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('internal-ae', 'fanout', { durable: false, internal: true });
      await ch.assertExchange('x', 'direct', { durable: false, alternateExchange: 'internal-ae' });
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'internal-ae', '');
      ch.publish('x', 'zz', Buffer.from('caught'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['caught']);
      expect(returned).toEqual([]);
      await ch.close();
      await close();
    });
  });

  it('an exchange reached through an exchange-to-exchange binding falls back to its own alternate exchange', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('ae-b', 'fanout', { durable: false });
      await ch.assertExchange('a', 'fanout', { durable: false });
      await ch.assertExchange('b', 'direct', { durable: false, alternateExchange: 'ae-b' });
      await ch.bindExchange('b', 'a', '');
      const qae = await tempQueue(ch);
      await ch.bindQueue(qae, 'ae-b', '');
      ch.publish('a', 'k', Buffer.from('only via b'), { mandatory: true });
      // a queue bound directly to a does not stop b from using its alternate exchange
      const qa = await tempQueue(ch);
      await ch.bindQueue(qa, 'a', '');
      ch.publish('a', 'k', Buffer.from('via a and b'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, qae)).toEqual(['only via b', 'via a and b']);
      expect(await drain(ch, qa)).toEqual(['via a and b']);
      expect(returned).toEqual([]);
      await ch.close();
      await close();
    });
  });

  it('is not used when its exchange routed the message to another exchange that dropped it', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('ae-a', 'fanout', { durable: false });
      await ch.assertExchange('a', 'fanout', { durable: false, alternateExchange: 'ae-a' });
      await ch.assertExchange('b', 'direct', { durable: false });
      await ch.bindExchange('b', 'a', '');
      const qae = await tempQueue(ch);
      await ch.bindQueue(qae, 'ae-a', '');
      ch.publish('a', 'k', Buffer.from('dropped by b'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, qae)).toEqual([]);
      expect(returned).toEqual(['312:NO_ROUTE:a:k:dropped by b']);
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ auto-delete

describe('auto-delete exchanges', () => {
  const gone = (name: string) => `NOT_FOUND - no exchange '${name}' in vhost '/'`;

  it('live until their last binding is removed, and not before they ever had one', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('ad', 'fanout', { durable: false, autoDelete: true });
      // no binding yet: still there
      await ch.checkExchange('ad');
      const q1 = await tempQueue(ch);
      const q2 = await tempQueue(ch);
      await ch.bindQueue(q1, 'ad', '');
      await ch.bindQueue(q2, 'ad', '');
      await ch.unbindQueue(q1, 'ad', '');
      await ch.checkExchange('ad');
      await ch.unbindQueue(q2, 'ad', '');
      await ch.close();
      await expectChannelClose(model, (c) => c.checkExchange('ad'), 404, gone('ad'), EXCHANGE_DECLARE);
      await close();
    });
  });

  it('are deleted when the queue of their last binding is deleted', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('ad', 'direct', { durable: false, autoDelete: true });
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'ad', 'a');
      await ch.bindQueue(q, 'ad', 'b');
      await ch.deleteQueue(q);
      await ch.close();
      await expectChannelClose(model, (c) => c.checkExchange('ad'), 404, gone('ad'), EXCHANGE_DECLARE);
      await close();
    });
  });

  it('are deleted when the destination exchange of their last binding is deleted', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('ad', 'fanout', { durable: false, autoDelete: true });
      await ch.assertExchange('dst', 'fanout', { durable: false });
      await ch.bindExchange('dst', 'ad', '');
      await ch.deleteExchange('dst');
      await ch.close();
      await expectChannelClose(model, (c) => c.checkExchange('ad'), 404, gone('ad'), EXCHANGE_DECLARE);
      await close();
    });
  });

  it('are kept when a binding to them (as destination) is removed', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch } = await confirmChannel(model);
      await ch.assertExchange('ad', 'fanout', { durable: false, autoDelete: true });
      await ch.assertExchange('src', 'fanout', { durable: false });
      await ch.bindExchange('ad', 'src', '');
      await ch.unbindExchange('ad', 'src', '');
      await ch.checkExchange('ad');
      // and it still works
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'ad', '');
      ch.publish('ad', '', Buffer.from('alive'));
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['alive']);
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ internal exchanges

describe('internal exchanges', () => {
  it('refuse a direct publish with 403 ACCESS_REFUSED blamed on basic.publish', async () => {
    await withBroker(async (broker) => {
      const text = "ACCESS_REFUSED - cannot publish to internal exchange 'int' in vhost '/'";
      const { model, close } = await amqplibConnect(broker.url);
      const ch = await openChannel(model);
      await ch.assertExchange('int', 'fanout', { durable: false, internal: true });
      await ch.close();
      await expectChannelClose(
        model,
        (c) => c.publish('int', 'k', Buffer.from('x')),
        403,
        text,
        BASIC_PUBLISH,
      );
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(client, (c) => c.basicPublish('int', 'k', 'x'), 403, text);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('still route what reaches them through an exchange-to-exchange binding', async () => {
    await withBroker(async (broker) => {
      const { model, close } = await amqplibConnect(broker.url);
      const { ch, returned } = await confirmChannel(model);
      await ch.assertExchange('int', 'topic', { durable: false, internal: true });
      await ch.assertExchange('pub', 'fanout', { durable: false });
      await ch.bindExchange('int', 'pub', '');
      const q = await tempQueue(ch);
      await ch.bindQueue(q, 'int', 'a.*');
      ch.publish('pub', 'a.b', Buffer.from('a.b'), { mandatory: true });
      ch.publish('pub', 'c.b', Buffer.from('c.b'), { mandatory: true });
      await ch.waitForConfirms();
      expect(await drain(ch, q)).toEqual(['a.b']);
      expect(returned).toEqual(['312:NO_ROUTE:pub:c.b:c.b']);
      await ch.close();
      await close();
    });
  });
});

// ------------------------------------------------------------------ publish to a missing exchange

describe('basic.publish to a missing exchange', () => {
  it('closes the channel with 404 NOT_FOUND blamed on class 60 method 40', async () => {
    await withBroker(async (broker) => {
      const text = "NOT_FOUND - no exchange 'nowhere' in vhost '/'";
      const { model, close } = await amqplibConnect(broker.url);
      await expectChannelClose(
        model,
        (ch) => ch.publish('nowhere', 'k', Buffer.from('x')),
        404,
        text,
        BASIC_PUBLISH,
      );
      await close();

      const { client, errors } = await amqpClientConnect(broker.url);
      await expectAmqpClientChannelClose(client, (ch) => ch.basicPublish('nowhere', 'k', 'x'), 404, text);
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});
