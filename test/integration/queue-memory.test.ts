/**
 * A deleted queue leaves memory: nothing the broker keeps after the delete may hold it (an
 * x-expires timer up to 24 days out held each deleted queue, about 2 KB, until it fired; the
 * last publish's routing scratch held its queues). Seen with weak references to the queues and
 * a forced full collection; the queues are declared, bound, published to and deleted through a
 * real client.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { withBroker } from '../helpers/broker.js';
import { connectAmqpClient } from '../helpers/refusals.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const N = 20;

describe('deleted queues', () => {
  it('are collected: with x-expires, bound to every exchange type, after publishes to them', async () => {
    await withBroker(async (broker) => {
      const { client } = await connectAmqpClient(broker.url);
      const ch = await client.channel();
      const vhost = broker.vhosts.get('/')!;
      const refs: WeakRef<object>[] = [];
      for (let i = 0; i < N; i++) {
        const name = `mem${i}`;
        await ch.queueDeclare(name, {}, { 'x-expires': 3_600_000 });
        await ch.queueBind(name, 'amq.headers', '', { 'x-match': 'any', k: i });
        await ch.queueBind(name, 'amq.fanout', '');
        await ch.queueBind(name, 'amq.topic', `t.${i}`);
        await ch.queueBind(name, 'amq.direct', `d.${i}`);
        refs.push(new WeakRef(vhost.queues.get(name)!));
      }
      const last = N - 1;
      await ch.basicPublish('', `mem${last}`, 'x');
      await ch.basicPublish('amq.headers', '', 'x', { headers: { k: last } });
      await ch.basicPublish('amq.fanout', '', 'x');
      await ch.basicPublish('amq.topic', `t.${last}`, 'x');
      await ch.basicPublish('amq.direct', `d.${last}`, 'x');
      for (let i = 0; i < N; i++) await ch.queueDelete(`mem${i}`);
      await client.close();
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 20));
        gc();
      }
      const alive = refs.map((r, i) => (r.deref() === undefined ? '' : `mem${i}`)).filter(Boolean);
      expect(alive).toEqual([]);
    });
  });
});
