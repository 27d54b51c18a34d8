/**
 * A store that cannot write: the broker runs under a file size limit (ulimit -f), so once the
 * store file reaches it every commit fails with EFBIG, as on a full disk. What was confirmed
 * must survive; what could not be written is nacked, never confirmed; publishers are blocked
 * (connection.blocked) instead of being fed failures; everyone else is still served.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { killAll, startBroker } from './child-broker.js';

const dirs: string[] = [];
afterEach(async () => {
  await killAll();
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('when store writes fail', () => {
  it('nacks what it could not write, blocks publishers, keeps serving, and keeps all it confirmed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-full-'));
    dirs.push(dataDir);
    const b = await startBroker(dataDir, [], 10_000, { fileSizeLimitKiB: 3072 });
    const c = new AMQPClient(b.url);
    await c.connect();
    let blocked: string | null = null;
    c.onblocked = (reason) => {
      blocked = reason;
    };
    const ch = await c.channel();
    await ch.queueDeclare('full', { durable: true });
    await ch.confirmSelect();
    const body = Buffer.alloc(1000, 7);
    let acked = 0;
    let nacked = 0;
    // windows of 50 until the store has failed (a nack) and the connection is blocked
    for (let i = 0; i < 200 && (nacked === 0 || blocked === null); i++) {
      const window: Promise<unknown>[] = [];
      for (let j = 0; j < 50 && blocked === null; j++) {
        window.push(ch.basicPublish('', 'full', body, { deliveryMode: 2 }));
      }
      for (const r of await Promise.allSettled(window)) {
        if (r.status === 'fulfilled') acked++;
        else if (String(r.reason).includes('rejected')) nacked++;
      }
      if (blocked !== null && nacked === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(acked).toBeGreaterThan(100);
    expect(nacked).toBeGreaterThan(0);
    expect(blocked).not.toBeNull();

    // another client is still served: it can declare, and read what is in the queue
    const other = new AMQPClient(b.url);
    await other.connect();
    const och = await other.channel();
    const { messageCount } = await och.queueDeclare('full', { durable: true, passive: true });
    expect(messageCount).toBeGreaterThanOrEqual(acked);
    await och.queueDeclare('still-there', { durable: false });
    await other.close();
    await c.close().catch(() => {});

    // the failure is logged, not once per failed commit
    const failures = b.messages().filter((m) => m === 'store write failed; the affected confirms are nacked');
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures.length).toBeLessThan(5);
    // and only as the store's failure: no promise of the failed commit goes unhandled
    expect(b.messages()).not.toContain('unhandled rejection');
    await b.kill();

    // without the limit, every confirmed message is there
    const b2 = await startBroker(dataDir);
    const c2 = new AMQPClient(b2.url);
    await c2.connect();
    const ch2 = await c2.channel();
    const after = await ch2.queueDeclare('full', { durable: true, passive: true });
    expect(after.messageCount).toBeGreaterThanOrEqual(acked);
    // and nothing that was nacked: at most the messages of batches that were written
    expect(after.messageCount).toBeLessThanOrEqual(acked + nacked);
    await c2.close();
    await b2.stop();
  }, 60_000);

  it('lets blocked publishers go once writes work again, though nobody else writes', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-full-'));
    dirs.push(dataDir);
    const b = await startBroker(dataDir, [], 10_000, { fileSizeLimitKiB: 3072 });
    const c = new AMQPClient(b.url);
    await c.connect();
    let blocked = false;
    c.onblocked = () => {
      blocked = true;
    };
    c.onunblocked = () => {
      blocked = false;
    };
    const pub = await c.channel();
    await pub.queueDeclare('full', { durable: true });
    await pub.confirmSelect();
    const body = Buffer.alloc(1000, 7);
    for (let i = 0; i < 200 && !blocked; i++) {
      const window: Promise<unknown>[] = [];
      for (let j = 0; j < 50 && !blocked; j++)
        window.push(pub.basicPublish('', 'full', body, { deliveryMode: 2 }));
      await Promise.allSettled(window);
    }
    expect(blocked).toBe(true);
    // the disk has room again; the only publisher is blocked, so nothing else is written
    execFileSync('prlimit', ['--pid', String(b.child.pid), '--fsize=unlimited:']);
    await waitFor(() => !blocked, 'connection.unblocked', 20_000);
    await pub.basicPublish('', 'full', body, { deliveryMode: 2 });
    await c.close();
  });
});
