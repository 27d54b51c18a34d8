/**
 * A broker at its file descriptor limit (a connection flood): connections past the limit fail,
 * the broker stays up, and once the flood is gone it serves new connections. Its periodic
 * checks read /proc, which needs a descriptor too; they must not take the process down.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAll, startBroker } from './child-broker.js';

const dirs: string[] = [];
afterEach(async () => {
  await killAll();
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('out of file descriptors', () => {
  it('refuses what it cannot take, stays up, and serves again once the flood is gone', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'warren-fds-'));
    dirs.push(dataDir);
    const b = await startBroker(dataDir, [], 10_000, { fdLimit: 64 });
    let exited = false;
    void b.exited.then(() => {
      exited = true;
    });
    const port = Number(new URL(b.url).port);
    // more sockets than the broker has descriptors, each sending a protocol header
    const sockets: Socket[] = [];
    for (let i = 0; i < 120; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('connect', () => s.write('AMQP\x00\x00\x09\x01'));
      sockets.push(s);
    }
    // long enough for the broker's once-a-second checks to run while it has no descriptor left
    await new Promise((r) => setTimeout(r, 2500));
    expect(exited).toBe(false);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 500));

    const c = new AMQPClient(b.url);
    await c.connect();
    const ch = await c.channel();
    await ch.queueDeclare('after-the-flood');
    await ch.basicPublish('', 'after-the-flood', 'still here');
    const m = await ch.basicGet('after-the-flood', { noAck: true });
    expect(m?.bodyToString()).toBe('still here');
    await c.close();
    expect(exited).toBe(false);
  });
});
