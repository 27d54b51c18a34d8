/**
 * Broker-side metrics from /proc (Linux): CPU time (utime + stime of /proc/PID/stat, in clock
 * ticks) and resident memory (VmRSS of /proc/PID/status, sampled every 100 ms for the peak).
 * Also finds the pid listening on a local TCP port with `ss -ltnpH`.
 */

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks = 0;

/** Clock ticks per second (`getconf CLK_TCK`, almost always 100). */
export function clockTicks(): number {
  if (ticks > 0) return ticks;
  try {
    ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    ticks = 100;
  }
  return ticks;
}

/** utime + stime of a process in seconds, or NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return Number.NaN;
  }
  // the command name (field 2) may hold spaces and parentheses: split after the last ')'
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state); utime and stime are fields 14 and 15
  return (Number(f[11]) + Number(f[12])) / clockTicks();
}

/** VmRSS in KiB, or NaN if the process is gone. */
export function rssKiB(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(s);
    return m === null ? Number.NaN : Number(m[1]);
  } catch {
    return Number.NaN;
  }
}

export function processExists(pid: number): boolean {
  return !Number.isNaN(cpuSeconds(pid));
}

/** The command line of a process, for reports. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 200);
  } catch {
    return '';
  }
}

export function isLocalHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.') || host === '0.0.0.0';
}

/** The pid that listens on a TCP port, from `ss -ltnpH` (null when unknown). */
export function findListenerPid(port: number): number | null {
  try {
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /pid=(\d+)/.exec(out);
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** Samples a process's RSS every 100 ms and tracks the peak. */
export class BrokerMonitor {
  peakKiB = 0;
  startKiB = 0;
  lastKiB = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Called (once per crossing) when RSS goes over limitKiB. */
  onOverLimit: ((kib: number) => void) | null = null;
  limitKiB = 0;

  constructor(readonly pid: number) {}

  start(): void {
    this.startKiB = this.sample();
    this.timer = setInterval(() => this.sample(), 100);
    this.timer.unref();
  }

  sample(): number {
    const v = rssKiB(this.pid);
    if (!Number.isNaN(v)) {
      this.lastKiB = v;
      if (v > this.peakKiB) this.peakKiB = v;
      if (this.limitKiB > 0 && v > this.limitKiB && this.onOverLimit !== null) {
        const f = this.onOverLimit;
        this.onOverLimit = null;
        f(v);
      }
    }
    return v;
  }

  cpu(): number {
    return cpuSeconds(this.pid);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.sample();
  }
}
