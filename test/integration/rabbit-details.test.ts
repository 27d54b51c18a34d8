/**
 * Details where Warren was found to differ from RabbitMQ 3.10.8 by differential probes (the same
 * client code against both), each pinned to what RabbitMQ does: length limits with a waiting
 * consumer, single active consumer hand-over, head-only expiry, expiration parsing, the headers
 * of dead letters (wire types included), CC/BCC validation, x-expires and passive declares.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker.js';
import { decodeTable, type FieldTable, type Typed } from '../../src/protocol/field-table.js';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { LmdbStore } from '../../src/storage/lmdb-store.js';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, nextChannelError } from '../helpers/consumers.js';
import { RawClient } from '../helpers/raw-client.js';
import { drain } from '../helpers/routing.js';
import { waitFor } from '../helpers/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('length limits and consumers', () => {
  it('x-max-length never drops a message a consumer takes at once (drop-head)', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dlq', { durable: false });
      await ch.assertQueue('q', {
        durable: false,
        arguments: { 'x-max-length': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
      });
      const got: string[] = [];
      await ch.consume('q', (m) => got.push(m!.content.toString()), { noAck: true });
      for (let i = 0; i < 5; i++) ch.sendToQueue('q', Buffer.from(`m${i}`));
      await waitFor(() => got.length === 5, 'all five delivered');
      expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
      expect(await drain(ch, 'dlq')).toEqual([]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('drop-head and expiry', () => {
  it('a head exposed by drop-head that has expired is dead-lettered at once, after the dropped one', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('dlq', { durable: false });
      await ch.assertQueue('q', {
        durable: false,
        arguments: { 'x-max-length': 2, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
      });
      ch.sendToQueue('q', Buffer.from('a'));
      ch.sendToQueue('q', Buffer.from('b'), { expiration: '20' });
      await ch.waitForConfirms();
      // b expires behind a, which has no TTL: it stays until it is the head
      await sleep(100);
      expect((await ch.checkQueue('q')).messageCount).toBe(2);
      ch.sendToQueue('q', Buffer.from('c'));
      await ch.waitForConfirms();
      expect((await ch.checkQueue('q')).messageCount).toBe(1);
      const dead: string[] = [];
      for (;;) {
        const m = await ch.get('dlq', { noAck: true });
        if (m === false) break;
        const death = (m.properties.headers!['x-death'] as { reason: string }[])[0]!;
        dead.push(`${m.content.toString()}:${death.reason}`);
      }
      expect(dead).toEqual(['a:maxlen', 'b:expired']);
      expect(await drain(ch, 'q')).toEqual(['c']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('single active consumer', () => {
  it('the active consumer keeps the queue when a higher-priority one joins; the next takes over when it goes', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const setup = await model.createChannel();
      await setup.assertQueue('sac', { durable: false, arguments: { 'x-single-active-consumer': true } });
      const got: Record<string, string[]> = { low: [], high: [] };
      const chans: Record<string, amqplib.Channel> = {};
      for (const [name, priority] of [
        ['low', 1],
        ['high', 10],
      ] as const) {
        const ch = await model.createChannel();
        chans[name] = ch;
        await ch.consume('sac', (m) => got[name]!.push(m!.content.toString()), { noAck: true, priority });
      }
      for (let i = 0; i < 3; i++) setup.sendToQueue('sac', Buffer.from(`p${i}`));
      await waitFor(() => got['low']!.length === 3, 'the first consumer gets them');
      // when the active consumer's channel closes, the other one is served without further events
      await chans['low']!.close();
      for (let i = 0; i < 2; i++) setup.sendToQueue('sac', Buffer.from(`q${i}`));
      await waitFor(() => got['high']!.length === 2, 'the next consumer takes over');
      expect(got).toEqual({ low: ['p0', 'p1', 'p2'], high: ['q0', 'q1'] });
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('x-single-active-consumer that is not a bool is refused with the type RabbitMQ names', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const err = nextChannelError(ch);
      await ch.assertQueue('q', { arguments: { 'x-single-active-consumer': 'yes' } }).catch(() => {});
      expect((await err).message).toContain(
        "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,longstr}",
      );
      await model.close();
    });
  });
});

describe('expiry', () => {
  it('only the head expires: a short TTL behind a longer one waits; priorities likewise', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('fifo', { durable: false });
      await ch.assertQueue('prio', { durable: false, arguments: { 'x-max-priority': 5 } });
      ch.sendToQueue('fifo', Buffer.from('long'), { expiration: '60000' });
      ch.sendToQueue('fifo', Buffer.from('short'), { expiration: '20' });
      ch.sendToQueue('prio', Buffer.from('p5'), { priority: 5, expiration: '60000' });
      ch.sendToQueue('prio', Buffer.from('p1'), { priority: 1, expiration: '20' });
      await sleep(150);
      expect((await ch.checkQueue('fifo')).messageCount).toBe(2);
      expect((await ch.checkQueue('prio')).messageCount).toBe(2);
      // basic.get takes the head; the expired message now at the head goes at once
      const first = await ch.get('fifo', { noAck: true });
      if (first === false) throw new Error('the queue was empty');
      expect(first.content.toString()).toBe('long');
      expect(first.fields.messageCount).toBe(0);
      expect((await ch.checkQueue('fifo')).messageCount).toBe(0);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('a TTL-0 message a consumer took and requeued has expired: dead-lettered, not redelivered', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dl', { durable: false });
      const dlx = { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl' };
      await ch.assertQueue('ttl0', { durable: false, arguments: { ...dlx, 'x-message-ttl': 0 } });
      await ch.assertQueue('plain', { durable: false, arguments: dlx });
      const cons = await model.createChannel();
      await cons.prefetch(1);
      const got: string[] = [];
      for (const q of ['ttl0', 'plain'])
        await cons.consume(q, (m) => {
          got.push(`${m!.content}${m!.fields.redelivered ? ' again' : ''}`);
          if (!m!.fields.redelivered) cons.nack(m!, false, true);
        });
      ch.sendToQueue('ttl0', Buffer.from('queue ttl'));
      ch.sendToQueue('plain', Buffer.from('expiration'), { expiration: '0' });
      await waitFor(() => got.length >= 2, 'both delivered once');
      const dead: string[] = [];
      for (let i = 0; i < 300 && dead.length < 2; i++) {
        dead.push(...(await drain(ch, 'dl')));
        if (dead.length < 2) await sleep(10);
      }
      expect(dead.sort()).toEqual(['expiration', 'queue ttl']);
      expect(got.sort()).toEqual(['expiration', 'queue ttl']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('expiration takes a sign, as Erlang integers do, and is capped at ten years', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('q', { durable: false });
      for (const expiration of ['+5000', '-0', '315360000000']) {
        await new Promise<void>((resolve, reject) =>
          ch.sendToQueue('q', Buffer.from(expiration), { expiration }, (e) => (e ? reject(e) : resolve())),
        );
      }
      // '-0' is a zero TTL: behind '+5000' it is counted until it reaches the head (RabbitMQ 3.10.8)
      expect((await ch.checkQueue('q')).messageCount).toBe(3);
      const first = await ch.get('q', { noAck: true });
      expect(first !== false && [first.content.toString(), first.fields.messageCount]).toEqual(['+5000', 1]);
      const err = nextChannelError(ch);
      ch.sendToQueue('q', Buffer.from('x'), { expiration: '315360000001' });
      expect((await err).message).toContain(
        "PRECONDITION_FAILED - invalid expiration '315360000001': {value_too_large,315360000001}",
      );
      await model.close();
    });
  });

  it.each([
    // py-amqp sends floats as doubles; RabbitMQ goes by the wire type, not the value
    ['x-message-ttl', { '!': 'double', value: 1000 }, '"expected integer, got double"'],
    ['x-max-length', { '!': 'float', value: 10 }, '"expected integer, got float"'],
    ['x-message-ttl', 2 ** 40, '{value_too_large,1099511627776}'],
    ['x-expires', 315_360_000_001, '{value_too_large,315360000001}'],
    ['x-overflow', { '!': 'byte', value: 1 }, '{unacceptable_type,byte}'],
    ['x-dead-letter-routing-key', { '!': 'byte', value: 1 }, '{unacceptable_type,byte}'],
    ['x-queue-type', { '!': 'byte', value: 1 }, '{unacceptable_type,byte}'],
    ['x-queue-mode', 'fast', `"unsupported queue mode 'fast'"`],
    ['x-queue-version', 3, `"unsupported queue version '3'"`],
  ])('%s = %j is refused with the text RabbitMQ gives', async (arg, value, text) => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const err = nextChannelError(ch);
      const args: Record<string, unknown> = { [arg]: value };
      if (arg === 'x-dead-letter-routing-key') args['x-dead-letter-exchange'] = '';
      await ch.assertQueue('q', { arguments: args }).catch(() => {});
      expect((await err).message).toContain(
        `PRECONDITION_FAILED - invalid arg '${arg}' for queue 'q' in vhost '/': ${text}`,
      );
      // the largest TTL and expiry RabbitMQ takes (ten years), and queue version 2, are fine
      const ok = await model.createChannel();
      await ok.assertQueue('fine', {
        arguments: { 'x-message-ttl': 315_360_000_000, 'x-expires': 315_360_000_000, 'x-queue-version': 2 },
      });
      await model.close();
    });
  });

  it('delivery-mode other than 1 or 2 is refused with 406, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      await (await model.createChannel()).assertQueue('dm', { durable: false });
      for (const mode of [0, 3, 255]) {
        const ch = await model.createChannel();
        const err = nextChannelError(ch);
        ch.sendToQueue('dm', Buffer.from('x'), { deliveryMode: mode });
        expect((await err).message).toContain(
          `PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,${mode}}`,
        );
      }
      const ch = await model.createConfirmChannel();
      ch.sendToQueue('dm', Buffer.from('1'), { deliveryMode: 1 });
      ch.sendToQueue('dm', Buffer.from('2'), { deliveryMode: 2 });
      await ch.waitForConfirms();
      expect((await ch.checkQueue('dm')).messageCount).toBe(2);
      await model.close();
    });
  });

  it('a passive queue.declare counts as use for x-expires', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('kept', { durable: false, arguments: { 'x-expires': 400 } });
      for (let i = 0; i < 6; i++) {
        await sleep(150);
        await ch.checkQueue('kept');
      }
      await model.close();
    });
  });

  it('x-expires and x-message-ttl beyond 24.8 days (2^31 ms) do not fire at once', async () => {
    // Node fires a longer setTimeout after 1 ms and warns (a timer loop, 1,000 times a second)
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const thirtyDays = 30 * 24 * 3600 * 1000;
      await ch.assertQueue('month', { arguments: { 'x-expires': thirtyDays, 'x-message-ttl': thirtyDays } });
      ch.sendToQueue('month', Buffer.from('kept'), { expiration: String(thirtyDays) });
      await sleep(300);
      expect((await ch.checkQueue('month')).messageCount).toBe(1);
      await model.close();
    });
    process.off('warning', onWarning);
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  });
});

describe('dead letters', () => {
  /** basic.get over a raw socket: the delivered message's headers with their wire types. */
  async function typedHeaders(port: number, q: string): Promise<FieldTable> {
    const c = await RawClient.open(port);
    try {
      c.send((w) => M.encodeChannelOpen(w, 1, {}));
      await c.expectMethod(Method.CHANNEL_OPEN_OK);
      c.send((w) => M.encodeBasicGet(w, 1, { queue: q, noAck: true } as M.BasicGet));
      await c.expectMethod(Method.BASIC_GET_OK);
      await c.until(() => c.frames.some((f) => f.type === 2), 'the content header');
      const p = c.frames.find((f) => f.type === 2)!.payload;
      // class, weight, body size (12 bytes), then flags: content-type, content-encoding, headers
      const flags = p.readUInt16BE(12);
      let o = 14;
      if (flags & 0x8000) o += 1 + p[o]!;
      if (flags & 0x4000) o += 1 + p[o]!;
      return decodeTable(p, o + 4, o + 4 + p.readUInt32BE(o), true);
    } finally {
      c.close();
    }
  }
  const wire = (v: unknown) => (v as Typed).type;
  const val = (v: unknown) => (v as Typed).value;

  it('keep every header wire type; x-death count is a long; CC goes with a new routing key', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dl', { durable: false });
      await ch.assertQueue('src', {
        durable: false,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl' },
      });
      ch.sendToQueue('src', Buffer.from('x'), {
        headers: {
          b: { '!': 'byte', value: 5 },
          s: { '!': 'short', value: 300 },
          f: { '!': 'float', value: 1.5 },
          CC: ['other'],
        },
      });
      const m = await waitForGet(ch, 'src');
      ch.nack(m, false, false);
      for (let i = 0; i < 100 && (await ch.checkQueue('dl')).messageCount === 0; i++) await sleep(10);
      const h = await typedHeaders(broker.port, 'dl');
      expect([wire(h['b']), val(h['b'])]).toEqual(['b', 5]);
      expect([wire(h['s']), val(h['s'])]).toEqual(['s', 300]);
      expect([wire(h['f']), val(h['f'])]).toEqual(['f', 1.5]);
      // the dead-letter routing key replaced the keys, so CC went; the keys are sorted
      expect(h['CC']).toBeUndefined();
      expect(Object.keys(h)).toEqual([...Object.keys(h)].sort());
      const deaths = val(h['x-death']) as Typed[];
      const death = val(deaths[0]) as FieldTable;
      expect([wire(death['count']), val(death['count'])]).toEqual(['l', 1]);
      expect(val(death['reason'])).toBe('rejected');
      expect(val(h['x-first-death-queue'])).toBe('src');
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it("x-death: a new entry's keys are sorted, older entries keep theirs (RabbitMQ 3.10)", async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dl', { durable: false });
      // q1 expires into q2, which dead-letters a reject into dl
      await ch.assertQueue('q2', {
        durable: false,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl' },
      });
      await ch.assertQueue('q1', {
        durable: false,
        arguments: { 'x-message-ttl': 20, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'q2' },
      });
      ch.sendToQueue('q1', Buffer.from('x'));
      const m = await waitForGet(ch, 'q2');
      ch.nack(m, false, false);
      for (let i = 0; i < 100 && (await ch.checkQueue('dl')).messageCount === 0; i++) await sleep(10);
      const h = await typedHeaders(broker.port, 'dl');
      const deaths = (val(h['x-death']) as Typed[]).map((d) => val(d) as FieldTable);
      expect(deaths.map((d) => val(d['queue']))).toEqual(['q2', 'q1']);
      expect(Object.keys(deaths[0]!)).toEqual([
        'count',
        'exchange',
        'queue',
        'reason',
        'routing-keys',
        'time',
      ]);
      // the first death's entry as it was written then
      expect(Object.keys(deaths[1]!)).toEqual([
        'count',
        'reason',
        'queue',
        'time',
        'exchange',
        'routing-keys',
      ]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  /** An x-death entry as a client may write one (amqplib field-table notation). */
  function deathEntry(queue: string, reason: string, count: number) {
    return { count: { '!': 'long', value: count }, reason, queue, exchange: '', 'routing-keys': [queue] };
  }

  async function waitForGet(ch: amqplib.Channel, q: string): Promise<amqplib.GetMessage> {
    for (let i = 0; i < 100; i++) {
      const m = await ch.get(q, { noAck: false });
      if (m !== false) return m;
      await sleep(10);
    }
    throw new Error(`nothing in ${q}`);
  }

  it('x-death: a history of two or more entries comes back regrouped as RabbitMQ 3.10 writes it', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dl', { durable: false });
      await ch.assertQueue('src', {
        durable: false,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl' },
      });
      const entry = (queue: string, count: number) => deathEntry(queue, 'expired', count);
      const histories = [
        [entry('qa', 1)],
        [entry('qa', 1), entry('qb', 2), entry('qc', 3)],
        // one entry per queue and reason: the first kept
        [entry('qa', 1), entry('qb', 2), entry('qa', 3)],
        // the same queue with another reason is another entry
        [
          entry('qa', 1),
          deathEntry('qa', 'rejected', 2),
          entry('qa', 3),
          entry('qb', 5),
          deathEntry('qa', 'rejected', 4),
        ],
      ];
      const seen: string[][] = [];
      for (const deaths of histories) {
        ch.sendToQueue('src', Buffer.from('x'), { headers: { 'x-death': deaths } });
        ch.nack(await waitForGet(ch, 'src'), false, false);
        const m = await waitForGet(ch, 'dl');
        ch.ack(m);
        const xd = m.properties.headers!['x-death'] as { queue: string; count: number }[];
        seen.push(xd.map((d) => `${d.queue}/${d.count}`));
      }
      // RabbitMQ 3.10.8, same input: older entries reversed once there are two or more
      expect(seen).toEqual([
        ['src/1', 'qa/1'],
        ['src/1', 'qc/3', 'qb/2', 'qa/1'],
        ['src/1', 'qb/2', 'qa/1'],
        ['src/1', 'qb/5', 'qa/2', 'qa/1'],
      ]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('a dead-letter cycle is judged by the entries up to the target queue, newest first', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('target', { durable: false });
      // everything published here expires at once into target
      await ch.assertQueue('src', {
        durable: false,
        arguments: {
          'x-message-ttl': 0,
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': 'target',
        },
      });
      const entry = (queue: string, reason: string) => deathEntry(queue, reason, 1);
      // regrouped (reversed), then src's new entry in front: src, target, other(rejected) — no
      // rejection before target's entry, so a cycle: dropped
      ch.sendToQueue('src', Buffer.from('cycle'), {
        headers: { 'x-death': [entry('other', 'rejected'), entry('target', 'expired')] },
      });
      // src, other(rejected), target: a rejection in the way, so delivered
      ch.sendToQueue('src', Buffer.from('not a cycle'), {
        headers: { 'x-death': [entry('target', 'expired'), entry('other', 'rejected')] },
      });
      await sleep(100);
      expect(await drain(ch, 'target')).toEqual(['not a cycle']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('a dead letter is routed under its BCC keys again, which x-death does not list', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertExchange('dlx', 'direct', { durable: false });
      for (const k of ['src', 'kcc', 'kbcc']) {
        await ch.assertQueue(`to-${k}`, { durable: false });
        await ch.bindQueue(`to-${k}`, 'dlx', k);
      }
      await ch.assertQueue('src', { durable: false, arguments: { 'x-dead-letter-exchange': 'dlx' } });
      ch.sendToQueue('src', Buffer.from('m'), { headers: { CC: ['kcc'], BCC: ['kbcc'] } });
      const m = await waitForGet(ch, 'src');
      expect(m.properties.headers!['BCC']).toBeUndefined();
      ch.nack(m, false, false);
      const got = await waitForGet(ch, 'to-kbcc');
      const xd = got.properties.headers!['x-death'] as { 'routing-keys': string[] }[];
      expect(xd[0]!['routing-keys']).toEqual(['src', 'kcc']);
      expect(await drain(ch, 'to-src')).toEqual(['m']);
      expect(await drain(ch, 'to-kcc')).toEqual(['m']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('a message rejected after its queue was deleted is not dead-lettered', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dl', { durable: false });
      await ch.assertQueue('gone', {
        durable: false,
        arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl' },
      });
      ch.sendToQueue('gone', Buffer.from('held'));
      ch.sendToQueue('gone', Buffer.from('kept'));
      const held = await waitForGet(ch, 'gone');
      // a second one, rejected while its queue still stands, shows the dead-lettering works
      const kept = await waitForGet(ch, 'gone');
      ch.reject(kept, false);
      expect((await ch.deleteQueue('gone')).messageCount).toBe(0);
      ch.reject(held, false);
      await sleep(100);
      expect(await drain(ch, 'dl')).toEqual(['kept']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('a CC or BCC header that is not an array is refused with 406 invalid message', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      for (const name of ['CC', 'BCC']) {
        const ch = await model.createChannel();
        const err = nextChannelError(ch);
        ch.publish('', 'q', Buffer.from('x'), { headers: { [name]: 'k2' } });
        expect((await err).message).toContain(
          `PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"${name}",longstr}`,
        );
      }
      await model.close();
    });
  });
});

describe('argument types', () => {
  it('a redeclare may change the width of an integer argument, not make it a float', async () => {
    await withBroker(async (broker) => {
      const { model } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false, arguments: { 'x-message-ttl': 100 } });
      await ch.assertQueue('q', {
        durable: false,
        arguments: { 'x-message-ttl': { '!': 'long', value: 100 } },
      });
      const err = nextChannelError(ch);
      await ch
        .assertQueue('q', { durable: false, arguments: { 'x-message-ttl': { '!': 'double', value: 100 } } })
        .catch(() => {});
      expect((await err).message).toContain(
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '100.0' but current is '100'",
      );
      await model.close();
    });
  });

  it("a binding's arguments keep their wire types: an unbind naming a long 1 leaves a byte 1's binding", async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertExchange('h', 'headers', { durable: false });
      await ch.assertQueue('q', { durable: false });
      // amqplib writes a small integer as a byte
      await ch.bindQueue('q', 'h', '', { 'x-match': 'any', a: 1 });
      const route = async (body: string) => {
        ch.publish('h', '', Buffer.from(body), { headers: { a: 1 } });
        await sleep(50);
        return drain(ch, 'q');
      };
      await ch.unbindQueue('q', 'h', '', { a: { '!': 'long', value: 1 }, 'x-match': 'any' });
      expect(await route('still bound')).toEqual(['still bound']);
      await ch.unbindQueue('q', 'h', '', { a: 1, 'x-match': 'any' });
      expect(await route('unbound')).toEqual([]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('bindings from an older store', () => {
  it("a binding stored without its arguments' wire types is still found by an unbind with the same values", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-test-'));
    const start = () => Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    try {
      let broker = await start();
      let { model } = await connectAmqplib(broker.url);
      let ch = await model.createChannel();
      await ch.assertExchange('h', 'headers', { durable: true });
      await ch.assertQueue('q', { durable: true });
      await ch.bindQueue('q', 'h', '', { 'x-match': 'any', a: 1 });
      await model.close();
      await broker.stop();
      // rewrite the binding's record as stores kept it before wire types were recorded
      const store = new LmdbStore({ path: join(dataDir, 'warren.mdb'), sync: 'always', onError: () => {} });
      const [id, def] = store.definitions().find(([, d]) => d['kind'] === 'binding')!;
      expect(def['argTypes']).toBeDefined();
      store.deleteDefinition(id);
      const { argTypes: _, ...old } = def;
      store.putDefinition(old);
      store.commit();
      await store.close();

      broker = await start();
      ({ model } = await connectAmqplib(broker.url));
      ch = await model.createChannel();
      const routed = async () => {
        ch.publish('h', '', Buffer.from('m'), { headers: { a: 1 } });
        await sleep(50);
        return drain(ch, 'q');
      };
      expect(await routed()).toEqual(['m']);
      // binding again is no second binding, and one unbind removes it
      await ch.bindQueue('q', 'h', '', { 'x-match': 'any', a: 1 });
      await ch.unbindQueue('q', 'h', '', { 'x-match': 'any', a: 1 });
      expect(await routed()).toEqual([]);
      await model.close();
      await broker.stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('resource alarms', () => {
  it('a connection opened after the alarm went up is told connection.blocked when it publishes', async () => {
    // a 1 MiB memory limit is always exceeded: the memory alarm goes up at the first check
    await withBroker(
      async (broker) => {
        const first = new AMQPClient(broker.url);
        let firstBlocked = '';
        first.onblocked = (reason) => {
          firstBlocked = reason;
        };
        await first.connect();
        await waitFor(() => firstBlocked !== '', 'the alarm', 5_000);
        // heartbeats make the broker write to it, so it hears the socket go after the test
        const late = new AMQPClient(`${broker.url}?heartbeat=1`);
        let lateBlocked = '';
        late.onblocked = (reason) => {
          lateBlocked = reason;
        };
        await late.connect();
        const ch = await late.channel();
        void ch.basicPublish('', 'nowhere', 'x').catch(() => {});
        await waitFor(() => lateBlocked !== '', 'connection.blocked for the late publisher', 5_000);
        expect(lateBlocked).toBe('low on memory');
        // the broker is not reading the held publisher, so a close would not be heard: drop it
        (late as unknown as { socket: Socket }).socket.destroy();
        await first.close();
      },
      { memoryLimit: 1 },
    );
  });
});

describe('names', () => {
  it('exchange.declare and queue.declare drop CR and LF from names, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      expect((await ch.assertQueue('a\r\nb', { durable: false })).queue).toBe('ab');
      await ch.checkQueue('ab');
      await ch.assertExchange('x\r\ny', 'direct', { durable: false });
      await ch.checkExchange('xy');
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});

describe('prefetch', () => {
  it('a per-consumer basic.qos lifts a global prefetch set before it, as RabbitMQ', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('q', { durable: false });
      for (let i = 0; i < 5; i++) ch.sendToQueue('q', Buffer.from(`m${i}`));
      await ch.prefetch(1, true);
      await ch.prefetch(3, false);
      const got: string[] = [];
      await ch.consume('q', (m) => got.push(m!.content.toString()));
      await waitFor(() => got.length === 3, 'three deliveries');
      await sleep(100);
      expect(got).toEqual(['m0', 'm1', 'm2']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });
});
