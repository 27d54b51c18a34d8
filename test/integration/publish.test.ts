/**
 * Publishing end to end through real clients (amqplib and @cloudamqp/amqp-client) and a raw
 * peer: mandatory returns, refused publishes, bodies from empty to 64 MiB, every basic property
 * and header field type passing through unchanged (byte for byte), basic.get, and the broker's
 * max message size. Every refusal is checked for RabbitMQ's exact reply code and text.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AMQPChannel, AMQPClient, AMQPMessage } from '@cloudamqp/amqp-client';
import type amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import * as M from '../../src/protocol/generated/methods.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { declareQueue, frame, RawClient } from '../helpers/raw-client.js';
import { amqpClientStillWorks, connectAmqpClient, connectAmqplib } from '../helpers/refusals.js';
import { drain } from '../helpers/routing.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;

// ------------------------------------------------------------------ helpers

/** The negotiated frame-max amqplib keeps on its (untyped) connection object. */
function amqplibFrameMax(model: amqplib.ChannelModel): number {
  return (model.connection as unknown as { frameMax: number }).frameMax;
}

/**
 * Publishes with `publish` on a fresh amqplib channel and waits for the broker to close that
 * channel; returns the reply code and text of the close.
 */
async function amqplibPublishRefusal(
  model: amqplib.ChannelModel,
  publish: (ch: amqplib.Channel) => void,
): Promise<{ code: number; text: string }> {
  const ch = await model.createChannel();
  const failed = new Promise<Error & { code?: number }>((resolve) => ch.once('error', resolve));
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  publish(ch);
  const err = await failed;
  await closed;
  const m = /with message "(.*)"$/s.exec(err.message);
  if (!m || typeof err.code !== 'number') throw err;
  return { code: err.code, text: m[1]! };
}

/**
 * Publishes with `publish` on a fresh amqp-client channel in confirm mode and expects the broker
 * to close the channel instead of confirming; returns "<reply text> (<reply code>)".
 */
async function amqpClientPublishRefusal(
  client: AMQPClient,
  publish: (ch: AMQPChannel) => Promise<unknown>,
): Promise<string> {
  const ch = await client.channel();
  await ch.confirmSelect();
  const err = await publish(ch).then(
    () => {
      throw new Error('expected the publish to be refused');
    },
    (e: Error) => e,
  );
  expect(ch.closed).toBe(true);
  const m = /^channel \d+ closed: (.*)$/s.exec(err.message);
  if (!m) throw err;
  return m[1]!;
}

/** Proves an amqplib connection still works: a message makes a round trip on a new channel. */
async function amqplibStillWorks(model: amqplib.ChannelModel): Promise<void> {
  const ch = await model.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('still here'));
  const msg = await ch.get(queue, { noAck: true });
  expect(msg === false ? null : msg.content.toString()).toBe('still here');
  await ch.close();
}

/** A body whose every byte depends on its size and position, so truncation or reordering shows. */
function patterned(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + size) & 0xff;
  return b;
}

/** An amqplib basic.get result; get-empty fails the test. */
function present(m: amqplib.GetMessage | false): amqplib.GetMessage {
  if (m === false) throw new Error('expected a message, got get-empty');
  return m;
}

/** The body of an amqp-client message as a Buffer (amqp-client gives null for an empty body). */
function bodyOf(m: AMQPMessage): Buffer {
  return m.body === null ? Buffer.alloc(0) : Buffer.from(m.body as Uint8Array);
}

// ------------------------------------------------------------------ raw wire helpers

/** One delivery seen on the wire: the method, the raw content header payload and body frames. */
interface WireDelivery {
  method: string;
  args: Record<string, unknown>;
  header: Buffer;
  bodyFrames: Buffer[];
}

/** The complete deliveries (basic.deliver / get-ok / return plus content) a raw client received. */
function wireDeliveries(c: RawClient): WireDelivery[] {
  const out: WireDelivery[] = [];
  const fs = c.frames;
  for (let i = 0; i < fs.length; i++) {
    const f = fs[i]!;
    if (
      f.methodId !== Method.BASIC_DELIVER &&
      f.methodId !== Method.BASIC_GET_OK &&
      f.methodId !== Method.BASIC_RETURN
    ) {
      continue;
    }
    const h = fs[i + 1];
    if (h === undefined || h.type !== 2) break;
    const size = Number(h.payload.readBigUInt64BE(4));
    const bodyFrames: Buffer[] = [];
    let got = 0;
    let j = i + 2;
    while (got < size && j < fs.length && fs[j]!.type === 3) {
      bodyFrames.push(fs[j]!.payload);
      got += fs[j]!.payload.length;
      j++;
    }
    if (got < size) break;
    out.push({ method: f.name!, args: f.args!, header: h.payload, bodyFrames });
    i = j - 1;
  }
  return out;
}

/** A content header payload: class basic, weight 0, body size, then the raw property bytes. */
function contentHeader(bodySize: number, properties: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(60, 0);
  h.writeUInt16BE(0, 2);
  h.writeBigUInt64BE(BigInt(bodySize), 4);
  return Buffer.concat([h, properties]);
}

/** basic.publish to the default exchange, its content header, and the body cut into frames of `chunk`. */
function rawPublish(c: RawClient, queue: string, properties: Buffer, body: Buffer, chunk: number): void {
  c.send((w) =>
    M.encodeBasicPublish(w, 1, { exchange: '', routingKey: queue, mandatory: false, immediate: false }),
  );
  const frames = [frame(2, 1, contentHeader(body.length, properties))];
  for (let o = 0; o < body.length; o += chunk) frames.push(frame(3, 1, body.subarray(o, o + chunk)));
  c.write(Buffer.concat(frames));
}

/** Opens channel 1 and declares a server-named exclusive queue; returns its name. */
async function rawQueue(c: RawClient): Promise<string> {
  c.send((w) => M.encodeChannelOpen(w, 1, {}));
  await c.expectMethod(Method.CHANNEL_OPEN_OK);
  c.send((w) => declareQueue(w, 1, '', {}, { exclusive: true }));
  return (await c.expectMethod(Method.QUEUE_DECLARE_OK)).args!['queue'] as string;
}

async function rawConsume(c: RawClient, queue: string): Promise<void> {
  c.send((w) =>
    M.encodeBasicConsume(w, 1, {
      queue,
      consumerTag: 'raw',
      noLocal: false,
      noAck: true,
      exclusive: false,
      noWait: false,
      arguments: {},
    }),
  );
  await c.expectMethod(Method.BASIC_CONSUME_OK);
}

async function rawClose(c: RawClient): Promise<void> {
  c.send((w) => M.encodeConnectionClose(w, 0, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }));
  await c.expectMethod(Method.CONNECTION_CLOSE_OK);
  c.close();
}

const shortstr = (s: string): Buffer => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length]), b]);
};
const longstr = (b: Buffer): Buffer => {
  const n = Buffer.alloc(4);
  n.writeUInt32BE(b.length);
  return Buffer.concat([n, b]);
};
const i64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
/** A field-table entry: name, type tag, value bytes. */
const entry = (name: string, tag: string, value: Buffer): Buffer =>
  Buffer.concat([shortstr(name), Buffer.from(tag, 'latin1'), value]);

// ------------------------------------------------------------------ basic.publish

describe('basic.publish', () => {
  it('returns an unroutable mandatory message with 312 NO_ROUTE, body and properties intact', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      const returned: amqplib.Message[] = [];
      ch.on('return', (m: amqplib.Message) => returned.push(m));
      const body = patterned(5000);
      ch.publish('amq.direct', 'nowhere', body, {
        mandatory: true,
        contentType: 'application/octet-stream',
        headers: { 'x-trace': 'abc', n: 42 },
        messageId: 'm-1',
        deliveryMode: 2,
      });
      ch.sendToQueue('no-such-queue', Buffer.from('second'), { mandatory: true, correlationId: 'c-2' });
      await waitFor(() => returned.length === 2, 'two basic.return');
      expect(returned[0]!.fields).toEqual({
        replyCode: 312,
        replyText: 'NO_ROUTE',
        exchange: 'amq.direct',
        routingKey: 'nowhere',
      });
      expect(returned[0]!.content.equals(body)).toBe(true);
      expect(returned[0]!.properties).toMatchObject({
        contentType: 'application/octet-stream',
        headers: { 'x-trace': 'abc', n: 42 },
        messageId: 'm-1',
        deliveryMode: 2,
      });
      expect(returned[1]!.fields).toEqual({
        replyCode: 312,
        replyText: 'NO_ROUTE',
        exchange: '',
        routingKey: 'no-such-queue',
      });
      expect(returned[1]!.content.toString()).toBe('second');
      expect(returned[1]!.properties.correlationId).toBe('c-2');
      await model.close();

      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      const got: {
        code?: number;
        text?: string;
        exchange: string;
        key: string;
        body: string;
        props: object;
      }[] = [];
      ach.onReturn = (m) =>
        got.push({
          code: m.replyCode,
          text: m.replyText,
          exchange: m.exchange,
          key: m.routingKey,
          body: m.bodyString() ?? '',
          props: { ...m.properties },
        });
      await ach.basicPublish('amq.fanout', 'any', 'to nobody', { appId: 'tests', type: 't' }, true);
      await waitFor(() => got.length === 1, 'basic.return');
      expect(got).toEqual([
        {
          code: 312,
          text: 'NO_ROUTE',
          exchange: 'amq.fanout',
          key: 'any',
          body: 'to nobody',
          props: { appId: 'tests', type: 't' },
        },
      ]);
      expect(ach.closed).toBe(false);
      await client.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });

  it('delivers a routable mandatory message without returning it', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      const returned: amqplib.Message[] = [];
      ch.on('return', (m: amqplib.Message) => returned.push(m));
      await ch.assertQueue('rt', { durable: false });
      await ch.bindQueue('rt', 'amq.direct', 'here');
      ch.publish('amq.direct', 'here', Buffer.from('routed'), { mandatory: true });
      ch.sendToQueue('rt', Buffer.from('direct'), { mandatory: true });
      // an unroutable one after them: its return proves any earlier return would have arrived
      ch.publish('amq.direct', 'elsewhere', Buffer.from('marker'), { mandatory: true });
      await ch.waitForConfirms();
      await waitFor(() => returned.length > 0, 'the marker return');
      expect(returned.map((m) => m.content.toString())).toEqual(['marker']);
      const a = await ch.get('rt', { noAck: true });
      const b = await ch.get('rt', { noAck: true });
      expect([present(a).content.toString(), present(b).content.toString()]).toEqual(['routed', 'direct']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('drops an unroutable message that is not mandatory and keeps the channel open', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const returned: AMQPMessage[] = [];
      ch.onReturn = (m) => returned.push(m);
      await ch.confirmSelect();
      await ch.basicPublish('amq.direct', 'nowhere', 'lost');
      await ch.basicPublish('', 'no-such-queue', 'lost too');
      // a mandatory unroutable message after them is the only one returned
      await ch.basicPublish('', 'no-such-queue', 'marker', {}, true);
      await waitFor(() => returned.length > 0, 'the marker return');
      expect(returned.map((m) => m.bodyString())).toEqual(['marker']);
      expect(ch.closed).toBe(false);
      await amqpClientStillWorks(client);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('CC keys count with the routing key at every exchange: the alternate exchange only when none matched', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertExchange('ae', 'fanout', { durable: false });
      await ch.assertQueue('ae-q', { durable: false });
      await ch.bindQueue('ae-q', 'ae', '');
      await ch.assertExchange('with-ae', 'direct', { durable: false, alternateExchange: 'ae' });
      await ch.assertQueue('bound', { durable: false });
      await ch.bindQueue('bound', 'with-ae', 'k');
      // the routing key matches, a CC key does not (and the reverse): nothing for the AE
      ch.publish('with-ae', 'k', Buffer.from('rk'), { CC: ['nothing'] });
      ch.publish('with-ae', 'nothing', Buffer.from('cc'), { CC: ['k'] });
      // no key matches: the AE gets it
      ch.publish('with-ae', 'nothing', Buffer.from('none'), { CC: ['nothing-either'] });
      // exchange to exchange: the CC key takes it into x0, where the routing key matches
      await ch.assertExchange('x1', 'topic', { durable: false });
      await ch.assertExchange('x0', 'topic', { durable: false });
      await ch.bindExchange('x0', 'x1', 'a.*');
      await ch.assertQueue('deep', { durable: false });
      await ch.bindQueue('deep', 'x0', '*');
      ch.publish('x1', 'a', Buffer.from('via cc'), { CC: ['a.b'] });
      await ch.waitForConfirms();
      expect(await drain(ch, 'bound')).toEqual(['rk', 'cc']);
      expect(await drain(ch, 'ae-q')).toEqual(['none']);
      expect(await drain(ch, 'deep')).toEqual(['via cc']);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('also routes to the CC and BCC routing keys, and strips the BCC header', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      const returned: amqplib.Message[] = [];
      ch.on('return', (m: amqplib.Message) => returned.push(m));
      for (const q of ['to', 'cc', 'bcc']) await ch.assertQueue(q, { durable: false });
      // amqplib turns the CC and BCC options into headers holding arrays of strings
      ch.sendToQueue('to', Buffer.from('copied'), { CC: ['cc'], BCC: ['bcc'], headers: { keep: 1 } });
      await ch.waitForConfirms();
      const seen: unknown[] = [];
      for (const q of ['to', 'cc', 'bcc']) {
        const m = await ch.get(q, { noAck: true });
        seen.push(m && [q, m.content.toString(), m.fields.routingKey, m.properties.headers]);
      }
      const headers = { CC: ['cc'], keep: 1 };
      expect(seen).toEqual([
        ['to', 'copied', 'to', headers],
        ['cc', 'copied', 'to', headers],
        ['bcc', 'copied', 'to', headers],
      ]);
      // through a direct exchange; a message routable only through its BCC is not returned
      await ch.bindQueue('cc', 'amq.direct', 'k-cc');
      ch.publish('amq.direct', 'k-none', Buffer.from('by cc'), { CC: 'k-cc' });
      ch.publish('amq.direct', 'k-none', Buffer.from('by bcc'), { BCC: 'k-cc', mandatory: true });
      await ch.waitForConfirms();
      const a = await ch.get('cc', { noAck: true });
      const b = await ch.get('cc', { noAck: true });
      expect([present(a).content.toString(), present(b).content.toString()]).toEqual(['by cc', 'by bcc']);
      expect(present(b).properties.headers).toEqual({});
      expect(returned).toEqual([]);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('refuses an expiration that is not a non-negative integer with 406 PRECONDITION_FAILED', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const refusals = [];
      for (const expiration of ['abc', '-1', '', '1.5']) {
        refusals.push(
          await amqplibPublishRefusal(model, (ch) => ch.sendToQueue('any', Buffer.from('x'), { expiration })),
        );
      }
      expect(refusals).toEqual([
        { code: 406, text: "PRECONDITION_FAILED - invalid expiration 'abc': no_integer" },
        { code: 406, text: "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}" },
        { code: 406, text: "PRECONDITION_FAILED - invalid expiration '': no_integer" },
        { code: 406, text: `PRECONDITION_FAILED - invalid expiration '1.5': {leftover_string,".5"}` },
      ]);
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(
        await amqpClientPublishRefusal(client, (ch) =>
          ch.basicPublish('', 'any', 'x', { expiration: 'soon' }),
        ),
      ).toBe("PRECONDITION_FAILED - invalid expiration 'soon': no_integer (406)");
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(1);
    });
  });

  it('refuses a publish to a missing exchange with 404 NOT_FOUND', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      expect(await amqplibPublishRefusal(model, (ch) => ch.publish('nope', 'k', Buffer.from('x')))).toEqual({
        code: 404,
        text: "NOT_FOUND - no exchange 'nope' in vhost '/'",
      });
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(await amqpClientPublishRefusal(client, (ch) => ch.basicPublish('nope', 'k', 'x'))).toBe(
        "NOT_FOUND - no exchange 'nope' in vhost '/' (404)",
      );
      await amqpClientStillWorks(client);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(1);
    });
  });

  it('closes the connection with 540 NOT_IMPLEMENTED for immediate=true', async () => {
    await withBroker(async (broker) => {
      const { client: setup, errors: setupErrors } = await connectAmqpClient(broker.url);
      const sch = await setup.channel();
      await sch.queueDeclare('q', { durable: false });

      // amqplib always sends immediate=false, so amqp-client sends this one
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.basicPublish('', 'q', 'now or never', {}, false, true);
      await waitFor(() => client.closed, 'the connection to close');
      expect(errors.map((e) => e.message)).toContain(
        'connection closed: NOT_IMPLEMENTED - immediate=true (540)',
      );
      expect(ch.closed).toBe(true);
      // the message went nowhere; other connections are unaffected
      expect(await sch.queueDeclare('q', { passive: true })).toEqual({
        name: 'q',
        messageCount: 0,
        consumerCount: 0,
      });
      await amqpClientStillWorks(setup);
      await setup.close();
      expect(setupErrors).toEqual([]);
    });
  });

  it("refuses a user_id other than the authenticated user's with 406 PRECONDITION_FAILED", async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createChannel();
      await ch.assertQueue('user', { durable: false });
      expect(
        await amqplibPublishRefusal(model, (c) => c.sendToQueue('user', Buffer.from('x'), { userId: 'bob' })),
      ).toEqual({
        code: 406,
        text: "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
      });
      await amqplibStillWorks(model);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      expect(
        await amqpClientPublishRefusal(client, (c) => c.basicPublish('', 'user', 'x', { userId: 'Guest' })),
      ).toBe(
        "PRECONDITION_FAILED - user_id property set to 'Guest' but authenticated user was 'guest' (406)",
      );
      await amqpClientStillWorks(client);
      // neither message was enqueued
      expect(await ch.checkQueue('user')).toEqual({ queue: 'user', messageCount: 0, consumerCount: 0 });
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toHaveLength(1);
    });
  });

  it('accepts a user_id equal to the authenticated user and delivers it unchanged', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const ch = await model.createConfirmChannel();
      await ch.assertQueue('user', { durable: false });
      ch.sendToQueue('user', Buffer.from('from guest'), { userId: 'guest' });
      await ch.waitForConfirms();
      const m = await ch.get('user', { noAck: true });
      expect(m && [m.content.toString(), m.properties.userId]).toEqual(['from guest', 'guest']);
      const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
      const ach = await client.channel();
      await ach.confirmSelect();
      await ach.basicPublish('', 'user', 'again', { userId: 'guest' });
      const g = await ach.basicGet('user');
      expect([g?.bodyString(), g?.properties.userId]).toEqual(['again', 'guest']);
      await client.close();
      await model.close();
      expect(errors).toEqual([]);
      expect(clientErrors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ bodies

describe('message bodies', () => {
  it('of 0, 1, frame-max-8, frame-max-7 bytes, 1 MiB and 16 MiB arrive intact through amqplib', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const fm = amqplibFrameMax(model);
      expect(fm).toBe(131072);
      const sizes = [0, 1, fm - 8, fm - 7, MiB, 16 * MiB];
      const bodies = sizes.map(patterned);
      const ch = await model.createConfirmChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      for (const b of bodies) ch.sendToQueue(queue, b);
      await ch.waitForConfirms();
      const got: Buffer[] = [];
      for (let i = 0; i < sizes.length; i++) {
        const m = await ch.get(queue, { noAck: true });
        if (m === false) throw new Error(`message ${i} missing`);
        got.push(m.content);
      }
      expect(got.map((b) => b.length)).toEqual(sizes);
      for (let i = 0; i < sizes.length; i++)
        expect(got[i]!.equals(bodies[i]!), `body ${sizes[i]}`).toBe(true);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('of 0, 1, frame-max-8, frame-max-7 bytes, 1 MiB and 16 MiB arrive intact through amqp-client', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const fm = client.frameMax;
      expect(fm).toBe(8192);
      const sizes = [0, 1, fm - 8, fm - 7, MiB, 16 * MiB];
      const bodies = sizes.map(patterned);
      const ch = await client.channel();
      const { name } = await ch.queueDeclare('', { durable: false, exclusive: true });
      const got: Buffer[] = [];
      await ch.basicConsume(name, { noAck: true }, (m) => {
        got.push(bodyOf(m));
      });
      await ch.confirmSelect();
      for (const b of bodies) await ch.basicPublish('', name, b);
      await waitFor(() => got.length === sizes.length, 'every body');
      expect(got.map((b) => b.length)).toEqual(sizes);
      for (let i = 0; i < sizes.length; i++)
        expect(got[i]!.equals(bodies[i]!), `body ${sizes[i]}`).toBe(true);
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('of 64 MiB makes one round trip intact', { timeout: 60_000 }, async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const body = randomBytes(64 * MiB);
      const sent = createHash('sha256').update(body).digest('hex');
      const ch = await model.createChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      const received = new Promise<Buffer>((resolve) => {
        void ch.consume(queue, (m) => m && resolve(m.content), { noAck: true });
      });
      ch.sendToQueue(queue, body);
      const got = await received;
      expect(got.length).toBe(64 * MiB);
      expect(createHash('sha256').update(got).digest('hex')).toBe(sent);
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('are delivered in body frames of frame-max minus 8 bytes however the publisher split them', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port, { frameMax: 4096 });
      const queue = await rawQueue(c);
      await rawConsume(c, queue);
      const cases: [size: number, publishedIn: number][] = [
        [0, 1],
        [1, 1],
        [100, 1],
        [4088, 4088],
        [4089, 4088],
        [4089, 1000],
        [9000, 3000],
      ];
      const noProps = Buffer.from([0, 0]);
      for (const [size, chunk] of cases) rawPublish(c, queue, noProps, patterned(size), chunk);
      await c.until(() => wireDeliveries(c).length === cases.length, 'every delivery');
      const ds = wireDeliveries(c);
      expect(ds.map((d) => d.bodyFrames.map((b) => b.length))).toEqual([
        [],
        [1],
        [100],
        [4088],
        [4088, 1],
        [4088, 1],
        [4088, 4088, 824],
      ]);
      for (let i = 0; i < cases.length; i++) {
        expect(Buffer.concat(ds[i]!.bodyFrames).equals(patterned(cases[i]![0])), `body ${i}`).toBe(true);
      }
      await rawClose(c);
    });
  });
});

// ------------------------------------------------------------------ properties

describe('message properties', () => {
  it('pass through unchanged from amqplib, with every header field type amqplib can send', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const headers = {
        string: 'héllo ✓',
        byte: 7,
        short: 300,
        int: 70000,
        long: 2 ** 40,
        negative: -5,
        double: 3.25,
        float: { '!': 'float', value: 1.5 },
        uint8: { '!': 'uint8', value: 200 },
        uint16: { '!': 'uint16', value: 60000 },
        uint32: { '!': 'uint32', value: 4_000_000_000 },
        int64: { '!': 'int64', value: -(2 ** 50) },
        yes: true,
        no: false,
        table: { inner: 'x', deeper: { n: 1, list: ['a'] } },
        array: [1, 'two', true, null, [3.5], { k: 'v' }],
        bytes: Buffer.from([0, 1, 2, 255]),
        timestamp: { '!': 'timestamp', value: 1_700_000_000 },
        void: null,
        decimal: { '!': 'decimal', value: { places: 2, digits: 12345 } },
        empty: '',
      };
      const options = {
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        headers,
        deliveryMode: 2,
        priority: 7,
        correlationId: 'corr-42',
        replyTo: 'replies',
        expiration: '600000',
        messageId: 'msg-42',
        timestamp: 1_700_000_001,
        type: 'order.created',
        userId: 'guest',
        appId: 'warren-tests',
      };
      const ch = await model.createChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      const delivered = new Promise<amqplib.ConsumeMessage>((resolve) => {
        void ch.consume(queue, (m) => m && resolve(m), { noAck: true });
      });
      ch.sendToQueue(queue, Buffer.from('{}'), options);
      const m = await delivered;
      // amqplib decodes typed numbers to plain numbers; timestamps and decimals stay typed
      expect(m.properties).toEqual({
        ...options,
        headers: {
          ...headers,
          float: 1.5,
          uint8: 200,
          uint16: 60000,
          uint32: 4_000_000_000,
          int64: -(2 ** 50),
        },
        clusterId: undefined,
      });
      expect(m.content.toString()).toBe('{}');
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('pass through unchanged from amqp-client, with every header field type amqp-client can send', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const headers = {
        string: 'héllo ✓',
        int: 70000,
        negative: -5,
        big: 2n ** 40n,
        float: 1.5,
        double: 1e10 + 0.5,
        yes: true,
        no: false,
        table: { inner: 'x', deeper: { n: 1 } },
        array: [1, 'two', false, null, { k: 'v' }],
        bytes: new Uint8Array([0, 1, 2, 255]),
        date: new Date(1_700_000_000_000),
        void: null,
      };
      const properties = {
        contentType: 'text/plain',
        contentEncoding: 'identity',
        headers,
        deliveryMode: 2,
        priority: 3,
        correlationId: 'corr-7',
        replyTo: 'reply-here',
        expiration: '600000',
        messageId: 'id-7',
        timestamp: new Date(1_700_000_002_000),
        type: 'kind',
        userId: 'guest',
        appId: 'amqp-client-tests',
      };
      const ch = await client.channel();
      const { name } = await ch.queueDeclare('', { durable: false, exclusive: true });
      let seen: Record<string, unknown> | undefined;
      await ch.basicConsume(name, { noAck: true }, (m) => {
        // amqp-client's byte arrays view its read buffer: copy before it is reused
        const h = m.properties.headers as Record<string, unknown>;
        seen = { ...m.properties, headers: { ...h, bytes: Buffer.from(h['bytes'] as Uint8Array) } };
      });
      await ch.basicPublish('', name, 'props', properties);
      await waitFor(() => seen !== undefined, 'the delivery');
      // amqp-client decodes 64-bit integers to numbers
      expect(seen).toEqual({
        ...properties,
        headers: { ...headers, big: 2 ** 40, bytes: Buffer.from([0, 1, 2, 255]) },
      });
      await client.close();
      expect(errors).toEqual([]);
    });
  });

  it('reach consumers and basic.get as the exact content header bytes that were published', async () => {
    await withBroker(async (broker) => {
      const table = Buffer.concat([
        entry('t', 't', Buffer.from([1])),
        entry('b', 'b', Buffer.from([0xfe])),
        entry('B', 'B', Buffer.from([0xfe])),
        entry('s', 's', Buffer.from([0x80, 0x01])),
        entry('u', 'u', Buffer.from([0xff, 0xfe])),
        entry('I', 'I', Buffer.from([0x80, 0, 0, 1])),
        entry('i', 'i', Buffer.from([0xff, 0, 0, 1])),
        entry('l', 'l', i64(-5n)),
        entry('f', 'f', Buffer.from([0x3f, 0xc0, 0, 0])),
        entry('d', 'd', Buffer.from([0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18])),
        entry('D', 'D', Buffer.from([2, 0, 0, 0x30, 0x39])),
        entry('S', 'S', longstr(Buffer.from('héllo'))),
        entry(
          'A',
          'A',
          longstr(
            Buffer.concat([
              Buffer.from('I'),
              Buffer.from([0, 0, 0, 7]),
              Buffer.from('S'),
              longstr(Buffer.from('x')),
            ]),
          ),
        ),
        entry('T', 'T', i64(1_700_000_000n)),
        entry('F', 'F', longstr(entry('nested', 'V', Buffer.alloc(0)))),
        entry('V', 'V', Buffer.alloc(0)),
        entry('x', 'x', longstr(Buffer.from([0, 1, 2, 0xff]))),
      ]);
      const everything = Buffer.concat([
        // all fourteen properties, cluster-id included
        Buffer.from([0xff, 0xfc]),
        shortstr('application/octet-stream'),
        shortstr('gzip'),
        longstr(table),
        Buffer.from([2]),
        Buffer.from([9]),
        shortstr('corr-1'),
        shortstr('reply-q'),
        shortstr('60000'),
        shortstr('msg-1'),
        i64(1_700_000_001n),
        shortstr('my.type'),
        shortstr('guest'),
        shortstr('app'),
        shortstr('cluster'),
      ]);
      const nothing = Buffer.from([0, 0]);
      // content-type and delivery-mode only
      const some = Buffer.concat([Buffer.from([0x90, 0x00]), shortstr('text/plain'), Buffer.from([1])]);
      const sets = [everything, nothing, some];

      const c = await RawClient.open(broker.port);
      const queue = await rawQueue(c);
      await rawConsume(c, queue);
      for (const [i, p] of sets.entries()) rawPublish(c, queue, p, Buffer.from(`body ${i}`), 3);
      await c.until(() => wireDeliveries(c).length === sets.length, 'the deliveries');
      const delivered = wireDeliveries(c);
      expect(delivered.map((d) => d.method)).toEqual(Array(sets.length).fill('basic.deliver'));
      for (let i = 0; i < sets.length; i++) {
        expect(delivered[i]!.header.equals(contentHeader(`body ${i}`.length, sets[i]!)), `header ${i}`).toBe(
          true,
        );
        expect(Buffer.concat(delivered[i]!.bodyFrames).toString()).toBe(`body ${i}`);
      }

      // the same bytes through basic.get
      c.send((w) => M.encodeBasicCancel(w, 1, { consumerTag: 'raw', noWait: false }));
      await c.expectMethod(Method.BASIC_CANCEL_OK);
      rawPublish(c, queue, everything, Buffer.from('got'), 1000);
      c.send((w) => M.encodeBasicGet(w, 1, { queue, noAck: true }));
      await c.until(() => wireDeliveries(c).length === sets.length + 1, 'the get-ok');
      const got = wireDeliveries(c)[sets.length]!;
      expect(got.method).toBe('basic.get-ok');
      expect(got.header.equals(contentHeader(3, everything))).toBe(true);
      expect(Buffer.concat(got.bodyFrames).toString()).toBe('got');
      await rawClose(c);
    });
  });
});

// ------------------------------------------------------------------ basic.get

describe('basic.get', () => {
  it('answers get-ok with the count of messages left, then get-empty', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('get', { durable: false });
      await ch.confirmSelect();
      for (const b of ['a', 'b', 'c']) await ch.basicPublish('', 'get', b);
      const seen: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        const m = await ch.basicGet('get', { noAck: true });
        seen.push(m && [m.bodyString(), m.messageCount, m.exchange, m.routingKey, m.redelivered]);
      }
      expect(seen).toEqual([
        ['a', 2, '', 'get', false],
        ['b', 1, '', 'get', false],
        ['c', 0, '', 'get', false],
      ]);
      expect(await ch.basicGet('get')).toBeNull();

      const { model, errors: modelErrors } = await connectAmqplib(broker.url);
      const lch = await model.createConfirmChannel();
      lch.publish('amq.direct', 'k', Buffer.from('unrouted'));
      await lch.bindQueue('get', 'amq.direct', 'k');
      lch.publish('amq.direct', 'k', Buffer.from('x'));
      lch.publish('amq.direct', 'k', Buffer.from('y'));
      await lch.waitForConfirms();
      const x = await lch.get('get', { noAck: true });
      expect(x && [x.content.toString(), x.fields]).toEqual([
        'x',
        { deliveryTag: 1, redelivered: false, exchange: 'amq.direct', routingKey: 'k', messageCount: 1 },
      ]);
      const y = await lch.get('get', { noAck: true });
      expect(y && [y.content.toString(), y.fields.messageCount]).toEqual(['y', 0]);
      expect(await lch.get('get', { noAck: true })).toBe(false);
      await model.close();
      await client.close();
      expect(errors).toEqual([]);
      expect(modelErrors).toEqual([]);
    });
  });

  it('removes the message for good with no-ack, but not while an ack is pending', async () => {
    await withBroker(async (broker) => {
      const { model, errors } = await connectAmqplib(broker.url);
      const setup = await model.createConfirmChannel();
      await setup.assertQueue('get', { durable: false });
      for (const b of ['a', 'b']) setup.sendToQueue('get', Buffer.from(b));
      await setup.waitForConfirms();

      const noAck = await model.createChannel();
      const a = await noAck.get('get', { noAck: true });
      expect(present(a).content.toString()).toBe('a');
      await noAck.close();
      // closing the channel gave nothing back
      expect(await setup.checkQueue('get')).toEqual({ queue: 'get', messageCount: 1, consumerCount: 0 });

      const withAck = await model.createChannel();
      const b = await withAck.get('get', { noAck: false });
      expect(present(b).content.toString()).toBe('b');
      expect(await setup.checkQueue('get')).toEqual({ queue: 'get', messageCount: 0, consumerCount: 0 });
      await withAck.close();
      // the unacknowledged message came back when its channel closed
      const again = present(await setup.get('get', { noAck: false }));
      expect([again.content.toString(), again.fields.redelivered]).toEqual(['b', true]);
      setup.ack(again);
      await setup.close();
      const check = await model.createChannel();
      expect(await check.checkQueue('get')).toEqual({ queue: 'get', messageCount: 0, consumerCount: 0 });
      await model.close();
      expect(errors).toEqual([]);
    });
  });

  it('puts a nacked message back at the head of the queue, marked redelivered', async () => {
    await withBroker(async (broker) => {
      const { client, errors } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      await ch.queueDeclare('get', { durable: false });
      await ch.confirmSelect();
      for (const b of ['first', 'second']) await ch.basicPublish('', 'get', b);
      const m = await ch.basicGet('get', { noAck: false });
      expect([m?.bodyString(), m?.redelivered, m?.messageCount]).toEqual(['first', false, 1]);
      await m!.nack(true);
      const back = await ch.basicGet('get', { noAck: false });
      expect([back?.bodyString(), back?.redelivered, back?.messageCount]).toEqual(['first', true, 1]);
      await back!.ack();
      const next = await ch.basicGet('get', { noAck: true });
      expect([next?.bodyString(), next?.redelivered, next?.messageCount]).toEqual(['second', false, 0]);

      const { model, errors: modelErrors } = await connectAmqplib(broker.url);
      const lch = await model.createConfirmChannel();
      for (const b of ['x', 'y']) lch.sendToQueue('get', Buffer.from(b));
      await lch.waitForConfirms();
      const x = present(await lch.get('get', { noAck: false }));
      expect([x.content.toString(), x.fields.redelivered]).toEqual(['x', false]);
      lch.nack(x, false, true);
      const x2 = await lch.get('get', { noAck: true });
      expect(x2 && [x2.content.toString(), x2.fields.redelivered, x2.fields.messageCount]).toEqual([
        'x',
        true,
        1,
      ]);
      await model.close();
      await client.close();
      expect(errors).toEqual([]);
      expect(modelErrors).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ max message size

describe('max message size', () => {
  it('refuses a body larger than maxMessageSize with 406 and keeps the connection usable', async () => {
    await withBroker(
      async (broker) => {
        const { model, errors } = await connectAmqplib(broker.url);
        const ch = await model.createConfirmChannel();
        await ch.assertQueue('small', { durable: false });
        ch.sendToQueue('small', patterned(1000));
        await ch.waitForConfirms();
        expect(await amqplibPublishRefusal(model, (c) => c.sendToQueue('small', patterned(1001)))).toEqual({
          code: 406,
          text: 'PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000',
        });
        await amqplibStillWorks(model);

        const { client, errors: clientErrors } = await connectAmqpClient(broker.url);
        expect(
          await amqpClientPublishRefusal(client, (c) => c.basicPublish('', 'small', patterned(4000))),
        ).toBe('PRECONDITION_FAILED - message size 4000 is larger than configured max size 1000 (406)');
        await amqpClientStillWorks(client);

        // only the 1000-byte message was enqueued
        expect(await ch.checkQueue('small')).toEqual({ queue: 'small', messageCount: 1, consumerCount: 0 });
        const m = await ch.get('small', { noAck: true });
        expect(present(m).content.equals(patterned(1000))).toBe(true);
        await client.close();
        await model.close();
        expect(errors).toEqual([]);
        expect(clientErrors).toHaveLength(1);
      },
      { maxMessageSize: 1000 },
    );
  });
});
