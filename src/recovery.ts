/**
 * Startup recovery: every stored definition is replayed, in creation order, through the same
 * vhost methods live declares use (with its stored id, so nothing is written again), then each
 * durable queue gets its stored messages back in order. Messages that had been delivered come
 * back with their delivery count, so they are redelivered with the flag set.
 */
import type { Config } from './config.js';
import type { UserStore } from './core/users.js';
import { VHost, type VHostRegistry } from './core/vhost.js';
import type { Logger } from './log.js';
import { type FieldTable, withWireTypes } from './protocol/field-table.js';
import type { Definition, Store } from './storage/store.js';

export interface RecoveryTarget {
  readonly config: Config;
  readonly store: Store;
  readonly vhosts: VHostRegistry;
  readonly users: UserStore;
  readonly log: Logger;
}

/** Rebuilds vhosts, users, exchanges, queues, bindings and messages; returns the live queue ids. */
export function recover(b: RecoveryTarget): Set<number> {
  const { store, vhosts, users } = b;
  const liveQueues = new Set<number>();
  let messages = 0;
  let queues = 0;
  const defs = store.definitions();
  for (const [id, def] of defs) {
    const d = def as Definition & Record<string, unknown>;
    switch (d.kind) {
      case 'vhost':
        if (!vhosts.get(String(d['name']))) vhosts.add(new VHost(String(d['name']), store));
        break;
      case 'user':
        users.addHashed(
          String(d['name']),
          Buffer.from(String(d['hash']), 'base64'),
          (d['tags'] as string[]) ?? [],
          (d['vhosts'] as string[]) ?? ['/'],
        );
        break;
      case 'exchange': {
        const v = vhosts.get(String(d['vhost']));
        if (!v) {
          store.deleteDefinition(id);
          break;
        }
        v.declareExchange(
          String(d['name']),
          String(d['type']),
          false,
          true,
          d['autoDelete'] === true,
          d['internal'] === true,
          withWireTypes((d['args'] ?? {}) as FieldTable, d['argTypes']),
          id,
        );
        break;
      }
      case 'queue': {
        const v = vhosts.get(String(d['vhost']));
        if (!v) {
          store.deleteDefinition(id);
          break;
        }
        const q = v.declareQueue(
          {
            name: String(d['name']),
            passive: false,
            durable: true,
            exclusive: false,
            autoDelete: d['autoDelete'] === true,
            args: withWireTypes((d['args'] ?? {}) as FieldTable, d['argTypes']),
          },
          0,
          id,
        );
        messages += q.recover(store);
        liveQueues.add(id);
        queues++;
        break;
      }
      case 'binding': {
        const v = vhosts.get(String(d['vhost']));
        if (!v?.recoverBinding(d, id)) store.deleteDefinition(id);
        break;
      }
    }
  }
  // a first start: the default vhost and user, stored like any other definition
  if (!vhosts.get('/')) {
    store.putDefinition({ kind: 'vhost', name: '/' });
    vhosts.add(new VHost('/', store));
  }
  if (users.size === 0) {
    const c = b.config;
    const u = users.add(c.defaultUser, c.defaultPass, ['administrator'], ['/']);
    store.putDefinition({
      kind: 'user',
      name: u.name,
      hash: u.passwordHash.toString('base64'),
      tags: [...u.tags],
      vhosts: [...u.vhosts],
    });
  }
  if (defs.length > 0) b.log.info({ definitions: defs.length, queues, messages }, 'recovered from the store');
  return liveQueues;
}
