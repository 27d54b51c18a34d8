/** connection class methods once the connection is open: close, close-ok, update-secret. */
import { channelError } from '../../errors.js';
import { encodeConnectionUpdateSecretOk, type MethodArgs } from '../../protocol/generated/methods.js';
import { Method } from '../../protocol/generated/spec.js';
import type { Connection } from '../connection.js';

export function connectionMethod(c: Connection, id: number, _args: MethodArgs): void {
  switch (id) {
    case Method.CONNECTION_CLOSE:
      c.closedByClient();
      return;
    case Method.CONNECTION_UPDATE_SECRET:
      // PLAIN credentials do not expire; accepting the new secret is all there is to do
      encodeConnectionUpdateSecretOk(c.out, 0, {});
      c.markDirty();
      return;
    default:
      // an unasked-for close-ok included, as RabbitMQ answers it
      throw channelError('unexpected method in connection state running');
  }
}
