/**
 * The process's resident file-backed memory (RssFile of /proc/self/status, Linux): the mapped
 * pages of the node binary, its libraries and the store file. -1 where it cannot be read.
 */
import { readFileSync } from 'node:fs';

const RSS_FILE = /^RssFile:\s+(\d+) kB/m;

export function residentFileBytes(): number {
  try {
    const m = RSS_FILE.exec(readFileSync('/proc/self/status', 'latin1'));
    return m === null ? -1 : Number(m[1]) * 1024;
  } catch {
    return -1;
  }
}
