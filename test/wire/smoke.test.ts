import { describe, expect, it } from 'vitest';
import { Method } from '../../src/protocol/generated/spec.js';
import { withBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

describe('handshake over a raw socket', () => {
  it('completes start, tune and open and closes with close-ok', async () => {
    await withBroker(async (broker) => {
      const c = await RawClient.open(broker.port);
      const start = c.frames.find((f) => f.methodId === Method.CONNECTION_START)!;
      expect(start.args?.['versionMajor']).toBe(0);
      expect(start.args?.['versionMinor']).toBe(9);
      c.close();
    });
  });
});
