/**
 * The LMDB store closes and reopens its environment to unmap the file's pages (lmdb-js keeps
 * every chunk it has touched mapped, so a drained deep queue would stay resident). The reopen
 * must be invisible: it waits for the commits in flight, a use of the store while it is under
 * way finds the store open, and nothing written before or after is lost, across a restart too.
 * The unmapping itself is checked through the process's RssFile (Linux's /proc).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Message } from '../../src/core/message.js';
import { QueueEntry } from '../../src/core/queue-entry.js';
import { LmdbStore, type SyncMode } from '../../src/storage/lmdb-store.js';
import type { ConfirmTarget } from '../../src/storage/store.js';

const run = promisify(execFile);
const dirs: string[] = [];
const stores: LmdbStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openStore(path: string, sync: SyncMode = 'always'): LmdbStore {
  const s = new LmdbStore({
    path,
    sync,
    onError: (e) => {
      throw e;
    },
  });
  stores.push(s);
  return s;
}

function newStore(sync: SyncMode = 'always'): { store: LmdbStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'warren-remap-'));
  dirs.push(dir);
  const path = join(dir, 'warren.mdb');
  return { store: openStore(path, sync), path };
}

class Target implements ConfirmTarget {
  batchConfirmSeq = 0;
  acked = 0;
  nacked = 0;
  confirmUpTo(seq: number): void {
    expect(seq).toBeGreaterThan(this.acked);
    this.acked = seq;
  }
  rejectUpTo(seq: number): void {
    this.nacked = seq;
  }
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const PROPS = Buffer.from([0x10, 0x00, 0x02]); // flags: delivery-mode; delivery-mode 2

function body(i: number, size: number): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

/** Records `count` persistent messages from `first` on and returns their entries. */
function enqueue(store: LmdbStore, queueId: number, first: number, count: number, size = 64): QueueEntry[] {
  const out: QueueEntry[] = [];
  for (let i = first; i < first + count; i++) {
    const e = new QueueEntry(new Message('', `q${queueId}`, PROPS, body(i, size)), i + 1, 0);
    store.enqueue(queueId, e, e.msg);
    out.push(e);
  }
  return out;
}

let seq = 0;
/** Asks for a confirm behind everything recorded so far, commits, and waits for it. */
async function settle(store: LmdbStore, t: Target): Promise<void> {
  const s = ++seq;
  store.confirmAfterCommit(t, s);
  store.commit();
  await until(() => t.acked >= s || t.nacked >= s, `confirm ${s}`);
  expect(t.nacked).toBe(0);
}

/** The numbers written into the stored bodies of a queue, in seq order, checking each body. */
function stored(store: LmdbStore, queueId: number, size = 64): number[] {
  return store.messages(queueId).map((r) => {
    const n = r.message.body.readUInt32BE(0);
    expect(r.message.body.equals(body(n, size))).toBe(true);
    expect(r.seq).toBe(n + 1);
    return n;
  });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe.each(['always', 'off'] as const)('LmdbStore reopened to unmap its pages (sync %s)', (sync) => {
  it('keeps what was written before and after, across a restart', async () => {
    const { store, path } = newStore(sync);
    const t = new Target();
    const first = enqueue(store, 1, 0, 3000);
    await settle(store, t);
    store.requestRemap();
    // commits wait for the reopen: this batch goes to the reopened store
    enqueue(store, 1, 3000, 1000);
    await settle(store, t);
    expect(store.remaps).toBe(1);
    for (const e of first.slice(0, 500)) store.remove(1, e, e.msg);
    await settle(store, t);
    expect(stored(store, 1)).toEqual(range(500, 4000));
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    const again = openStore(path, sync);
    expect(stored(again, 1)).toEqual(range(500, 4000));
  });

  it('waits for the commits in flight, and confirms in order', async () => {
    const { store } = newStore(sync);
    const t = new Target();
    enqueue(store, 1, 0, 2000);
    store.confirmAfterCommit(t, ++seq);
    store.commit();
    const inFlight = seq;
    // asked for while that commit is in flight: the next batch waits for it, then the reopen
    store.requestRemap();
    enqueue(store, 1, 2000, 2000);
    store.confirmAfterCommit(t, ++seq);
    store.commit();
    await until(() => t.acked >= seq, 'both confirms');
    expect(t.acked).toBe(seq);
    expect(inFlight).toBe(seq - 1);
    expect(store.remaps).toBe(1);
    expect(stored(store, 1)).toEqual(range(0, 4000));
  });

  it('still writes the last batch when it closes with a reopen asked for', async () => {
    const { store, path } = newStore(sync);
    enqueue(store, 4, 0, 500);
    store.requestRemap();
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    expect(stored(openStore(path, sync), 4)).toEqual(range(0, 500));
  });

  it('is open for a use while the reopen is under way', async () => {
    const { store } = newStore(sync);
    const t = new Target();
    enqueue(store, 2, 0, 1000);
    await settle(store, t);
    store.requestRemap();
    store.commit(); // starts closing the environment
    // read, write and commit before the close has completed: the store opens at once
    expect(stored(store, 2)).toEqual(range(0, 1000));
    enqueue(store, 2, 1000, 10);
    await settle(store, t);
    expect(stored(store, 2)).toEqual(range(0, 1010));
  });
});

/** RssFile of this process in bytes (Linux). */
function residentFile(): number {
  const m = /^RssFile:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'latin1'));
  return Number(m![1]) * 1024;
}

describe.each(['always', 'off'] as const)('reopening the store (sync %s)', (sync) => {
  it('unmaps the pages a read left resident, with commits going on', async () => {
    const { store } = newStore(sync);
    const t = new Target();
    const size = 1000;
    // 24 MiB of bodies: reading them back maps the whole file
    for (let i = 0; i < 24; i++) {
      enqueue(store, 3, i * 1024, 1024, size);
      await settle(store, t);
    }
    const before = residentFile();
    expect(stored(store, 3, size).length).toBe(24 * 1024);
    const read = residentFile();
    expect(read - before).toBeGreaterThan(12 * 1024 * 1024);
    // a commit just before: with sync off its fsync may still be under way
    enqueue(store, 4, 0, 10);
    await settle(store, t);
    store.requestRemap();
    // messages keep coming (each enqueue asks for the tick's commit) until the reopen is through
    for (let i = 10; store.remaps === 0; i++) {
      enqueue(store, 4, i, 1);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(read - residentFile()).toBeGreaterThan(12 * 1024 * 1024);
  });
});

describe('a store reopening with no file descriptor free', () => {
  it('fails a read that needs it open at once, and loses nothing it was given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-remap-'));
    dirs.push(dir);
    // a child with few file descriptors takes them all while the store reopens
    const child = join(__dirname, 'reopen-failure.child.ts');
    const { stdout } = await run('sh', [
      '-c',
      'ulimit -n 256 && exec "$0" "$@"',
      process.execPath,
      '--import',
      'tsx',
      child,
      join(dir, 'warren.mdb'),
    ]);
    const r = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(r.exhausted).toBeGreaterThan(0);
    expect(r.threw).toBe(false);
    expect(r.readFailed).toBe(true);
    // nothing of the second batch was confirmed before it was written
    expect(r.ackedWhileClosed).toBe(1);
    // the close freed the old environment's descriptors, so the store opened again and wrote
    // the whole batch
    expect(r.confirmed).toBe(true);
    expect(r.nacked).toBe(0);
    expect(r.errors).toBe(0);
    expect(r.stored).toBe(200);
    expect(r.inOrder).toBe(true);
  }, 30_000);
});
