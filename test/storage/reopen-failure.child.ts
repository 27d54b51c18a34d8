/**
 * Run by lmdb-remap.test.ts under `ulimit -n 256`: takes every file descriptor while the store
 * reopens, so that a read which has to open it at once fails, then frees them, and prints (as
 * JSON on its last line) what the store did. Usage: node --import tsx THIS STORE_PATH
 */
import { closeSync, openSync } from 'node:fs';
import { Message } from '../../src/core/message.js';
import { QueueEntry } from '../../src/core/queue-entry.js';
import { LmdbStore } from '../../src/storage/lmdb-store.js';
import type { ConfirmTarget } from '../../src/storage/store.js';

const target: ConfirmTarget & { acked: number; nacked: number } = {
  batchConfirmSeq: 0,
  acked: 0,
  nacked: 0,
  confirmUpTo(seq: number) {
    this.acked = seq;
  },
  rejectUpTo(seq: number) {
    this.nacked = seq;
  },
};
const errors: string[] = [];
const store = new LmdbStore({
  path: process.argv[2]!,
  sync: 'always',
  onError: (e) => errors.push(String(e)),
});

function enqueue(first: number, count: number): void {
  for (let i = first; i < first + count; i++) {
    const body = Buffer.alloc(64);
    body.writeUInt32BE(i, 0);
    const e = new QueueEntry(new Message('', 'q', Buffer.from([0x10, 0, 2]), body), i + 1, 0);
    store.enqueue(1, e, e.msg);
  }
}

async function until(pred: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 5_000;
  while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  return pred();
}

enqueue(0, 100);
store.confirmAfterCommit(target, 1);
store.commit();
await until(() => target.acked >= 1);

store.requestRemap();
store.commit(); // the environment starts closing
const fds: number[] = [];
try {
  for (;;) fds.push(openSync('/dev/null', 'r'));
} catch {
  // EMFILE: no descriptor left to open the store with
}
enqueue(100, 100);
store.confirmAfterCommit(target, 2);
let threw = false;
try {
  store.commit(); // the reopen is under way: the batch waits for it
} catch {
  threw = true;
}
// a read now has to open the store at once, and there is no descriptor to do it with
let readFailed = false;
try {
  store.messages(1);
} catch {
  readFailed = true;
}
const ackedWhileClosed = target.acked;
// the close completes (freeing the old environment's descriptors) and the store opens again
await new Promise((r) => setImmediate(r));
for (const fd of fds) closeSync(fd);
const confirmed = await until(() => target.acked >= 2);
const seqs = store.messages(1).map((r) => r.message.body.readUInt32BE(0));
await store.close();
console.log(
  JSON.stringify({
    exhausted: fds.length,
    threw,
    readFailed,
    ackedWhileClosed,
    errors: errors.length,
    confirmed,
    nacked: target.nacked,
    stored: seqs.length,
    inOrder: seqs.every((v, i) => v === i),
  }),
);
