/**
 * Field type 'L': py-amqp (and so kombu and Celery) writes every integer outside 32 bits as 'L'
 * with a signed 64-bit value. RabbitMQ reads it as its 64-bit 'l' wherever tables go (method
 * arguments, client properties, message headers) and writes 'l' when it re-encodes headers.
 * Before, Warren refused such arguments with 501 and, when it re-encoded such headers to
 * dead-letter a message from a TTL timer, the broker process exited.
 */
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { encodeTable, Typed } from '../../src/protocol/field-table.js';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import type { OutBuffer } from '../../src/protocol/out-buffer.js';
import { withBroker } from '../helpers/broker.js';
import { bytes, declareQueue, expectStillServing, frame, RawClient } from '../helpers/raw-client.js';
import { waitFor } from '../helpers/wait.js';

/** Encodes with 'l' values and turns each into an 'L', as py-amqp writes them. */
function asL(b: Buffer, keys: string[]): Buffer {
  for (const k of keys) {
    const at = b.indexOf(Buffer.from(`${String.fromCharCode(k.length)}${k}l`, 'latin1'));
    if (at < 0) throw new Error(`key ${k} not found`);
    b[at + 1 + k.length] = 0x4c;
  }
  return b;
}

const BIG = 2 ** 40;
const NEG = -(2 ** 35);

/** basic.publish of a 2-byte body with headers { big: L 2^40, neg: L -2^35, n: { deep: L 2^33 } }. */
function publishWithL(channel: number, exchange: string, routingKey: string): Buffer {
  const method = bytes((w) =>
    M.encodeBasicPublish(w, channel, { exchange, routingKey, mandatory: false, immediate: false }),
  );
  // the table's bytes, with a u32 length, as the content header carries them
  const table = bytes((w: OutBuffer) =>
    encodeTable(w, {
      big: new Typed('l', BIG),
      neg: new Typed('l', NEG),
      n: { deep: new Typed('l', 2 ** 33) },
    }),
  );
  asL(table, ['big', 'neg', 'deep']);
  const header = Buffer.alloc(14);
  header.writeUInt16BE(60, 0);
  header.writeUInt16BE(0, 2);
  header.writeBigUInt64BE(2n, 4);
  header.writeUInt16BE(0x2000, 12); // headers only
  return Buffer.concat([
    method,
    frame(2, channel, Buffer.concat([header, table])),
    frame(3, channel, Buffer.from('hi')),
  ]);
}

/** queue.declare of 'ttl30d' with x-message-ttl and x-expires of 30 days, as 'l' values. */
function declare30d(): Buffer {
  const thirtyDays = new Typed('l', 2_592_000_000);
  return bytes((w) => declareQueue(w, 1, 'ttl30d', { 'x-message-ttl': thirtyDays, 'x-expires': thirtyDays }));
}

async function openChannel(c: RawClient, n = 1): Promise<void> {
  c.send((w) => M.encodeChannelOpen(w, n, {}));
  await c.expectMethod(Method.CHANNEL_OPEN_OK);
}

describe("field type 'L'", () => {
  it('is a 64-bit integer in queue arguments (x-message-ttl of 30 days)', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      await openChannel(c);
      c.write(asL(declare30d(), ['x-message-ttl', 'x-expires']));
      const ok = await c.expectMethod(Method.QUEUE_DECLARE_OK);
      expect(ok.args?.['queue']).toBe('ttl30d');
      // an equivalent redeclare as 'l' is accepted: same value, same type as RabbitMQ sees it
      c.write(declare30d());
      await c.expectMethod(Method.QUEUE_DECLARE_OK);
      c.close();
    });
  });

  it('in headers survives dead-lettering from a TTL timer, re-encoded as l', async () => {
    await withBroker(async (broker) => {
      const model = await amqplib.connect(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('dlq');
      await ch.assertQueue('ttl', {
        arguments: { 'x-message-ttl': 50, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
      });
      const c = await RawClient.open(broker.port);
      await openChannel(c);
      c.write(publishWithL(1, '', 'ttl'));
      let got: amqplib.ConsumeMessage | null = null;
      await ch.consume('dlq', (m) => {
        got = m;
      });
      await waitFor(() => got !== null, 'the dead letter');
      const m = got as unknown as amqplib.ConsumeMessage;
      expect(m.content.toString()).toBe('hi');
      const h = m.properties.headers!;
      expect(h['big']).toBe(BIG);
      expect(h['neg']).toBe(NEG);
      expect(h['n']).toEqual({ deep: 2 ** 33 });
      expect(h['x-death']?.[0]).toMatchObject({ queue: 'ttl', reason: 'expired', count: 1 });
      await expectStillServing(broker.port);
      c.close();
      await model.close();
    });
  });

  it('matches in a headers binding and a message header alike', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      await openChannel(c);
      c.send((w) => {
        M.encodeExchangeDeclare(w, 1, {
          exchange: 'hx',
          type: 'headers',
          passive: false,
          durable: false,
          autoDelete: false,
          internal: false,
          noWait: false,
          arguments: {},
        });
        declareQueue(w, 1, 'hq');
      });
      await c.expectMethod(Method.EXCHANGE_DECLARE_OK);
      await c.expectMethod(Method.QUEUE_DECLARE_OK);
      const bind = bytes((w) =>
        M.encodeQueueBind(w, 1, {
          queue: 'hq',
          exchange: 'hx',
          routingKey: '',
          noWait: false,
          arguments: { 'x-match': 'all', big: new Typed('l', BIG) },
        }),
      );
      c.write(asL(bind, ['big']));
      await c.expectMethod(Method.QUEUE_BIND_OK);
      c.write(publishWithL(1, 'hx', ''));
      c.send((w) => M.encodeBasicGet(w, 1, { queue: 'hq', noAck: true }));
      const ok = await c.expectMethod(Method.BASIC_GET_OK);
      expect(ok.args?.['messageCount']).toBe(0);
      c.close();
    });
  });

  it('is accepted in client properties', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.connect(broker.port);
      c.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
      await c.expectMethod(Method.CONNECTION_START);
      const startOk = bytes((w) =>
        M.encodeConnectionStartOk(w, 0, {
          clientProperties: { product: 'py-amqp', started: new Typed('l', 1_700_000_000_000) },
          mechanism: 'PLAIN',
          response: Buffer.from('\0guest\0guest'),
          locale: 'en_US',
        }),
      );
      c.write(asL(startOk, ['started']));
      await c.expectMethod(Method.CONNECTION_TUNE);
      c.close();
    });
  });
});
