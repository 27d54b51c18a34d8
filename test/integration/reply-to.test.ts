/**
 * Direct reply-to (amq.rabbitmq.reply-to) through real clients: a requester consumes the pseudo
 * queue with no-ack and publishes requests with reply-to 'amq.rabbitmq.reply-to'; the server sees
 * a per-channel name 'amq.rabbitmq.reply-to.<token>' and replies to it through the default
 * exchange. Also the 406s, queue.declare of the pseudo queue, and replies to a channel that is
 * gone. Expected behaviour and texts are RabbitMQ 3.10's.
 */
import { AMQPClient, type AMQPError, type AMQPMessage, AMQPSession } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

const REPLY_TO = 'amq.rabbitmq.reply-to';
const REPLY_NAME = /^amq\.rabbitmq\.reply-to\.\S+$/;

/** Connects amqp-client and records every error it reports. */
async function connectAmqpClient(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}

/** An amqplib RPC server on `queue`: replies "re:<body>" to each request's reply-to. */
async function startServer(url: string, queue: string) {
  const model = await amqplib.connect(url);
  const ch = await model.createChannel();
  await ch.assertQueue(queue);
  const seenReplyTo: string[] = [];
  await ch.consume(queue, (msg) => {
    if (msg === null) return;
    const replyTo = msg.properties.replyTo as string;
    seenReplyTo.push(replyTo);
    ch.sendToQueue(replyTo, Buffer.from(`re:${msg.content.toString()}`), {
      correlationId: msg.properties.correlationId,
      headers: { served: true },
    });
    ch.ack(msg);
  });
  return { model, ch, seenReplyTo };
}

describe('direct reply-to RPC', () => {
  it('a request with reply-to amq.rabbitmq.reply-to reaches the server with a per-channel name, and the reply comes back', async () => {
    await withBroker(async (broker) => {
      const server = await startServer(broker.url, 'rpc-server');
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const replies: AMQPMessage[] = [];
      const consumer = await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => {
        replies.push(m);
      });
      await ch.basicPublish('', 'rpc-server', 'ping', { replyTo: REPLY_TO, correlationId: 'c-1' });
      await waitFor(() => replies.length === 1, 'the reply');
      const [name] = server.seenReplyTo;
      expect(name).toMatch(REPLY_NAME);
      const reply = replies[0]!;
      expect(reply.bodyToString()).toBe('re:ping');
      expect(reply.properties.correlationId).toBe('c-1');
      expect(reply.properties.headers).toEqual({ served: true });
      expect(reply.exchange).toBe('');
      expect(reply.routingKey).toBe(name);
      expect(reply.consumerTag).toBe(consumer.tag);
      expect(reply.redelivered).toBe(false);
      // a second request on the same channel carries the same name
      await ch.basicPublish('', 'rpc-server', 'again', { replyTo: REPLY_TO, correlationId: 'c-2' });
      await waitFor(() => replies.length === 2, 'the second reply');
      expect(server.seenReplyTo).toEqual([name, name]);
      expect(replies[1]!.bodyToString()).toBe('re:again');
      await client.close();
      await server.model.close();
      expect(errors).toEqual([]);
    });
  });

  it('two requesters each get only their own replies', async () => {
    await withBroker(async (broker) => {
      const server = await startServer(broker.url, 'rpc-shared');
      const requesters = await Promise.all(
        ['a', 'b'].map(async (who) => {
          const model = await amqplib.connect(broker.url);
          const ch = await model.createChannel();
          const got: string[] = [];
          await ch.consume(REPLY_TO, (m) => m && got.push(`${m.properties.correlationId} ${m.content}`), {
            noAck: true,
          });
          return { who, model, ch, got };
        }),
      );
      for (let i = 0; i < 20; i++) {
        for (const r of requesters) {
          r.ch.sendToQueue('rpc-shared', Buffer.from(`${r.who}${i}`), {
            replyTo: REPLY_TO,
            correlationId: `${r.who}-${i}`,
          });
        }
      }
      await waitFor(() => requesters.every((r) => r.got.length === 20), 'all replies');
      for (const r of requesters) {
        expect(r.got).toEqual(Array.from({ length: 20 }, (_, i) => `${r.who}-${i} re:${r.who}${i}`));
      }
      // one name per requesting channel
      expect(new Set(server.seenReplyTo).size).toBe(2);
      for (const r of requesters) await r.model.close();
      await server.model.close();
    });
  });

  it("amqp-client's RPC client and server work end to end", async () => {
    await withBroker(async (broker) => {
      const session = await AMQPSession.connect(broker.url);
      const rpcServer = await session.rpcServer('rpc-session', (msg) => `echo ${msg.bodyToString()}`);
      const rpc = await session.rpcClient();
      const replies = await Promise.all(
        ['x', 'y', 'z'].map((b) => rpc.call('rpc-session', b, { timeout: 2_000 })),
      );
      expect(replies.map((m) => m.bodyToString())).toEqual(['echo x', 'echo y', 'echo z']);
      await rpc.close();
      await rpcServer.close();
      await session.stop();
    });
  });

  it('replies to a channel that is gone are dropped: confirmed, and returned 312 NO_ROUTE when mandatory', async () => {
    await withBroker(async (broker) => {
      const server = await startServer(broker.url, 'rpc-gone');
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.basicConsume(REPLY_TO, { noAck: true }, () => {});
      await ch.basicPublish('', 'rpc-gone', 'hello', { replyTo: REPLY_TO });
      await waitFor(() => server.seenReplyTo.length === 1, 'the request');
      const name = server.seenReplyTo[0]!;
      await ch.close();
      // a late reply from another connection, in confirm mode
      const { client: late, errors: lateErrors } = await connectAmqpClient(broker.url);
      const lch = await late.channel();
      await lch.confirmSelect();
      const returned: string[] = [];
      lch.onReturn = (m) => {
        returned.push(`${m.replyCode} ${m.replyText} ${m.routingKey} ${m.bodyToString()}`);
      };
      await lch.basicPublish('', name, 'dropped');
      await lch.basicPublish('', name, 'returned', {}, true);
      expect(returned).toEqual([`312 NO_ROUTE ${name} returned`]);
      // the channel is fine after replying into the void
      expect(lch.closed).toBe(false);
      await late.close();
      await client.close();
      await server.model.close();
      expect(errors).toEqual([]);
      expect(lateErrors).toEqual([]);
    });
  });

  it('after the reply consumer is cancelled its name no longer routes, and a new consumer gets a new name', async () => {
    await withBroker(async (broker) => {
      const server = await startServer(broker.url, 'rpc-cancel');
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const replies: string[] = [];
      const first = await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => {
        replies.push(m.bodyToString() ?? '');
      });
      await ch.basicPublish('', 'rpc-cancel', 'one', { replyTo: REPLY_TO });
      await waitFor(() => replies.length === 1, 'the first reply');
      await first.cancel();
      const oldName = server.seenReplyTo[0]!;
      const pub = await client.channel();
      await pub.confirmSelect();
      const returned: string[] = [];
      pub.onReturn = (m) => {
        returned.push(`${m.replyCode} ${m.routingKey} ${m.bodyToString()}`);
      };
      await pub.basicPublish('', oldName, 'stale', {}, true);
      expect(returned).toEqual([`312 ${oldName} stale`]);
      await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => {
        replies.push(m.bodyToString() ?? '');
      });
      await ch.basicPublish('', 'rpc-cancel', 'two', { replyTo: REPLY_TO });
      await waitFor(() => replies.length === 2, 'the reply to the new consumer');
      expect(replies).toEqual(['re:one', 're:two']);
      expect(server.seenReplyTo[1]).toMatch(REPLY_NAME);
      expect(server.seenReplyTo[1]).not.toBe(oldName);
      await client.close();
      await server.model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('direct reply-to consumer tags', () => {
  it('a normal consumer may take the reply consumer’s tag, and basic.cancel with it cancels the reply consumer first', async () => {
    await withBroker(async (broker) => {
      const c = await amqplib.connect(broker.url);
      const ch = await c.createChannel();
      const other = await c.createChannel();
      await ch.assertQueue('tagged', { exclusive: true });
      await ch.consume(REPLY_TO, () => {}, { noAck: true, consumerTag: 'T' });
      const normal = await ch.consume('tagged', () => {}, { noAck: true, consumerTag: 'T' });
      expect(normal.consumerTag).toBe('T');
      await ch.cancel('T');
      // the normal consumer is still there; the reply consumer is not
      expect((await other.checkQueue('tagged')).consumerCount).toBe(1);
      const closed = new Promise<string>((resolve) => ch.on('error', (e: Error) => resolve(e.message)));
      ch.publish('', 'tagged', Buffer.from('request'), { replyTo: REPLY_TO });
      expect(await closed).toContain('PRECONDITION_FAILED - fast reply consumer does not exist');
      expect((await other.checkQueue('tagged')).consumerCount).toBe(0);
      await c.close();
    });
  });

  it('a reply consumer may not take a normal consumer’s tag: 530, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const c = await amqplib.connect(broker.url);
      const closed = new Promise<string>((resolve) => c.on('error', (e: Error) => resolve(e.message)));
      const ch = await c.createChannel();
      ch.on('error', () => {});
      await ch.assertQueue('tagged', { exclusive: true });
      await ch.consume('tagged', () => {}, { noAck: true, consumerTag: 'T' });
      await expect(ch.consume(REPLY_TO, () => {}, { noAck: true, consumerTag: 'T' })).rejects.toThrow();
      expect(await closed).toContain("NOT_ALLOWED - attempt to reuse consumer tag 'T'");
    });
  });
});

describe('direct reply-to errors and declares', () => {
  it('consuming amq.rabbitmq.reply-to without no-ack closes the channel with 406', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await expect(ch.basicConsume(REPLY_TO, { noAck: false }, () => {})).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - reply consumer cannot acknowledge (406)`,
      );
      expect(ch.closed).toBe(true);
      await client.close();
    });
  });

  it('consuming amq.rabbitmq.reply-to twice on one channel closes the channel with 406', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.basicConsume(REPLY_TO, { noAck: true }, () => {});
      await expect(ch.basicConsume(REPLY_TO, { noAck: true }, () => {})).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - reply consumer already set (406)`,
      );
      await client.close();
    });
  });

  it('publishing with reply-to amq.rabbitmq.reply-to on a channel not consuming it closes the channel with 406', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('rpc-unused');
      await ch.basicPublish('', 'rpc-unused', 'req', { replyTo: REPLY_TO });
      await expect(ch.queueDeclare('rpc-unused', { passive: true })).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - fast reply consumer does not exist (406)`,
      );
      // the request was not enqueued
      const other = await client.channel();
      expect((await other.queueDeclare('rpc-unused', { passive: true })).messageCount).toBe(0);
      await client.close();
    });
  });

  it('publishing with reply-to amq.rabbitmq.reply-to after cancelling the reply consumer is a 406 too', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('rpc-cancelled');
      const consumer = await ch.basicConsume(REPLY_TO, { noAck: true }, () => {});
      await consumer.cancel();
      await ch.basicPublish('', 'rpc-cancelled', 'req', { replyTo: REPLY_TO });
      await expect(ch.queueDeclare('rpc-cancelled', { passive: true })).rejects.toThrow(
        `channel ${ch.id} closed: PRECONDITION_FAILED - fast reply consumer does not exist (406)`,
      );
      await client.close();
    });
  });

  it('a passive queue.declare of amq.rabbitmq.reply-to succeeds with no messages and one consumer', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const ok = await ch.queueDeclare(REPLY_TO, { passive: true });
      expect(ok).toEqual({ name: REPLY_TO, messageCount: 0, consumerCount: 1 });
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it("amqplib's checkQueue of amq.rabbitmq.reply-to succeeds", async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const ch = await model.createChannel();
      const ok = await ch.checkQueue(REPLY_TO);
      expect(ok.queue).toBe(REPLY_TO);
      expect(ok.messageCount).toBe(0);
      await model.close();
    });
  });

  it('a non-passive queue.declare of amq.rabbitmq.reply-to succeeds too, whatever its flags', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const ok = await ch.queueDeclare(REPLY_TO, { durable: true, exclusive: true });
      expect(ok).toEqual({ name: REPLY_TO, messageCount: 0, consumerCount: 1 });
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('declaring a reply-to name no reply consumer holds is 404, as RabbitMQ (not 403 for the amq. prefix)', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const err = await ch.queueDeclare(`${REPLY_TO}.foo`, { exclusive: true }).catch((e: Error) => e);
      expect(String(err)).toContain(`NOT_FOUND - no queue '${REPLY_TO}.foo' in vhost '/'`);
      expect(client.closed).toBe(false);
      await client.close();
    });
  });
});
