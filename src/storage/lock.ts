/**
 * One broker per data dir: a lock file holding the owner's pid. LMDB itself lets several
 * processes share an environment, so without this a second broker would happily run on the
 * same queues. The lock appears atomically with its content (a hard link of a file already
 * written), and a lock left by a process that no longer runs (kill -9) is taken over.
 */
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class DataDirLocked extends Error {}

export class DataDirLock {
  private constructor(readonly path: string) {}

  static acquire(dir: string): DataDirLock {
    const path = join(dir, 'warren.lock');
    const mine = join(dir, `warren.lock.${process.pid}.${Date.now()}`);
    writeFileSync(mine, `${process.pid}\n`);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          linkSync(mine, path);
          return new DataDirLock(path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        let text = '';
        try {
          text = readFileSync(path, 'utf8');
        } catch {
          continue; // it went away meanwhile: try again
        }
        const pid = Number.parseInt(text, 10);
        if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) {
          throw new DataDirLocked(
            `data dir ${dir} is in use by another Warren (pid ${pid}); stop it or use another --data-dir`,
          );
        }
        // stale: move it aside (only one taker can rename it) and try again
        const aside = `${path}.stale.${process.pid}`;
        try {
          renameSync(path, aside);
          rmSync(aside, { force: true });
        } catch {
          // someone else took it over first
        }
      }
      throw new DataDirLocked(`cannot lock data dir ${dir}: another broker is starting on it`);
    } finally {
      rmSync(mine, { force: true });
    }
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a process killed but not yet reaped by its parent (a zombie) still answers signal 0
  return !zombie(pid);
}

/** Linux: the process has exited and waits to be reaped (state Z in /proc/PID/stat). */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // pid (comm) state ...: comm may hold spaces and parentheses, so look after the last ')'
    return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
  } catch {
    return false;
  }
}
