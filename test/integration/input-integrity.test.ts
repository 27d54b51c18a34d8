/**
 * Every connection's input is read into one shared buffer (util/shared-read.ts), so anything the
 * broker keeps from a read must be copied before the next read of any connection. Several
 * publishers at once, with bodies from a few bytes to several frames and floods that pause
 * reading mid-chunk (publish-flow.ts), must deliver every body byte for byte.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { connectAmqplib, connectClient, declare } from '../helpers/consumers.js';
import { waitFor } from '../helpers/wait.js';

const PUBLISHERS = 4;
const PER_PUBLISHER = 3000;
/** sizes cycle through small, frame-straddling and multi-frame bodies */
const SIZES = [0, 1, 16, 700, 4096, 20_000, 131_072, 300_000];

function bodyFor(p: number, i: number): Buffer {
  const size = SIZES[(i * 7 + p) % SIZES.length]!;
  const b = Buffer.alloc(size);
  // bytes that differ by publisher, message and offset, so a stale or foreign byte shows
  for (let k = 0; k < size; k++) b[k] = (p * 31 + i * 7 + k) & 0xff;
  return b;
}

const digest = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

describe('input from many connections at once', () => {
  it('delivers every body intact and in order per publisher', async () => {
    await withBroker(async (broker) => {
      const { client: consumer, errors } = await connectClient(broker.url);
      const ch = await consumer.channel();
      await declare(ch, 'mixed');
      const got: Map<number, string[]> = new Map();
      let received = 0;
      await ch.basicConsume('mixed', { noAck: true }, (m) => {
        const p = Number(m.properties.headers?.p);
        const list = got.get(p) ?? [];
        list.push(`${m.properties.messageId}:${digest(m.body ?? new Uint8Array(0))}`);
        got.set(p, list);
        received++;
      });

      const pubs = await Promise.all(Array.from({ length: PUBLISHERS }, () => connectAmqplib(broker.url)));
      const expected: string[][] = [];
      await Promise.all(
        pubs.map(async ({ model }, p) => {
          const pch = await model.createConfirmChannel();
          const want: string[] = [];
          for (let i = 0; i < PER_PUBLISHER; i++) {
            const body = bodyFor(p, i);
            want.push(`${i}:${digest(body)}`);
            pch.sendToQueue('mixed', body, { messageId: String(i), headers: { p } });
          }
          expected[p] = want;
          await pch.waitForConfirms();
        }),
      );
      await waitFor(() => received === PUBLISHERS * PER_PUBLISHER, 'every message', 30_000);
      for (let p = 0; p < PUBLISHERS; p++) expect(got.get(p)).toEqual(expected[p]);
      for (const { model, errors: e } of pubs) {
        await model.close();
        expect(e).toEqual([]);
      }
      await consumer.close();
      expect(errors).toEqual([]);
    });
  });
});
