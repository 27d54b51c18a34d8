/**
 * Consuming end to end with real clients (@cloudamqp/amqp-client and amqplib): basic.consume and
 * its refusals, basic.cancel, basic.qos (per consumer and per channel), round-robin and consumer
 * priorities, a work queue that loses a consumer mid-work, channel.flow and socket backpressure.
 * Reply codes and texts are the ones RabbitMQ 3.10 sends for the same input. The one deliberate
 * difference: RabbitMQ refuses channel.flow active=false (540 NOT_IMPLEMENTED); Warren honours it.
 */
import type { Socket } from 'node:net';
import { AMQPClient, type AMQPMessage } from '@cloudamqp/amqp-client';
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

/** The socket under an amqplib connection. */
function amqplibSocket(model: amqplib.ChannelModel): Socket {
  return (model.connection as unknown as { stream: Socket }).stream;
}

function texts(msgs: AMQPMessage[]): string[] {
  return msgs.map((m) => m.bodyToString() ?? '');
}

// ------------------------------------------------------------------ basic.consume

describe('basic.consume', () => {
  it('a consumer without a tag gets a server-generated amq.ctag- tag on both clients', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      const c1 = await ch.basicConsume('q', {}, () => {});
      const c2 = await ch.basicConsume('q', {}, () => {});
      expect(c1.tag).toMatch(/^amq\.ctag-[A-Za-z0-9_-]{10,}$/);
      expect(c2.tag).toMatch(/^amq\.ctag-/);
      expect(c2.tag).not.toBe(c1.tag);

      const { model, errors: libErrors } = await connectAmqplib(broker.url);
      const lch = await model.createChannel();
      const ok = await lch.consume('q', () => {});
      expect(ok.consumerTag).toMatch(/^amq\.ctag-/);
      expect([c1.tag, c2.tag]).not.toContain(ok.consumerTag);
      await model.close();
      await c1.cancel();
      await c2.cancel();
      // the tag the client chose is echoed in consume-ok and in deliveries
      const got: AMQPMessage[] = [];
      const mine = await ch.basicConsume('q', { tag: 'my-tag' }, (m) => {
        got.push(m);
      });
      expect(mine.tag).toBe('my-tag');
      await publish(client, 'q', bodies(2));
      await waitFor(() => got.length === 2, 'both messages on the remaining consumer');
      expect(got.map((m) => m.consumerTag)).toEqual(['my-tag', 'my-tag']);
      await client.close();
      expect(errors).toEqual([]);
      expect(libErrors).toEqual([]);
    });
  });

  it('a no-ack consumer receives messages that leave the queue at once and are never requeued', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      await publish(client, 'q', bodies(5));
      const cch = await client.channel();
      const got: AMQPMessage[] = [];
      await cch.basicConsume('q', { noAck: true }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 5, 'five deliveries');
      expect(texts(got)).toEqual(bodies(5));
      expect(got.every((m) => !m.redelivered)).toBe(true);
      expect(await readyCount(client, 'q')).toBe(0);
      // closing the channel puts nothing back: there was nothing to acknowledge
      await cch.close();
      expect(await readyCount(client, 'q')).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('an exclusive consume on a queue that has a consumer is refused with 403 and the connection stays usable', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      await ch.consume('q', () => {});
      const ch2 = await model.createChannel();
      const err = nextChannelError(ch2);
      await expect(ch2.consume('q', () => {}, { exclusive: true })).rejects.toThrow(
        /403 \(ACCESS-REFUSED\) with message "ACCESS_REFUSED - queue 'q' in vhost '\/' in exclusive use"/,
      );
      expect((await err).code).toBe(403);
      // the connection and the other channel carry on
      const ch3 = await model.createChannel();
      expect((await ch3.checkQueue('q')).consumerCount).toBe(1);
      await ch.close();
      await ch3.close();
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('a second consumer on a queue with an exclusive consumer is refused with 403', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      const got: AMQPMessage[] = [];
      const excl = await ch.basicConsume('q', { exclusive: true, noAck: true }, (m) => {
        got.push(m);
      });
      const ch2 = await client.channel();
      ch2.onerror = () => {};
      await expect(ch2.basicConsume('q', {}, () => {})).rejects.toThrow(
        "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use (403)",
      );
      expect(ch2.closed).toBe(true);
      // the same from another connection, exclusive or not
      const other = await connectClient(broker.url);
      const och = await other.client.channel();
      och.onerror = () => {};
      await expect(och.basicConsume('q', { exclusive: true }, () => {})).rejects.toThrow(
        "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use (403)",
      );
      expect(och.closed).toBe(true);
      await other.client.close();
      expect(other.errors).toEqual([]);
      // the exclusive consumer still gets the messages and the connection is still usable
      await publish(client, 'q', bodies(3));
      await waitFor(() => got.length === 3, 'three deliveries to the exclusive consumer');
      expect(texts(got)).toEqual(bodies(3));
      expect(await readyCount(client, 'q')).toBe(0);
      // once the exclusive consumer is cancelled, others may consume again
      await excl.cancel();
      const ch3 = await client.channel();
      const c3 = await ch3.basicConsume('q', {}, () => {});
      expect(c3.tag).toMatch(/^amq\.ctag-/);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('reusing a consumer tag on a channel closes the connection with 530 NOT_ALLOWED', async () => {
    await withBroker(async (broker) => {
      // amqp-client
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      await ch.basicConsume('q', { tag: 'dup' }, () => {});
      // the same tag on another channel is fine: tags are per channel
      const ch2 = await client.channel();
      await ch2.basicConsume('q', { tag: 'dup' }, () => {});
      await expect(ch.basicConsume('q', { tag: 'dup' }, () => {})).rejects.toThrow(
        "connection closed: NOT_ALLOWED - attempt to reuse consumer tag 'dup' (530)",
      );
      await waitFor(() => client.closed, 'amqp-client to see the connection closed');
      expect(errors).toContain("connection closed: NOT_ALLOWED - attempt to reuse consumer tag 'dup' (530)");

      // amqplib
      const { model, errors: libErrors, closed } = await connectAmqplib(broker.url);
      const lch = await model.createChannel();
      lch.on('error', () => {});
      await lch.consume('q', () => {}, { consumerTag: 'again' });
      await expect(lch.consume('q', () => {}, { consumerTag: 'again' })).rejects.toThrow();
      const err = await closed;
      expect(err?.code).toBe(530);
      expect(err?.message).toMatch(/NOT_ALLOWED - attempt to reuse consumer tag 'again'/);
      expect(libErrors.map((e) => e.code)).toEqual([530]);
    });
  });

  it('a reused consumer tag is refused with 530 before the queue is looked at, even a missing or exclusively used one', async () => {
    await withBroker(async (broker) => {
      const text = "connection closed: NOT_ALLOWED - attempt to reuse consumer tag 't' (530)";
      // the queue named in the second consume does not exist
      const first = await connectClient(broker.url);
      const ch = await first.client.channel();
      await declare(ch, 'q');
      await ch.basicConsume('q', { tag: 't' }, () => {});
      await expect(ch.basicConsume('missing', { tag: 't' }, () => {})).rejects.toThrow(text);
      await waitFor(() => first.client.closed, 'the connection to be closed');
      expect(first.errors).toContain(text);
      // the second consume asks for exclusive use of a queue that has a consumer
      const second = await connectClient(broker.url);
      const ch2 = await second.client.channel();
      await ch2.basicConsume('q', { tag: 't' }, () => {});
      await expect(ch2.basicConsume('q', { tag: 't', exclusive: true }, () => {})).rejects.toThrow(text);
      await waitFor(() => second.client.closed, 'the connection to be closed');
      expect(second.errors).toContain(text);
    });
  });

  it('a consumer priority that is not an integer is refused with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      ch.onerror = () => {};
      await expect(ch.basicConsume('q', { args: { 'x-priority': 'high' } }, () => {})).rejects.toThrow(
        `channel 1 closed: PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '/': "expected integer, got longstr" (406)`,
      );
      const ch2 = await client.channel();
      expect((await ch2.queueDeclare('q', { passive: true })).consumerCount).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a fractional or boolean consumer priority is refused with 406 naming its AMQP field type', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      // amqp-client sends 1.5 as a float field ('f') and true as a boolean field ('t')
      const cases: [unknown, string][] = [
        [1.5, 'float'],
        [true, 'bool'],
      ];
      for (const [value, type] of cases) {
        const ch = await client.channel();
        ch.onerror = () => {};
        await expect(ch.basicConsume('q', { args: { 'x-priority': value } }, () => {})).rejects.toThrow(
          `PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '/': "expected integer, got ${type}" (406)`,
        );
      }
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('consuming from a missing queue is refused with 404 and the connection stays usable', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      ch.onerror = () => {};
      await expect(ch.basicConsume('nope', {}, () => {})).rejects.toThrow(
        "channel 1 closed: NOT_FOUND - no queue 'nope' in vhost '/' (404)",
      );
      expect(ch.closed).toBe(true);
      const ch2 = await client.channel();
      await declare(ch2, 'nope');
      const c = await ch2.basicConsume('nope', {}, () => {});
      expect(c.tag).toMatch(/^amq\.ctag-/);
      await client.close();
      expect(errors).toEqual([]);

      const { model, errors: libErrors, closed } = await connectAmqplib(broker.url);
      const lch = await model.createChannel();
      const err = nextChannelError(lch);
      await expect(lch.consume('missing', () => {})).rejects.toThrow(
        /404 \(NOT-FOUND\) with message "NOT_FOUND - no queue 'missing' in vhost '\/'"/,
      );
      expect((await err).code).toBe(404);
      const lch2 = await model.createChannel();
      expect((await lch2.checkQueue('nope')).messageCount).toBe(0);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(libErrors).toEqual([]);
    });
  });

  it('x-priority: the high-priority consumer gets the messages while it has capacity, the low one only when it is full', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const setup = await model.createChannel();
      await setup.assertQueue('q', { durable: false });
      const lo: amqplib.ConsumeMessage[] = [];
      const hi: amqplib.ConsumeMessage[] = [];
      // the low-priority consumer comes first, so plain round-robin would favour it
      const loCh = await model.createChannel();
      await loCh.prefetch(1);
      await loCh.consume('q', (m) => m && lo.push(m), { priority: 1 });
      const hiCh = await model.createChannel();
      await hiCh.prefetch(1);
      await hiCh.consume('q', (m) => m && hi.push(m), { priority: 10 });
      const pub = await model.createConfirmChannel();
      const send = async (body: string) => {
        pub.sendToQueue('q', Buffer.from(body));
        await pub.waitForConfirms();
      };
      // one at a time, acked each time: every message goes to the high-priority consumer
      for (let i = 0; i < 5; i++) {
        await send(`h${i}`);
        await waitFor(() => hi.length + lo.length === i + 1, `delivery of h${i}`);
        expect(lo).toHaveLength(0);
        hiCh.ack(hi[i]!);
      }
      expect(hi.map((m) => m.content.toString())).toEqual(['h0', 'h1', 'h2', 'h3', 'h4']);
      // the high one is full (h5 unacked): the next goes to the low one
      await send('h5');
      await waitFor(() => hi.length === 6, 'h5 on the high-priority consumer');
      await send('l0');
      await waitFor(() => lo.length === 1, 'l0 on the low-priority consumer');
      expect(lo[0]!.content.toString()).toBe('l0');
      // both full: the next one waits; it goes to the high one once that has room
      await send('w');
      expect((await setup.checkQueue('q')).messageCount).toBe(1);
      hiCh.ack(hi[5]!);
      await waitFor(() => hi.length === 7, 'w on the high-priority consumer');
      expect(hi[6]!.content.toString()).toBe('w');
      expect(lo).toHaveLength(1);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });
});

describe('consumer priorities, round-robin within a priority', () => {
  it('consumers of equal priority take turns for what the higher-priority one cannot take', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const pub = await model.createConfirmChannel();
      await pub.assertQueue('q', { durable: false });
      let held: amqplib.ConsumeMessage | null = null;
      const hiCh = await model.createChannel();
      await hiCh.prefetch(1);
      await hiCh.consume('q', (m) => (held = m), { priority: 10 });
      const low: string[] = [];
      for (let i = 0; i < 4; i++) {
        const ch = await model.createChannel();
        await ch.prefetch(1);
        await ch.consume(
          'q',
          (m) => {
            low.push(m!.fields.consumerTag);
            ch.ack(m!);
          },
          { priority: 0, consumerTag: `L${i}` },
        );
      }
      // each round: the high-priority consumer takes one and holds it, the next goes to a low one
      for (let r = 0; r < 8; r++) {
        pub.sendToQueue('q', Buffer.from('high'));
        await pub.waitForConfirms();
        await waitFor(() => held !== null, 'the high-priority delivery');
        pub.sendToQueue('q', Buffer.from('low'));
        await pub.waitForConfirms();
        await waitFor(() => low.length === r + 1, 'a low-priority delivery');
        hiCh.ack(held!);
        held = null;
        await hiCh.checkQueue('q'); // the ack is in
      }
      expect(low).toEqual(['L0', 'L1', 'L2', 'L3', 'L0', 'L1', 'L2', 'L3']);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ basic.cancel

describe('basic.cancel', () => {
  it('cancel stops deliveries and is answered with cancel-ok, also for an unknown tag', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await declare(ch, 'q');
      const got: AMQPMessage[] = [];
      const c = await ch.basicConsume('q', { tag: 'c1', noAck: true }, (m) => {
        got.push(m);
      });
      await publish(client, 'q', bodies(2));
      await waitFor(() => got.length === 2, 'two deliveries');
      expect(await ch.basicCancel(c.tag)).toBe(ch);
      expect((await ch.queueDeclare('q', { passive: true })).consumerCount).toBe(0);
      await publish(client, 'q', bodies(3, 'later'));
      expect(await readyCount(client, 'q')).toBe(3);
      expect(got).toHaveLength(2);
      // an unknown tag, and the tag just cancelled: cancel-ok, the channel stays open
      await ch.basicCancel('no-such-consumer');
      await ch.basicCancel('c1');
      expect(ch.closed).toBe(false);
      expect((await ch.queueDeclare('q', { passive: true })).messageCount).toBe(3);
      await client.close();
      expect(errors).toEqual([]);

      const { model, errors: libErrors, closed } = await connectAmqplib(broker.url);
      const lch = await model.createChannel();
      expect(await lch.cancel('nobody')).toMatchObject({ consumerTag: 'nobody' });
      expect((await lch.checkQueue('q')).messageCount).toBe(3);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(libErrors).toEqual([]);
    });
  });

  it('deliveries unacked at cancel stay unacked on the channel and can still be acked after it', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (const b of bodies(4)) ch.sendToQueue('q', Buffer.from(b));
      const got: amqplib.ConsumeMessage[] = [];
      const { consumerTag } = await ch.consume('q', (m) => m && got.push(m));
      await waitFor(() => got.length === 4, 'four deliveries');
      await ch.cancel(consumerTag);
      // not requeued by the cancel
      const other = await model.createChannel();
      expect(await other.checkQueue('q')).toMatchObject({ messageCount: 0, consumerCount: 0 });
      // acks for deliveries of the cancelled consumer are accepted
      ch.ack(got[0]!);
      ch.ack(got[2]!);
      expect((await ch.checkQueue('q')).messageCount).toBe(0);
      // closing the channel requeues the two still unacked, marked redelivered, in order
      await ch.close();
      expect((await other.checkQueue('q')).messageCount).toBe(2);
      const again: amqplib.GetMessage[] = [];
      for (let i = 0; i < 2; i++) {
        const m = await other.get('q', { noAck: true });
        if (m) again.push(m);
      }
      expect(again.map((m) => [m.content.toString(), m.fields.redelivered])).toEqual([
        ['m1', true],
        ['m3', true],
      ]);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ basic.qos

describe('basic.qos', () => {
  it('a per-consumer prefetch limits the unacked deliveries of each consumer', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'a');
      await declare(setup, 'b');
      await publish(client, 'a', bodies(10, 'a'));
      await publish(client, 'b', bodies(10, 'b'));
      const ch = await client.channel();
      await ch.basicQos(2, 0, false);
      const a: AMQPMessage[] = [];
      const b: AMQPMessage[] = [];
      await ch.basicConsume('a', { noAck: false }, (m) => {
        a.push(m);
      });
      await ch.basicConsume('b', { noAck: false }, (m) => {
        b.push(m);
      });
      await waitFor(() => a.length === 2 && b.length === 2, 'two deliveries per consumer');
      expect(await readyCount(client, 'a')).toBe(8);
      expect(await readyCount(client, 'b')).toBe(8);
      expect([a.length, b.length]).toEqual([2, 2]);
      // one ack makes room for one more on that consumer only
      await a[0]!.ack();
      await waitFor(() => a.length === 3, 'a third delivery on a');
      expect(await readyCount(client, 'a')).toBe(7);
      expect(await readyCount(client, 'b')).toBe(8);
      expect(texts(a)).toEqual(['a0', 'a1', 'a2']);
      expect(b).toHaveLength(2);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a global prefetch limits the unacked deliveries of the whole channel', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const setup = await model.createChannel();
      for (const q of ['a', 'b']) {
        await setup.assertQueue(q, { durable: false });
        for (const x of bodies(10, q)) setup.sendToQueue(q, Buffer.from(x));
      }
      const ch = await model.createChannel();
      await ch.prefetch(3, true);
      const got: amqplib.ConsumeMessage[] = [];
      await ch.consume('a', (m) => m && got.push(m));
      await ch.consume('b', (m) => m && got.push(m));
      await waitFor(() => got.length === 3, 'three deliveries on the channel');
      const ready = async () =>
        (await setup.checkQueue('a')).messageCount + (await setup.checkQueue('b')).messageCount;
      expect(await ready()).toBe(17);
      expect(got).toHaveLength(3);
      ch.ack(got[0]!);
      await waitFor(() => got.length === 4, 'one more after an ack');
      expect(await ready()).toBe(16);
      expect(got).toHaveLength(4);
      // acking everything makes room for three more
      ch.ackAll();
      await waitFor(() => got.length === 7, 'three more after acking all');
      expect(await ready()).toBe(13);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('a channel at its global prefetch limit holds back its no-ack consumers too', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'a');
      await declare(setup, 'b');
      await publish(client, 'a', bodies(5, 'a'));
      await publish(client, 'b', bodies(5, 'b'));
      const ch = await client.channel();
      await ch.basicQos(1, 0, true);
      const a: AMQPMessage[] = [];
      const b: AMQPMessage[] = [];
      const ca = await ch.basicConsume('a', { noAck: false }, (m) => {
        a.push(m);
      });
      await waitFor(() => a.length === 1, 'one delivery on a');
      await ch.basicConsume('b', { noAck: true }, (m) => {
        b.push(m);
      });
      expect(await readyCount(client, 'b')).toBe(5);
      expect(b).toHaveLength(0);
      // below the limit again: no-ack deliveries do not count against it, so all of b arrives
      await ca.cancel();
      await a[0]!.ack();
      await waitFor(() => b.length === 5, 'all of b');
      expect(texts(b)).toEqual(bodies(5, 'b'));
      expect(await readyCount(client, 'a')).toBe(4);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('unacked basic.get deliveries do not count against the global prefetch', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(10));
      const ch = await client.channel();
      await ch.basicQos(2, 0, true);
      const g1 = await ch.basicGet('q', { noAck: false });
      const g2 = await ch.basicGet('q', { noAck: false });
      expect([g1?.bodyToString(), g2?.bodyToString()]).toEqual(['m0', 'm1']);
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 2, 'two deliveries despite the two unacked gets', 2_000);
      expect(await readyCount(client, 'q')).toBe(6);
      expect(texts(got)).toEqual(['m2', 'm3']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a per-consumer and a global prefetch apply together', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'a');
      await declare(setup, 'b');
      await publish(client, 'a', bodies(10, 'a'));
      await publish(client, 'b', bodies(10, 'b'));
      const ch = await client.channel();
      await ch.basicQos(2, 0, false);
      await ch.basicQos(3, 0, true);
      const a: AMQPMessage[] = [];
      const b: AMQPMessage[] = [];
      await ch.basicConsume('a', { noAck: false }, (m) => {
        a.push(m);
      });
      await ch.basicConsume('b', { noAck: false }, (m) => {
        b.push(m);
      });
      await waitFor(() => a.length + b.length === 3, 'three deliveries on the channel');
      expect((await readyCount(client, 'a')) + (await readyCount(client, 'b'))).toBe(17);
      // each consumer within its own limit of 2, the channel within its limit of 3
      expect(a).toHaveLength(2);
      expect(b).toHaveLength(1);
      // acking one of a's: a may take one more (channel at 3 again)
      await a[0]!.ack();
      await waitFor(() => a.length + b.length === 4, 'one more delivery');
      expect((await readyCount(client, 'a')) + (await readyCount(client, 'b'))).toBe(16);
      expect(a.length - 1).toBeLessThanOrEqual(2);
      expect(b.length).toBeLessThanOrEqual(2);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a channel at its global limit serves its waiting consumers in the order it passed them over, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      await declare(await client.channel(), 'work');
      const ch = await client.channel();
      await ch.basicQos(2, 0, true);
      const got: [string, AMQPMessage][] = [];
      for (const tag of ['a', 'b', 'c'])
        await ch.basicConsume('work', { tag, noAck: false }, (m) => {
          got.push([tag, m]);
        });
      const seen = () => got.map(([tag, m]) => `${tag}:${m.bodyToString()}`);
      await publish(client, 'work', bodies(8));
      await waitFor(() => got.length === 2, 'two deliveries');
      expect(seen()).toEqual(['a:m0', 'b:m1']);
      // m2 found c, then a, then b unable to take: c is served first once an ack frees room,
      // though the ack was a's (RabbitMQ 3.10.8 gives the same order)
      await got[0]![1].ack();
      await waitFor(() => got.length === 3, 'a third delivery');
      await got[1]![1].ack();
      await waitFor(() => got.length === 4, 'a fourth delivery');
      await got[2]![1].ack();
      await waitFor(() => got.length === 5, 'a fifth delivery');
      expect(seen()).toEqual(['a:m0', 'b:m1', 'c:m2', 'a:m3', 'b:m4']);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a per-consumer prefetch applies to consumers started after it, not to existing ones', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(10));
      const ch = await client.channel();
      await ch.basicQos(2);
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 2, 'two deliveries');
      await ch.basicQos(5);
      await got[0]!.ack();
      await waitFor(() => got.length === 3, 'a third delivery');
      expect(await readyCount(client, 'q')).toBe(7);
      expect(got).toHaveLength(3);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('prefetch 0 means unlimited', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      await publish(client, 'q', bodies(300));
      const ch = await client.channel();
      await ch.basicQos(1);
      await ch.basicQos(0);
      await ch.basicQos(0, 0, true);
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: false }, (m) => {
        got.push(m);
      });
      await waitFor(() => got.length === 300, 'all 300 unacked deliveries');
      expect(texts(got)).toEqual(bodies(300));
      expect(await readyCount(client, 'q')).toBe(0);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a prefetch size other than 0 closes the connection with 540 NOT_IMPLEMENTED', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const ch = await client.channel();
      await expect(ch.basicQos(1, 10, false)).rejects.toThrow(
        'connection closed: NOT_IMPLEMENTED - prefetch_size!=0 (10) (540)',
      );
      await waitFor(() => client.closed, 'amqp-client to see the connection closed');
      expect(errors).toContain('connection closed: NOT_IMPLEMENTED - prefetch_size!=0 (10) (540)');
    });
  });
});

// ------------------------------------------------------------------ sharing a queue

describe('consumers sharing a queue', () => {
  it('three consumers with prefetch 1 share the messages round-robin, each message received once', async () => {
    await withBroker(async (broker) => {
      const { model, errors, closed } = await connectAmqplib(broker.url);
      const setup = await model.createConfirmChannel();
      await setup.assertQueue('q', { durable: false });
      const seen: string[][] = [[], [], []];
      for (let i = 0; i < 3; i++) {
        const ch = await model.createChannel();
        await ch.prefetch(1);
        await ch.consume('q', (m) => {
          if (!m) return;
          seen[i]!.push(m.content.toString());
          ch.ack(m);
        });
      }
      const all = bodies(600);
      for (const b of all) setup.sendToQueue('q', Buffer.from(b));
      await setup.waitForConfirms();
      await waitFor(() => seen.flat().length === 600, 'all 600 messages');
      expect((await setup.checkQueue('q')).messageCount).toBe(0);
      for (const s of seen) expect(s.length).toBeGreaterThan(600 / 3 / 4);
      expect(seen.flat().sort()).toEqual([...all].sort());
      // each consumer sees its share in queue order
      for (const s of seen) expect(s).toEqual([...s].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1))));
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('consumers without a prefetch limit take turns message by message', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      const seen: string[][] = [[], [], []];
      for (let i = 0; i < 3; i++) {
        const ch = await client.channel();
        await ch.basicConsume('q', { noAck: true }, (m) => {
          seen[i]!.push(m.bodyToString() ?? '');
        });
      }
      await publish(client, 'q', bodies(30));
      await waitFor(() => seen.flat().length === 30, 'all 30 messages');
      expect(await readyCount(client, 'q')).toBe(0);
      const turns = (k: number) => bodies(30).filter((_, i) => i % 3 === k);
      expect(seen).toEqual([turns(0), turns(1), turns(2)]);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a work queue loses a consumer mid-work: every message is acked exactly once and the in-flight one is redelivered', async () => {
    await withBroker(async (broker) => {
      const N = 10_000;
      const { client: pubClient, errors: pubErrors } = await connectClient(broker.url);
      const setup = await pubClient.channel();
      await declare(setup, 'work');
      const acked = new Map<string, number>();
      const redelivered: string[] = [];
      const record = (body: string, redeliveredFlag: boolean) => {
        if (redeliveredFlag) redelivered.push(body);
        acked.set(body, (acked.get(body) ?? 0) + 1);
      };

      // the victim (amqplib): acks 49 messages, then its socket dies holding the 50th
      const victim = await connectAmqplib(broker.url);
      const vch = await victim.model.createChannel();
      vch.on('error', () => {});
      await vch.prefetch(1);
      let victimCount = 0;
      let inFlight = '';
      await vch.consume('work', (m) => {
        if (!m || inFlight !== '') return;
        victimCount++;
        const body = m.content.toString();
        if (victimCount === 50) {
          // prefetch 1: this delivery proves the broker has the ack of the 49th
          inFlight = body;
          amqplibSocket(victim.model).destroy(new Error('killed by the test'));
          return;
        }
        record(body, m.fields.redelivered);
        vch.ack(m);
      });

      // a worker on amqplib
      const w1 = await connectAmqplib(broker.url);
      const w1ch = await w1.model.createChannel();
      await w1ch.prefetch(1);
      let w1Count = 0;
      await w1ch.consume('work', (m) => {
        if (!m) return;
        w1Count++;
        record(m.content.toString(), m.fields.redelivered);
        w1ch.ack(m);
      });

      // a worker on amqp-client
      const w2 = await connectClient(broker.url);
      const w2ch = await w2.client.channel();
      await w2ch.basicQos(1);
      let w2Count = 0;
      await w2ch.basicConsume('work', { noAck: false }, (m) => {
        w2Count++;
        record(m.bodyToString() ?? '', m.redelivered);
        return m.ack();
      });

      const all = bodies(N, 'job');
      await publish(pubClient, 'work', all);
      await victim.closed;
      expect(victimCount).toBe(50);
      await waitFor(() => acked.size === N, `all ${N} messages acked`, 20_000);
      // a barrier on each surviving consumer connection: nothing else is on its way
      expect(await readyCount(w2.client, 'work')).toBe(0);
      const w1check = await w1.model.createChannel();
      expect(await w1check.checkQueue('work')).toMatchObject({ messageCount: 0, consumerCount: 2 });
      expect([...acked.keys()].sort()).toEqual([...all].sort());
      expect([...acked.values()].every((n) => n === 1)).toBe(true);
      expect(redelivered).toEqual([inFlight]);
      // the work was shared: 49 acked by the victim, the rest by the two workers
      expect(w1Count).toBeGreaterThan(0);
      expect(w2Count).toBeGreaterThan(0);
      expect(49 + w1Count + w2Count).toBe(N);

      expect(victim.errors.map((e) => e.message)).toEqual(['killed by the test']);
      await w1.model.close();
      await w2.client.close();
      await pubClient.close();
      expect(w1.errors).toEqual([]);
      expect(w2.errors).toEqual([]);
      expect(pubErrors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ flow and backpressure

describe('flow control', () => {
  it('channel.flow active=true is acknowledged; active=false closes the connection with 540, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectClient(broker.url);
      const setup = await client.channel();
      await declare(setup, 'q');
      const ch = await client.channel();
      const got: AMQPMessage[] = [];
      await ch.basicConsume('q', { noAck: true }, (m) => {
        got.push(m);
      });
      expect(await ch.basicFlow(true)).toBe(true);
      await publish(client, 'q', bodies(3));
      await waitFor(() => got.length === 3, 'deliveries with flow on');
      expect(texts(got)).toEqual(bodies(3));

      const refused = await connectClient(broker.url);
      const rch = await refused.client.channel();
      await expect(rch.basicFlow(false)).rejects.toThrow('NOT_IMPLEMENTED - active=false (540)');
      await waitFor(() => refused.client.closed, 'the refused connection closed');
      // everyone else is still served
      await publish(client, 'q', bodies(2, 'after'));
      await waitFor(() => got.length === 5, 'deliveries after the refusal');
      expect(texts(got.slice(3))).toEqual(bodies(2, 'after'));
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('a publisher held by a resource alarm keeps its connection past two heartbeat intervals', async () => {
    // a 1 MiB memory limit is always exceeded: the memory alarm goes up at the first check
    await withBroker(
      async (broker) => {
        const { model, errors, closed } = await connectAmqplib(`${broker.url}?heartbeat=1`);
        let blocked = '';
        model.on('blocked', (reason: string) => {
          blocked = reason;
        });
        await waitFor(() => blocked !== '', 'connection.blocked');
        expect(blocked).toBe('low on memory');
        const ch = await model.createChannel();
        await ch.assertQueue('held');
        // the publish makes the broker stop reading this connection, heartbeats included
        ch.sendToQueue('held', Buffer.from('x'));
        let gone = false;
        void closed.then(() => {
          gone = true;
        });
        // two silent 1 s intervals would drop a client that is really gone; this one is not
        await new Promise((r) => setTimeout(r, 3_500));
        expect(gone).toBe(false);
        expect(errors).toEqual([]);
        expect(broker.connections.size).toBe(1);
        // the broker is not reading it, so a close would not be heard: drop the socket
        (model.connection as unknown as { stream: Socket }).stream.destroy();
      },
      { memoryLimit: 1 },
    );
  });

  it('a consumer that stops reading its socket does not make the broker buffer without bound', async () => {
    await withBroker(async (broker) => {
      const N = 20_000;
      const SIZE = 10 * 1024;
      const { client: consumer, errors } = await connectClient(broker.url);
      const cch = await consumer.channel();
      await declare(cch, 'big');
      const seen = new Uint8Array(N);
      let received = 0;
      let wrongSize = 0;
      await cch.basicConsume('big', { noAck: true }, (m) => {
        const body = m.body as Uint8Array;
        if (body.byteLength !== SIZE) wrongSize++;
        seen[Buffer.from(body.buffer, body.byteOffset, body.byteLength).readUInt32BE(0)]!++;
        received++;
      });
      const socket = consumer.socket!;
      socket.pause();

      const pub = await connectAmqplib(broker.url);
      const pch = await pub.model.createConfirmChannel();
      const payload = Buffer.alloc(SIZE, 0x61);
      for (let i = 0; i < N; i++) {
        const b = Buffer.from(payload);
        b.writeUInt32BE(i, 0);
        if (!pch.sendToQueue('big', b)) await new Promise((r) => pch.once('drain', r));
      }
      await pch.waitForConfirms();
      // most messages are still in the queue, not in the broker's output buffers
      const probe = await pub.model.createChannel();
      const whilePaused = (await probe.checkQueue('big')).messageCount;
      expect(whilePaused).toBeGreaterThan(N / 2);
      expect(received).toBeLessThan(N / 2);

      socket.resume();
      await waitFor(() => received === N, `all ${N} messages after resuming`, 20_000);
      expect(await readyCount(consumer, 'big')).toBe(0);
      expect(received).toBe(N);
      expect(seen.every((n) => n === 1)).toBe(true);
      expect(wrongSize).toBe(0);
      await pub.model.close();
      await consumer.close();
      expect(pub.errors).toEqual([]);
      expect(errors).toEqual([]);
    });
  });
});

describe('x-single-active-consumer', () => {
  it('delivers only to the first consumer until it goes, then to the next', async () => {
    await withBroker(async (broker) => {
      const client = new AMQPClient(broker.url);
      await client.connect();
      const ch = await client.channel();
      await ch.queueDeclare('sac', { durable: false }, { 'x-single-active-consumer': true });
      const first: string[] = [];
      const second: string[] = [];
      const c1 = await ch.basicConsume('sac', { noAck: true }, (m) => {
        first.push(m.bodyToString()!);
      });
      await ch.basicConsume('sac', { noAck: true }, (m) => {
        second.push(m.bodyToString()!);
      });
      for (let i = 0; i < 10; i++) await ch.basicPublish('', 'sac', `m${i}`);
      const ch2 = await client.channel();
      await ch2.queueDeclare('sac', { passive: true });
      await waitFor(() => first.length === 10, 'ten deliveries to the active consumer');
      expect(second).toEqual([]);
      await c1.cancel();
      for (let i = 10; i < 15; i++) await ch.basicPublish('', 'sac', `m${i}`);
      await waitFor(() => second.length === 5, 'the next consumer to take over');
      expect(second).toEqual(['m10', 'm11', 'm12', 'm13', 'm14']);
      expect(first).toHaveLength(10);
      await client.close();
    });
  });
});
