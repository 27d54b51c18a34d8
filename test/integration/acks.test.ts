/**
 * Acknowledgements end to end with real clients (@cloudamqp/amqp-client and amqplib): basic.ack,
 * basic.nack, basic.reject, basic.recover, and the requeue of unacked deliveries when their
 * channel or connection closes. Reply codes and texts are the ones RabbitMQ 3.10 sends for the
 * same input; requeued messages go back to their original position, marked redelivered.
 */
import type { AMQPChannel, AMQPClient, AMQPMessage } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import {
  bodies,
  connectAmqplib,
  connectClient,
  declare,
  nextChannelError,
  publish,
  readyCount,
} from '../helpers/consumers.js';
import { waitFor } from '../helpers/wait.js';

// ------------------------------------------------------------------ helpers

/** Records why the broker closed an amqp-client channel. */
function channelReasons(ch: AMQPChannel): string[] {
  const reasons: string[] = [];
  ch.onerror = (reason) => reasons.push(reason);
  return reasons;
}

/** An amqplib message stand-in carrying only a delivery tag (to ack arbitrary tags). */
function tagged(deliveryTag: number): amqplib.Message {
  return { fields: { deliveryTag } } as unknown as amqplib.Message;
}

/** Takes every ready message with basic.get no-ack: body, with '*' when redelivered. */
async function drain(client: AMQPClient, q: string): Promise<string[]> {
  const ch = await client.channel();
  const out: string[] = [];
  for (;;) {
    const m = await ch.basicGet(q, { noAck: true });
    if (m === null) break;
    out.push(`${m.bodyToString()}${m.redelivered ? '*' : ''}`);
  }
  await ch.close();
  return out;
}

/** Same with amqplib. */
async function drainAmqplib(model: amqplib.ChannelModel, q: string): Promise<string[]> {
  const ch = await model.createChannel();
  const out: string[] = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (m === false) break;
    out.push(`${m.content.toString()}${m.fields.redelivered ? '*' : ''}`);
  }
  await ch.close();
  return out;
}

/** Gets `n` messages with basic.get and manual acknowledgement (delivery tags 1..n). */
async function getN(ch: AMQPChannel, q: string, n: number): Promise<AMQPMessage[]> {
  const out: AMQPMessage[] = [];
  for (let i = 0; i < n; i++) {
    const m = await ch.basicGet(q, { noAck: false });
    if (m === null) throw new Error(`queue ${q} ran dry after ${i}`);
    out.push(m);
  }
  return out;
}

// ------------------------------------------------------------------ basic.ack

describe('basic.ack', () => {
  it('ack of one delivery settles only that one', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(3));
      const ch = await client.channel();
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 3, 'three deliveries');
      expect(got.map((m) => m.deliveryTag)).toEqual([1, 2, 3]);
      await ch.basicAck(2);
      await ch.close();
      expect(await drain(client, 'q')).toEqual(['m0*', 'm2*']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('ack with multiple settles every delivery up to and including the tag', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(5));
      const ch = await client.channel();
      const got = await getN(ch, 'q', 5);
      await got[2]!.ack(true);
      await ch.close();
      expect(await drain(client, 'q')).toEqual(['m3*', 'm4*']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('ack with multiple and tag 0 settles every outstanding delivery', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(6)) ch.sendToQueue('q', Buffer.from(b));
      const got: amqplib.ConsumeMessage[] = [];
      await ch.consume('q', (m) => m && got.push(m));
      await waitFor(() => got.length === 6, 'six deliveries');
      // amqplib's ackAll is basic.ack delivery-tag 0, multiple
      ch.ackAll();
      await ch.close();
      expect(await drainAmqplib(model, 'q')).toEqual([]);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('ack of an unknown delivery tag closes the channel with 406 PRECONDITION_FAILED, the connection stays usable', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(2)) ch.sendToQueue('q', Buffer.from(b));
      expect(await ch.get('q')).not.toBe(false);
      const err = nextChannelError(ch);
      ch.ack(tagged(5));
      const e = await err;
      expect(e.code).toBe(406);
      expect(e.message).toMatch(
        /406 \(PRECONDITION-FAILED\) with message "PRECONDITION_FAILED - unknown delivery tag 5"/,
      );
      // the closed channel's unacked delivery went back; the connection works on
      expect(await drainAmqplib(model, 'q')).toEqual(['m0*', 'm1']);
      // tag 0 without multiple is unknown too
      const ch2 = await model.createChannel();
      const err2 = nextChannelError(ch2);
      ch2.ack(tagged(0));
      expect((await err2).message).toMatch(/PRECONDITION_FAILED - unknown delivery tag 0"/);
      const ch3 = await model.createChannel();
      expect((await ch3.checkQueue('q')).messageCount).toBe(0);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('acking the same delivery twice closes the channel with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(2));
      const ch = await client.channel();
      const reasons = channelReasons(ch);
      const [m0, m1] = await getN(ch, 'q', 2);
      await ch.basicAck(m0!.deliveryTag);
      await ch.basicAck(m0!.deliveryTag);
      await waitFor(() => ch.closed, 'the channel to be closed');
      expect(reasons).toEqual(['channel 2 closed: PRECONDITION_FAILED - unknown delivery tag 1 (406)']);
      expect(m1!.deliveryTag).toBe(2);
      // the first ack counted; the other delivery was requeued by the close
      expect(await drain(client, 'q')).toEqual(['m1*']);
      expect(client.closed).toBe(false);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('ack with multiple of a tag that is not outstanding is refused with 406 and settles nothing', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(3));
      // a tag beyond every delivery made
      const ch = await client.channel();
      const reasons = channelReasons(ch);
      await getN(ch, 'q', 3);
      await ch.basicAck(10, true);
      // the next method on the channel finds it closed
      await expect(ch.queueDeclare('q', { passive: true })).rejects.toThrow(
        'PRECONDITION_FAILED - unknown delivery tag 10 (406)',
      );
      expect(reasons).toEqual(['channel 2 closed: PRECONDITION_FAILED - unknown delivery tag 10 (406)']);
      expect(await readyCount(client, 'q')).toBe(3);
      // a tag already acked, with older deliveries still outstanding
      const ch2 = await client.channel();
      const reasons2 = channelReasons(ch2);
      const got = await getN(ch2, 'q', 3);
      expect(got.map((m) => m.deliveryTag)).toEqual([1, 2, 3]);
      await ch2.basicAck(2);
      await ch2.basicAck(2, true);
      await expect(ch2.queueDeclare('q', { passive: true })).rejects.toThrow(
        'PRECONDITION_FAILED - unknown delivery tag 2 (406)',
      );
      expect(reasons2).toEqual([
        expect.stringMatching(/PRECONDITION_FAILED - unknown delivery tag 2 \(406\)$/),
      ]);
      expect(await drain(client, 'q')).toEqual(['m0*', 'm2*']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ basic.nack / basic.reject

describe('basic.nack and basic.reject', () => {
  it('nack with requeue redelivers with the redelivered flag, at the head before newer messages', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(5)) ch.sendToQueue('q', Buffer.from(b));
      await ch.prefetch(2);
      const got: amqplib.ConsumeMessage[] = [];
      await ch.consume('q', (m) => m && got.push(m));
      await waitFor(() => got.length === 2, 'two deliveries');
      // m0 goes back to the head: it is the next delivery, not m2
      ch.nack(got[0]!, false, true);
      await waitFor(() => got.length === 3, 'a redelivery');
      expect(got.map((m) => [m.content.toString(), m.fields.redelivered])).toEqual([
        ['m0', false],
        ['m1', false],
        ['m0', true],
      ]);
      expect(got.map((m) => m.fields.deliveryTag)).toEqual([1, 2, 3]);
      ch.ack(got[1]!);
      ch.ack(got[2]!);
      await waitFor(() => got.length === 5, 'the next two');
      expect(got.slice(3).map((m) => [m.content.toString(), m.fields.redelivered])).toEqual([
        ['m2', false],
        ['m3', false],
      ]);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('requeued messages go back to their original positions, whatever the order of the requeues', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(10));
      const ch = await client.channel();
      const g = await getN(ch, 'q', 5);
      await g[3]!.nack(true);
      await g[1]!.nack(true);
      await g[4]!.reject(true);
      await g[0]!.reject(true);
      // g[2] is acked
      await g[2]!.ack();
      expect(await drain(client, 'q')).toEqual(['m0*', 'm1*', 'm3*', 'm4*', 'm5', 'm6', 'm7', 'm8', 'm9']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('reject with requeue redelivers with the redelivered flag', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(3));
      const ch = await client.channel();
      await ch.basicQos(1);
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 1, 'one delivery');
      await got[0]!.reject(true);
      await waitFor(() => got.length === 2, 'the redelivery');
      expect(got.map((m) => [m.bodyToString(), m.redelivered, m.deliveryTag])).toEqual([
        ['m0', false, 1],
        ['m0', true, 2],
      ]);
      // rejected again, still redelivered and still first
      await got[1]!.reject(true);
      await waitFor(() => got.length === 3, 'the second redelivery');
      expect([got[2]!.bodyToString(), got[2]!.redelivered]).toEqual(['m0', true]);
      await got[2]!.ack();
      await waitFor(() => got.length === 4, 'the next message');
      expect([got[3]!.bodyToString(), got[3]!.redelivered]).toEqual(['m1', false]);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('nack with multiple requeues every delivery up to the tag, in order', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(6));
      const ch = await client.channel();
      const g = await getN(ch, 'q', 5);
      await g[1]!.ack();
      // nack tags 1..4 (2 is already acked): m0, m2, m3 go back; m4 stays unacked
      await g[3]!.nack(true, true);
      expect(await drain(client, 'q')).toEqual(['m0*', 'm2*', 'm3*', 'm5']);
      // nack of tag 0 with multiple requeues all that is left
      await ch.basicNack(0, true, true);
      expect(await drain(client, 'q')).toEqual(['m4*']);
      expect(ch.closed).toBe(false);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('nack and reject without requeue drop the message', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(4)) ch.sendToQueue('q', Buffer.from(b));
      const got: amqplib.ConsumeMessage[] = [];
      await ch.consume('q', (m) => m && got.push(m));
      await waitFor(() => got.length === 4, 'four deliveries');
      ch.nack(got[0]!, false, false);
      ch.reject(got[2]!, false);
      ch.nack(got[3]!, true, false);
      expect((await ch.checkQueue('q')).messageCount).toBe(0);
      // the multiple nack dropped m1 and m3 as well: nothing comes back on close
      await ch.close();
      expect(await drainAmqplib(model, 'q')).toEqual([]);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('nack and reject of an unknown delivery tag close the channel with 406, the connection stays usable', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      const reasons = channelReasons(ch);
      await ch.basicNack(7, true);
      await waitFor(() => ch.closed, 'the channel to be closed');
      expect(reasons).toEqual(['channel 1 closed: PRECONDITION_FAILED - unknown delivery tag 7 (406)']);
      const ch2 = await client.channel();
      const reasons2 = channelReasons(ch2);
      await ch2.basicNack(3, false, true);
      await waitFor(() => ch2.closed, 'the channel to be closed');
      expect(reasons2).toEqual([
        expect.stringMatching(/PRECONDITION_FAILED - unknown delivery tag 3 \(406\)$/),
      ]);
      const ch3 = await client.channel();
      const reasons3 = channelReasons(ch3);
      await ch3.basicReject(9, false);
      await waitFor(() => ch3.closed, 'the channel to be closed');
      expect(reasons3).toEqual([
        expect.stringMatching(/PRECONDITION_FAILED - unknown delivery tag 9 \(406\)$/),
      ]);
      // still usable
      const ch4 = await client.channel();
      await declare(ch4, 'q');
      expect(client.closed).toBe(false);
      await client.close();
      expect(errors).toEqual([]);

      const lib = await connectAmqplib(broker.url);
      const lch = await lib.model.createChannel();
      const err = nextChannelError(lch);
      lch.reject(tagged(4), true);
      const e = await err;
      expect(e.code).toBe(406);
      expect(e.message).toMatch(/PRECONDITION_FAILED - unknown delivery tag 4/);
      await lib.model.close();
      expect(await lib.closed).toBeUndefined();
      expect(lib.errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ requeue on close

describe('unacked deliveries on close', () => {
  it('are requeued in order and marked redelivered when their channel closes', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(10));
      const ch = await client.channel();
      await ch.basicQos(4);
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 4, 'four deliveries');
      await got[1]!.ack();
      await waitFor(() => got.length === 5, 'a fifth delivery');
      await ch.close();
      // back before the newer messages that were never delivered
      expect(await drain(client, 'q')).toEqual(['m0*', 'm2*', 'm3*', 'm4*', 'm5', 'm6', 'm7', 'm8', 'm9']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('are requeued in order and marked redelivered when their connection closes', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'a');
      await declare(setup, 'b');
      await publish(client, 'a', bodies(5, 'a'));
      await publish(client, 'b', bodies(5, 'b'));

      const lib = await connectAmqplib(broker.url);
      const ch1 = await lib.model.createChannel();
      const ch2 = await lib.model.createChannel();
      await ch1.prefetch(3);
      await ch2.prefetch(2);
      const got1: amqplib.ConsumeMessage[] = [];
      const got2: amqplib.ConsumeMessage[] = [];
      await ch1.consume('a', (m) => m && got1.push(m));
      await ch2.consume('b', (m) => m && got2.push(m));
      await waitFor(() => got1.length === 3 && got2.length === 2, 'the deliveries');
      // a basic.get delivery is requeued too
      const g = await ch2.get('a');
      expect(g === false ? null : g.content.toString()).toBe('a3');
      await lib.model.close();
      expect(await lib.closed).toBeUndefined();
      expect(lib.errors).toEqual([]);

      expect(await drain(client, 'a')).toEqual(['a0*', 'a1*', 'a2*', 'a3*', 'a4']);
      expect(await drain(client, 'b')).toEqual(['b0*', 'b1*', 'b2', 'b3', 'b4']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ basic.recover

describe('basic.recover', () => {
  it('recover with requeue redelivers every unacked delivery with the redelivered flag', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(5)) ch.sendToQueue('q', Buffer.from(b));
      await ch.prefetch(3);
      const got: amqplib.ConsumeMessage[] = [];
      await ch.consume('q', (m) => m && got.push(m));
      await waitFor(() => got.length === 3, 'three deliveries');
      ch.ack(got[1]!);
      await waitFor(() => got.length === 4, 'm3 in the room the ack made');
      // amqplib's recover is basic.recover requeue=true
      await ch.recover();
      await waitFor(() => got.length === 7, 'the redeliveries');
      expect(got.map((m) => [m.content.toString(), m.fields.deliveryTag, m.fields.redelivered])).toEqual([
        ['m0', 1, false],
        ['m1', 2, false],
        ['m2', 3, false],
        ['m3', 4, false],
        ['m0', 5, true],
        ['m2', 6, true],
        ['m3', 7, true],
      ]);
      expect((await ch.checkQueue('q')).messageCount).toBe(1);
      // the old delivery tags are gone
      const err = nextChannelError(ch);
      ch.ack(got[0]!);
      expect((await err).message).toMatch(/406 \(PRECONDITION-FAILED\).*unknown delivery tag 1"/);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('recover with requeue on amqp-client puts the unacked messages back in the queue in order', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(4));
      const ch = await client.channel();
      await getN(ch, 'q', 3);
      await ch.basicRecover(true);
      expect(await drain(client, 'q')).toEqual(['m0*', 'm1*', 'm2*', 'm3']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('recover without requeue closes the connection with 540 NOT_IMPLEMENTED', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(2));
      const ch = await client.channel();
      await getN(ch, 'q', 1);
      await expect(ch.basicRecover(false)).rejects.toThrow(
        'connection closed: NOT_IMPLEMENTED - requeue=false (540)',
      );
      await waitFor(() => client.closed, 'amqp-client to see the connection closed');
      expect(errors).toContain('connection closed: NOT_IMPLEMENTED - requeue=false (540)');
      // the unacked delivery went back with the connection
      const other = await connectClient(broker.url);
      expect(await drain(other.client, 'q')).toEqual(['m0*', 'm1']);
      await other.client.close();
      expect(other.errors).toEqual([]);
    });
  });
});
