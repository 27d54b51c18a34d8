/** confirm.select and the tx class: select, commit, rollback. */

import type { ConfirmTarget } from '../../core/vhost.js';
import { preconditionFailed } from '../../errors.js';
import type * as A from '../../protocol/generated/methods.js';
import {
  encodeConfirmSelectOk,
  encodeTxCommitOk,
  encodeTxRollbackOk,
  encodeTxSelectOk,
} from '../../protocol/generated/methods.js';
import { type Channel, ChannelState } from '../channel.js';
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
  ch.txCommits ??= new TxCommits(ch);
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
  ch.txCommits!.ask();
  ch.conn.heartbeats.answerLater = true;
}

/**
 * A channel's tx.commit-oks. Each waits, as a publisher confirm does, until everything the
 * commit stored is safe on disk (RabbitMQ answers a commit once its queues confirmed the
 * messages), and the connection reads nothing more meanwhile, so replies keep their order. A
 * commit whose writes failed is 406 'partial tx completion', as in RabbitMQ.
 */
export class TxCommits implements ConfirmTarget {
  batchConfirmSeq = 0;
  private asked = 0;
  private answered = 0;

  constructor(private readonly ch: Channel) {}

  ask(): void {
    this.ch.conn.gate.waitCommit();
    this.ch.vhost.store.confirmAfterCommit(this, ++this.asked);
  }

  confirmUpTo(seq: number): void {
    this.answer(seq, true);
  }

  rejectUpTo(seq: number): void {
    this.answer(seq, false);
  }

  private answer(seq: number, ok: boolean): void {
    const ch = this.ch;
    for (; this.answered < seq; this.answered++) {
      ch.conn.gate.commitDone();
      if (ch.state !== ChannelState.Open) continue;
      if (ok) {
        encodeTxCommitOk(ch.conn.out, ch.number, {});
        ch.conn.markDirty();
      } else {
        // after the store's settling, not inside it (closing the channel requeues and commits)
        setImmediate(() => {
          if (ch.state === ChannelState.Open) ch.closeWithError(preconditionFailed('partial tx completion'));
        });
      }
    }
  }
}

export function txRollback(ch: Channel): void {
  if (!ch.txMode) throw preconditionFailed('channel is not transactional');
  ch.restore(ch.txSettles);
  ch.txPublishes = [];
  ch.txSettles = [];
  encodeTxRollbackOk(ch.conn.out, ch.number, {});
  ch.conn.markDirty();
}
