/**
 * RabbitMQ's consumer_timeout: a channel whose oldest unacknowledged delivery is older than the
 * timeout is closed with 406 and its deliveries go back to their queues.
 */
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, nextChannelError } from '../helpers/consumers.js';
import { waitFor } from '../helpers/wait.js';

describe('consumer timeout', () => {
  it('a delivery unacked past the consumer timeout closes its channel with 406; the message comes back', async () => {
    await withBroker(
      async (broker) => {
        const { model, errors } = await connectAmqplib(broker.url);
        const ch = await model.createChannel();
        await ch.assertQueue('q', { durable: false });
        ch.sendToQueue('q', Buffer.from('held'));
        const gone = nextChannelError(ch);
        const held: string[] = [];
        await ch.consume('q', (m) => held.push(m === null ? 'cancelled' : m.content.toString()), {
          noAck: false,
        });
        const e = await gone;
        expect(held).toEqual(['held']);
        expect(e.code).toBe(406);
        expect(e.message).toContain(
          'PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 300 ms. ' +
            'This timeout value can be configured, see consumers doc guide to learn more',
        );
        // requeued, marked redelivered; the connection and other channels carry on
        const other = await model.createChannel();
        let m: amqplib.GetMessage | false = false;
        for (let i = 0; i < 50 && m === false; i++) m = await other.get('q', { noAck: true });
        if (m === false) throw new Error('the held message did not come back');
        expect(m.content.toString()).toBe('held');
        expect(m.fields.redelivered).toBe(true);
        await model.close();
        expect(errors).toEqual([]);
      },
      { consumerTimeout: 300 },
    );
  });

  it('a consumer that acks as it goes keeps its channel past the timeout; 0 turns the timeout off', async () => {
    for (const consumerTimeout of [300, 0]) {
      await withBroker(
        async (broker) => {
          const { model, errors } = await connectAmqplib(broker.url);
          const ch = await model.createChannel();
          await ch.assertQueue('q', { durable: false });
          let acked = 0;
          await ch.consume('q', (m) => {
            ch.ack(m!);
            acked++;
          });
          // with the timeout off, a basic.get delivery held throughout does not close its channel
          const unacked = await model.createChannel();
          await unacked.assertQueue('kept', { durable: false });
          unacked.sendToQueue('kept', Buffer.from('kept'));
          const kept = consumerTimeout === 0 ? await unacked.get('kept', { noAck: false }) : false;
          // publish for three timeouts' worth of time
          for (let i = 0; i < 9; i++) {
            ch.sendToQueue('q', Buffer.from(`m${i}`));
            await new Promise((r) => setTimeout(r, 100));
          }
          await waitFor(() => acked === 9, 'all nine acked');
          const errs: unknown[] = [];
          ch.on('error', (e) => errs.push(e));
          unacked.on('error', (e) => errs.push(e));
          // the ack round trip proves the consuming channel is still open
          await ch.checkQueue('q');
          await unacked.checkQueue('kept');
          if (kept !== false) unacked.ack(kept);
          await model.close();
          expect(errs).toEqual([]);
          expect(errors).toEqual([]);
        },
        { consumerTimeout },
      );
    }
  });
});
