/**
 * Durability across restarts: the built broker runs as a child process on one data dir, is
 * stopped with SIGTERM (exit 0) and started again, and a real client (amqplib) checks what came
 * back. Durable exchanges, queues (with their arguments), bindings, users and persistent
 * messages on durable queues survive; transient things do not. Deliveries that were not acked
 * come back redelivered, and the data dir lock and store errors are clear one-line failures.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { open as openLmdb } from 'lmdb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type ChildBroker, freePort, killAll, spawnBroker, startBroker } from './child-broker.js';

// ------------------------------------------------------------------ helpers

type AmqpError = Error & { code?: number };

const tempDirs: string[] = [];
const models: amqplib.ChannelModel[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'warren-durability-'));
  tempDirs.push(d);
  return d;
}

afterEach(async () => {
  for (const m of models.splice(0)) await m.close().catch(() => {});
  await killAll();
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function connect(b: ChildBroker, url = b.url): Promise<amqplib.ChannelModel> {
  // noDelay: basic.ack then basic.get would otherwise wait on Nagle + delayed ACK (40 ms each)
  const m = await amqplib.connect(url, { noDelay: true });
  m.on('error', () => {}); // 320 on shutdown and the like; tests look at what they expect
  models.push(m);
  return m;
}

async function confirmChannel(m: amqplib.ChannelModel): Promise<amqplib.ConfirmChannel> {
  const ch = await m.createConfirmChannel();
  ch.on('error', () => {});
  return ch;
}

/** Closes this test's clients, SIGTERMs the broker and expects a clean exit. */
async function stop(b: ChildBroker): Promise<void> {
  for (const m of models.splice(0)) await m.close().catch(() => {});
  expect(await b.stop()).toEqual({ code: 0, signal: null });
  expect(b.messages()).toContain('warren stopped');
  expect(b.stderr()).toBe('');
}

/** Stops `b` (graceful) and starts a new broker on the same data dir. */
async function restart(b: ChildBroker, dataDir: string, extra: string[] = []): Promise<ChildBroker> {
  await stop(b);
  return startBroker(dataDir, extra);
}

const persistent = { persistent: true } as const;
const transient = { deliveryMode: 1 } as const;

/** Publishes each body and waits until the broker confirmed them all. */
async function publishConfirmed(
  ch: amqplib.ConfirmChannel,
  exchange: string,
  routingKey: string,
  bodies: (string | Buffer)[],
  options: amqplib.Options.Publish = persistent,
): Promise<void> {
  for (const b of bodies) ch.publish(exchange, routingKey, Buffer.isBuffer(b) ? b : Buffer.from(b), options);
  await ch.waitForConfirms();
}

/** basic.get (manual ack) until the queue is empty; acks everything when `ack` is set. */
async function getAll(ch: amqplib.Channel, queue: string, ack = true): Promise<amqplib.GetMessage[]> {
  const out: amqplib.GetMessage[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: false });
    if (m === false) break;
    out.push(m);
    if (ack) ch.ack(m);
  }
  return out;
}

const bodies = (ms: amqplib.GetMessage[]): string[] => ms.map((m) => m.content.toString());

/** Runs `op` on a fresh channel and returns the channel error the broker answers with. */
async function refusal(
  m: amqplib.ChannelModel,
  op: (ch: amqplib.Channel) => Promise<unknown>,
): Promise<AmqpError> {
  const ch = await m.createChannel();
  ch.on('error', () => {});
  return op(ch).then(
    (r) => {
      throw new Error(`expected a channel error, got ${JSON.stringify(r)}`);
    },
    (e: AmqpError) => e,
  );
}

async function queueExists(m: amqplib.ChannelModel, q: string): Promise<boolean> {
  const ch = await m.createChannel();
  ch.on('error', () => {});
  try {
    await ch.checkQueue(q);
    await ch.close();
    return true;
  } catch (e) {
    if ((e as AmqpError).code === 404) return false;
    throw e;
  }
}

async function exchangeExists(m: amqplib.ChannelModel, x: string): Promise<boolean> {
  const ch = await m.createChannel();
  ch.on('error', () => {});
  try {
    await ch.checkExchange(x);
    await ch.close();
    return true;
  } catch (e) {
    if ((e as AmqpError).code === 404) return false;
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid of a process that has exited (so nothing runs under it now). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  const pid = Number(r.stdout);
  expect(Number.isInteger(pid) && pid > 0).toBe(true);
  return pid;
}

// ------------------------------------------------------------------ definitions

describe('definitions across a restart', () => {
  it('durable exchanges, queues with arguments and bindings come back and still route', async () => {
    const dir = tempDir();
    const TTL = 2_000;
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertExchange('dx.direct', 'direct', { durable: true });
    await ch.assertExchange('dx.topic', 'topic', { durable: true });
    await ch.assertExchange('dx.dlx', 'fanout', { durable: true });
    await ch.assertExchange('dx.ae', 'fanout', { durable: true });
    await ch.assertExchange('dx.with-ae', 'direct', { durable: true, alternateExchange: 'dx.ae' });
    await ch.assertQueue('dq.plain', { durable: true });
    await ch.assertQueue('dq.e2e', { durable: true });
    await ch.assertQueue('dq.dead', { durable: true });
    await ch.assertQueue('dq.unrouted', { durable: true });
    await ch.assertQueue('dq.args', {
      durable: true,
      arguments: { 'x-message-ttl': 60_000, 'x-max-length': 3, 'x-dead-letter-exchange': 'dx.dlx' },
    });
    await ch.assertQueue('dq.ttl', {
      durable: true,
      arguments: { 'x-message-ttl': TTL, 'x-dead-letter-exchange': 'dx.dlx' },
    });
    await ch.bindQueue('dq.plain', 'dx.direct', 'k');
    await ch.bindQueue('dq.e2e', 'dx.direct', 'a.b');
    await ch.bindExchange('dx.direct', 'dx.topic', 'a.*'); // exchange-to-exchange
    await ch.bindQueue('dq.dead', 'dx.dlx', '');
    await ch.bindQueue('dq.unrouted', 'dx.ae', '');
    // expires TTL ms from now, whatever the restart does in between
    const published = Date.now();
    await publishConfirmed(ch, '', 'dq.ttl', ['expires']);

    await stop(b);
    await sleep(Math.max(0, published + 600 - Date.now())); // so a reset TTL would be seen
    b = await startBroker(dir);
    const recovered = Date.now();
    m = await connect(b);
    ch = await confirmChannel(m);

    for (const x of ['dx.direct', 'dx.topic', 'dx.dlx', 'dx.ae', 'dx.with-ae'])
      expect(await exchangeExists(m, x), x).toBe(true);
    for (const q of ['dq.plain', 'dq.e2e', 'dq.dead', 'dq.unrouted', 'dq.args', 'dq.ttl'])
      expect(await queueExists(m, q), q).toBe(true);

    // the arguments came back: the same declare is equivalent, a different one is not
    const same = await ch.assertQueue('dq.args', {
      durable: true,
      arguments: { 'x-message-ttl': 60_000, 'x-max-length': 3, 'x-dead-letter-exchange': 'dx.dlx' },
    });
    expect(same.messageCount).toBe(0);
    const diff = await refusal(m, (c) =>
      c.assertQueue('dq.args', {
        durable: true,
        arguments: { 'x-message-ttl': 60_000, 'x-max-length': 4, 'x-dead-letter-exchange': 'dx.dlx' },
      }),
    );
    expect(diff.code).toBe(406);
    expect(diff.message).toContain("inequivalent arg 'x-max-length'");
    const type = await refusal(m, (c) => c.assertExchange('dx.direct', 'fanout', { durable: true }));
    expect(type.code).toBe(406);

    // x-max-length 3 with x-dead-letter-exchange: the two oldest of five go to dx.dlx → dq.dead
    await publishConfirmed(ch, '', 'dq.args', ['a1', 'a2', 'a3', 'a4', 'a5']);
    // recovered bindings route: direct, exchange-to-exchange, alternate exchange
    await publishConfirmed(ch, 'dx.direct', 'k', ['via-direct']);
    await publishConfirmed(ch, 'dx.topic', 'a.b', ['via-e2e']);
    await publishConfirmed(ch, 'dx.with-ae', 'no-such-key', ['via-ae']);
    expect(bodies(await getAll(ch, 'dq.args'))).toEqual(['a3', 'a4', 'a5']);
    expect(bodies(await getAll(ch, 'dq.plain'))).toEqual(['via-direct']);
    expect(bodies(await getAll(ch, 'dq.e2e'))).toEqual(['via-e2e']);
    expect(bodies(await getAll(ch, 'dq.unrouted'))).toEqual(['via-ae']);

    // the recovered message kept its expiry time: it dies TTL after it was published, not after
    // the restart, and is dead-lettered through the recovered x-dead-letter-exchange
    let gone = 0;
    while (gone === 0 && Date.now() < published + TTL + 3_000) {
      if ((await ch.checkQueue('dq.ttl')).messageCount === 0) gone = Date.now();
      else await sleep(20);
    }
    expect(gone).toBeGreaterThan(0);
    expect(gone).toBeGreaterThanOrEqual(published + TTL - 50);
    expect(gone).toBeLessThan(recovered + TTL - 200);
    const dead = await getAll(ch, 'dq.dead');
    expect(bodies(dead)).toEqual(['a1', 'a2', 'expires']);
    const reasons = dead.map(
      (d) => ((d.properties.headers?.['x-death'] as { reason: string }[]) ?? [])[0]?.reason,
    );
    expect(reasons).toEqual(['maxlen', 'maxlen', 'expired']);
    await stop(b);
  });

  it('non-durable queues and exchanges, exclusive queues and bindings to them are gone', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('tq', { durable: false, autoDelete: false });
    await ch.assertQueue('dq', { durable: true });
    await ch.assertQueue('dq.exclusive', { durable: true, exclusive: true });
    await ch.assertExchange('tx', 'fanout', { durable: false, autoDelete: false });
    await ch.assertExchange('dx', 'direct', { durable: true });
    await ch.bindQueue('dq', 'tx', ''); // transient source
    await ch.bindQueue('tq', 'dx', 'to-transient'); // transient destination
    await ch.bindQueue('dq', 'dx', 'to-durable');
    await ch.assertExchange('tx.dst', 'fanout', { durable: false });
    await ch.bindExchange('tx.dst', 'dx', 'to-exchange');
    await ch.bindQueue('dq', 'tx.dst', '');

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect(await queueExists(m, 'tq')).toBe(false);
    expect(await queueExists(m, 'dq.exclusive')).toBe(false);
    expect(await exchangeExists(m, 'tx')).toBe(false);
    expect(await exchangeExists(m, 'tx.dst')).toBe(false);
    expect(await queueExists(m, 'dq')).toBe(true);
    expect(await exchangeExists(m, 'dx')).toBe(true);

    // the same names declared again start without the old bindings
    await ch.assertQueue('tq', { durable: false });
    await ch.assertExchange('tx.dst', 'fanout', { durable: false });
    await ch.bindQueue('dq', 'tx.dst', 'fresh');
    await publishConfirmed(ch, 'dx', 'to-transient', ['lost-1']);
    await publishConfirmed(ch, 'dx', 'to-exchange', ['lost-2']);
    await publishConfirmed(ch, 'dx', 'to-durable', ['kept']);
    expect(bodies(await getAll(ch, 'tq'))).toEqual([]);
    expect(bodies(await getAll(ch, 'dq'))).toEqual(['kept']);
    await stop(b);
  });

  it('purge, queue delete, exchange delete and unbind are durable', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('dq.purged', { durable: true });
    await ch.assertQueue('dq.deleted', { durable: true });
    await ch.assertQueue('dq.keep', { durable: true });
    await ch.assertExchange('dx.deleted', 'fanout', { durable: true });
    await ch.assertExchange('dx.unbound', 'direct', { durable: true });
    await ch.bindQueue('dq.keep', 'dx.deleted', '');
    await ch.bindQueue('dq.keep', 'dx.unbound', 'u');
    await ch.bindQueue('dq.keep', 'dx.unbound', 'stays');
    await publishConfirmed(ch, '', 'dq.purged', ['p1', 'p2', 'p3']);
    await publishConfirmed(ch, '', 'dq.deleted', ['d1', 'd2', 'd3']);
    expect((await ch.purgeQueue('dq.purged')).messageCount).toBe(3);
    expect((await ch.deleteQueue('dq.deleted')).messageCount).toBe(3);
    await ch.deleteExchange('dx.deleted');
    await ch.unbindQueue('dq.keep', 'dx.unbound', 'u');
    // x-max-length drops the oldest, for good
    await ch.assertQueue('dq.maxlen', { durable: true, arguments: { 'x-max-length': 2 } });
    await publishConfirmed(ch, '', 'dq.maxlen', ['l1', 'l2', 'l3', 'l4', 'l5']);
    // rejected without requeue: gone; nacked with requeue: back, redelivered
    await ch.assertQueue('dq.reject', { durable: true });
    await publishConfirmed(ch, '', 'dq.reject', ['r1', 'r2', 'r3']);
    const r1 = (await ch.get('dq.reject')) as amqplib.GetMessage;
    const r2 = (await ch.get('dq.reject')) as amqplib.GetMessage;
    ch.reject(r1, false);
    ch.nack(r2, false, true);
    expect((await ch.checkQueue('dq.reject')).messageCount).toBe(2);

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect((await ch.checkQueue('dq.purged')).messageCount).toBe(0);
    expect(await queueExists(m, 'dq.deleted')).toBe(false);
    expect(await exchangeExists(m, 'dx.deleted')).toBe(false);
    // a queue declared again under a deleted queue's name does not inherit its messages
    expect((await ch.assertQueue('dq.deleted', { durable: true })).messageCount).toBe(0);
    await publishConfirmed(ch, 'dx.unbound', 'u', ['unbound']);
    await publishConfirmed(ch, 'dx.unbound', 'stays', ['bound']);
    expect(bodies(await getAll(ch, 'dq.keep'))).toEqual(['bound']);
    expect(bodies(await getAll(ch, 'dq.maxlen'))).toEqual(['l4', 'l5']);
    const rejected = await getAll(ch, 'dq.reject');
    expect(bodies(rejected)).toEqual(['r2', 'r3']);
    expect(rejected.map((r) => r.fields.redelivered)).toEqual([true, false]);

    // and a second restart does not bring anything back either
    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect((await ch.checkQueue('dq.purged')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.deleted')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.keep')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.maxlen')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.reject')).messageCount).toBe(0);
    await stop(b);
  });

  it('the default user still works after a restart, and the stored password wins over --default-pass', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    await connect(b);
    b = await restart(b, dir, ['--default-pass', 'changed']);
    const m = await connect(b, `amqp://guest:guest@127.0.0.1:${b.port}`);
    const ch = await m.createChannel();
    await ch.assertQueue('', { exclusive: true });
    const refused = await amqplib.connect(`amqp://guest:changed@127.0.0.1:${b.port}`).then(
      (c) => {
        models.push(c);
        return null;
      },
      (e: Error) => e,
    );
    expect(refused?.message).toMatch(/ACCESS_REFUSED|403/);
    await stop(b);
  });
});

// ------------------------------------------------------------------ messages

describe('messages across a restart', () => {
  it('persistent messages on a durable queue come back in order with their properties; transient ones do not', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('dq.order', { durable: true });
    const props: amqplib.Options.Publish = {
      persistent: true,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      headers: { 'x-tag': 'abc', n: 42, nested: { ok: true }, list: [1, 'two'] },
      messageId: 'mid',
      correlationId: 'cid',
      replyTo: 'somewhere',
      timestamp: 1_700_000_000,
      type: 'kind',
      appId: 'app',
      userId: 'guest',
      priority: 3,
      expiration: '600000',
    };
    const expected: string[] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) {
        ch.publish('', 'dq.order', Buffer.from(`p${i}`), { ...props, messageId: `mid-${i}` });
        expected.push(`p${i}`);
      } else if (i % 3 === 1) ch.publish('', 'dq.order', Buffer.from(`t${i}`), transient);
      else ch.publish('', 'dq.order', Buffer.from(`n${i}`)); // no delivery-mode at all
    }
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    ch.publish('', 'dq.order', big, persistent); // several body frames
    ch.publish('', 'dq.order', Buffer.alloc(0), persistent); // no body frame at all
    await ch.waitForConfirms();
    // many messages, so they span several commits
    await ch.assertQueue('dq.many', { durable: true });
    const many = Array.from({ length: 3_000 }, (_, i) => `m${i}`);
    await publishConfirmed(ch, '', 'dq.many', many);
    // a priority queue comes back in priority order (FIFO within a priority)
    await ch.assertQueue('dq.prio', { durable: true, arguments: { 'x-max-priority': 5 } });
    const prios = [1, 5, 3, 5, 0, 3];
    for (const [i, p] of prios.entries())
      ch.publish('', 'dq.prio', Buffer.from(`q${i}-p${p}`), { persistent: true, priority: p });
    await ch.waitForConfirms();

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    const got = await getAll(ch, 'dq.order');
    expect(got).toHaveLength(expected.length + 2);
    expect(bodies(got.slice(0, expected.length))).toEqual(expected);
    for (const [i, g] of got.slice(0, expected.length).entries()) {
      expect(g.fields.redelivered).toBe(false);
      expect(g.fields.exchange).toBe('');
      expect(g.fields.routingKey).toBe('dq.order');
      const p = g.properties;
      expect(p.deliveryMode).toBe(2);
      expect(p.contentType).toBe('application/json');
      expect(p.contentEncoding).toBe('utf-8');
      expect(p.headers).toEqual({ 'x-tag': 'abc', n: 42, nested: { ok: true }, list: [1, 'two'] });
      expect(p.messageId).toBe(`mid-${i * 3}`);
      expect(p.correlationId).toBe('cid');
      expect(p.replyTo).toBe('somewhere');
      expect(p.timestamp).toBe(1_700_000_000);
      expect(p.type).toBe('kind');
      expect(p.appId).toBe('app');
      expect(p.userId).toBe('guest');
      expect(p.priority).toBe(3);
      expect(p.expiration).toBe('600000');
    }
    expect(got[expected.length]!.content.equals(big)).toBe(true);
    expect(got[expected.length + 1]!.content.length).toBe(0);

    const ch2 = await m.createChannel();
    await ch2.prefetch(500);
    const seen: string[] = [];
    let redelivered = 0;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`only ${seen.length} of ${many.length} came back`)),
        10_000,
      );
      void ch2.consume('dq.many', (msg) => {
        if (!msg) return;
        seen.push(msg.content.toString());
        if (msg.fields.redelivered) redelivered++;
        ch2.ack(msg);
        if (seen.length === many.length) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    expect(seen).toEqual(many);
    expect(redelivered).toBe(0);

    expect(bodies(await getAll(ch, 'dq.prio'))).toEqual([
      'q1-p5',
      'q3-p5',
      'q2-p3',
      'q5-p3',
      'q0-p1',
      'q4-p0',
    ]);
    await stop(b);
  });

  it('a deep queue (paged to disk) comes back whole and in order; a purged deep queue stays empty', async () => {
    const dir = tempDir();
    const N = 30_000; // past the in-memory page size, so the queue pages
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('dq.deep', { durable: true });
    await ch.assertQueue('dq.deep-purged', { durable: true });
    const expected: string[] = [];
    for (let i = 0; i < N; i++) {
      const body = `d${i}`;
      if (i % 5_000 === 4_999) ch.sendToQueue('dq.deep', Buffer.from(body), transient);
      else {
        ch.sendToQueue('dq.deep', Buffer.from(body), persistent);
        if (i >= 1_000) expected.push(body);
      }
      ch.sendToQueue('dq.deep-purged', Buffer.from(body), persistent);
      if (i % 2_000 === 1_999) await ch.waitForConfirms();
    }
    await ch.waitForConfirms();
    expect((await ch.checkQueue('dq.deep')).messageCount).toBe(N);
    // the first 1000 are taken and acked
    for (let i = 0; i < 1_000; i++) {
      const g = (await ch.get('dq.deep')) as amqplib.GetMessage;
      expect(g.content.toString()).toBe(`d${i}`);
      ch.ack(g);
    }
    expect((await ch.purgeQueue('dq.deep-purged')).messageCount).toBe(N);

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect((await ch.checkQueue('dq.deep-purged')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.deep')).messageCount).toBe(expected.length);
    const cch = await m.createChannel();
    await cch.prefetch(1_000);
    const seen: string[] = [];
    let redelivered = 0;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`only ${seen.length} of ${expected.length} came back`)),
        15_000,
      );
      void cch.consume('dq.deep', (msg) => {
        if (!msg) return;
        seen.push(msg.content.toString());
        if (msg.fields.redelivered) redelivered++;
        cch.ack(msg);
        if (seen.length === expected.length) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    expect(seen.length).toBe(expected.length);
    expect(seen).toEqual(expected);
    expect(redelivered).toBe(0);
    await cch.checkQueue('dq.deep'); // a round trip on the acking channel: the acks are handled

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect((await ch.checkQueue('dq.deep')).messageCount).toBe(0);
    expect((await ch.checkQueue('dq.deep-purged')).messageCount).toBe(0);
    await stop(b);
  });

  it('a persistent message on a non-durable queue is gone after a restart', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('tq.persistent', { durable: false });
    await ch.assertQueue('dq.persistent', { durable: true });
    await ch.assertExchange('dx.both', 'fanout', { durable: true });
    await ch.bindQueue('tq.persistent', 'dx.both', '');
    await ch.bindQueue('dq.persistent', 'dx.both', '');
    await publishConfirmed(ch, '', 'tq.persistent', ['direct-to-transient']);
    await publishConfirmed(ch, 'dx.both', '', ['fanned']);
    expect((await ch.checkQueue('tq.persistent')).messageCount).toBe(2);

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect(await queueExists(m, 'tq.persistent')).toBe(false);
    expect((await ch.assertQueue('tq.persistent', { durable: false })).messageCount).toBe(0);
    expect(bodies(await getAll(ch, 'dq.persistent'))).toEqual(['fanned']);
    await stop(b);
  });

  it('a message fanned out to three durable queues comes back in all three; acked in two, it stays in the third', async () => {
    const dir = tempDir();
    const qs = ['fan.1', 'fan.2', 'fan.3'];
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertExchange('dx.fan', 'fanout', { durable: true });
    for (const q of qs) {
      await ch.assertQueue(q, { durable: true });
      await ch.bindQueue(q, 'dx.fan', '');
    }
    await publishConfirmed(ch, 'dx.fan', '', ['s1', 's2']);
    await publishConfirmed(ch, 'dx.fan', '', ['transient'], transient);
    await publishConfirmed(ch, 'dx.fan', '', ['s3']);
    // s3 is acked in two queues before the restart: the third still holds its body
    for (const q of ['fan.1', 'fan.2']) {
      expect(bodies(await getAll(ch, q))).toEqual(['s1', 's2', 'transient', 's3']);
    }
    await publishConfirmed(ch, 'dx.fan', '', ['s4']);

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect(bodies(await getAll(ch, 'fan.1', false))).toEqual(['s4']);
    expect(bodies(await getAll(ch, 'fan.2', false))).toEqual(['s4']);
    const third = await getAll(ch, 'fan.3', false);
    expect(bodies(third)).toEqual(['s1', 's2', 's3', 's4']);
    expect(third.map((x) => x.fields.redelivered)).toEqual([false, false, false, false]);
    await ch.close(); // everything requeued, fan.1 and fan.2 delivered once
    ch = await confirmChannel(m);
    // s4: acked in fan.1 and fan.2 now, kept in fan.3
    for (const q of ['fan.1', 'fan.2']) {
      const got = await getAll(ch, q);
      expect(bodies(got)).toEqual(['s4']);
      expect(got[0]!.fields.redelivered).toBe(true);
    }

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect(await getAll(ch, 'fan.1')).toEqual([]);
    expect(await getAll(ch, 'fan.2')).toEqual([]);
    const left = await getAll(ch, 'fan.3', false);
    expect(bodies(left)).toEqual(['s1', 's2', 's3', 's4']);
    expect(left.every((x) => x.fields.redelivered)).toBe(true);
    for (const x of left.slice(0, 3)) ch.ack(x); // s4 stays unacked until the stop
    // a round trip after the acks: amqplib may put connection.close on the wire before them
    await ch.checkQueue('fan.3');

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    const last = await getAll(ch, 'fan.3');
    expect(bodies(last)).toEqual(['s4']);
    expect(last[0]!.fields.redelivered).toBe(true);
    for (const q of qs) expect((await ch.checkQueue(q)).messageCount).toBe(0);
    await stop(b);
  });

  it('delivered but unacked messages come back redelivered, never-delivered ones do not, acked ones not at all', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('dq.acks', { durable: true });
    const all = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8'];
    await publishConfirmed(ch, '', 'dq.acks', all);
    // m1..m4 by basic.get, m1 and m2 acked
    const got: amqplib.GetMessage[] = [];
    for (let i = 0; i < 4; i++) got.push((await ch.get('dq.acks')) as amqplib.GetMessage);
    expect(bodies(got)).toEqual(['m1', 'm2', 'm3', 'm4']);
    ch.ack(got[0]!);
    ch.ack(got[1]!);
    // m5, m6 to a consumer with prefetch 2 that never acks
    const cch = await m.createChannel();
    cch.on('error', () => {});
    await cch.prefetch(2);
    const delivered: string[] = [];
    await cch.consume('dq.acks', (msg) => {
      if (msg) delivered.push(msg.content.toString());
    });
    const deadline = Date.now() + 5_000;
    while (delivered.length < 2 && Date.now() < deadline) await sleep(5);
    expect(delivered).toEqual(['m5', 'm6']);
    // a round trip on the acking channel: the broker has handled both acks
    expect((await ch.checkQueue('dq.acks')).messageCount).toBe(2);

    // stopped with the deliveries still outstanding: the broker closes the connection itself
    expect(await b.stop()).toEqual({ code: 0, signal: null });
    models.splice(0);
    b = await startBroker(dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    const back = await getAll(ch, 'dq.acks');
    expect(bodies(back)).toEqual(['m3', 'm4', 'm5', 'm6', 'm7', 'm8']);
    expect(back.map((x) => x.fields.redelivered)).toEqual([true, true, true, true, false, false]);
    await ch.checkQueue('dq.acks'); // the acks are handled before the stop

    b = await restart(b, dir);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect((await ch.checkQueue('dq.acks')).messageCount).toBe(0);
    await stop(b);
  });

  it('SIGTERM writes what was published but not yet confirmed, and exits 0', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    const pch = await m.createChannel(); // no confirms
    pch.on('error', () => {});
    await pch.assertQueue('dq.flush', { durable: true });
    const sent = Array.from({ length: 500 }, (_, i) => `f${i}`);
    for (const s of sent) pch.sendToQueue('dq.flush', Buffer.from(s), persistent);
    // a round trip on the same channel: every publish has reached the queue (not the disk)
    expect((await pch.checkQueue('dq.flush')).messageCount).toBe(sent.length);
    b.child.kill('SIGTERM'); // the client is still connected
    expect(await b.exited).toEqual({ code: 0, signal: null });
    expect(b.stderr()).toBe('');
    models.splice(0);

    b = await startBroker(dir);
    m = await connect(b);
    const ch = await confirmChannel(m);
    expect(bodies(await getAll(ch, 'dq.flush'))).toEqual(sent);
    await stop(b);
  });

  it('with --sync off, confirmed persistent messages also survive a graceful restart', async () => {
    const dir = tempDir();
    let b = await startBroker(dir, ['--sync', 'off']);
    let m = await connect(b);
    let ch = await confirmChannel(m);
    await ch.assertQueue('dq.sync-off', { durable: true });
    await publishConfirmed(ch, '', 'dq.sync-off', ['o1', 'o2', 'o3']);
    b = await restart(b, dir, ['--sync', 'off']);
    m = await connect(b);
    ch = await confirmChannel(m);
    expect(bodies(await getAll(ch, 'dq.sync-off'))).toEqual(['o1', 'o2', 'o3']);
    await stop(b);
  });
});

// ------------------------------------------------------------------ kill -9 (quick cases; the long run is crash.slow.test.ts)

describe('after kill -9', () => {
  it.each(['always', 'off'])('with --sync %s, every confirmed message is there', async (sync) => {
    const dir = tempDir();
    let b = await startBroker(dir, ['--sync', sync]);
    const m = await connect(b);
    const ch = await confirmChannel(m);
    await ch.assertQueue('dq.kill', { durable: true });
    const sent = Array.from({ length: 2_000 }, (_, i) => `k${i}`);
    await publishConfirmed(ch, '', 'dq.kill', sent);
    expect((await b.kill()).signal).toBe('SIGKILL'); // at once, on the last confirm
    models.splice(0);
    b = await startBroker(dir, ['--sync', sync]);
    const ch2 = await confirmChannel(await connect(b));
    expect(bodies(await getAll(ch2, 'dq.kill'))).toEqual(sent);
    await stop(b);
  });

  it('a committed transaction is there: tx.commit-ok waits for the disk, as a confirm does', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    const client = new AMQPClient(b.url);
    await client.connect();
    const ch = await client.channel();
    await ch.queueDeclare('dq.tx', { durable: true });
    await ch.queueDeclare('dq.tx-acked', { durable: true });
    await ch.confirmSelect();
    for (const body of ['a0', 'a1']) await ch.basicPublish('', 'dq.tx-acked', body, { deliveryMode: 2 });
    const tx = await client.channel();
    await tx.basicGet('dq.tx-acked', { noAck: false });
    const a1 = await tx.basicGet('dq.tx-acked', { noAck: false });
    await tx.txSelect();
    const sent = Array.from({ length: 200 }, (_, i) => `t${i}`.padEnd(10_000, '.'));
    for (const body of sent) await tx.basicPublish('', 'dq.tx', body, { deliveryMode: 2 });
    await a1!.ack(true);
    await tx.txCommit();
    expect((await b.kill()).signal).toBe('SIGKILL'); // at once, on commit-ok
    b = await startBroker(dir);
    const ch2 = await confirmChannel(await connect(b));
    expect(bodies(await getAll(ch2, 'dq.tx'))).toEqual(sent);
    expect(await getAll(ch2, 'dq.tx-acked')).toEqual([]);
    await stop(b);
  });

  it('requeued quorum returns and dead letters are not doubled by a kill during a large ack', async () => {
    // an ack past one transaction's worth (here 24 MiB of bodies) is written a chunk per commit;
    // a quorum queue's requeue (its entries re-recorded under new positions) and a dead letter
    // (the source's record goes with the copy) right after it must stay whole transactions
    const dir = tempDir();
    let b = await startBroker(dir);
    const m = await connect(b);
    const ch = await confirmChannel(m);
    await ch.assertQueue('big', { durable: true });
    await ch.assertQueue('qq', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.assertQueue('dlq', { durable: true });
    await ch.assertQueue('src', {
      durable: true,
      arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
    });
    await ch.assertQueue('other', { durable: true });
    for (let i = 0; i < 24; i++) await publishConfirmed(ch, '', 'big', [Buffer.alloc(1024 * 1024, i)]);
    const small = Array.from({ length: 20 }, (_, i) => `s${i}`);
    await publishConfirmed(ch, '', 'qq', small);
    await publishConfirmed(ch, '', 'src', small);
    const held: Record<
      string,
      { ch: amqplib.Channel; tag: string; last: amqplib.ConsumeMessage | null; n: number }
    > = {};
    for (const [q, n] of [
      ['big', 24],
      ['qq', 20],
      ['src', 20],
    ] as const) {
      const c = await m.createChannel();
      const h = { ch: c, tag: '', last: null as amqplib.ConsumeMessage | null, n: 0 };
      h.tag = (
        await c.consume(q, (msg) => {
          h.last = msg;
          h.n++;
        })
      ).consumerTag;
      held[q] = h;
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (h.n === n) {
            clearInterval(t);
            resolve();
          }
        }, 5);
      });
    }
    await held.qq!.ch.cancel(held.qq!.tag);
    await held.src!.ch.cancel(held.src!.tag);
    held.big!.ch.ack(held.big!.last!, true);
    held.qq!.ch.nack(held.qq!.last!, true, true);
    held.src!.ch.nack(held.src!.last!, true, false);
    await publishConfirmed(ch, '', 'other', ['marker']);
    expect((await b.kill()).signal).toBe('SIGKILL');
    models.splice(0);
    b = await startBroker(dir);
    const ch2 = await confirmChannel(await connect(b));
    expect(bodies(await getAll(ch2, 'qq')).sort()).toEqual([...small].sort());
    expect(await getAll(ch2, 'src')).toEqual([]);
    expect(bodies(await getAll(ch2, 'dlq')).sort()).toEqual([...small].sort());
    expect(bodies(await getAll(ch2, 'other'))).toEqual(['marker']);
    await stop(b);
  });

  it('messages a consumer received just before the kill come back with redelivered set', async () => {
    // The client sees the deliveries before the kill; whether the broker had written their
    // delivery count by then is a race it must not lose (README: "delivered but unacked at a
    // stop or crash come back with redelivered"). Two attempts, each killed on the first delivery.
    const missing: string[] = [];
    for (let attempt = 1; attempt <= 2; attempt++) {
      const dir = tempDir();
      let b = await startBroker(dir);
      const m = await connect(b);
      const ch = await confirmChannel(m);
      await ch.assertQueue('dq.seen', { durable: true });
      await publishConfirmed(
        ch,
        '',
        'dq.seen',
        Array.from({ length: 2_000 }, (_, i) => `s${i}`),
      );
      const cch = await m.createChannel();
      cch.on('error', () => {});
      await cch.prefetch(2_000);
      const seen = new Set<string>();
      await new Promise<void>((resolve) => {
        void cch.consume('dq.seen', (msg) => {
          if (!msg) return;
          seen.add(msg.content.toString());
          if (seen.size === 1) {
            b.child.kill('SIGKILL');
            resolve();
          }
        });
      });
      await b.exited;
      await sleep(50); // deliveries already in the client's socket buffer still count as seen
      models.splice(0);
      b = await startBroker(dir);
      const back = await getAll(await confirmChannel(await connect(b)), 'dq.seen');
      expect(back).toHaveLength(2_000); // nothing was acked
      const notFlagged = back.filter((x) => seen.has(x.content.toString()) && !x.fields.redelivered);
      if (notFlagged.length > 0)
        missing.push(
          `attempt ${attempt}: ${notFlagged.length} of ${seen.size} messages the client had received came back with redelivered=false`,
        );
      await stop(b);
    }
    expect(missing).toEqual([]);
  });

  it('10,000 messages dead-lettered by one nack are each in their queue or its dead-letter queue', async () => {
    // dead letters go 256 per turn of the loop: the source's records must not be deleted before
    // their copies are written, or a kill in between loses both
    const dir = tempDir();
    let b = await startBroker(dir);
    const m = await connect(b);
    const ch = await confirmChannel(m);
    await ch.assertQueue('dl.dst', { durable: true });
    await ch.assertQueue('dl.src', {
      durable: true,
      arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dl.dst' },
    });
    await publishConfirmed(
      ch,
      '',
      'dl.src',
      Array.from({ length: 10_000 }, (_, i) => `d${i}`.padEnd(300, '.')),
    );
    const cch = await m.createChannel();
    let got = 0;
    let tag = '';
    const last = await new Promise<amqplib.ConsumeMessage>((resolve) => {
      void cch
        .consume('dl.src', (msg) => {
          if (msg !== null && ++got === 10_000) resolve(msg);
        })
        .then((ok) => (tag = ok.consumerTag));
    });
    await cch.cancel(tag);
    cch.nack(last, true, false);
    await cch.prefetch(1); // a round trip: the nack was taken
    expect((await b.kill()).signal).toBe('SIGKILL');
    models.splice(0);
    b = await startBroker(dir);
    const ch2 = await confirmChannel(await connect(b));
    const back = [...bodies(await getAll(ch2, 'dl.src')), ...bodies(await getAll(ch2, 'dl.dst'))];
    expect(back.sort()).toEqual(Array.from({ length: 10_000 }, (_, i) => `d${i}`.padEnd(300, '.')).sort());
    await stop(b);
  });
});

describe('server-named and quorum queues across a restart', () => {
  it.each(['graceful', 'kill -9'])(
    'a durable server-named queue (amq.gen-…) comes back with its messages (%s)',
    async (how) => {
      const dir = tempDir();
      let b = await startBroker(dir);
      const ch = await confirmChannel(await connect(b));
      const { queue } = await ch.assertQueue('', { durable: true, exclusive: false });
      expect(queue).toMatch(/^amq\.gen-/);
      await publishConfirmed(ch, '', queue, ['kept']);
      if (how === 'graceful') b = await restart(b, dir);
      else {
        expect((await b.kill()).signal).toBe('SIGKILL');
        models.splice(0);
        b = await startBroker(dir);
      }
      const ch2 = await confirmChannel(await connect(b));
      expect(bodies(await getAll(ch2, queue))).toEqual(['kept']);
      await stop(b);
    },
  );

  it('queue arguments keep the field types they were declared with (a redeclare names them)', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let ch = await confirmChannel(await connect(b));
    await ch.assertQueue('dq.typed', { durable: true, arguments: { 'x-max-priority': 10 } });
    const before = await refusal(models[0]!, (c) => c.assertQueue('dq.typed', { durable: true }));
    b = await restart(b, dir);
    const m = await connect(b);
    ch = await confirmChannel(m);
    const after = await refusal(m, (c) => c.assertQueue('dq.typed', { durable: true }));
    expect(before.message).toContain("current is the value '10' of type 'byte'");
    expect(after.message).toBe(before.message);
    await stop(b);
  });

  it('a quorum queue keeps transient messages, and after kill -9 the delivery counts it had', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    const m = await connect(b);
    const ch = await confirmChannel(m);
    await ch.assertQueue('qq', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.assertQueue('dq.sync', { durable: true });
    await publishConfirmed(ch, '', 'qq', ['seen', 'unseen'], transient);
    // a consumer takes 'seen' and holds it
    const cch = await m.createChannel();
    cch.on('error', () => {});
    await cch.prefetch(1);
    const got: string[] = [];
    await cch.consume('qq', (msg) => {
      if (msg) got.push(msg.content.toString());
    });
    while (got.length === 0) await sleep(5);
    // a confirm for a later publish comes after the commit that holds the delivery's count
    await publishConfirmed(ch, '', 'dq.sync', ['sync']);
    expect((await b.kill()).signal).toBe('SIGKILL');
    models.splice(0);
    b = await startBroker(dir);
    const ch2 = await confirmChannel(await connect(b));
    const back = (await getAll(ch2, 'qq')).map((x) => [
      x.content.toString(),
      x.fields.redelivered,
      x.properties.headers?.['x-delivery-count'],
    ]);
    // as RabbitMQ: the held one was returned when its consumer went (count 1); the other never left
    expect(back).toEqual([
      ['seen', true, 1],
      ['unseen', false, 0],
    ]);
    await stop(b);
  });
});

// ------------------------------------------------------------------ the data dir

describe('the data dir', () => {
  it('a second broker on a data dir in use exits 1 with one line saying so; the first keeps running', async () => {
    const dir = tempDir();
    const first = await startBroker(dir);
    const lock = join(dir, 'warren.lock');
    expect(readFileSync(lock, 'utf8').trim()).toBe(String(first.child.pid));
    const second = spawnBroker(dir, await freePort());
    expect((await second.exited).code).toBe(1);
    const lines = second.stderrLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('in use');
    expect(lines[0]).toContain(dir);
    expect(second.messages()).not.toContain('warren started');
    // the first broker still owns the dir and serves clients
    expect(readFileSync(lock, 'utf8').trim()).toBe(String(first.child.pid));
    const m = await connect(first);
    const ch = await confirmChannel(m);
    await ch.assertQueue('still-here', { durable: true });
    await stop(first);
    expect(existsSync(lock)).toBe(false);
  });

  it('a lock whose owner was killed but not yet reaped (a zombie) is taken over', async () => {
    const dir = tempDir();
    // the background sleep exits at once; its parent (the exec'd long sleep) never reaps it
    const parent = spawn('/bin/sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const zombie = Number(
        (await new Promise<string>((r) => parent.stdout!.once('data', (d) => r(String(d))))).trim(),
      );
      const state = () => {
        const stat = readFileSync(`/proc/${zombie}/stat`, 'latin1');
        return stat.charAt(stat.lastIndexOf(')') + 2);
      };
      for (let i = 0; i < 200 && state() !== 'Z'; i++) await sleep(5);
      expect(state()).toBe('Z');
      writeFileSync(join(dir, 'warren.lock'), `${zombie}\n`);
      const b = await startBroker(dir);
      expect(readFileSync(join(dir, 'warren.lock'), 'utf8').trim()).toBe(String(b.child.pid));
      await stop(b);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('a lock left by a process that no longer runs is taken over', async () => {
    const dir = tempDir();
    let b = await startBroker(dir);
    let m = await connect(b);
    const ch = await confirmChannel(m);
    await ch.assertQueue('dq.lock', { durable: true });
    await publishConfirmed(ch, '', 'dq.lock', ['kept']);
    await stop(b);
    const lock = join(dir, 'warren.lock');
    writeFileSync(lock, `${deadPid()}\n`);
    b = await startBroker(dir);
    expect(readFileSync(lock, 'utf8').trim()).toBe(String(b.child.pid));
    m = await connect(b);
    expect(bodies(await getAll(await confirmChannel(m), 'dq.lock', false))).toEqual(['kept']);
    // a lock whose owner was killed (kill -9 leaves the file behind)
    expect((await b.kill()).signal).toBe('SIGKILL');
    models.splice(0);
    expect(existsSync(lock)).toBe(true);
    b = await startBroker(dir);
    expect(readFileSync(lock, 'utf8').trim()).toBe(String(b.child.pid));
    // a lock file without a pid in it (cut short) is stale too
    await stop(b);
    writeFileSync(lock, '');
    b = await startBroker(dir);
    m = await connect(b);
    expect(bodies(await getAll(await confirmChannel(m), 'dq.lock'))).toEqual(['kept']);
    await stop(b);
    expect(existsSync(lock)).toBe(false);
  });

  it('a store file of random bytes is refused with one line naming its path, and left as it was', async () => {
    const dir = tempDir();
    const path = join(dir, 'warren.mdb');
    const garbage = Buffer.alloc(64 * 1024);
    let x = 12345;
    for (let i = 0; i < garbage.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      garbage[i] = x >>> 24;
    }
    writeFileSync(path, garbage);
    const b = spawnBroker(dir, await freePort());
    const exit = await b.exited;
    expect(exit, `stderr: ${b.stderr()}`).toEqual({ code: 1, signal: null });
    const lines = b.stderrLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(path);
    expect(b.messages()).not.toContain('warren started');
    expect(readFileSync(path).equals(garbage)).toBe(true); // never a silent fresh store
  });

  describe('a damaged store is refused with an error naming its path', () => {
    /** A data dir with a real store (definitions, inline and shared messages), stopped cleanly. */
    let seeded = '';
    async function seededCopy(): Promise<string> {
      if (seeded === '') {
        const dir = mkdtempSync(join(tmpdir(), 'warren-durability-seed-'));
        const b = await startBroker(dir);
        const m = await connect(b);
        const ch = await confirmChannel(m);
        await ch.assertExchange('dx.seed', 'fanout', { durable: true });
        for (const q of ['seed.1', 'seed.2']) {
          await ch.assertQueue(q, { durable: true });
          await ch.bindQueue(q, 'dx.seed', '');
        }
        await publishConfirmed(
          ch,
          'dx.seed',
          '',
          Array.from({ length: 100 }, (_, i) => Buffer.alloc(2_000, i)),
        );
        await publishConfirmed(
          ch,
          '',
          'seed.1',
          Array.from({ length: 100 }, (_, i) => Buffer.alloc(2_000, i)),
        );
        await stop(b);
        seeded = dir;
      }
      const dir = tempDir();
      cpSync(join(seeded, 'warren.mdb'), join(dir, 'warren.mdb'));
      return dir;
    }

    afterAll(() => {
      if (seeded !== '') rmSync(seeded, { recursive: true, force: true });
    });

    /** Overwrites the first record of one of the store's databases (with the store closed). */
    async function overwriteFirst(path: string, db: string, value: Buffer): Promise<void> {
      const env = openLmdb({ path, maxDbs: 8, compression: false });
      const d = env.openDB<Buffer, Buffer>(db, {
        keyEncoding: 'binary',
        encoding: 'binary',
        compression: false,
      });
      const [key] = [...d.getKeys({ limit: 1 })];
      await d.put(key as Buffer, value);
      await env.close();
    }

    const damage: [string, (path: string) => Promise<void>][] = [
      ['truncated to half its size', async (p) => truncateSync(p, Math.floor(statSync(p).size / 2))],
      [
        'data pages zeroed',
        async (p) => {
          const b = readFileSync(p);
          b.fill(0, 8_192);
          writeFileSync(p, b);
        },
      ],
      ['a message record cut short', (p) => overwriteFirst(p, 'messages', Buffer.from([1, 0, 0]))],
      [
        'a definition that does not decode',
        (p) => overwriteFirst(p, 'definitions', Buffer.from([0xc1, 0xff])),
      ],
    ];

    it('a file ending before its last page number (pages taken and freed, never written) still opens', async () => {
      // after kill -9 LMDB's last page number may count pages a transaction allocated and freed
      // again, which were never written: the file is then shorter than that number says
      const dir = await seededCopy();
      const path = join(dir, 'warren.mdb');
      const file = readFileSync(path);
      const pageSize = file.readUInt32LE(48);
      const newer = file.readBigUInt64LE(pageSize + 152) > file.readBigUInt64LE(152) ? pageSize : 0;
      file.writeBigUInt64LE(file.readBigUInt64LE(newer + 144) + 3n, newer + 144);
      writeFileSync(path, file);
      const b = await startBroker(dir);
      const m = await connect(b);
      const ch = await m.createChannel();
      expect((await ch.checkQueue('seed.1')).messageCount).toBe(200);
      expect((await ch.checkQueue('seed.2')).messageCount).toBe(100);
      await m.close();
      await stop(b);
    });

    it.each(damage)('%s', async (_what, harm) => {
      const dir = await seededCopy();
      const path = join(dir, 'warren.mdb');
      await harm(path);
      const before = readFileSync(path);
      const b = spawnBroker(dir, await freePort());
      const exit = await b.exited;
      expect(exit, `stderr: ${b.stderr()}`).toEqual({ code: 1, signal: null });
      expect(b.messages()).not.toContain('warren started');
      const ours = b.stderrLines().filter((l) => l.startsWith('warren: '));
      expect(ours, `stderr: ${b.stderr()}`).toHaveLength(1);
      expect(ours[0]).toContain(path);
      // never started afresh over it: the file keeps its data (LMDB may touch its meta pages)
      expect(statSync(path).size).toBeGreaterThanOrEqual(before.length);
    });
  });

  it('a store path that cannot be opened as a file is refused with one line naming it', async () => {
    const dir = tempDir();
    const path = join(dir, 'warren.mdb');
    mkdirSync(path);
    const b = spawnBroker(dir, await freePort());
    expect(await b.exited).toEqual({ code: 1, signal: null });
    const lines = b.stderrLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(path);
    expect(b.messages()).not.toContain('warren started');
  });
});
