/**
 * A sanity check of the LMDB data file before it is mapped: lmdb-js crashes the process
 * (SIGSEGV/SIGBUS) on a file that is not LMDB or was cut short, so those are refused here
 * with an error naming the path. Offsets are those of the LMDB build shipped with lmdb-js 3.x
 * (meta pages 0 and 1: magic 0xBEEFC0DE at 24, version 2 at 28, last page at 144, txn id at 152).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

const MAGIC = 0xbeefc0de;

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
    let meta = 0;
    if (size >= pageSize + 160) {
      const second = Buffer.alloc(160);
      readSync(fd, second, 0, 160, pageSize);
      if (second.readUInt32LE(24) === MAGIC && second.readBigUInt64LE(152) > head.readBigUInt64LE(152)) {
        const lastPage = second.readBigUInt64LE(144);
        meta = Number(lastPage);
      } else meta = Number(head.readBigUInt64LE(144));
    } else {
      meta = Number(head.readBigUInt64LE(144));
    }
    if (size < (meta + 1) * pageSize) {
      throw new StoreFileError(
        `store ${path} is truncated: ${size} bytes, but its last page ends at ${(meta + 1) * pageSize}`,
      );
    }
  } finally {
    closeSync(fd);
  }
}
