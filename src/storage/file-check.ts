/**
 * A sanity check of the LMDB data file before it is mapped: lmdb-js crashes the process
 * (SIGSEGV/SIGBUS) on a file that is not LMDB or was cut short, so those are refused here
 * with an error naming the path. Offsets are those of the LMDB build shipped with lmdb-js 3.x
 * (meta pages 0 and 1: magic 0xBEEFC0DE at 24, version 2 at 28, page size at 48, free-tree root at
 * 88, main-tree root at 136, last page at 144, txn id at 152).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

const MAGIC = 0xbeefc0de;
/** P_INVALID: an empty tree's root */
const NO_PAGE = Number(0xffffffffffffffffn);

export class StoreFileError extends Error {}

export function checkStoreFile(path: string): void {
  if (!existsSync(path)) return;
  const size = statSync(path).size;
  if (size === 0)
    throw new StoreFileError(`store ${path} is empty (a failed first start?); move it away to start afresh`);
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(size, 8192));
    readSync(fd, head, 0, head.length, 0);
    if (head.length < 160 || head.readUInt32LE(24) !== MAGIC) {
      throw new StoreFileError(`store ${path} is not an LMDB file (corrupt?)`);
    }
    if (head.readUInt32LE(28) !== 2) return; // another LMDB format: let LMDB judge it
    const pageSize = head.readUInt32LE(0x30);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw new StoreFileError(`store ${path} has an invalid page size ${pageSize} (corrupt?)`);
    }
    // the newer of the two meta pages describes the store
    let meta = head;
    if (size >= pageSize + 160) {
      const second = Buffer.alloc(160);
      readSync(fd, second, 0, 160, pageSize);
      if (second.readUInt32LE(24) === MAGIC && second.readBigUInt64LE(152) > head.readBigUInt64LE(152)) {
        meta = second;
      }
    }
    const pages = Math.floor(size / pageSize);
    // LMDB reads the roots of the free and main trees at open: they must be in the file
    const freeRoot = Number(meta.readBigUInt64LE(88));
    const mainRoot = Number(meta.readBigUInt64LE(136));
    for (const root of [freeRoot, mainRoot]) {
      if (root !== NO_PAGE && root >= pages) {
        throw new StoreFileError(
          `store ${path} is truncated: ${size} bytes, but a tree root is page ${root} of ${pageSize} bytes`,
        );
      }
    }
    // the file may end a few pages before the last page number: pages a transaction took and
    // freed again are never written (seen after kill -9), so only a file cut well short is refused
    const lastPage = Number(meta.readBigUInt64LE(144));
    if (pages < (lastPage + 1) * 0.75) {
      throw new StoreFileError(
        `store ${path} is truncated: ${size} bytes, but its last page ends at ${(lastPage + 1) * pageSize}`,
      );
    }
  } finally {
    closeSync(fd);
  }
}
