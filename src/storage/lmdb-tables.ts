/**
 * The LMDB environment of the store and its tables, and everything that reads them: recovery
 * (messages, extent), the deletion of message ranges a chunk at a time, and startup cleanup.
 * LmdbStore records and commits the writes; this holds the dbs and the shared-body reference
 * counts both sides keep.
 *
 *   messages      u32 queueId | u64 seq -> message record (records.ts), read through MESSAGE_CODEC
 *   deliveries    message key -> u32 delivery count (written at a clean stop)
 *   bodies        u64 bodyId -> wire message shared by several queues
 *   shared-refs   message key -> u64 bodyId (for entries that reference a shared body)
 *   purges        u32 queueId | u64 fromSeq -> u64 toSeq: range deletions not finished yet
 *   definitions   u32 id -> Definition
 *   'clean'       (root) 1 after a clean stop, 0 while running
 */
import { type Database, type DatabaseOptions, open, type RootDatabase } from 'lmdb';
import { checkStoreFile } from './file-check.js';
import {
  KIND_SHARED,
  keySeq,
  MESSAGE_CODEC,
  MESSAGE_KEYS,
  MESSAGE_META,
  type MessageRecord,
  messageKey,
  type RecordMeta,
  readU64Key,
  recoveredMessage,
  u32Key,
  u64Key,
  wireBodyLength,
} from './records.js';
import type { Definition, Extent, RecoveredMessage, StoredMessage } from './store.js';

/**
 * LMDB page size for new stores (an existing store keeps its own). With remapChunks lmdb-js
 * maps the file in chunks of 16 pages and unmaps unused ones only once 8,192 chunks are
 * mapped, so before the store reopened to unmap them (LmdbStore.checkMapped) the page size set
 * how much of a draining store stayed resident: 512 MiB with 4 KiB pages, 256 MiB with 2 KiB.
 * A 1 KiB message takes one 2 KiB overflow page, the same space as two per 4 KiB leaf, and
 * small messages pack as before. Measured on 2M x 1 KiB: peak RSS 765 -> 459 MiB with fill and
 * drain as fast.
 */
export const STORE_PAGE_SIZE = 2048;

/**
 * Records (and their bytes) deleted per transaction when a range goes: one transaction deleting
 * millions of keys, or 20,000 messages of 16 KB, overflows LMDB's dirty-page limit
 * (MDB_TXN_FULL), fails, and stalls every other write.
 */
export const PURGE_CHUNK = 10_000;
export const PURGE_BYTES = 16 * 1024 * 1024;
export const MAX_SEQ = 2 ** 53 - 1;

/** Gives a write promise a rejection handler (SettleQueue.guard). */
export type Guard = <T>(p: Promise<T>) => Promise<T>;

/** The environment and its tables, as one open of the store file gives them. */
interface Dbs {
  env: RootDatabase;
  msgs: Database<Buffer | MessageRecord, Buffer>;
  /** the messages db read for the size of each record only (range deletions budget by it) */
  msgSizes: Database<number, Buffer>;
  /** the messages db read for each record's head only (see MESSAGE_META) */
  msgMeta: Database<RecordMeta, Buffer>;
  deliv: Database<Buffer, Buffer>;
  bodies: Database<Buffer, Buffer>;
  bodySizes: Database<number, Buffer>;
  /** the shared bodies db read for each body's length only (its wire message's body) */
  bodyLengths: Database<number, Buffer>;
  refs: Database<Buffer, Buffer>;
  defs: Database<Definition, Buffer>;
  purges: Database<Buffer, Buffer>;
}

/** Shared bodies read as their body's length only. */
const BODY_LENGTHS = {
  encoder: {
    encode: (v: Buffer): Buffer => v,
    decode: (b: Buffer, size?: number): number => wireBodyLength(b, 0, size ?? b.length),
  },
  compression: false,
};

/** A db's values read as their sizes only (lmdb-js hands the decoder its read buffer). */
const SIZES = {
  // (lmdb-js passes the size when it hands its shared read buffer, as getRange does; get() hands
  // the value itself)
  encoder: {
    encode: (v: Buffer): Buffer => v,
    decode: (b: Buffer, size?: number): number => size ?? b.length,
  },
  compression: false,
};

function openDbs(path: string): Dbs {
  const env = open({
    path,
    maxDbs: 8,
    separateFlushed: true,
    compression: false,
    remapChunks: true,
    pageSize: STORE_PAGE_SIZE,
  });
  const bin = { keyEncoding: 'binary' as const, encoding: 'binary' as const, compression: false };
  return {
    env,
    // lmdb-js takes an encoder per db; its typings only declare one on the root
    msgs: env.openDB<Buffer | MessageRecord, Buffer>('messages', {
      keyEncoder: MESSAGE_KEYS,
      encoder: MESSAGE_CODEC,
      compression: false,
    } as DatabaseOptions),
    msgSizes: env.openDB<number, Buffer>('messages', {
      keyEncoder: MESSAGE_KEYS,
      ...SIZES,
    } as DatabaseOptions),
    msgMeta: env.openDB<RecordMeta, Buffer>('messages', {
      keyEncoder: MESSAGE_KEYS,
      encoder: MESSAGE_META,
      compression: false,
    } as DatabaseOptions),
    deliv: env.openDB<Buffer, Buffer>('deliveries', bin),
    bodies: env.openDB<Buffer, Buffer>('bodies', bin),
    bodySizes: env.openDB<number, Buffer>('bodies', { keyEncoding: 'binary', ...SIZES } as DatabaseOptions),
    bodyLengths: env.openDB<number, Buffer>('bodies', {
      keyEncoding: 'binary',
      ...BODY_LENGTHS,
    } as DatabaseOptions),
    refs: env.openDB<Buffer, Buffer>('shared-refs', bin),
    purges: env.openDB<Buffer, Buffer>('purges', bin),
    defs: env.openDB<Definition, Buffer>('definitions', { keyEncoding: 'binary', compression: false }),
  };
}

export class LmdbTables {
  private readonly path: string;
  private dbs: Dbs;
  /**
   * The environment is being closed so that its pages are unmapped (reopen()); the next use
   * opens it again at once, so nothing ever finds it closed.
   */
  private closing = false;
  /** the previous run did not stop cleanly: stored messages may have been delivered */
  readonly uncleanStart: boolean;
  /** the next ids above every stored one */
  readonly firstDef: number;
  readonly firstBody: number;
  /** references to each shared body from stored entries (counted here, not on the message) */
  readonly bodyRefs = new Map<number, number>();
  /** the deliveries db has records (written at close, and per delivery for quorum queues) */
  private hasDeliv = false;
  /** bodies read during recovery, so queues sharing one get the same object */
  private recoveredBodies: Map<number, StoredMessage> | null = new Map();
  private readonly guard: Guard;

  constructor(path: string, guard: Guard) {
    this.guard = guard;
    this.path = path;
    checkStoreFile(path);
    this.dbs = openDbs(path);
    // a clean stop leaves 'clean' = 1; anything else means the last run was killed
    this.uncleanStart = this.env.get('clean') === 0;
    for (const _ of this.deliv.getKeys({ limit: 1 })) this.hasDeliv = true;
    let def = 1;
    for (const k of this.defs.getKeys({ reverse: true, limit: 1 })) def = (k as Buffer).readUInt32BE(0) + 1;
    this.firstDef = def;
    let body = 1;
    for (const k of this.bodies.getKeys({ reverse: true, limit: 1 })) body = readU64Key(k as Buffer) + 1;
    this.firstBody = body;
  }

  private get open(): Dbs {
    if (this.closing) this.openAgain();
    return this.dbs;
  }

  get env(): RootDatabase {
    return this.open.env;
  }
  /** values are written as encoded Buffers and read back decoded (MESSAGE_CODEC) */
  get msgs(): Database<Buffer | MessageRecord, Buffer> {
    return this.open.msgs;
  }
  get deliv(): Database<Buffer, Buffer> {
    return this.open.deliv;
  }
  get bodies(): Database<Buffer, Buffer> {
    return this.open.bodies;
  }
  /** message key -> body id, for entries that reference a shared body (recovery counts these) */
  get refs(): Database<Buffer, Buffer> {
    return this.open.refs;
  }
  get defs(): Database<Definition, Buffer> {
    return this.open.defs;
  }
  /** queueId|fromSeq -> toSeq: ranges whose deletion has started but not finished */
  get purges(): Database<Buffer, Buffer> {
    return this.open.purges;
  }

  /**
   * Closes the environment and opens it again, which unmaps every page of the file: LMDB
   * (lmdb-js's remapChunks) keeps each chunk it has read mapped until 8,192 are, so draining a
   * deep queue would otherwise leave the whole file resident. Call it with no write in flight:
   * the close then completes within the current turn's microtasks. Anything that uses the
   * store before that opens it again at once (the close then only drops a reference, and
   * nothing is unmapped this time). Resolves once the store is open again.
   */
  reopen(): Promise<void> {
    if (this.closing) return Promise.resolve();
    this.closing = true;
    const again = () => {
      if (this.closing) this.openAgain();
    };
    return this.dbs.env.close().then(again, again);
  }

  /**
   * Opens the store again if a reopen left it closed (opening failed then, say for want of a
   * file descriptor). Returns the error if it still fails: nothing may be written until it
   * opens, or a batch would be half-issued.
   */
  ensureOpen(): unknown {
    if (!this.closing) return null;
    try {
      this.openAgain();
      return null;
    } catch (e) {
      return e;
    }
  }

  private openAgain(): void {
    this.dbs = openDbs(this.path);
    this.closing = false;
  }

  messages(queueId: number, fromSeq = 0, limit = Number.POSITIVE_INFINITY): RecoveredMessage[] {
    const out: RecoveredMessage[] = [];
    const start = messageKey(Buffer.allocUnsafe(12), queueId, fromSeq);
    const end = messageKey(Buffer.allocUnsafe(12), queueId + 1, 0);
    // the limit counts messages returned: a record skipped below must not end the read early
    for (const { key, value } of this.msgs.getRange({ start, end })) {
      if (out.length >= limit) break;
      const k = key as Buffer;
      const r = value as MessageRecord;
      const seq = k.readUInt32BE(4) * 4294967296 + k.readUInt32BE(8);
      // delivery counts are written at a clean stop only: most runs have none to look up
      const d = this.hasDeliv ? this.deliv.get(k) : undefined;
      const m = recoveredMessage(seq, r, d?.readUInt32BE(0), this.bodyOf, this.recoveredBodies);
      if (m !== null) out.push(m);
    }
    return out;
  }

  /** A delivery count was written during the run: reads look them up from now on. */
  deliveryWritten(): void {
    this.hasDeliv = true;
  }

  private readonly bodyOf = (id: number): Buffer | undefined => this.bodies.get(u64Key(id));

  scanSizes(
    queueId: number,
    fromSeq: number,
    fn: (seq: number, wire: number, expiresAt: number) => void,
  ): void {
    const start = messageKey(Buffer.allocUnsafe(12), queueId, fromSeq);
    const end = messageKey(Buffer.allocUnsafe(12), queueId + 1, 0);
    for (const { key, value: m } of this.open.msgMeta.getRange({ start, end })) {
      const k = key as Buffer;
      const seq = k.readUInt32BE(4) * 4294967296 + k.readUInt32BE(8);
      let wire = m.wire;
      if (m.kind === KIND_SHARED) {
        const size = this.open.bodySizes.get(u64Key(m.bodyId));
        if (size === undefined) continue; // its body is gone: messages() skips it too
        wire = size;
      }
      fn(seq, wire, m.expiresAt);
    }
  }

  extent(queueId: number, fromSeq: number, bodies = false): Extent {
    const start = messageKey(Buffer.allocUnsafe(12), queueId, fromSeq);
    const end = messageKey(Buffer.allocUnsafe(12), queueId + 1, 0);
    let count = 0;
    let lastSeq = 0;
    let bytes = 0;
    if (bodies) {
      for (const { key, value: m } of this.open.msgMeta.getRange({ start, end })) {
        count++;
        lastSeq = keySeq(key as Buffer);
        bytes += m.kind === KIND_SHARED ? (this.open.bodyLengths.get(u64Key(m.bodyId)) ?? 0) : m.body;
      }
      return { count, lastSeq, bytes };
    }
    for (const k of this.msgs.getKeys({ start, end })) {
      count++;
      lastSeq = (k as Buffer).readUInt32BE(4) * 4294967296 + (k as Buffer).readUInt32BE(8);
    }
    return { count, lastSeq, bytes };
  }

  /** The highest seq a queue has stored below `below` (0: none): one key read, backwards. */
  lastSeqBelow(queueId: number, below: number): number {
    if (below <= 1) return 0;
    const start = messageKey(Buffer.allocUnsafe(12), queueId, below - 1);
    const end = messageKey(Buffer.allocUnsafe(12), queueId, 0);
    for (const k of this.msgs.getKeys({ start, end, reverse: true, limit: 2 })) {
      const key = k as Buffer;
      const seq = key.readUInt32BE(4) * 4294967296 + key.readUInt32BE(8);
      if (key.readUInt32BE(0) === queueId && seq < below && seq > 0) return seq;
    }
    return 0;
  }

  /** After a successful recovery: until close() says otherwise, this run counts as unclean. */
  markRunning(): void {
    this.env.putSync('clean', 0);
    // recovery is over: bodies read while paging are not kept (the map would only grow)
    this.recoveredBodies = null;
  }

  /**
   * Deletes up to PURGE_CHUNK stored messages of a queue with seq in [from, to] (with their
   * delivery counts, and shared bodies nothing else refers to). Returns where to go on from
   * (past `to` when the range is done) and the last write.
   */
  deleteChunk(
    queueId: number,
    from: number,
    to: number,
    countBodies = true,
  ): { next: number; ops: number; last: Promise<unknown> | null; released: number[] } {
    const start = messageKey(Buffer.allocUnsafe(12), queueId, from);
    const released: number[] = [];
    const end = messageKey(Buffer.allocUnsafe(12), queueId, Math.min(to, MAX_SEQ - 1) + 1);
    const keys: Buffer[] = [];
    // PURGE_CHUNK records or PURGE_BYTES of them, whichever comes first (see Removals)
    let bytes = 0;
    let full = false;
    for (const { key, value } of this.open.msgSizes.getRange({ start, end })) {
      keys.push(Buffer.from(key as Buffer));
      bytes += value;
      if (keys.length >= PURGE_CHUNK || bytes >= PURGE_BYTES) {
        full = true;
        break;
      }
    }
    let last: Promise<unknown> | null = null;
    let ops = 0;
    for (const k of keys) {
      last = this.guard(this.msgs.remove(k));
      this.guard(this.deliv.remove(k));
      ops += 2;
    }
    const done = !full;
    // the span this chunk covered: to the range's end when done, else past its last key
    const next = done ? to + 1 : keySeq(keys[keys.length - 1]!) + 1;
    const spanEnd = done ? end : messageKey(Buffer.allocUnsafe(12), queueId, next);
    for (const { key: k, value } of this.refs.getRange({ start, end: spanEnd })) {
      this.guard(this.refs.remove(k as Buffer));
      // before recovery nothing is counted yet: cleanup() deletes the bodies left unreferenced
      if (!countBodies) continue;
      const id = readU64Key(value);
      released.push(id);
      const n = (this.bodyRefs.get(id) ?? 1) - 1;
      if (n > 0) this.bodyRefs.set(id, n);
      else {
        this.bodyRefs.delete(id);
        last = this.guard(this.bodies.remove(u64Key(id)));
        ops++;
      }
    }
    return { next, ops, last, released };
  }

  /**
   * Finishes range deletions a previous run started (before recovery reads any queue), one
   * transaction per chunk.
   */
  async finishDeletes(): Promise<void> {
    const ranges: [Buffer, number][] = [];
    for (const { key, value } of this.purges.getRange())
      ranges.push([Buffer.from(key as Buffer), readU64Key(value)]);
    for (const [recordKey, to] of ranges) {
      const queueId = recordKey.readUInt32BE(0);
      let next = keySeq(recordKey);
      while (next <= to) {
        const step = this.deleteChunk(queueId, next, to, false);
        next = step.next;
        if (next > to) await this.purges.remove(recordKey);
        else if (step.last !== null) await step.last;
      }
    }
  }

  /**
   * Deletes messages of queues that no longer exist and bodies nothing refers to, and counts
   * the references to each shared body. Reads keys and the small refs records only, never the
   * message values, so a deep store recovers quickly.
   */
  async cleanup(liveQueues: ReadonlySet<number>): Promise<void> {
    this.recoveredBodies = new Map();
    // the queues that have stored messages, found by skipping from one queue's keys to the next
    const dead: number[] = [];
    for (let q = 0; ; ) {
      let found = -1;
      for (const k of this.msgs.getKeys({ start: u32Key(q), limit: 1 }))
        found = (k as Buffer).readUInt32BE(0);
      if (found < 0) break;
      if (!liveQueues.has(found)) dead.push(found);
      if (found === 0xffffffff) break;
      q = found + 1;
    }
    for (const q of dead) {
      let next = 0;
      while (next <= MAX_SEQ) {
        const step = this.deleteChunk(q, next, MAX_SEQ, false);
        next = step.next;
        if (step.last !== null) await step.last;
      }
    }
    for (const { value } of this.refs.getRange()) {
      const id = readU64Key(value);
      this.bodyRefs.set(id, (this.bodyRefs.get(id) ?? 0) + 1);
    }
    let last: Promise<unknown> | null = null;
    let n = 0;
    let bytes = 0;
    for (const { key: k, value: size } of this.open.bodySizes.getRange()) {
      if (this.bodyRefs.has(readU64Key(k as Buffer))) continue;
      last = this.bodies.remove(Buffer.from(k as Buffer));
      bytes += size;
      if (++n % PURGE_CHUNK === 0 || bytes >= PURGE_BYTES) {
        await last;
        bytes = 0;
      }
    }
    if (last !== null) await last;
  }
}
