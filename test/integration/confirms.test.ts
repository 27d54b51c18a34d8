/**
 * Publisher confirms through real clients: amqplib's ConfirmChannel (publish callbacks and
 * waitForConfirms) and @cloudamqp/amqp-client (basicPublish resolves once confirmed), including
 * basic.return reaching the client before the confirm of a mandatory unroutable message.
 */
import { AMQPClient, type AMQPError } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';

const N = 10_000;

/** Connects amqp-client and records every error it reports. */
async function connectAmqpClient(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}

describe('amqplib ConfirmChannel', () => {
  it('confirms 10,000 publishes: every callback without error, in publish order, and waitForConfirms resolves', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const connErrors: Error[] = [];
      model.on('error', (e: Error) => connErrors.push(e));
      const ch = await model.createConfirmChannel();
      const chErrors: Error[] = [];
      ch.on('error', (e: Error) => chErrors.push(e));
      await ch.assertQueue('confirmed-amqplib');
      const confirmedOrder: number[] = [];
      const failures: unknown[] = [];
      for (let i = 0; i < N; i++) {
        ch.sendToQueue('confirmed-amqplib', Buffer.from(String(i)), {}, (err) => {
          if (err) failures.push(err);
          confirmedOrder.push(i);
        });
      }
      await ch.waitForConfirms();
      expect(failures).toEqual([]);
      expect(confirmedOrder).toHaveLength(N);
      expect(confirmedOrder.every((v, i) => v === i)).toBe(true);
      const q = await ch.checkQueue('confirmed-amqplib');
      expect(q.messageCount).toBe(N);
      await ch.close();
      await model.close();
      expect(chErrors).toEqual([]);
      expect(connErrors).toEqual([]);
    });
  });

  it('emits return for a mandatory unroutable message before that message is confirmed', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const ch = await model.createConfirmChannel();
      const events: string[] = [];
      ch.on('return', (msg: amqplib.Message) => {
        // amqplib puts basic.return's fields on a returned message; its types do not say so
        const f = msg.fields as amqplib.MessageFields & { replyCode: number; replyText: string };
        events.push(`return ${f.replyCode} ${f.replyText} ${msg.content.toString()}`);
      });
      await ch.assertQueue('routable-amqplib');
      ch.sendToQueue('routable-amqplib', Buffer.from('kept'), {}, (err) =>
        events.push(`confirm kept ${err}`),
      );
      ch.publish('', 'nowhere', Buffer.from('lost'), { mandatory: true }, (err) =>
        events.push(`confirm lost ${err}`),
      );
      ch.publish('', 'nowhere', Buffer.from('dropped'), {}, (err) => events.push(`confirm dropped ${err}`));
      await ch.waitForConfirms();
      expect(events).toEqual([
        'confirm kept null',
        'return 312 NO_ROUTE lost',
        'confirm lost null',
        'confirm dropped null',
      ]);
      await ch.close();
      await model.close();
    });
  });
});

describe('@cloudamqp/amqp-client confirms', () => {
  it('resolves each of 10,000 basicPublish promises with its publish sequence number', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.confirmSelect();
      await ch.queueDeclare('confirmed-amqp-client');
      const tags = await Promise.all(
        Array.from({ length: N }, (_, i) => ch.basicPublish('', 'confirmed-amqp-client', String(i))),
      );
      expect(tags).toHaveLength(N);
      expect(tags.every((t, i) => t === i + 1)).toBe(true);
      const q = await ch.queueDeclare('confirmed-amqp-client', { passive: true });
      expect(q.messageCount).toBe(N);
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('calls onReturn for a mandatory unroutable message before its publish promise resolves', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.confirmSelect();
      const events: string[] = [];
      ch.onReturn = (msg) => {
        events.push(`return ${msg.replyCode} ${msg.replyText} ${msg.routingKey} ${msg.bodyToString()}`);
      };
      const publishes = [
        ch.basicPublish('', 'nowhere', 'first', {}, true).then((t) => events.push(`confirm ${t}`)),
        ch.basicPublish('', 'nowhere', 'second', {}, true).then((t) => events.push(`confirm ${t}`)),
      ];
      await Promise.all(publishes);
      expect([...events].sort()).toEqual([
        'confirm 1',
        'confirm 2',
        'return 312 NO_ROUTE nowhere first',
        'return 312 NO_ROUTE nowhere second',
      ]);
      // the return of each message precedes its own confirm
      expect(events.indexOf('return 312 NO_ROUTE nowhere first')).toBeLessThan(events.indexOf('confirm 1'));
      expect(events.indexOf('return 312 NO_ROUTE nowhere second')).toBeLessThan(events.indexOf('confirm 2'));
      await ch.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});
