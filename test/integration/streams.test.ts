/**
 * Streams (x-queue-type=stream) read over AMQP 0-9-1, as RabbitMQ's: an append-only log that
 * consumers read from an x-stream-offset without removing anything, offsets in an
 * x-stream-offset header, acks as credit, retention by whole segments, and the log kept across
 * a restart. Refusals carry RabbitMQ 3.10's codes and texts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqplib from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, nextChannelError } from '../helpers/consumers.js';
import { waitFor } from '../helpers/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STREAM = { durable: true, arguments: { 'x-queue-type': 'stream' } };

type Got = { body: string; offset: unknown; tag: number; redelivered: boolean };

/** Consumes `queue` from `offset` with prefetch `prefetch`; acks as it goes unless told not to. */
async function read(
  ch: amqplib.Channel,
  queue: string,
  offset?: unknown,
  { prefetch = 100, ack = true } = {},
): Promise<{ got: Got[]; tag: string }> {
  await ch.prefetch(prefetch);
  const got: Got[] = [];
  const args = offset === undefined ? {} : { 'x-stream-offset': offset };
  const { consumerTag } = await ch.consume(
    queue,
    (m) => {
      got.push({
        body: m!.content.toString(),
        offset: m!.properties.headers?.['x-stream-offset'],
        tag: m!.fields.deliveryTag,
        redelivered: m!.fields.redelivered,
      });
      if (ack) ch.ack(m!);
    },
    { arguments: args },
  );
  return { got, tag: consumerTag };
}

/** The channel error a basic.consume of `queue` gets, on a fresh channel with `prefetch` (0: none). */
async function consumeRefusal(
  model: amqplib.ChannelModel,
  queue: string,
  options: amqplib.Options.Consume,
  prefetch = 1,
): Promise<string> {
  const ch = await model.createChannel();
  if (prefetch > 0) await ch.prefetch(prefetch);
  const err = nextChannelError(ch);
  ch.consume(queue, () => {}, options).catch(() => {});
  return (await err).message;
}

/** A client, a confirm channel `pub` and the stream 's' declared on it. */
async function openStream(url: string) {
  const client = await connectAmqplib(url);
  const pub = await client.model.createConfirmChannel();
  await pub.assertQueue('s', STREAM);
  return { ...client, pub };
}

async function publishAll(ch: amqplib.ConfirmChannel, queue: string, bodies: string[]): Promise<void> {
  for (const b of bodies) ch.sendToQueue(queue, Buffer.from(b), { headers: { app: 'x' } });
  await ch.waitForConfirms();
}

const names = (n: number, p: string) => Array.from({ length: n }, (_, i) => `${p}${i}`);

describe('reading a stream', () => {
  it('every consumer reads the whole log from first; acks take nothing out', async () => {
    await withBroker(async (broker) => {
      const { model, errors, pub } = await openStream(broker.url);
      await publishAll(pub, 's', names(5, 'm'));
      const a = await read(await model.createChannel(), 's', 'first');
      await waitFor(() => a.got.length === 5, 'first reader');
      expect(a.got.map((g) => [g.body, g.offset])).toEqual(names(5, 'm').map((b, i) => [b, i]));
      expect(a.got.every((g) => !g.redelivered)).toBe(true);
      const b = await read(await model.createChannel(), 's', 'first');
      await waitFor(() => b.got.length === 5, 'second reader');
      expect(b.got.map((g) => g.body)).toEqual(names(5, 'm'));
      // the message count is the log's length, acks or not
      expect((await pub.checkQueue('s')).messageCount).toBe(5);
      await sleep(50);
      expect(a.got.length + b.got.length).toBe(10);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('keeps the message headers and adds x-stream-offset after them', async () => {
    await withBroker(async (broker) => {
      const { model, pub } = await openStream(broker.url);
      pub.sendToQueue('s', Buffer.from('h'), { headers: { app: 'x', n: 7 } });
      await pub.waitForConfirms();
      const ch = await model.createChannel();
      await ch.prefetch(1);
      const headers = new Promise<Record<string, unknown>>((resolve) => {
        void ch.consume('s', (m) => resolve(m!.properties.headers!), {
          arguments: { 'x-stream-offset': 'first' },
        });
      });
      expect(Object.entries(await headers)).toEqual([
        ['app', 'x'],
        ['n', 7],
        ['x-stream-offset', 0],
      ]);
      await model.close();
    });
  });

  it('starts where x-stream-offset says: an offset, next, last, a timestamp, an interval', async () => {
    await withBroker(async (broker) => {
      const { model, errors, pub } = await openStream(broker.url);
      await publishAll(pub, 's', names(3, 'a'));
      await sleep(1100); // timestamps are whole seconds
      const between = new Date();
      await publishAll(pub, 's', names(3, 'b'));
      const bodies = async (offset: unknown, n: number) => {
        const r = await read(await model.createChannel(), 's', offset);
        await waitFor(() => r.got.length >= n, `reader from ${String(offset)}`);
        await sleep(50);
        return r.got.map((g) => g.body);
      };
      expect(await bodies(2, 4)).toEqual(['a2', 'b0', 'b1', 'b2']);
      expect(await bodies(-1, 6)).toEqual([...names(3, 'a'), ...names(3, 'b')]);
      // last: the start of the last chunk written (the b batch went out in one tick)
      expect(await bodies('last', 1)).toContain('b2');
      expect(await bodies('last', 1)).not.toContain('a2');
      // a timestamp (field type T, whole seconds): the first chunk written at or after it
      const stamp = { '!': 'timestamp', value: Math.floor(between.getTime() / 1000) };
      expect(await bodies(stamp, 3)).toEqual(names(3, 'b'));
      expect(await bodies('10m', 6)).toEqual([...names(3, 'a'), ...names(3, 'b')]);
      // next (also the default): only what comes after; an offset past the end waits for it
      const next = await read(await model.createChannel(), 's', 'next');
      const dflt = await read(await model.createChannel(), 's');
      const beyond = await read(await model.createChannel(), 's', 100);
      await sleep(100);
      expect([next.got, dflt.got, beyond.got]).toEqual([[], [], []]);
      await publishAll(pub, 's', ['c0']);
      await waitFor(() => next.got.length + dflt.got.length === 2, 'tailing readers');
      for (const r of [next, dflt]) expect(r.got.map((g) => [g.body, g.offset])).toEqual([['c0', 6]]);
      expect(beyond.got).toEqual([]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('prefetch bounds what is in flight and an ack gives credit; a nack or reject closes the connection (540)', async () => {
    await withBroker(async (broker) => {
      const { model, closed, pub } = await openStream(broker.url);
      for (const b of names(6, 'm')) await publishAll(pub, 's', [b]);
      const ch = await model.createChannel();
      ch.on('error', () => {});
      const r = await read(ch, 's', 'first', { prefetch: 2, ack: false });
      await waitFor(() => r.got.length === 2, 'two in flight');
      await sleep(100);
      expect(r.got.length).toBe(2);
      const msg = (i: number) =>
        ({
          fields: { deliveryTag: r.got[i]!.tag },
          properties: {},
          content: Buffer.alloc(0),
        }) as amqplib.Message;
      ch.ack(msg(0));
      await waitFor(() => r.got.length === 3, 'credit from an ack');
      expect(r.got.map((g) => g.offset)).toEqual([0, 1, 2]);
      ch.nack(msg(1), false, true);
      const e = await closed;
      expect(e?.message).toContain(
        "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue 's' in vhost '/'",
      );
    });
  });

  it('a consumer at an offset not yet written waits for it; exclusive is ignored, x-priority refused', async () => {
    await withBroker(async (broker) => {
      const { model, errors, pub } = await openStream(broker.url);
      await publishAll(pub, 's', names(2, 'a'));
      const ahead = await read(await model.createChannel(), 's', 4);
      await publishAll(pub, 's', names(4, 'b'));
      await waitFor(() => ahead.got.length === 2, 'offsets 4 and 5');
      expect(ahead.got.map((g) => [g.body, g.offset])).toEqual([
        ['b2', 4],
        ['b3', 5],
      ]);
      // RabbitMQ's streams ignore exclusive consumers and count no consumers in declare-ok
      const ex = await model.createChannel();
      await ex.prefetch(1);
      await ex.consume('s', () => {}, { exclusive: true });
      await ex.consume('s', () => {}, { exclusive: true });
      expect((await pub.checkQueue('s')).consumerCount).toBe(0);
      expect(await consumeRefusal(model, 's', { priority: 5 })).toContain(
        "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 's' in vhost '/' of queue type rabbit_stream_queue",
      );
      // an offset string that starts like an interval and is not one: RabbitMQ's text
      expect(await consumeRefusal(model, 's', { arguments: { 'x-stream-offset': '10x' } })).toContain(
        `invalid arg 'x-stream-offset' for queue 's' in vhost '/': {invalid_stream_offset_arg,{longstr,<<"10x">>}}`,
      );
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('reads a log longer than its in-memory tail back from the store, in order', async () => {
    await withBroker(async (broker) => {
      const { model, errors, pub } = await openStream(broker.url);
      const n = 30_000;
      for (let i = 0; i < n; i++) pub.sendToQueue('s', Buffer.from(`m${i}`));
      await pub.waitForConfirms();
      const r = await read(await model.createChannel(), 's', 'first', { prefetch: 1000 });
      await waitFor(() => r.got.length === n, 'the whole log', 30_000);
      expect(r.got.every((g, i) => g.offset === i && g.body === `m${i}`)).toBe(true);
      await model.close();
      expect(errors).toEqual([]);
    });
  }, 60_000);
});

describe('what streams refuse (RabbitMQ 3.10 codes and texts)', () => {
  it('basic.get and queue.purge: 540; no-ack consume: 540; no prefetch: 406', async () => {
    await withBroker(async (broker) => {
      const hard = async (op: (ch: amqplib.Channel) => Promise<unknown>) => {
        const { model, closed } = await connectAmqplib(broker.url);
        const ch = await model.createChannel();
        ch.on('error', () => {});
        await ch.assertQueue('s', STREAM);
        await ch.prefetch(10);
        op(ch).catch(() => {});
        const e = await closed;
        return `${e?.code} ${e?.message}`;
      };
      expect(await hard((ch) => ch.get('s'))).toContain(
        "540 Connection closed: 540 (NOT-IMPLEMENTED) with message \"NOT_IMPLEMENTED - basic.get not supported by stream queues queue 's' in vhost '/'\"",
      );
      expect(await hard((ch) => ch.purgeQueue('s'))).toContain(
        "NOT_IMPLEMENTED - queue.purge not supported by stream queues queue 's' in vhost '/'",
      );
      expect(await hard((ch) => ch.consume('s', () => {}, { noAck: true }))).toContain(
        "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's' in vhost '/'",
      );
      const { model, errors } = await connectAmqplib(broker.url);
      expect(await consumeRefusal(model, 's', {}, 0)).toContain(
        "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''",
      );
      // a bad x-stream-offset is a channel error (RabbitMQ 3.10 closes the connection with 541)
      expect(await consumeRefusal(model, 's', { arguments: { 'x-stream-offset': 'bogus' } })).toContain(
        "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 's'",
      );
      // x-stream-offset on another queue type
      await (await model.createChannel()).assertQueue('classic');
      expect(
        await consumeRefusal(model, 'classic', { arguments: { 'x-stream-offset': 'first' } }, 0),
      ).toContain(
        "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'classic' in vhost '/' of queue type rabbit_classic_queue",
      );
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('declare: durable, shared, not auto-delete; x-max-age and segment size checked; arguments compared', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const refusal = async (name: string, opts: amqplib.Options.AssertQueue) => {
        const ch = await model.createChannel();
        const err = nextChannelError(ch);
        ch.assertQueue(name, opts).catch(() => {});
        return (await err).message;
      };
      const stream = (args: Record<string, unknown>) => ({
        durable: true,
        arguments: { 'x-queue-type': 'stream', ...args },
      });
      expect(await refusal('s1', { durable: false, arguments: { 'x-queue-type': 'stream' } })).toContain(
        "invalid property 'non-durable' for queue 's1' in vhost '/'",
      );
      expect(await refusal('s1', { ...STREAM, exclusive: true })).toContain(
        "invalid property 'exclusive-owner'",
      );
      expect(await refusal('s1', { ...STREAM, autoDelete: true })).toContain(
        "invalid property 'auto-delete'",
      );
      expect(await refusal('s1', stream({ 'x-max-age': '0s' }))).toContain(
        "invalid arg 'x-max-age' for queue 's1' in vhost '/': invalid_max_age",
      );
      expect(await refusal('s1', stream({ 'x-max-age': true }))).toContain('{unacceptable_type,bool}');
      expect(await refusal('s1', stream({ 'x-stream-max-segment-size-bytes': 3_000_000_001 }))).toMatch(
        /PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes"/,
      );
      expect(await refusal('s1', stream({ 'x-max-length': 5 }))).toContain(
        "invalid arg 'x-max-length' for queue 's1' in vhost '/' of queue type rabbit_stream_queue",
      );
      const ch = await model.createChannel();
      await ch.assertQueue('s2', stream({ 'x-max-age': '1h', 'x-stream-max-segment-size-bytes': 1000 }));
      expect(
        await refusal('s2', stream({ 'x-max-age': '2h', 'x-stream-max-segment-size-bytes': 1000 })),
      ).toContain(
        "inequivalent arg 'x-max-age' for queue 's2' in vhost '/': received '2h' but current is '1h'",
      );
      await model.close();
    });
  });
});

describe('retention and lifetime', () => {
  it('whole segments leave the front past x-max-length-bytes; offsets go on', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const pub = await model.createConfirmChannel();
      const args = {
        'x-queue-type': 'stream',
        'x-max-length-bytes': 2000,
        'x-stream-max-segment-size-bytes': 500,
      };
      await pub.assertQueue('s', { durable: true, arguments: args });
      const body = 'x'.repeat(100);
      for (let i = 0; i < 100; i++) pub.sendToQueue('s', Buffer.from(body));
      await pub.waitForConfirms();
      const kept = (await pub.checkQueue('s')).messageCount;
      expect(kept).toBeGreaterThan(5);
      expect(kept).toBeLessThan(40);
      const r = await read(await model.createChannel(), 's', 'first');
      await waitFor(() => r.got.length === kept, 'what is kept');
      const offsets = r.got.map((g) => g.offset as number);
      expect(offsets[0]).toBe(100 - kept);
      expect(offsets.at(-1)).toBe(99);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('queue.delete cancels readers and drops the log; if-empty does not stop it', async () => {
    await withBroker(async (broker) => {
      const { model, errors, pub } = await openStream(broker.url);
      await publishAll(pub, 's', names(3, 'm'));
      const ch = await model.createChannel();
      await ch.prefetch(10);
      let cancelled = false;
      await ch.consume('s', (m) => {
        if (m === null) cancelled = true;
        else ch.ack(m);
      });
      expect(await pub.deleteQueue('s', { ifEmpty: true })).toEqual({ messageCount: 0 });
      await waitFor(() => cancelled, 'basic.cancel from the broker');
      await pub.assertQueue('s', STREAM);
      expect((await pub.checkQueue('s')).messageCount).toBe(0);
      const r = await read(await model.createChannel(), 's', 'first');
      await sleep(100);
      expect(r.got).toEqual([]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('a stream across a restart', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('comes back whole, with its offsets, its last chunk and retention settings', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-stream-'));
    dirs.push(dataDir);
    const start = () => Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    let broker = await start();
    let model = await amqplib.connect(broker.url);
    const pub = await model.createConfirmChannel();
    await pub.assertQueue('s', STREAM);
    await pub.assertQueue('gone', STREAM);
    await publishAll(pub, 's', names(4, 'a'));
    await sleep(20);
    await publishAll(pub, 's', names(2, 'b'));
    await publishAll(pub, 'gone', ['g']);
    await pub.deleteQueue('gone');
    await model.close();
    await broker.stop();

    broker = await start();
    try {
      model = await amqplib.connect(broker.url);
      const ch = await model.createConfirmChannel();
      expect((await ch.checkQueue('s')).messageCount).toBe(6);
      const all = await read(await model.createChannel(), 's', 'first');
      await waitFor(() => all.got.length === 6, 'the log after a restart');
      expect(all.got.map((g) => [g.body, g.offset])).toEqual(
        [...names(4, 'a'), ...names(2, 'b')].map((b, i) => [b, i]),
      );
      // last: the start of the last chunk, which the second batch began or is part of
      const last = await read(await model.createChannel(), 's', 'last');
      await waitFor(() => last.got.length > 0, 'the last chunk');
      await sleep(50);
      expect(last.got.at(-1)?.body).toBe('b1');
      expect(last.got.map((g) => g.body)).not.toContain('a3');
      await publishAll(ch, 's', ['c']);
      await waitFor(() => all.got.length === 7, 'a new message');
      expect(all.got.at(-1)).toMatchObject({ body: 'c', offset: 6 });
      await ch.assertQueue('gone', STREAM);
      expect((await ch.checkQueue('gone')).messageCount).toBe(0);
      await model.close();
    } finally {
      await broker.stop();
    }
  });

  it('messages it shares with a durable queue (one stored body) come back too', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-stream-'));
    dirs.push(dataDir);
    const start = () => Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    let broker = await start();
    let model = await amqplib.connect(broker.url);
    const pub = await model.createConfirmChannel();
    await pub.assertExchange('fx', 'fanout', { durable: true });
    await pub.assertQueue('s', STREAM);
    await pub.assertQueue('classic', { durable: true });
    await pub.bindQueue('s', 'fx', '');
    await pub.bindQueue('classic', 'fx', '');
    for (const b of names(5, 'm')) pub.publish('fx', '', Buffer.from(b), { persistent: true });
    await pub.waitForConfirms();
    await model.close();
    await broker.stop();

    broker = await start();
    try {
      model = await amqplib.connect(broker.url);
      const ch = await model.createConfirmChannel();
      expect((await ch.checkQueue('s')).messageCount).toBe(5);
      expect((await ch.checkQueue('classic')).messageCount).toBe(5);
      await publishAll(ch, 's', ['after']);
      const all = await read(await model.createChannel(), 's', 'first');
      await waitFor(() => all.got.length === 6, 'the log after a restart');
      expect(all.got.map((g) => [g.body, g.offset])).toEqual(
        [...names(5, 'm'), 'after'].map((b, i) => [b, i]),
      );
      await model.close();
    } finally {
      await broker.stop();
    }
  });

  it('a log longer than the memory tail comes back with its offsets, segments and retention', async () => {
    // recovery sizes the log from the records' heads and reads only the tail's messages
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-stream-'));
    dirs.push(dataDir);
    const start = () => Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    const args = {
      durable: true,
      arguments: {
        'x-queue-type': 'stream',
        'x-stream-max-segment-size-bytes': 200_000,
        'x-max-length-bytes': 2_000_000,
      },
    };
    let broker = await start();
    let model = await amqplib.connect(broker.url);
    let pub = await model.createConfirmChannel();
    await pub.assertQueue('long', STREAM);
    await pub.assertQueue('kept', args);
    const long = names(30_000, 'm');
    for (let i = 0; i < long.length; i += 5000) await publishAll(pub, 'long', long.slice(i, i + 5000));
    const body = (i: number) => `k${i}`.padEnd(100, '.');
    const first = Array.from({ length: 18_000 }, (_, i) => body(i));
    for (let i = 0; i < first.length; i += 3000) await publishAll(pub, 'kept', first.slice(i, i + 3000));
    // retention has taken whole segments from the front
    const before = (await pub.checkQueue('kept')).messageCount;
    expect(before).toBeLessThan(18_000);
    await model.close();
    await broker.stop();

    broker = await start();
    try {
      model = await amqplib.connect(broker.url);
      pub = await model.createConfirmChannel();
      expect((await pub.checkQueue('long')).messageCount).toBe(30_000);
      const all = await read(await model.createChannel(), 'long', 'first', { prefetch: 1000 });
      await waitFor(() => all.got.length === 30_000, 'the whole log after a restart');
      expect(all.got.map((g) => g.body)).toEqual(long);
      expect(all.got.map((g) => g.offset)).toEqual(long.map((_, i) => i));
      // 'kept' keeps its offsets, up to its last message (a restart applies retention too)
      const n = (await pub.checkQueue('kept')).messageCount;
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThanOrEqual(before);
      const kept = await read(await model.createChannel(), 'kept', 'first', { prefetch: 1000 });
      await waitFor(() => kept.got.length === n, "'kept' after a restart");
      expect(kept.got.map((g) => g.offset)).toEqual(Array.from({ length: n }, (_, i) => 18_000 - n + i));
      expect(kept.got.map((g) => g.body)).toEqual(first.slice(18_000 - n));
      // its segments came back too: more messages make retention drop whole old ones again
      const more = Array.from({ length: 9000 }, (_, i) => body(18_000 + i));
      for (let i = 0; i < more.length; i += 3000) await publishAll(pub, 'kept', more.slice(i, i + 3000));
      const after = (await pub.checkQueue('kept')).messageCount;
      expect(after).toBeLessThan(n + 9000);
      expect(after).toBeGreaterThan(9000);
      const again = await read(await model.createChannel(), 'kept', 'first', { prefetch: 1000 });
      await waitFor(() => again.got.length === after, "'kept' after more messages");
      expect(again.got[0]!.offset).toBe(27_000 - after);
      expect(again.got.at(-1)?.body).toBe(body(26_999));
      await model.close();
    } finally {
      await broker.stop();
    }
  }, 60_000);
});
