import { type AMQPChannel, AMQPClient, type AMQPError } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { expect } from 'vitest';

/** Connects amqp-client and records every error it reports. */
export async function connectAmqpClient(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}

/** Connects amqplib; connection-level errors are recorded in `errors`. */
export async function connectAmqplib(url: string): Promise<{ model: amqplib.ChannelModel; errors: Error[] }> {
  const model = await amqplib.connect(url);
  const errors: Error[] = [];
  model.on('error', (e: Error) => errors.push(e));
  return { model, errors };
}

/** Proves an amqp-client connection still works: a message makes a round trip on a new channel. */
export async function amqpClientStillWorks(client: AMQPClient): Promise<void> {
  const ch = await client.channel();
  const { name } = await ch.queueDeclare('', { durable: false, exclusive: true });
  await ch.basicPublish('', name, 'still here');
  const msg = await ch.basicGet(name, { noAck: true });
  expect(msg?.bodyString()).toBe('still here');
  await ch.close();
}

/**
 * Runs `op` on a fresh amqp-client channel, expects the broker to close that channel and
 * returns "<reply text> (<reply code>)" from the close.
 */
export async function amqpClientRefusal(
  client: AMQPClient,
  op: (ch: AMQPChannel) => Promise<unknown>,
): Promise<string> {
  const ch = await client.channel();
  const err = await op(ch).then(
    (r) => {
      throw new Error(`expected a channel error, got ${JSON.stringify(r)}`);
    },
    (e: Error) => e,
  );
  expect(ch.closed).toBe(true);
  const m = /^channel \d+ closed: (.*)$/s.exec(err.message);
  if (!m) throw err;
  return m[1]!;
}
