/** confirm.select and the tx class: select, commit, rollback. */
import { preconditionFailed } from '../../errors.js';
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeConfirmSelectOk,
  encodeTxCommitOk,
  encodeTxRollbackOk,
  encodeTxSelectOk,
} from '../../protocol/generated/methods.js';
import type { Channel } from '../channel.js';
import { deliverRouted } from './basic.js';

export function confirmSelect(ch: Channel, a: A.ConfirmSelect): void {
  if (ch.txMode) throw preconditionFailed('cannot switch from tx to confirm mode');
  ch.confirmMode = true;
  if (!a.nowait) {
    encodeConfirmSelectOk(ch.conn.out, ch.number, {});
    ch.conn.markDirty();
  }
}

export function txSelect(ch: Channel): void {
  if (ch.confirmMode) throw preconditionFailed('cannot switch from confirm to tx mode');
  ch.txMode = true;
  encodeTxSelectOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

/** Applies the publishes, then the acknowledgements, in the order they were made. */
export function txCommit(ch: Channel): void {
  if (!ch.txMode) throw preconditionFailed('channel is not transactional');
  const publishes = ch.txPublishes;
  const settles = ch.txSettles;
  ch.txPublishes = [];
  ch.txSettles = [];
  for (const p of publishes) deliverRouted(ch, p.args, p.msg, p.queues);
  for (const s of settles) ch.settle(s.list, s.how, true);
  encodeTxCommitOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}

export function txRollback(ch: Channel): void {
  if (!ch.txMode) throw preconditionFailed('channel is not transactional');
  ch.restore(ch.txSettles);
  ch.txPublishes = [];
  ch.txSettles = [];
  encodeTxRollbackOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}
