/**
 * Real clients end to end against the embedded broker: @cloudamqp/amqp-client and amqplib.
 * At this stage the broker implements connections and channels only.
 */
import { AMQPClient, type AMQPError } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import type { Connection } from '../../src/amqp/connection.js';
import type { Broker } from '../../src/broker.js';
import { withBroker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

/** The negotiated values amqplib keeps on its (untyped) connection object. */
interface AmqplibTuned {
  frameMax: number;
  channelMax: number;
  heartbeat: number;
}

function tunedOf(model: amqplib.ChannelModel): AmqplibTuned {
  return model.connection as unknown as AmqplibTuned;
}

/** The single connection the broker holds. */
function onlyConnection(broker: Broker): Connection {
  expect(broker.connections.size).toBe(1);
  const [c] = broker.connections;
  return c!;
}

/** Records every 'error' and 'close' an amqplib connection emits. */
function watchAmqplib(model: amqplib.ChannelModel): {
  errors: Error[];
  closed: Promise<Error | undefined>;
} {
  const errors: Error[] = [];
  model.on('error', (e: Error) => errors.push(e));
  const closed = new Promise<Error | undefined>((resolve) => model.once('close', (e?: Error) => resolve(e)));
  return { errors, closed };
}

/** Connects amqp-client and records every error it reports. */
async function connectAmqpClient(url: string): Promise<{ client: AMQPClient; errors: AMQPError[] }> {
  const client = new AMQPClient(url);
  const errors: AMQPError[] = [];
  client.onerror = (e) => errors.push(e);
  await client.connect();
  return { client, errors };
}

describe('@cloudamqp/amqp-client', () => {
  it('opens 200 channels, closes them all and closes the connection cleanly', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const channels = await Promise.all(Array.from({ length: 200 }, () => client.channel()));
      expect(new Set(channels.map((ch) => ch.id)).size).toBe(200);
      expect(channels.every((ch) => !ch.closed)).toBe(true);
      const conn = onlyConnection(broker);
      await waitFor(() => conn.channelCount === 200, 'the broker to hold 200 channels');
      await Promise.all(channels.map((ch) => ch.close()));
      expect(channels.every((ch) => ch.closed)).toBe(true);
      expect(conn.channelCount).toBe(0);
      await client.close();
      expect(client.closed).toBe(true);
      expect(errors).toEqual([]);
    });
  });

  it('negotiates the frame-max and heartbeat asked for in the URL', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(`${broker.url}?frameMax=16384&heartbeat=3`);
      expect(client.frameMax).toBe(16384);
      expect(client.heartbeat).toBe(3);
      expect(client.channelMax).toBe(2047);
      const conn = onlyConnection(broker);
      expect(conn.frameMax).toBe(16384);
      expect(conn.heartbeat).toBe(3);
      expect(conn.channelMax).toBe(2047);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('gets no more than the frame-max and channel-max the broker offers', async () => {
    await withBroker(
      async (broker) => {
        const { client, errors } = await connectAmqpClient(`${broker.url}?frameMax=131072&channelMax=2000`);
        expect(client.frameMax).toBe(65536);
        expect(client.channelMax).toBe(100);
        const conn = onlyConnection(broker);
        expect(conn.frameMax).toBe(65536);
        expect(conn.channelMax).toBe(100);
        // the highest channel number allowed can be opened
        const last = await client.channel(100);
        expect(last.id).toBe(100);
        await last.close();
        await client.close();
        expect(errors).toEqual([]);
      },
      { frameMax: 65536, channelMax: 100 },
    );
  });

  it('reopens a channel number after closing it', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const conn = onlyConnection(broker);
      const first = await client.channel(7);
      expect(first.id).toBe(7);
      await first.close();
      expect(conn.channelCount).toBe(0);
      const again = await client.channel(7);
      expect(again.id).toBe(7);
      expect(again).not.toBe(first);
      expect(again.closed).toBe(false);
      expect(conn.channelCount).toBe(1);
      await again.close();
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('observes connection.close 320 CONNECTION_FORCED when the broker stops', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      let disconnected: Error | undefined;
      client.ondisconnect = (e) => {
        disconnected = e;
      };
      await broker.stop();
      await waitFor(() => errors.length > 0, 'amqp-client to report the close');
      // amqp-client reports the close once for the connection and once per open channel
      const text = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'";
      expect(errors.map((e) => e.message)).toContain(`connection closed: ${text} (320)`);
      for (const e of errors) expect(e.message).toMatch(/connection closed: CONNECTION_FORCED .*\(320\)$/);
      expect(disconnected?.message).toMatch(/\(320\)$/);
      expect(client.closed).toBe(true);
      expect(ch.closed).toBe(true);
      expect(broker.connections.size).toBe(0);
    });
  });

  it('is refused with 403 ACCESS_REFUSED for a wrong password', async () => {
    await withBroker(async (broker) => {
      const client = new AMQPClient(`amqp://guest:wrong@127.0.0.1:${broker.port}`);
      client.onerror = () => {};
      await expect(client.connect()).rejects.toThrow(/ACCESS_REFUSED - Login was refused.*\(403\)/);
      expect(client.closed).toBe(true);
    });
  });

  it('is refused with 530 NOT_ALLOWED for an unknown vhost', async () => {
    await withBroker(async (broker) => {
      const client = new AMQPClient(`${broker.url}/no-such-vhost`);
      client.onerror = () => {};
      await expect(client.connect()).rejects.toThrow(/NOT_ALLOWED - vhost no-such-vhost not found \(530\)/);
      expect(client.closed).toBe(true);
    });
  });
});

describe('amqplib', () => {
  it('opens 200 channels, closes them all and closes the connection cleanly', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const { errors, closed } = watchAmqplib(model);
      const channels = await Promise.all(Array.from({ length: 200 }, () => model.createChannel()));
      const channelErrors: Error[] = [];
      for (const ch of channels) ch.on('error', (e: Error) => channelErrors.push(e));
      const conn = onlyConnection(broker);
      await waitFor(() => conn.channelCount === 200, 'the broker to hold 200 channels');
      await Promise.all(channels.map((ch) => ch.close()));
      expect(conn.channelCount).toBe(0);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
      expect(channelErrors).toEqual([]);
    });
  });

  it('negotiates the frame-max and heartbeat asked for in the URL', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(`${broker.url}?frameMax=8192&heartbeat=7`);
      const { errors, closed } = watchAmqplib(model);
      const tuned = tunedOf(model);
      expect(tuned.frameMax).toBe(8192);
      expect(tuned.heartbeat).toBe(7);
      expect(tuned.channelMax).toBe(2047);
      const conn = onlyConnection(broker);
      expect(conn.frameMax).toBe(8192);
      expect(conn.heartbeat).toBe(7);
      expect(conn.channelMax).toBe(2047);
      await model.close();
      expect(await closed).toBeUndefined();
      expect(errors).toEqual([]);
    });
  });

  it('gets no more than the frame-max and channel-max the broker offers', async () => {
    await withBroker(
      async (broker) => {
        // amqplib asks for frame-max 131072 and no channel limit by default
        const model = await amqplib.connect(broker.url);
        const { errors, closed } = watchAmqplib(model);
        const tuned = tunedOf(model);
        expect(tuned.frameMax).toBe(65536);
        expect(tuned.channelMax).toBe(100);
        const conn = onlyConnection(broker);
        expect(conn.frameMax).toBe(65536);
        expect(conn.channelMax).toBe(100);
        // every one of the 100 channel numbers can be used
        const channels = await Promise.all(Array.from({ length: 100 }, () => model.createChannel()));
        expect(conn.channelCount).toBe(100);
        await Promise.all(channels.map((ch) => ch.close()));
        await model.close();
        expect(await closed).toBeUndefined();
        expect(errors).toEqual([]);
      },
      { frameMax: 65536, channelMax: 100 },
    );
  });

  it('observes connection.close 320 CONNECTION_FORCED when the broker stops', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const { errors, closed } = watchAmqplib(model);
      const ch = await model.createChannel();
      const channelClosed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
      await broker.stop();
      const err = (await closed) as (Error & { code?: number }) | undefined;
      expect(err).toBeInstanceOf(Error);
      expect(err!.code).toBe(320);
      expect(err!.message).toMatch(/320 \(CONNECTION-FORCED\)/);
      expect(err!.message).toMatch(/CONNECTION_FORCED - broker forced connection closure/);
      await channelClosed;
      // amqplib treats 320 as a non-fatal close: 'close' with the error, no 'error' event
      expect(errors).toEqual([]);
      expect(broker.connections.size).toBe(0);
    });
  });

  it('is refused with 403 ACCESS_REFUSED for a wrong password', async () => {
    await withBroker(async (broker) => {
      await expect(amqplib.connect(`amqp://guest:wrong@127.0.0.1:${broker.port}`)).rejects.toThrow(
        /403 \(ACCESS-REFUSED\) with message "ACCESS_REFUSED - Login was refused/,
      );
    });
  });

  it('is refused for an unknown vhost', async () => {
    await withBroker(async (broker) => {
      // amqplib reports an unexpected connection.close instead of its reply code
      await expect(amqplib.connect(`${broker.url}/no-such-vhost`)).rejects.toThrow(/ConnectionClose/);
    });
  });
});
