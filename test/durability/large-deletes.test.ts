/**
 * Deletions too large for one LMDB transaction. lmdb-js commits a tick's writes as one
 * transaction, which can dirty only so many pages: an ack of 10,000 unacked 16 KB messages in
 * one frame, or a purge of 12,000 paged-out ones, failed with MDB_TXN_FULL, and the acked or
 * purged messages all came back at the next start. The broker now writes such deletions a
 * transaction's worth at a time; these tests restart on the same data dir and count.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqplib from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker.js';

const dirs: string[] = [];
const brokers: Broker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'warren-deletes-'));
  dirs.push(d);
  return d;
}

async function start(dir: string): Promise<Broker> {
  const b = await Broker.start({ port: 0, host: '127.0.0.1', dataDir: dir, logLevel: 'silent' });
  brokers.push(b);
  return b;
}

/** Stops the broker gracefully and starts a new one on the same data dir. */
async function restart(b: Broker, dir: string): Promise<Broker> {
  brokers.splice(brokers.indexOf(b), 1);
  await b.stop();
  return start(dir);
}

async function connect(b: Broker): Promise<amqplib.ChannelModel> {
  const m = await amqplib.connect(b.url);
  m.on('error', () => {});
  return m;
}

/** Publishes n persistent messages (body: 4-byte index, padded to `size`), all confirmed. */
async function fill(b: Broker, exchange: string, key: string, n: number, size: number): Promise<void> {
  const m = await connect(b);
  const ch = await m.createConfirmChannel();
  for (let i = 0; i < n; i++) {
    const body = Buffer.alloc(size);
    body.writeUInt32BE(i, 0);
    ch.publish(exchange, key, body, { persistent: true });
    if (i % 1000 === 999) await ch.waitForConfirms();
  }
  await ch.waitForConfirms();
  await m.close();
}

/** Consumes n messages without acking them; returns the channel and the last delivery. */
async function hold(m: amqplib.ChannelModel, queue: string, n: number) {
  const ch = await m.createChannel();
  let got = 0;
  const last = await new Promise<amqplib.ConsumeMessage>((resolve) => {
    void ch.consume(queue, (msg) => {
      if (msg !== null && ++got === n) resolve(msg);
    });
  });
  return { ch, last };
}

async function count(b: Broker, queue: string): Promise<number> {
  const m = await connect(b);
  const ch = await m.createChannel();
  const { messageCount } = await ch.checkQueue(queue);
  await m.close();
  return messageCount;
}

/** The queue's n messages, as the indexes their bodies carry (unacked: they go back). */
async function indexes(b: Broker, queue: string, n: number): Promise<number[]> {
  const m = await connect(b);
  const ch = await m.createChannel();
  const out: number[] = [];
  await new Promise<void>((resolve) => {
    void ch.consume(
      queue,
      (msg) => {
        if (msg === null) return;
        out.push(msg.content.readUInt32BE(0));
        if (out.length === n) resolve();
      },
      { noAck: false },
    );
  });
  await m.close();
  return out;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('deletions larger than one store transaction', () => {
  it('an ack of 10,000 unacked 16 KB messages in one frame is written: none comes back after a restart', async () => {
    const dir = dataDir();
    let b = await start(dir);
    const m = await connect(b);
    await (await m.createChannel()).assertQueue('big-ack', { durable: true });
    await fill(b, '', 'big-ack', 10_000, 16 * 1024);
    const { ch, last } = await hold(m, 'big-ack', 10_000);
    ch.ack(last, true);
    await ch.close(); // after the ack: nothing left to requeue
    expect(await count(b, 'big-ack')).toBe(0);
    await m.close();
    b = await restart(b, dir);
    expect(await count(b, 'big-ack')).toBe(0);
  }, 60_000);

  it('a purge of 12,000 paged-out 16 KB messages is written: the queue stays empty after a restart', async () => {
    const dir = dataDir();
    let b = await start(dir);
    const m = await connect(b);
    const ch = await m.createChannel();
    await ch.assertQueue('big-purge', { durable: true });
    await fill(b, '', 'big-purge', 12_000, 16 * 1024);
    expect((await ch.purgeQueue('big-purge')).messageCount).toBe(12_000);
    await m.close();
    b = await restart(b, dir);
    expect(await count(b, 'big-purge')).toBe(0);
  }, 60_000);

  it('three deep queues purged just before a clean stop stay empty after the restart', async () => {
    // only the first range purge in line had its record written; a stop before the others got
    // their turn left those queues' paged-out messages to come back
    const dir = dataDir();
    let b = await start(dir);
    const m = await connect(b);
    const ch = await m.createChannel();
    const queues = ['deep-1', 'deep-2', 'deep-3'];
    for (const q of queues) {
      await ch.assertQueue(q, { durable: true });
      await fill(b, '', q, 45_000, 1000);
    }
    for (const q of queues) expect((await ch.purgeQueue(q)).messageCount).toBe(45_000);
    b = await restart(b, dir);
    for (const q of queues) expect(await count(b, q)).toBe(0);
  }, 60_000);

  it('25,000 acks of messages fanned out to two queues go in chunks: the other queue keeps every body', async () => {
    const dir = dataDir();
    let b = await start(dir);
    let m = await connect(b);
    const setup = await m.createChannel();
    await setup.assertExchange('fan', 'fanout', { durable: true });
    for (const q of ['fan-a', 'fan-b']) {
      await setup.assertQueue(q, { durable: true });
      await setup.bindQueue(q, 'fan', '');
    }
    const n = 25_000;
    await fill(b, 'fan', '', n, 32);
    // one frame acks all of fan-a: more removals than one transaction takes
    const a = await hold(m, 'fan-a', n);
    a.ch.ack(a.last, true);
    await a.ch.close();
    await m.close();
    b = await restart(b, dir);
    expect(await count(b, 'fan-a')).toBe(0);
    expect(await indexes(b, 'fan-b', n)).toEqual(range(n));
    // fan-b's copies are the bodies' last references: acking them all deletes the bodies too
    m = await connect(b);
    const bq = await hold(m, 'fan-b', n);
    bq.ch.ack(bq.last, true);
    await bq.ch.close();
    await m.close();
    b = await restart(b, dir);
    expect(await count(b, 'fan-a')).toBe(0);
    expect(await count(b, 'fan-b')).toBe(0);
  }, 60_000);

  it('a clean stop with 30,000 unacked deliveries keeps them all, redelivered', async () => {
    const dir = dataDir();
    let b = await start(dir);
    const m = await connect(b);
    await (await m.createChannel()).assertQueue('held', { durable: true });
    await fill(b, '', 'held', 30_000, 16);
    await hold(m, 'held', 30_000);
    b = await restart(b, dir);
    const m2 = await connect(b);
    const ch = await m2.createChannel();
    const seen: number[] = [];
    let redelivered = 0;
    await new Promise<void>((resolve) => {
      void ch.consume(
        'held',
        (msg) => {
          if (msg === null) return;
          seen.push(msg.content.readUInt32BE(0));
          if (msg.fields.redelivered) redelivered++;
          if (seen.length === 30_000) resolve();
        },
        { noAck: true },
      );
    });
    expect(seen).toEqual(range(30_000));
    expect(redelivered).toBe(30_000);
    await m2.close();
  }, 60_000);
});
