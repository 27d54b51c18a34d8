/**
 * Input a fuzzing campaign found the broker could not survive, each now answered or passed
 * through while the broker keeps serving: short-string properties that are not UTF-8 (carried
 * byte for byte through dead-lettering), x-death counts that are not integers, dead-letter cycles
 * of TTL-0 queues, and header tables nested without end.
 */
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { FieldTable } from '../../src/protocol/field-table.js';
import * as M from '../../src/protocol/generated/methods.js';
import type { BasicProperties } from '../../src/protocol/generated/properties.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib } from '../helpers/consumers.js';
import { bytes, publishBytes, RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

/** basic.publish to the default exchange with `props` (or these property bytes), on channel 1. */
function rawPublish(queue: string, props: BasicProperties | Buffer, body = 'x'): Buffer {
  return publishBytes(1, queue, body, props);
}

/** A queue `q` whose messages expire at once into `q.dlq`. */
async function expiringInto(ch: amqplib.Channel, q: string): Promise<void> {
  await ch.assertQueue(`${q}.dlq`);
  await ch.assertQueue(q, {
    arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${q}.dlq` },
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds (a broker round trip each time). */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** basic.get until `q` has a message. */
async function getOne(ch: amqplib.Channel, q: string): Promise<amqplib.GetMessage> {
  for (let i = 0; i < 500; i++) {
    const m = await ch.get(q, { noAck: true });
    if (m !== false) return m;
    await sleep(10);
  }
  throw new Error(`timed out waiting for a message in ${q}`);
}

describe('hostile input', () => {
  it('a message-id that is not UTF-8 is dead-lettered byte for byte', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await expiringInto(ch, 'u8');
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        // 200 bytes that decode to 200 replacement characters, 600 bytes if re-encoded
        const id = Buffer.alloc(200, 0xff);
        // property flags: message-id (bit 7) and app-id (bit 3), then the two short strings
        const props = Buffer.concat([
          Buffer.from([0x00, 0x88, 200]),
          id,
          Buffer.from([4]),
          Buffer.from('fuzz'),
        ]);
        c.write(rawPublish('u8', props));
        await until(async () => (await ch.checkQueue('u8.dlq')).messageCount === 1, 'the dead letter');
        c.send((w) => M.encodeBasicGet(w, 1, { queue: 'u8.dlq', noAck: true }));
        await c.expectMethod(Method.BASIC_GET_OK);
        await c.until(() => c.frames.some((f) => f.type === 2), 'the content header');
        const header = c.frames.find((f) => f.type === 2)!.payload;
        expect(header.includes(Buffer.concat([Buffer.from([200]), id]))).toBe(true);
        expect(header.includes(Buffer.from('x-death'))).toBe(true);
      } finally {
        c.close();
      }
      await model.close();
    });
  });

  it('x-death counts that are no integer start again at 1, without a crash', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await expiringInto(ch, 'xd');
      const entry = (count: unknown) => ({
        'x-death': [{ count, reason: 'expired', queue: 'xd', exchange: '', 'routing-keys': ['xd'] }],
      });
      const counts: unknown[] = [];
      for (const count of [1.5, 'three', { n: 1 }, 41]) {
        ch.sendToQueue('xd', Buffer.from('m'), { headers: entry(count) });
        const m = await getOne(ch, 'xd.dlq');
        counts.push(m.properties.headers?.['x-death']?.[0]?.['count']);
      }
      // a count that is no integer starts again at 1; 41 is counted on
      expect(counts).toEqual([1, 1, 1, 42]);
      await model.close();
    });
  });

  it('a dead-letter cycle of TTL-0 queues with a rejection in its history goes round without nesting, and the broker serves on', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      // a and b expire into each other; a rejected entry in x-death turns RabbitMQ's cycle check
      // off, so the message goes round until something stops it: here the rounds take turns
      // with everything else instead of nesting on the stack
      await ch.assertQueue('cyc-a', {
        arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'cyc-b' },
      });
      await ch.assertQueue('cyc-b', {
        arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'cyc-a' },
      });
      const rejected = { 'x-death': [{ count: 1, reason: 'rejected', queue: 'elsewhere', exchange: '' }] };
      ch.sendToQueue('cyc-a', Buffer.from('round'), { headers: rejected });
      // a round trip on a new connection while it goes round
      const other = await connectAmqplib(broker.url);
      const och = await other.model.createChannel();
      await och.assertQueue('still-serving');
      och.sendToQueue('still-serving', Buffer.from('ok'));
      expect((await getOne(och, 'still-serving')).content.toString()).toBe('ok');
      await ch.deleteQueue('cyc-a');
      await ch.deleteQueue('cyc-b');
      await other.model.close();
      await model.close();
    });
  });

  it('headers nested deeper than 500 tables are refused at basic.publish with 501', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        let t: FieldTable = { leaf: 'x' };
        for (let i = 0; i < 600; i++) t = { n: t };
        c.write(rawPublish('nowhere', { headers: t }));
        const close = await c.expectConnectionClose();
        expect(close.replyCode).toBe(501);
        expect(close.replyText).toBe(
          "FRAME_ERROR - cannot decode the headers of basic.publish's content header: field tables and arrays nested more than 500 deep",
        );
      } finally {
        c.close();
      }
    });
  });

  it('a client that sends basic.get without reading the replies is not read from until it does', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('sr');
      ch.sendToQueue('sr', Buffer.alloc(1024, 0x61));
      await ch.waitForConfirms();
      const c = await RawClient.open(broker.port);
      try {
        c.send((w) => M.encodeChannelOpen(w, 1, {}));
        await c.expectMethod(Method.CHANNEL_OPEN_OK);
        const conn = [...broker.connections].find((x) => x.socket.remotePort === c.socket.localPort)!;
        c.socket.pause();
        // get + nack(all, requeue), 20,000 times: 20 MB of replies for 0.6 MB of requests
        const K = 20_000;
        const pair = bytes((w) => {
          M.encodeBasicGet(w, 1, { queue: 'sr', noAck: false });
          M.encodeBasicNack(w, 1, { deliveryTag: 0, multiple: true, requeue: true });
        });
        c.write(Buffer.concat(Array.from({ length: K }, () => pair)));
        // the replies back up, and the broker stops reading (it used to read on and buffer them all)
        await waitFor(() => conn.socket.isPaused(), 'the broker to stop reading', 10_000);
        expect(conn.socket.writableLength).toBeLessThan(16 * 1024 * 1024);
        c.socket.resume();
        const gets = () => c.frames.filter((f) => f.methodId === Method.BASIC_GET_OK).length;
        await waitFor(() => gets() === K, 'every get answered', 30_000);
        expect(c.frames.some((f) => f.methodId === Method.CONNECTION_CLOSE)).toBe(false);
      } finally {
        c.close();
      }
      await model.close();
    });
  });
});
