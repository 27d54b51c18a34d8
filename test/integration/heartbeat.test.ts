/**
 * Heartbeats: idle clients that heartbeat stay connected; a peer that goes silent is dropped;
 * heartbeat 0 turns them off. No precise timings here (those belong in benchmarks), only
 * generous guard timeouts.
 */
import { AMQPClient, type AMQPError } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, it } from 'vitest';
import type { Connection } from '../../src/amqp/connection.js';
import type { Broker } from '../../src/broker.js';
import { withBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function onlyConnection(broker: Broker): Connection {
  const [c, ...more] = broker.connections;
  if (c === undefined || more.length > 0)
    throw new Error(`expected 1 connection, got ${broker.connections.size}`);
  return c;
}

const isHeartbeat = (f: { type: number; channel: number }) => f.type === 8 && f.channel === 0;

// the tests mostly wait, so they run side by side, each with its own broker
describe.concurrent('heartbeats', () => {
  it('keeps an idle amqplib connection with heartbeat 1 s open for 5 s', async ({ expect }) => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(`${broker.url}?heartbeat=1`);
      const errors: Error[] = [];
      model.on('error', (e: Error) => errors.push(e));
      let closedEarly = false;
      model.on('close', () => {
        closedEarly = true;
      });
      const conn = onlyConnection(broker);
      expect(conn.heartbeat).toBe(1);
      await sleep(5_000);
      expect(closedEarly).toBe(false);
      expect(errors).toEqual([]);
      expect(broker.connections.has(conn)).toBe(true);
      const ch = await model.createChannel();
      await ch.close();
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('keeps an idle amqp-client connection with heartbeat 1 s open for 5 s', async ({ expect }) => {
    await withBroker(async (broker) => {
      // amqp-client only answers the broker's heartbeats, and gives up when it hears nothing
      // for one whole interval: the broker must send them at about half the interval
      const client = new AMQPClient(`${broker.url}?heartbeat=1`);
      const errors: AMQPError[] = [];
      client.onerror = (e) => errors.push(e);
      await client.connect();
      const conn = onlyConnection(broker);
      expect(conn.heartbeat).toBe(1);
      try {
        await sleep(5_000);
        expect(errors.map((e) => e.message)).toEqual([]);
        expect(client.closed).toBe(false);
        expect(broker.connections.has(conn)).toBe(true);
        const ch = await client.channel();
        await ch.close();
      } finally {
        if (!client.closed) await client.close();
      }
    });
  });

  it('sends heartbeats to a silent raw client and drops it after missed intervals', async ({ expect }) => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { heartbeat: 1 });
      try {
        const conn = onlyConnection(broker);
        expect(conn.heartbeat).toBe(1);
        await c.until(() => c.frames.some(isHeartbeat), 'a heartbeat frame', 3_000);
        await c.expectClosed(6_000);
        expect(c.frames.filter(isHeartbeat).length).toBeGreaterThanOrEqual(1);
        // nothing but heartbeats after the handshake: the broker resets the socket (RabbitMQ's
        // sockets linger 0, so its clients see ECONNRESET, not an orderly end)
        expect(c.socketError).toBe('ECONNRESET');
        expect(c.frames.filter((f) => f.type !== 8).map((f) => f.name)).toEqual([
          'connection.start',
          'connection.tune',
          'connection.open-ok',
        ]);
      } finally {
        c.close();
      }
    });
  });

  it('keeps a raw client that answers heartbeats connected', async ({ expect }) => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { heartbeat: 1 });
      const beat = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0xce]);
      const timer = setInterval(() => c.write(beat), 300);
      try {
        await sleep(3_500);
        expect(c.closed).toBe(false);
        expect(broker.connections.size).toBe(1);
      } finally {
        clearInterval(timer);
        c.close();
      }
    });
  });

  it('sends no heartbeats to a client that tuned heartbeat 0, and keeps it', async ({ expect }) => {
    await withBroker(
      async (broker) => {
        const c = await RawClient.open(broker.port, { heartbeat: 0 });
        try {
          expect(onlyConnection(broker).heartbeat).toBe(0);
          await sleep(2_500);
          expect(c.frames.filter(isHeartbeat)).toEqual([]);
          expect(c.closed).toBe(false);
          expect(broker.connections.size).toBe(1);
        } finally {
          c.close();
        }
      },
      { heartbeat: 1 },
    );
  });
});
