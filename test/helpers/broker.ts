/**
 * withBroker(): a broker on port 0 with a temp data dir, torn down after the test, with a check
 * that no connection was leaked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, type BrokerOptions } from '../../src/broker.js';

export async function startBroker(
  options: BrokerOptions = {},
): Promise<{ broker: Broker; cleanup: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'warren-test-'));
  const broker = await Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent', ...options });
  return {
    broker,
    cleanup: async () => {
      await broker.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` against a fresh broker; stops it afterwards and asserts no connection leaked. */
export async function withBroker<T>(
  fn: (broker: Broker) => Promise<T>,
  options: BrokerOptions = {},
): Promise<T> {
  const { broker, cleanup } = await startBroker(options);
  try {
    const result = await fn(broker);
    // connections closed by the test must be gone once their sockets have closed
    const deadline = Date.now() + 2_000;
    while (broker.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (broker.connections.size > 0)
      throw new Error(`${broker.connections.size} connection(s) leaked by the test`);
    return result;
  } finally {
    await cleanup();
  }
}
