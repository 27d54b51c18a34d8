/** Client helpers shared by the exchanges and routing integration tests. */
import { AMQPClient, type AMQPError } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';

/** The reply text inside amqplib's `... with message "TEXT"`. */
export function replyText(e: Error): string | undefined {
  return /with message "(.*)"$/s.exec(e.message)?.[1];
}

/**
 * amqplib channels with an 'error' listener: a channel the broker closes unexpectedly then fails
 * the pending call (and so the test) instead of raising an uncaught 'error' event.
 */
export async function openChannel(model: amqplib.ChannelModel): Promise<amqplib.Channel> {
  const ch = await model.createChannel();
  ch.on('error', () => {});
  return ch;
}

export async function openConfirmChannel(model: amqplib.ChannelModel): Promise<amqplib.ConfirmChannel> {
  const ch = await model.createConfirmChannel();
  ch.on('error', () => {});
  return ch;
}

/** Every message in `queue`, taken with basic.get (no-ack), as text. */
export async function drain(ch: amqplib.Channel, queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) return out;
    out.push(m.content.toString());
  }
}

export async function amqpClientConnect(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}
