/**
 * Quorum queues as RabbitMQ 3.10 clients see them: every delivery carries x-delivery-count (0
 * the first time), x-delivery-limit dead-letters (or drops) a message returned more often than
 * the limit, and each queue type refuses the arguments only other types take. Expected values
 * were checked against RabbitMQ 3.10.8 with the same client calls.
 */
import type { AMQPChannel, AMQPMessage } from '@cloudamqp/amqp-client';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { amqpClientRefusal, connectAmqpClient } from '../helpers/refusals.js';
import { waitFor } from '../helpers/wait.js';

const QUORUM = { 'x-queue-type': 'quorum' };

/** Publishes each body on a confirm channel in turn: 'ack' or 'nack' for each. */
async function publishAll(ch: AMQPChannel, q: string, bodies: string[]): Promise<string[]> {
  const answers: string[] = [];
  for (const b of bodies)
    answers.push(
      await ch.basicPublish('', q, b).then(
        () => 'ack',
        () => 'nack',
      ),
    );
  return answers;
}

function deliveryCount(m: AMQPMessage | null): unknown {
  return m?.properties.headers?.['x-delivery-count'];
}

describe('quorum queues', () => {
  it('x-delivery-count: basic.get always tells it (from 0), a consumer from the first redelivery', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qq', { durable: true }, QUORUM);
      await ch.queueDeclare('classic', { durable: true });
      await ch.basicPublish('', 'qq', 'm', { headers: { h: 1 } });
      await ch.basicPublish('', 'classic', 'c');
      const counts: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        const m = await ch.basicGet('qq', { noAck: false });
        counts.push(deliveryCount(m));
        expect(m?.properties.headers?.['h']).toBe(1);
        expect(m?.redelivered).toBe(i > 0);
        await m!.nack(true);
      }
      expect(counts).toEqual([0, 1, 2]);
      // consumers see the count once a message was delivered before; a first delivery has none
      await ch.basicPublish('', 'qq', 'n', { headers: { h: 2 } });
      const seen: unknown[] = [];
      await ch.basicConsume('qq', { noAck: false }, (m) => {
        seen.push(deliveryCount(m));
        void m.ack();
      });
      await waitFor(() => seen.length === 2, 'the consumer deliveries');
      expect(seen).toEqual([3, undefined]);
      // classic queues add nothing
      const c = await ch.basicGet('classic', { noAck: true });
      expect(c?.properties.headers).toBeUndefined();
      await client.close();
    });
  });

  it('x-delivery-limit dead-letters a message returned more often than the limit, however it came back', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('dlq', { durable: true });
      await ch.queueDeclare(
        'qq',
        { durable: true },
        {
          ...QUORUM,
          'x-delivery-limit': 2,
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': 'dlq',
        },
      );
      // returned by nack(requeue)
      await ch.basicPublish('', 'qq', 'poison', { headers: { a: 1 } });
      const counts: unknown[] = [];
      for (;;) {
        const m = await ch.basicGet('qq', { noAck: false });
        if (m === null) break;
        counts.push(deliveryCount(m));
        await m.nack(true);
      }
      expect(counts).toEqual([0, 1, 2]);
      const dead = await ch.basicGet('dlq', { noAck: true });
      expect(dead?.bodyString()).toBe('poison');
      const h = dead!.properties.headers!;
      expect(h['a']).toBe(1);
      expect(h['x-delivery-count']).toBeUndefined();
      expect(h['x-first-death-reason']).toBe('delivery_limit');
      const death = (h['x-death'] as Record<string, unknown>[])[0]!;
      expect(death['reason']).toBe('delivery_limit');
      expect(death['queue']).toBe('qq');
      expect(death['count']).toBe(1);

      // returned by closing the channel that held it
      await ch.basicPublish('', 'qq', 'held');
      const held: unknown[] = [];
      for (;;) {
        const other = await client.channel();
        const m = await other.basicGet('qq', { noAck: false });
        if (m === null) break;
        held.push(deliveryCount(m));
        await other.close();
      }
      expect(held).toEqual([0, 1, 2]);
      expect((await ch.basicGet('dlq', { noAck: true }))?.bodyString()).toBe('held');

      // without a dead-letter exchange the message is dropped
      await ch.queueDeclare('qq0', { durable: true }, { ...QUORUM, 'x-delivery-limit': 0 });
      await ch.basicPublish('', 'qq0', 'once');
      const once = await ch.basicGet('qq0', { noAck: false });
      expect(deliveryCount(once)).toBe(0);
      await once!.nack(true);
      expect(await ch.basicGet('qq0', { noAck: false })).toBeNull();
      expect((await ch.queueDeclare('qq0', { passive: true })).messageCount).toBe(0);
      await client.close();
    });
  });

  it('redeclares compare the quorum arguments in RabbitMQ 3.10.8 order, x-queue-type before x-delivery-limit', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qa', { durable: true }, { ...QUORUM, 'x-delivery-limit': 5, 'x-max-length': 5 });
      await ch.queueDeclare('qb', { durable: true }, { ...QUORUM, 'x-quorum-initial-group-size': 1 });
      const refusal = (name: string, args: Record<string, unknown>) =>
        amqpClientRefusal(client, (c) => c.queueDeclare(name, { durable: true }, args));
      expect(await refusal('qa', { 'x-max-length': 6 })).toContain("inequivalent arg 'x-max-length'");
      expect(await refusal('qa', { 'x-max-length': 5 })).toContain(
        "inequivalent arg 'x-queue-type' for queue 'qa' in vhost '/': received none but current is the value 'quorum' of type 'longstr'",
      );
      expect(await refusal('qb', { ...QUORUM, 'x-quorum-initial-group-size': 3 })).toContain(
        "inequivalent arg 'x-quorum-initial-group-size'",
      );
      await client.close();
    });
  });

  it('reject-publish refuses only once the queue is over its limit; delete with if-empty or if-unused is 540', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.confirmSelect();
      await ch.queueDeclare(
        'qq',
        { durable: true },
        { ...QUORUM, 'x-max-length': 2, 'x-overflow': 'reject-publish' },
      );
      const answers = await publishAll(ch, 'qq', ['m0', 'm1', 'm2', 'm3']);
      // RabbitMQ 3.10: ack, ack, ack, nack (a classic queue nacks the third)
      expect(answers).toEqual(['ack', 'ack', 'ack', 'nack']);
      expect((await ch.queueDeclare('qq', { passive: true })).messageCount).toBe(3);
      for (const [opts, flag] of [
        [{ ifEmpty: true }, 'if-empty'],
        [{ ifUnused: true }, 'if-unused'],
      ] as const) {
        const c = (await connectAmqpClient(broker.url)).client;
        const err = await (await c.channel()).queueDelete('qq', opts).catch((e: Error) => e);
        expect(String(err)).toContain(
          `NOT_IMPLEMENTED - cannot delete queue 'qq' in vhost '/'. queue.delete operations with ${flag} flag set are not supported by quorum queues`,
        );
        expect(c.closed).toBe(true);
      }
      await client.close();
    });
  });

  it('reject-publish-dlx drops the head instead; basic.get with a single active consumer is 405; group sizes are checked', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.confirmSelect();
      await ch.queueDeclare(
        'qq',
        { durable: true },
        { ...QUORUM, 'x-max-length': 1, 'x-overflow': 'reject-publish-dlx' },
      );
      const answers = await publishAll(ch, 'qq', ['a', 'b', 'c']);
      // RabbitMQ 3.10.8: every publish confirmed, the newest kept
      expect(answers).toEqual(['ack', 'ack', 'ack']);
      const m = await ch.basicGet('qq', { noAck: true });
      expect(m?.bodyToString()).toBe('c');
      expect(await ch.basicGet('qq', { noAck: true })).toBeNull();

      await ch.queueDeclare('sac', { durable: true }, { ...QUORUM, 'x-single-active-consumer': true });
      expect(await amqpClientRefusal(client, (c) => c.basicGet('sac'))).toContain(
        "RESOURCE_LOCKED - cannot obtain access to locked queue 'sac' in vhost '/'. basic.get operations are not supported by quorum queues with single active consumer",
      );
      for (const [v, text] of [
        [0, '{value_zero,0}'],
        [-1, '{value_negative,-1}'],
        ['x', '"expected integer, got longstr"'],
      ] as const)
        expect(
          await amqpClientRefusal(client, (c) =>
            c.queueDeclare('g', { durable: true }, { ...QUORUM, 'x-quorum-initial-group-size': v }),
          ),
        ).toContain(`invalid arg 'x-quorum-initial-group-size' for queue 'g' in vhost '/': ${text}`);
      await ch.queueDeclare('g', { durable: true }, { ...QUORUM, 'x-quorum-initial-group-size': 3 });
      await client.close();
    });
  });

  it('each unsettled basic.get counts as a consumer in declare-ok, as in RabbitMQ 3.10.8', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qg', { durable: true }, QUORUM);
      for (let i = 0; i < 5; i++) await ch.basicPublish('', 'qg', `m${i}`);
      const g1 = await client.channel();
      const g2 = await client.channel();
      const counts: string[] = [];
      const count = async () => {
        const ok = await ch.queueDeclare('qg', { passive: true });
        counts.push(`${ok.messageCount}/${ok.consumerCount}`);
      };
      const a = await g1.basicGet('qg', { noAck: false });
      const b = await g1.basicGet('qg', { noAck: false });
      const x = await g2.basicGet('qg', { noAck: false });
      await g1.basicGet('qg', { noAck: true });
      await count();
      await a!.ack();
      await count();
      await x!.nack(true);
      await count();
      await g1.close(); // b comes back
      await count();
      expect(b!.bodyString()).toBe('m1');
      expect(counts).toEqual(['1/3', '1/2', '2/1', '3/0']);
      // classic queues count only consumers
      await ch.queueDeclare('cg', { durable: true });
      await ch.basicPublish('', 'cg', 'c');
      await g2.basicGet('cg', { noAck: false });
      expect((await ch.queueDeclare('cg', { passive: true })).consumerCount).toBe(0);
      await client.close();
    });
  });

  it('exclusive consumers are ignored; x-dead-letter-strategy is checked', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qq', { durable: true }, QUORUM);
      await ch.basicConsume('qq', { noAck: true, exclusive: true }, () => {});
      await ch.basicConsume('qq', { noAck: true, exclusive: true }, () => {});
      expect((await ch.queueDeclare('qq', { passive: true })).consumerCount).toBe(2);
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('q2', { durable: true }, { ...QUORUM, 'x-dead-letter-strategy': 'bogus' }),
        ),
      ).toContain("invalid arg 'x-dead-letter-strategy' for queue 'q2' in vhost '/': invalid_dlx_strategy");
      expect(
        await amqpClientRefusal(client, (c) =>
          c.queueDeclare('q2', { durable: true }, { ...QUORUM, 'x-dead-letter-strategy': 1 }),
        ),
      ).toContain("invalid arg 'x-dead-letter-strategy' for queue 'q2' in vhost '/': {unacceptable_type,");
      await client.close();
    });
  });

  it('refuses a consumer on a channel with a global prefetch (540), as RabbitMQ 3.10', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('qq', { durable: true }, QUORUM);
      await ch.basicQos(10, 0, true);
      const err = await ch.basicConsume('qq', { noAck: false }, () => {}).catch((e: Error) => e);
      expect(String(err)).toContain("NOT_IMPLEMENTED - queue 'qq' in vhost '/' does not support global qos");
      expect(client.closed).toBe(true);
    });
  });

  it("refuses another queue type's arguments with 406, as RabbitMQ 3.10 does", async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const cases: [string, Record<string, unknown>, string][] = [
        [
          'c1',
          { 'x-delivery-limit': 3 },
          "invalid arg 'x-delivery-limit' for queue 'c1' in vhost '/' of queue type rabbit_classic_queue",
        ],
        [
          'c2',
          { 'x-max-age': '1D' },
          "invalid arg 'x-max-age' for queue 'c2' in vhost '/' of queue type rabbit_classic_queue",
        ],
        [
          'q1',
          { ...QUORUM, 'x-queue-mode': 'lazy' },
          "invalid arg 'x-queue-mode' for queue 'q1' in vhost '/' of queue type rabbit_quorum_queue",
        ],
        [
          'q2',
          { ...QUORUM, 'x-max-priority': 5 },
          "invalid arg 'x-max-priority' for queue 'q2' in vhost '/' of queue type rabbit_quorum_queue",
        ],
        [
          's1',
          { 'x-queue-type': 'stream', 'x-message-ttl': 1000 },
          "invalid arg 'x-message-ttl' for queue 's1' in vhost '/' of queue type rabbit_stream_queue",
        ],
        [
          'd1',
          { 'x-dead-letter-routing-key': 'k' },
          "invalid arg 'x-dead-letter-routing-key' for queue 'd1' in vhost '/': routing_key_but_no_dlx_defined",
        ],
      ];
      for (const [name, args, text] of cases) {
        expect(await amqpClientRefusal(client, (ch) => ch.queueDeclare(name, { durable: true }, args))).toBe(
          `PRECONDITION_FAILED - ${text} (406)`,
        );
      }
      // what each type does take
      const ch = await client.channel();
      await ch.queueDeclare('q3', { durable: true }, { ...QUORUM, 'x-delivery-limit': 3, 'x-max-length': 5 });
      await ch.queueDeclare('s2', { durable: true }, { 'x-queue-type': 'stream', 'x-max-age': '1D' });
      await ch.queueDeclare('c3', { durable: true }, { 'x-queue-mode': 'lazy', 'x-max-priority': 5 });
      await client.close();
      expect(errors).toHaveLength(cases.length);
    });
  });
});
