/** Client helpers shared by the acks and consume integration tests. */
import { type AMQPChannel, AMQPClient } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';

/** Connects amqp-client and records every error it reports. */
export async function connectClient(url: string): Promise<{ client: AMQPClient; errors: string[] }> {
  const client = new AMQPClient(url);
  const errors: string[] = [];
  client.onerror = (e) => errors.push(e.message);
  await client.connect();
  return { client, errors };
}

/** Connects amqplib and records its 'error' events and its 'close'. */
export async function connectAmqplib(url: string): Promise<{
  model: amqplib.ChannelModel;
  errors: (Error & { code?: number })[];
  closed: Promise<(Error & { code?: number }) | undefined>;
}> {
  const model = await amqplib.connect(url);
  const errors: Error[] = [];
  model.on('error', (e: Error) => errors.push(e));
  const closed = new Promise<Error | undefined>((resolve) => model.once('close', (e?: Error) => resolve(e)));
  return { model, errors, closed };
}

/** The next 'error' an amqplib channel emits (the broker closed it). */
export function nextChannelError(ch: amqplib.Channel): Promise<Error & { code?: number }> {
  return new Promise((resolve) => ch.once('error', resolve));
}

export async function declare(ch: AMQPChannel, q: string): Promise<void> {
  await ch.queueDeclare(q, { durable: false, autoDelete: false });
}

/** Publishes `bodies` to queue `q` on a confirm channel and waits for every confirm. */
export async function publish(client: AMQPClient, q: string, bodies: string[]): Promise<void> {
  const ch = await client.channel();
  await ch.confirmSelect();
  await Promise.all(bodies.map((b) => ch.basicPublish('', q, b)));
  await ch.close();
}

/** The queue's ready-message count, on a fresh channel of `client`. */
export async function readyCount(client: AMQPClient, q: string): Promise<number> {
  const ch = await client.channel();
  const ok = await ch.queueDeclare(q, { passive: true });
  await ch.close();
  return ok.messageCount;
}

export function bodies(n: number, prefix = 'm'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}
