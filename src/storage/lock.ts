/**
 * One broker per data dir: a lock file holding the owner's pid. LMDB itself lets several
 * processes share an environment, so without this a second broker would happily run on the
 * same queues. A lock left by a process that no longer runs (kill -9) is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export class DataDirLocked extends Error {}

export class DataDirLock {
  private constructor(readonly path: string) {}

  static acquire(dir: string): DataDirLock {
    const path = join(dir, 'warren.lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new DataDirLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
        if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) {
          throw new DataDirLocked(
            `data dir ${dir} is in use by another Warren (pid ${pid}); stop it or use another --data-dir`,
          );
        }
        rmSync(path, { force: true }); // stale: its owner is gone
      }
    }
    throw new DataDirLocked(`cannot lock data dir ${dir}`);
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
