/**
 * AMQP transactions (tx.select / commit / rollback) through @cloudamqp/amqp-client: publishes and
 * acknowledgements are held until commit, rollback forgets them, and tx.commit/rollback on a
 * channel that is not transactional is a 406. Expected behaviour and texts are RabbitMQ 3.10's.
 */
import { type AMQPChannel, AMQPClient, type AMQPError, type AMQPMessage } from '@cloudamqp/amqp-client';
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

/** Connects amqp-client and records every error it reports. */
async function connectAmqpClient(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}

/** Ready messages in `queue`, asked on `ch` (a round trip that follows everything sent before it). */
async function readyCount(ch: AMQPChannel, queue: string): Promise<number> {
  return (await ch.queueDeclare(queue, { passive: true })).messageCount;
}

/** basic.get until the queue is empty; returns "body" or "body (redelivered)" for each message. */
async function drain(ch: AMQPChannel, queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const m = await ch.basicGet(queue, { noAck: true });
    if (m === null) return out;
    out.push(`${m.bodyToString()}${m.redelivered ? ' (redelivered)' : ''}`);
  }
}

describe('transactional publishes', () => {
  it('are not enqueued before tx.commit, and commit enqueues them in publish order', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('tx-order');
      await ch.txSelect();
      for (let i = 1; i <= 5; i++) await ch.basicPublish('', 'tx-order', `m${i}`);
      expect(await readyCount(ch, 'tx-order')).toBe(0);
      await ch.txCommit();
      expect(await readyCount(ch, 'tx-order')).toBe(5);
      expect(await drain(ch, 'tx-order')).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('reach a consumer on another connection only after commit, in order', async () => {
    await withBroker(async (broker) => {
      const { client: consumerClient } = await connectAmqpClient(broker.url);
      const { client, errors } = await connectAmqpClient(broker.url);
      const cch = await consumerClient.channel();
      await cch.queueDeclare('tx-consumed');
      const received: string[] = [];
      await cch.basicConsume('tx-consumed', { noAck: true }, (m) => {
        received.push(m.bodyToString() ?? '');
      });
      const ch = await client.channel();
      await ch.txSelect();
      for (let i = 1; i <= 3; i++) await ch.basicPublish('', 'tx-consumed', `c${i}`);
      // the queue has its consumer and nothing to give it before the commit
      const before = await ch.queueDeclare('tx-consumed', { passive: true });
      expect(before).toMatchObject({ messageCount: 0, consumerCount: 1 });
      expect(received).toEqual([]);
      await ch.txCommit();
      await waitFor(() => received.length === 3, 'the committed messages');
      expect(received).toEqual(['c1', 'c2', 'c3']);
      await client.close();
      await consumerClient.close();
      expect(errors).toEqual([]);
    });
  });

  it('are discarded by tx.rollback, and the channel stays transactional', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('tx-rollback');
      await ch.txSelect();
      await ch.basicPublish('', 'tx-rollback', 'discarded-1');
      await ch.basicPublish('', 'tx-rollback', 'discarded-2');
      await ch.txRollback();
      expect(await readyCount(ch, 'tx-rollback')).toBe(0);
      // still transactional: the next publish also waits for a commit
      await ch.basicPublish('', 'tx-rollback', 'kept');
      expect(await readyCount(ch, 'tx-rollback')).toBe(0);
      await ch.txCommit();
      expect(await drain(ch, 'tx-rollback')).toEqual(['kept']);
      // committing again with nothing pending is fine and enqueues nothing
      await ch.txCommit();
      expect(await readyCount(ch, 'tx-rollback')).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a mandatory unroutable publish is returned at commit, before commit-ok', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const events: string[] = [];
      ch.onReturn = (m) => {
        events.push(`return ${m.replyCode} ${m.replyText} ${m.routingKey} ${m.bodyToString()}`);
      };
      await ch.txSelect();
      await ch.basicPublish('', 'tx-nowhere', 'lost', {}, true);
      await readyCount(ch, 'amq.rabbitmq.reply-to'); // a round trip: nothing returned yet
      expect(events).toEqual([]);
      await ch.txCommit().then(() => events.push('commit-ok'));
      expect(events).toEqual(['return 312 NO_ROUTE tx-nowhere lost', 'commit-ok']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('are routed by the bindings in place when they were published, not at commit', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const admin = await client.channel();
      await admin.queueDeclare('tx-bound');
      await admin.queueBind('tx-bound', 'amq.direct', 'tx-key');
      await ch.txSelect();
      await ch.basicPublish('amq.direct', 'tx-key', 'routed-at-publish');
      await readyCount(ch, 'tx-bound'); // the publish has been processed
      await admin.queueUnbind('tx-bound', 'amq.direct', 'tx-key');
      await ch.txCommit();
      expect(await drain(admin, 'tx-bound')).toEqual(['routed-at-publish']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('to an exchange that does not exist fail at once with 404, not at commit', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.txSelect();
      await ch.basicPublish('no-such-exchange', 'k', 'x');
      await expect(ch.queueDeclare('amq.rabbitmq.reply-to', { passive: true })).rejects.toThrow(
        "channel 1 closed: NOT_FOUND - no exchange 'no-such-exchange' in vhost '/' (404)",
      );
      expect(ch.closed).toBe(true);
      await client.close();
      // amqp-client also reports a channel closed by the broker through onerror
      expect(errors.map((e) => e.message)).toEqual([
        "Channel 1 closed: channel 1 closed: NOT_FOUND - no exchange 'no-such-exchange' in vhost '/' (404)",
      ]);
    });
  });
});

describe('transactional acknowledgements', () => {
  it('an ack inside a transaction takes effect only at commit', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const setup = await client.channel();
      await setup.queueDeclare('tx-ack');
      await setup.basicPublish('', 'tx-ack', 'a1');
      await setup.basicPublish('', 'tx-ack', 'a2');
      const ch = await client.channel();
      await ch.txSelect();
      await ch.basicQos(1);
      const received: AMQPMessage[] = [];
      await ch.basicConsume('tx-ack', { noAck: false }, (m) => {
        received.push(m);
      });
      await waitFor(() => received.length === 1, 'the first delivery');
      await received[0]!.ack();
      // prefetch 1: the second message would follow at once if the ack had taken effect
      expect(await readyCount(ch, 'tx-ack')).toBe(1);
      expect(received.map((m) => m.bodyToString())).toEqual(['a1']);
      await ch.txCommit();
      await waitFor(() => received.length === 2, 'the second delivery after commit');
      expect(received.map((m) => m.bodyToString())).toEqual(['a1', 'a2']);
      await received[1]!.ack();
      await ch.txCommit();
      await ch.close();
      // both acks were committed: nothing goes back to the queue when the channel closes
      expect(await readyCount(setup, 'tx-ack')).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a consumer acking in transactions goes on during a resource alarm: only publishers are held', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const setup = await client.channel();
      await setup.queueDeclare('tx-alarm');
      for (const b of ['a', 'b', 'c']) await setup.basicPublish('', 'tx-alarm', b);
      await readyCount(setup, 'tx-alarm');
      broker.flow.set('a test', true); // an alarm of its own, which the memory and disk checks leave alone
      try {
        const ch = await client.channel();
        await ch.txSelect();
        const acked: string[] = [];
        for (let i = 0; i < 3; i++) {
          const m = await ch.basicGet('tx-alarm', { noAck: false });
          await m!.ack();
          await ch.txCommit(); // held until the alarm cleared, on the old code, from the second on
          acked.push(m!.bodyToString()!);
        }
        expect(acked).toEqual(['a', 'b', 'c']);
        expect(await readyCount(setup, 'tx-alarm')).toBe(0);
      } finally {
        broker.flow.set('a test', false);
      }
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('an ack followed by rollback leaves the message unacked, so closing the channel requeues it as redelivered', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const setup = await client.channel();
      await setup.queueDeclare('tx-ack-rollback');
      await setup.basicPublish('', 'tx-ack-rollback', 'r1');
      const ch = await client.channel();
      await ch.txSelect();
      const m = await ch.basicGet('tx-ack-rollback', { noAck: false });
      expect(m?.bodyToString()).toBe('r1');
      await m!.ack();
      await ch.txRollback();
      expect(await readyCount(setup, 'tx-ack-rollback')).toBe(0);
      await ch.close();
      expect(await drain(setup, 'tx-ack-rollback')).toEqual(['r1 (redelivered)']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('after a rollback the same delivery tag can be acked again and committed', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const setup = await client.channel();
      await setup.queueDeclare('tx-ack-again');
      await setup.basicPublish('', 'tx-ack-again', 'x');
      const ch = await client.channel();
      await ch.txSelect();
      const m = await ch.basicGet('tx-ack-again', { noAck: false });
      // basicAck rather than m.ack(): amqp-client sends a message's ack only once
      await ch.basicAck(m!.deliveryTag);
      await ch.txRollback();
      await ch.basicAck(m!.deliveryTag);
      await ch.txCommit();
      await ch.close();
      expect(await readyCount(setup, 'tx-ack-again')).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a nack with requeue inside a transaction requeues the message at commit', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('tx-nack');
      await ch.basicPublish('', 'tx-nack', 'n1');
      await ch.basicPublish('', 'tx-nack', 'n2');
      await ch.txSelect();
      const m1 = await ch.basicGet('tx-nack', { noAck: false });
      const m2 = await ch.basicGet('tx-nack', { noAck: false });
      await m1!.ack();
      await m2!.nack(true);
      expect(await readyCount(ch, 'tx-nack')).toBe(0);
      await ch.txCommit();
      expect(await drain(ch, 'tx-nack')).toEqual(['n2 (redelivered)']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('acking the same delivery tag twice in one transaction closes the channel with 406 unknown delivery tag', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('tx-double-ack');
      await ch.basicPublish('', 'tx-double-ack', 'd');
      await ch.txSelect();
      const m = await ch.basicGet('tx-double-ack', { noAck: false });
      await ch.basicAck(m!.deliveryTag);
      await ch.basicAck(m!.deliveryTag);
      await expect(ch.txCommit()).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - unknown delivery tag ${m!.deliveryTag} (406)`,
      );
      await client.close();
    });
  });
});

describe('tx.select, tx.commit and tx.rollback', () => {
  it('tx.select is idempotent', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.txSelect();
      await ch.txSelect();
      await ch.queueDeclare('tx-twice');
      await ch.basicPublish('', 'tx-twice', 'p');
      expect(await readyCount(ch, 'tx-twice')).toBe(0);
      await ch.txCommit();
      expect(await readyCount(ch, 'tx-twice')).toBe(1);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('tx.commit without tx.select closes the channel with 406 PRECONDITION_FAILED - channel is not transactional', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await expect(ch.txCommit()).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - channel is not transactional (406)`,
      );
      expect(ch.closed).toBe(true);
      // the connection is unaffected
      const other = await client.channel();
      await other.queueDeclare('still-serving');
      await client.close();
    });
  });

  it('tx.rollback without tx.select closes the channel with 406 PRECONDITION_FAILED - channel is not transactional', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await expect(ch.txRollback()).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - channel is not transactional (406)`,
      );
      expect(ch.closed).toBe(true);
      await client.close();
    });
  });

  it('the 406 for tx.commit and tx.rollback on a plain channel names tx.commit (90/20) and tx.rollback (90/30)', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => {
          M.encodeChannelOpen(w, 1, {});
          M.encodeChannelOpen(w, 2, {});
          M.encodeTxCommit(w, 1, {});
          M.encodeTxRollback(w, 2, {});
        });
        await c.until(
          () => c.frames.filter((f) => f.methodId === Method.CHANNEL_CLOSE).length === 2,
          'both channels to be closed',
        );
        const closes = c.frames
          .filter((f) => f.methodId === Method.CHANNEL_CLOSE)
          .map((f) => ({ channel: f.channel, ...f.args }))
          .sort((a, b) => a.channel - b.channel);
        expect(closes).toEqual([
          {
            channel: 1,
            replyCode: 406,
            replyText: 'PRECONDITION_FAILED - channel is not transactional',
            classId: 90,
            methodId: 20,
          },
          {
            channel: 2,
            replyCode: 406,
            replyText: 'PRECONDITION_FAILED - channel is not transactional',
            classId: 90,
            methodId: 30,
          },
        ]);
      } finally {
        c.close();
      }
    });
  });
});
