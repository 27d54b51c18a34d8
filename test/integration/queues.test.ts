/**
 * Queues end to end through real clients (amqplib and @cloudamqp/amqp-client): declare and its
 * equivalence checks, exclusive and auto-delete queues, purge and delete. Every refusal is
 * checked for RabbitMQ's exact reply code and text, and the connection is used again afterwards.
 */
import type { AMQPChannel } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker.js';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { declareQueue, RawClient } from '../helpers/raw-client.js';
import {
  amqpClientRefusal,
  amqpClientStillWorks,
  connectAmqpClient,
  connectAmqplib,
} from '../helpers/refusals.js';
import { waitFor } from '../helpers/wait.js';

const LOCKED = (q: string): string =>
  `RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '${q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`;

// ------------------------------------------------------------------ helpers

/** An amqplib channel whose 'error' events are recorded instead of thrown. */
async function amqplibChannel(
  model: amqplib.ChannelModel,
): Promise<{ ch: amqplib.Channel; errors: Error[] }> {
  const ch = await model.createChannel();
  const errors: Error[] = [];
  ch.on('error', (e: Error) => errors.push(e));
  return { ch, errors };
}

/**
 * Runs `op` on a fresh amqplib channel, expects the broker to close that channel and returns
 * the reply code and text of the close.
 */
async function amqplibRefusal(
  model: amqplib.ChannelModel,
  op: (ch: amqplib.Channel) => Promise<unknown>,
): Promise<{ code: number; text: string }> {
  const { ch, errors } = await amqplibChannel(model);
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  const err = (await op(ch).then(
    (r) => {
      throw new Error(`expected a channel error, got ${JSON.stringify(r)}`);
    },
    (e: Error) => e,
  )) as Error & { code?: number };
  await closed;
  expect(errors).toHaveLength(1);
  const m = /with message "(.*)"$/s.exec(err.message);
  if (!m || typeof err.code !== 'number') throw err;
  return { code: err.code, text: m[1]! };
}

/** Proves an amqplib connection still works: a message makes a round trip on a new channel. */
async function amqplibStillWorks(model: amqplib.ChannelModel): Promise<void> {
  const ch = await model.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('still here'));
  expect(bodyOf(await ch.get(queue, { noAck: true }))).toBe('still here');
  await ch.close();
}

/** The body of an amqplib basic.get result as text, or null for get-empty. */
function bodyOf(m: amqplib.GetMessage | false): string | null {
  return m === false ? null : m.content.toString();
}

/** Waits until the broker holds exactly `n` connections (a closed client's socket is gone). */
function connectionsDrop(broker: Broker, n: number): Promise<void> {
  return waitFor(() => broker.connections.size === n, `${n} connection(s) on the broker`);
}

// ------------------------------------------------------------------ queue.declare

describe('queue.declare', () => {
  it('gives an empty name a fresh server-generated amq.gen- name', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ch = await model.createConfirmChannel();
      const a = await ch.assertQueue('', { exclusive: true });
      const b = await ch.assertQueue('', { exclusive: true });
      const ach = await client.channel();
      const c = await ach.queueDeclare('', { durable: false, exclusive: false, autoDelete: false });
      for (const name of [a.queue, b.queue, c.name]) expect(name).toMatch(/^amq\.gen-[A-Za-z0-9_-]{22}$/);
      expect(new Set([a.queue, b.queue, c.name]).size).toBe(3);
      expect(a).toEqual({ queue: a.queue, messageCount: 0, consumerCount: 0 });
      // the generated name is a real queue, usable by name from the other client
      expect(await ach.queueDeclare(c.name, { passive: true })).toEqual({
        name: c.name,
        messageCount: 0,
        consumerCount: 0,
      });
      ch.sendToQueue(c.name, Buffer.from('to a generated name'));
      await ch.waitForConfirms();
      expect(await ch.checkQueue(c.name)).toEqual({ queue: c.name, messageCount: 1, consumerCount: 0 });
      expect((await ach.basicGet(c.name))?.bodyString()).toBe('to a generated name');
      await ach.queueDelete(c.name);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it('answers declare-ok with the ready message count and the consumer count', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      expect(await ch.assertQueue('counted', { durable: false })).toEqual({
        queue: 'counted',
        messageCount: 0,
        consumerCount: 0,
      });
      for (const body of ['one', 'two', 'three']) ch.sendToQueue('counted', Buffer.from(body));
      await ch.waitForConfirms();
      expect(await ch.assertQueue('counted', { durable: false })).toEqual({
        queue: 'counted',
        messageCount: 3,
        consumerCount: 0,
      });
      // a consumer holding one unacknowledged message: it counts as a consumer, not a message
      const consumer = await model.createChannel();
      await consumer.prefetch(1);
      const first = new Promise<string>((resolve) =>
        consumer.consume('counted', (m) => m && resolve(m.content.toString()), { noAck: false }),
      );
      expect(await first).toBe('one');
      expect(await ch.checkQueue('counted')).toEqual({ queue: 'counted', messageCount: 2, consumerCount: 1 });
      // another client's passive declare sees the same counts
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      expect(await ach.queueDeclare('counted', { passive: true })).toEqual({
        name: 'counted',
        messageCount: 2,
        consumerCount: 1,
      });
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it('fails a passive declare of a missing queue with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      expect(await amqplibRefusal(model, (ch) => ch.checkQueue('q'))).toEqual({
        code: 404,
        text: "NOT_FOUND - no queue 'q' in vhost '/'",
      });
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(await amqpClientRefusal(client, (ch) => ch.queueDeclare('q', { passive: true }))).toBe(
        "NOT_FOUND - no queue 'q' in vhost '/' (404)",
      );
      // a passive declare never creates the queue
      expect(await amqpClientRefusal(client, (ch) => ch.queueDeclare('q', { passive: true }))).toBe(
        "NOT_FOUND - no queue 'q' in vhost '/' (404)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(2);
    });
  });

  it('refuses a redeclare with a different durable or auto-delete flag with 406 inequivalent arg', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      expect(await amqplibRefusal(model, (c) => c.assertQueue('q', { durable: true }))).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'",
      });
      expect(
        await amqplibRefusal(model, (c) => c.assertQueue('q', { durable: false, autoDelete: true })),
      ).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'q' in vhost '/': received 'true' but current is 'false'",
      });
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      await ach.queueDeclare('d', { durable: true, autoDelete: true });
      expect(
        await amqpClientRefusal(client, (c) => c.queueDeclare('d', { durable: false, autoDelete: true })),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'd' in vhost '/': received 'false' but current is 'true' (406)",
      );
      expect(
        await amqpClientRefusal(client, (c) => c.queueDeclare('d', { durable: true, autoDelete: false })),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'd' in vhost '/': received 'false' but current is 'true' (406)",
      );
      // an identical redeclare is fine
      expect(await ch.assertQueue('q', { durable: false })).toEqual({
        queue: 'q',
        messageCount: 0,
        consumerCount: 0,
      });
      expect(await ach.queueDeclare('d', { durable: true, autoDelete: true })).toEqual({
        name: 'd',
        messageCount: 0,
        consumerCount: 0,
      });
      await amqplibStillWorks(model);
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(2);
    });
  });

  it('refuses a redeclare with a different exclusive flag with 405 RESOURCE_LOCKED, as RabbitMQ does', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('shared', { durable: false });
      await ch.queueDeclare('mine', { durable: false, exclusive: true });
      // the same connection asks for the opposite exclusivity of each
      expect(
        await amqpClientRefusal(client, (c) => c.queueDeclare('shared', { durable: false, exclusive: true })),
      ).toBe(`${LOCKED('shared')} (405)`);
      expect(await amqpClientRefusal(client, (c) => c.queueDeclare('mine', { durable: false }))).toBe(
        `${LOCKED('mine')} (405)`,
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(2);
    });
  });

  it('an exclusive queue is never durable: redeclaring it with the other durable flag is no inequivalence', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      // amqplib declares durable unless told otherwise
      await ch.assertQueue('mine', { exclusive: true });
      await ch.assertQueue('mine', { exclusive: true, durable: false });
      await ch.assertQueue('theirs', { exclusive: true, durable: false });
      await ch.assertQueue('theirs', { exclusive: true });
      ch.sendToQueue('mine', Buffer.from('x'), { persistent: true });
      expect((await ch.checkQueue('mine')).messageCount).toBe(1);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('refuses a redeclare that adds or drops x-message-ttl or x-max-length with 406 naming the argument', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('plain', { durable: false });
      await ch.queueDeclare('ttl', { durable: false }, { 'x-message-ttl': 1000 });
      await ch.queueDeclare('capped', { durable: false }, { 'x-max-length': 10 });
      const refusals = [
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('plain', { durable: false }, { 'x-message-ttl': 1000 }),
        ),
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('plain', { durable: false }, { 'x-max-length': 10 }),
        ),
        await amqpClientRefusal(client, (c) => c.queueDeclare('ttl', { durable: false })),
        await amqpClientRefusal(client, (c) => c.queueDeclare('capped', { durable: false })),
      ];
      expect(refusals).toEqual([
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'plain' in vhost '/': received the value '1000' of type 'signedint' but current is none (406)",
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'plain' in vhost '/': received the value '10' of type 'signedint' but current is none (406)",
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'ttl' in vhost '/': received none but current is the value '1000' of type 'signedint' (406)",
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'capped' in vhost '/': received none but current is the value '10' of type 'signedint' (406)",
      ]);
      // the same arguments again are equivalent
      expect(await ch.queueDeclare('ttl', { durable: false }, { 'x-message-ttl': 1000 })).toEqual({
        name: 'ttl',
        messageCount: 0,
        consumerCount: 0,
      });
      // arguments RabbitMQ does not compare may differ freely
      expect(await ch.queueDeclare('plain', { durable: false }, { 'x-custom': 'anything' })).toEqual({
        name: 'plain',
        messageCount: 0,
        consumerCount: 0,
      });
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(4);
    });
  });

  it("reports an argument present on both sides with another value as received 'new' but current is 'old'", async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('ttl', { durable: false }, { 'x-message-ttl': 1000 });
      await ch.queueDeclare('capped', { durable: false }, { 'x-max-length': 10 });
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('ttl', { durable: false }, { 'x-message-ttl': 2000 }),
        ),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'ttl' in vhost '/': received '2000' but current is '1000' (406)",
      );
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('capped', { durable: false }, { 'x-max-length': 300 }),
        ),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'capped' in vhost '/': received '300' but current is '10' (406)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(2);
    });
  });

  it('names in the inequivalent-arg text the AMQP field type the client sent (byte, short, long)', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      // amqplib sends small integers as the narrowest signed type: 10 as 'b', 1000 as 's'
      expect(
        await amqplibRefusal(model, (c) => c.assertQueue('q', { durable: false, maxLength: 10 })),
      ).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '10' of type 'byte' but current is none",
      });
      expect(
        await amqplibRefusal(model, (c) => c.assertQueue('q', { durable: false, messageTtl: 1000 })),
      ).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '1000' of type 'short' but current is none",
      });
      expect(
        await amqplibRefusal(model, (c) =>
          c.assertQueue('q', { durable: false, arguments: { 'x-max-length': { '!': 'long', value: 10 } } }),
        ),
      ).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '10' of type 'long' but current is none",
      });
      await ch.assertQueue('capped', { durable: false, maxLength: 10 });
      expect(await amqplibRefusal(model, (c) => c.assertQueue('capped', { durable: false }))).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'capped' in vhost '/': received none but current is the value '10' of type 'byte'",
      });
      await amqplibStillWorks(model);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('treats the same argument value sent as a different integer type as equivalent', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      // 'b' 10 from amqplib
      await ch.assertQueue('capped', { durable: false, maxLength: 10 });
      // 'l' 10 from amqplib
      expect(
        await ch.assertQueue('capped', {
          durable: false,
          arguments: { 'x-max-length': { '!': 'long', value: 10 } },
        }),
      ).toEqual({ queue: 'capped', messageCount: 0, consumerCount: 0 });
      // 'I' 10 from amqp-client
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      expect(await ach.queueDeclare('capped', { durable: false }, { 'x-max-length': 10 })).toEqual({
        name: 'capped',
        messageCount: 0,
        consumerCount: 0,
      });
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it("refuses a queue name starting with 'amq.' with 403 ACCESS_REFUSED", async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      expect(await amqplibRefusal(model, (ch) => ch.assertQueue('amq.foo', { durable: false }))).toEqual({
        code: 403,
        text: "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'",
      });
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(
        await amqpClientRefusal(client, (ch) => ch.queueDeclare('amq.gen-mine', { durable: false })),
      ).toBe("ACCESS_REFUSED - queue name 'amq.gen-mine' contains reserved prefix 'amq.*' (403)");
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(1);
    });
  });

  it('accepts x-queue-type classic and treats it as the same type as no x-queue-type', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const classic = { 'x-queue-type': 'classic' };
      expect(await ch.queueDeclare('explicit', { durable: false }, classic)).toEqual({
        name: 'explicit',
        messageCount: 0,
        consumerCount: 0,
      });
      expect(await ch.queueDeclare('explicit', { durable: false })).toEqual({
        name: 'explicit',
        messageCount: 0,
        consumerCount: 0,
      });
      await ch.queueDeclare('implicit', { durable: false });
      expect(await ch.queueDeclare('implicit', { durable: false }, classic)).toEqual({
        name: 'implicit',
        messageCount: 0,
        consumerCount: 0,
      });
      await ch.basicPublish('', 'explicit', 'classic message');
      expect((await ch.basicGet('explicit'))?.bodyString()).toBe('classic message');
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('accepts durable quorum and stream queues', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      expect(await ch.queueDeclare('qq', { durable: true }, { 'x-queue-type': 'quorum' })).toEqual({
        name: 'qq',
        messageCount: 0,
        consumerCount: 0,
      });
      expect(await ch.queueDeclare('sq', { durable: true }, { 'x-queue-type': 'stream' })).toEqual({
        name: 'sq',
        messageCount: 0,
        consumerCount: 0,
      });
      // redeclaring them as they are is fine, and a quorum queue carries messages
      await ch.queueDeclare('qq', { durable: true }, { 'x-queue-type': 'quorum' });
      await ch.basicPublish('', 'qq', 'to quorum');
      expect((await ch.basicGet('qq'))?.bodyString()).toBe('to quorum');
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('refuses a non-durable, exclusive or auto-delete quorum queue with 406', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const quorum = { 'x-queue-type': 'quorum' };
      expect(await amqpClientRefusal(client, (ch) => ch.queueDeclare('q1', { durable: false }, quorum))).toBe(
        "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q1' in vhost '/' (406)",
      );
      expect(
        await amqpClientRefusal(client, (ch) =>
          ch.queueDeclare('q2', { durable: true, exclusive: true }, quorum),
        ),
      ).toBe("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'q2' in vhost '/' (406)");
      expect(
        await amqpClientRefusal(client, (ch) =>
          ch.queueDeclare('q3', { durable: true, autoDelete: true }, quorum),
        ),
      ).toBe("PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'q3' in vhost '/' (406)");
      // none of them was created
      for (const q of ['q1', 'q2', 'q3']) {
        expect(await amqpClientRefusal(client, (ch) => ch.queueDeclare(q, { passive: true }))).toBe(
          `NOT_FOUND - no queue '${q}' in vhost '/' (404)`,
        );
      }
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(6);
    });
  });

  it('refuses to redeclare a quorum queue as classic or without x-queue-type with 406', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qq', { durable: true }, { 'x-queue-type': 'quorum' });
      await ch.queueDeclare('cq', { durable: true });
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('qq', { durable: true }, { 'x-queue-type': 'classic' }),
        ),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/': received 'classic' but current is 'quorum' (406)",
      );
      expect(await amqpClientRefusal(client, (c) => c.queueDeclare('qq', { durable: true }))).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/': received none but current is the value 'quorum' of type 'longstr' (406)",
      );
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('cq', { durable: true }, { 'x-queue-type': 'quorum' }),
        ),
      ).toBe(
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'cq' in vhost '/': received the value 'quorum' of type 'longstr' but current is none (406)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(3);
    });
  });

  it('refuses an unknown x-queue-type with 406', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      expect(
        await amqpClientRefusal(client, (ch) =>
          ch.queueDeclare('odd', { durable: true }, { 'x-queue-type': 'bogus' }),
        ),
      ).toBe(
        `PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'odd' in vhost '/': "unsupported queue type 'bogus'" (406)`,
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(1);
    });
  });

  // RabbitMQ accepts it, then closes every connection it would deliver the dead letter to (541):
  // a routing key longer than 255 bytes cannot be sent in basic.deliver or basic.get-ok
  it('refuses an x-dead-letter-routing-key longer than a routing key can be with 406', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const dlx = { 'x-dead-letter-exchange': 'amq.topic' };
      expect(
        await amqpClientRefusal(client, (ch) =>
          ch.queueDeclare('long', {}, { ...dlx, 'x-dead-letter-routing-key': 'k'.repeat(256) }),
        ),
      ).toBe(
        `PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'long' in vhost '/': "a routing key of 256 bytes is longer than 255" (406)`,
      );
      const ch = await client.channel();
      await ch.queueDeclare('fits', {}, { ...dlx, 'x-dead-letter-routing-key': 'k'.repeat(255) });
      await ch.queueDeclare('dead', {});
      await ch.queueBind('dead', 'amq.topic', '#');
      await ch.basicPublish('', 'fits', 'x', { expiration: '0' });
      const m = await ch.basicGet('dead', { noAck: true });
      expect(m?.routingKey).toBe('k'.repeat(255));
      await client.close();
      expect(errors).toHaveLength(1);
    });
  });
});

// ------------------------------------------------------------------ exclusive queues

describe('exclusive queues', () => {
  it('lock out every other connection with 405 RESOURCE_LOCKED', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const owner = await model.createConfirmChannel();
      await owner.assertQueue('ex', { exclusive: true });
      await owner.bindQueue('ex', 'amq.direct', 'k');
      owner.sendToQueue('ex', Buffer.from('kept'));
      await owner.waitForConfirms();

      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const attempts: [string, (ch: AMQPChannel) => Promise<unknown>][] = [
        ['declare exclusive', (ch) => ch.queueDeclare('ex', { durable: false, exclusive: true })],
        ['declare shared', (ch) => ch.queueDeclare('ex', { durable: false })],
        ['declare passive', (ch) => ch.queueDeclare('ex', { passive: true })],
        ['consume', (ch) => ch.basicConsume('ex', {}, () => {})],
        ['bind', (ch) => ch.queueBind('ex', 'amq.fanout', '')],
        ['unbind', (ch) => ch.queueUnbind('ex', 'amq.direct', 'k')],
        ['purge', (ch) => ch.queuePurge('ex')],
        ['delete', (ch) => ch.queueDelete('ex')],
        ['get', (ch) => ch.basicGet('ex')],
      ];
      for (const [what, op] of attempts) {
        expect([what, await amqpClientRefusal(client, op)]).toEqual([what, `${LOCKED('ex')} (405)`]);
      }
      await amqpClientStillWorks(client);

      // amqplib sees the same refusal
      const { model: other, errors: otherErrors } = await connectAmqplib(broker.url);
      expect(await amqplibRefusal(other, (ch) => ch.checkQueue('ex'))).toEqual({
        code: 405,
        text: LOCKED('ex'),
      });
      expect(await amqplibRefusal(other, (ch) => ch.get('ex'))).toEqual({ code: 405, text: LOCKED('ex') });
      await amqplibStillWorks(other);

      // the owner's queue is untouched: binding, message and no consumers
      expect(await owner.checkQueue('ex')).toEqual({ queue: 'ex', messageCount: 1, consumerCount: 0 });
      owner.publish('amq.direct', 'k', Buffer.from('via binding'));
      await owner.waitForConfirms();
      expect(bodyOf(await owner.get('ex', { noAck: true }))).toBe('kept');
      expect(bodyOf(await owner.get('ex', { noAck: true }))).toBe('via binding');
      await other.close();
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(otherErrors).toEqual([]);
      expect(clientErrors).toHaveLength(attempts.length);
    });
  });

  it('accept messages published by another connection', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const { name } = await ch.queueDeclare('', { durable: false, exclusive: true });
      const { model, errors: modelErrors } = await connectAmqplib(broker.url);
      const pub = await model.createConfirmChannel();
      pub.sendToQueue(name, Buffer.from('from outside'));
      await pub.waitForConfirms();
      const msg = await ch.basicGet(name);
      expect(msg?.bodyString()).toBe('from outside');
      await model.close();
      await client.close();
      expect(errors).toEqual([]);
      expect(modelErrors).toEqual([]);
    });
  });

  it('outlive the channel that declared them and are deleted when their connection closes', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('ex', { durable: false, exclusive: true });
      const named = await ch.queueDeclare('', { durable: false, exclusive: true });
      await ch.confirmSelect();
      await ch.basicPublish('', 'ex', 'pending');
      await ch.close();
      const again = await client.channel();
      expect(await again.queueDeclare('ex', { passive: true })).toEqual({
        name: 'ex',
        messageCount: 1,
        consumerCount: 0,
      });

      const { model, errors: modelErrors } = await connectAmqplib(broker.url);
      expect(broker.connections.size).toBe(2);
      await client.close();
      await connectionsDrop(broker, 1);
      expect(await amqplibRefusal(model, (c) => c.checkQueue('ex'))).toEqual({
        code: 404,
        text: "NOT_FOUND - no queue 'ex' in vhost '/'",
      });
      expect(await amqplibRefusal(model, (c) => c.checkQueue(named.name))).toEqual({
        code: 404,
        text: `NOT_FOUND - no queue '${named.name}' in vhost '/'`,
      });
      // the name is free again
      const reuse = await model.createChannel();
      expect(await reuse.assertQueue('ex', { durable: false })).toEqual({
        queue: 'ex',
        messageCount: 0,
        consumerCount: 0,
      });
      await model.close();
      expect(errors).toEqual([]);
      expect(modelErrors).toEqual([]);
    });
  });

  it('are deleted when their connection drops without closing', async () => {
    await withBroker(async (broker) => {
      // a raw peer owns the queue and then drops its socket without connection.close
      const raw = await RawClient.open(broker.port);
      raw.send((w) => M.encodeChannelOpen(w, 1, {}));
      await raw.expectMethod(Method.CHANNEL_OPEN_OK);
      raw.send((w) => declareQueue(w, 1, 'ex', {}, { exclusive: true }));
      await raw.expectMethod(Method.QUEUE_DECLARE_OK);
      const { client, errors } = await connectAmqpClient(broker.url);
      expect(await amqpClientRefusal(client, (c) => c.queueDeclare('ex', { passive: true }))).toBe(
        `${LOCKED('ex')} (405)`,
      );
      raw.close();
      await connectionsDrop(broker, 1);
      expect(await amqpClientRefusal(client, (c) => c.queueDeclare('ex', { passive: true }))).toBe(
        "NOT_FOUND - no queue 'ex' in vhost '/' (404)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(2);
    });
  });
});

// ------------------------------------------------------------------ auto-delete queues

describe('auto-delete queues', () => {
  it('stay until they have had a consumer and are deleted when the last consumer is cancelled', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('ad', { durable: false, autoDelete: true });
      await ch.confirmSelect();
      await ch.basicPublish('', 'ad', 'waiting');
      // never consumed: it stays, with its message
      const check = await client.channel();
      expect(await check.queueDeclare('ad', { passive: true })).toEqual({
        name: 'ad',
        messageCount: 1,
        consumerCount: 0,
      });
      const got: string[] = [];
      const first = await ch.basicConsume('ad', { noAck: true }, (m) => {
        got.push(m.bodyString() ?? '');
      });
      const second = await ch.basicConsume('ad', { noAck: true }, () => {});
      await waitFor(() => got.length === 1, 'the waiting message');
      expect(got).toEqual(['waiting']);
      await first.cancel();
      // one consumer left: still there
      expect(await check.queueDeclare('ad', { passive: true })).toEqual({
        name: 'ad',
        messageCount: 0,
        consumerCount: 1,
      });
      await second.cancel();
      expect(await amqpClientRefusal(client, (c) => c.queueDeclare('ad', { passive: true }))).toBe(
        "NOT_FOUND - no queue 'ad' in vhost '/' (404)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(1);
    });
  });

  it('are deleted when the channel of their last consumer closes', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('ad', { durable: false, autoDelete: true });
      const consumer = await model.createChannel();
      await consumer.consume('ad', () => {});
      expect(await ch.checkQueue('ad')).toEqual({ queue: 'ad', messageCount: 0, consumerCount: 1 });
      await consumer.close();
      expect(await amqplibRefusal(model, (c) => c.checkQueue('ad'))).toEqual({
        code: 404,
        text: "NOT_FOUND - no queue 'ad' in vhost '/'",
      });
      await amqplibStillWorks(model);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ queue.purge

describe('queue.purge', () => {
  it('returns the number of ready messages removed and leaves unacknowledged ones', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('p', { durable: false });
      for (const body of ['a', 'b', 'c']) ch.sendToQueue('p', Buffer.from(body));
      await ch.waitForConfirms();
      const held = await ch.get('p', { noAck: false });
      if (held === false) throw new Error('expected a message, got get-empty');
      expect(held.content.toString()).toBe('a');
      expect(await ch.purgeQueue('p')).toEqual({ messageCount: 2 });
      expect(await ch.checkQueue('p')).toEqual({ queue: 'p', messageCount: 0, consumerCount: 0 });
      // the unacknowledged message survived the purge
      ch.nack(held, false, true);
      const back = await ch.get('p', { noAck: true });
      expect(back && [back.content.toString(), back.fields.redelivered]).toEqual(['a', true]);
      expect(await ch.purgeQueue('p')).toEqual({ messageCount: 0 });

      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      await ach.confirmSelect();
      for (let i = 0; i < 5; i++) await ach.basicPublish('', 'p', `m${i}`);
      expect(await ach.queuePurge('p')).toEqual({ messageCount: 5 });
      expect(await ach.basicGet('p')).toBeNull();
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it('fails on a missing queue with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      expect(await amqplibRefusal(model, (ch) => ch.purgeQueue('nope'))).toEqual({
        code: 404,
        text: "NOT_FOUND - no queue 'nope' in vhost '/'",
      });
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(await amqpClientRefusal(client, (ch) => ch.queuePurge('nope'))).toBe(
        "NOT_FOUND - no queue 'nope' in vhost '/' (404)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(1);
    });
  });
});

// ------------------------------------------------------------------ queue.delete

describe('queue.delete', () => {
  it('returns the number of ready messages deleted with the queue', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('d', { durable: false });
      for (const body of ['a', 'b', 'c']) ch.sendToQueue('d', Buffer.from(body));
      await ch.waitForConfirms();
      expect(await ch.deleteQueue('d')).toEqual({ messageCount: 3 });
      expect(await amqplibRefusal(model, (c) => c.checkQueue('d'))).toEqual({
        code: 404,
        text: "NOT_FOUND - no queue 'd' in vhost '/'",
      });
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      await ach.queueDeclare('e', { durable: true });
      await ach.confirmSelect();
      await ach.basicPublish('', 'e', 'x');
      await ach.basicPublish('', 'e', 'y');
      expect(await ach.queueDelete('e')).toEqual({ messageCount: 2 });
      expect(await ach.queueDelete('e')).toEqual({ messageCount: 0 });
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it("refuses if-unused on a queue with a consumer with 406 'in use' and deletes it once unused", async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('q', { durable: false });
      await ch.confirmSelect();
      await ch.basicPublish('', 'q', 'x');
      const consumer = await ch.basicConsume('q', { noAck: false }, () => {});
      expect(await amqpClientRefusal(client, (c) => c.queueDelete('q', { ifUnused: true }))).toBe(
        "PRECONDITION_FAILED - queue 'q' in vhost '/' in use (406)",
      );
      // refused: the queue and its consumer are still there
      const check = await client.channel();
      expect(await check.queueDeclare('q', { passive: true })).toMatchObject({ name: 'q', consumerCount: 1 });
      await consumer.cancel();
      await ch.basicRecover(true);
      // unused now (messages do not matter to if-unused)
      expect(await check.queueDelete('q', { ifUnused: true })).toEqual({ messageCount: 1 });
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toHaveLength(1);
    });
  });

  it("refuses if-empty on a queue with messages with 406 'not empty' and deletes it once empty", async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('q', { durable: false });
      ch.sendToQueue('q', Buffer.from('x'));
      await ch.waitForConfirms();
      expect(await amqplibRefusal(model, (c) => c.deleteQueue('q', { ifEmpty: true }))).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty",
      });
      expect(await ch.checkQueue('q')).toEqual({ queue: 'q', messageCount: 1, consumerCount: 0 });
      await ch.purgeQueue('q');
      expect(await ch.deleteQueue('q', { ifEmpty: true })).toEqual({ messageCount: 0 });
      await amqplibStillWorks(model);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('succeeds with a message count of 0 for a queue that does not exist', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      expect(await ch.deleteQueue('never-declared')).toEqual({ messageCount: 0 });
      expect(await ch.deleteQueue('never-declared', { ifUnused: true, ifEmpty: true })).toEqual({
        messageCount: 0,
      });
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      expect(await ach.queueDelete('never-declared')).toEqual({ messageCount: 0 });
      expect(ach.closed).toBe(false);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it('cancels the consumers of a deleted queue with basic.cancel and keeps their channels open', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const { ch: consumerCh, errors: channelErrors } = await amqplibChannel(model);
      await consumerCh.assertQueue('doomed', { durable: false });
      const received: (amqplib.ConsumeMessage | null)[] = [];
      const cancelled = new Promise<void>((resolve) => {
        void consumerCh.consume('doomed', (m) => {
          received.push(m);
          if (m === null) resolve();
        });
      });
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      const consumer = await ach.basicConsume('doomed', { noAck: true }, () => {});
      const outcome = consumer.wait().then(
        () => 'ended',
        (e: Error) => e.message,
      );
      // deleted from a third channel
      const deleter = await model.createChannel();
      expect(await deleter.deleteQueue('doomed')).toEqual({ messageCount: 0 });
      await cancelled;
      // amqplib calls the consume callback with null
      expect(received).toEqual([null]);
      // amqp-client ends the consumer with an error
      expect(await outcome).toBe('Consumer cancelled by the server');
      expect(ach.consumers.size).toBe(0);
      // both channels are still open
      expect(ach.closed).toBe(false);
      expect(await ach.queueDeclare('after', { durable: false })).toMatchObject({ name: 'after' });
      expect(await consumerCh.checkQueue('after')).toEqual({
        queue: 'after',
        messageCount: 0,
        consumerCount: 0,
      });
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(channelErrors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });
});
