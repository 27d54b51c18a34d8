/**
 * The built broker (`node dist/main.js`) as a child process, for the restart and crash tests: a
 * free port, a data dir that outlives the process, the 'warren started' line awaited on stdout,
 * SIGTERM (graceful) or SIGKILL (crash) to end it. vitest's global setup builds dist/ first.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MAIN = join(ROOT, 'dist/main.js');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildBroker {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  stdout(): string;
  stderr(): string;
  /** stderr split into its non-empty lines */
  stderrLines(): string[];
  /** the `msg` of every JSON log line on stdout */
  messages(): string[];
  readonly exited: Promise<Exit>;
  /** SIGTERM, then the exit */
  stop(): Promise<Exit>;
  /** SIGKILL, then the exit */
  kill(): Promise<Exit>;
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The environment without any WARREN_* variable of the outer shell. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WARREN_')) env[k] = v;
  return env;
}

const running = new Set<ChildProcess>();

export interface SpawnOptions {
  /** RLIMIT_FSIZE for the broker, in KiB: its store cannot grow past it */
  fileSizeLimitKiB?: number;
  /** RLIMIT_NOFILE for the broker: at most this many file descriptors */
  fdLimit?: number;
}

/**
 * Spawns the broker on `dataDir` without waiting for it (for runs expected to fail). Logs at info:
 * 'warren started' is an info line, so a quieter level would hide the line we wait for.
 */
export function spawnBroker(
  dataDir: string,
  port: number,
  extra: string[] = [],
  opts: SpawnOptions = {},
): ChildBroker {
  const args = [
    MAIN,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--data-dir',
    dataDir,
    '--log-level',
    'info',
    ...extra,
  ];
  // a file size limit (ulimit -f) makes writes past it fail with EFBIG; SIGXFSZ, which would
  // kill the process instead, is ignored (an ignored signal stays ignored across exec)
  let limits = '';
  // (a soft limit: a test may lift it from outside with prlimit, as a disk that has room again)
  if (opts.fileSizeLimitKiB !== undefined) limits += `trap '' XFSZ; ulimit -S -f ${opts.fileSizeLimitKiB}; `;
  if (opts.fdLimit !== undefined) limits += `ulimit -n ${opts.fdLimit}; `;
  const child =
    limits === ''
      ? spawn(process.execPath, args, { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('/bin/sh', ['-c', `${limits}exec "$0" "$@"`, process.execPath, ...args], {
          cwd: ROOT,
          env: cleanEnv(),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<Exit>((res) => {
    child.once('close', (code, signal) => {
      running.delete(child);
      res({ code, signal });
    });
  });
  const messages = (): string[] => {
    const msgs: string[] = [];
    for (const l of out.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        const m = (JSON.parse(l) as { msg?: unknown }).msg;
        if (typeof m === 'string') msgs.push(m);
      } catch {
        // a partial line still being written
      }
    }
    return msgs;
  };
  return {
    child,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    stdout: () => out,
    stderr: () => err,
    stderrLines: () => err.split('\n').filter((l) => l !== ''),
    messages,
    exited,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** Starts the broker on `dataDir` and resolves once it logged 'warren started'. */
export async function startBroker(
  dataDir: string,
  extra: string[] = [],
  timeoutMs = 10_000,
  opts: SpawnOptions = {},
): Promise<ChildBroker> {
  const b = spawnBroker(dataDir, await freePort(), extra, opts);
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void b.exited.then(() => {
    gone = true;
  });
  while (!b.messages().includes('warren started')) {
    if (gone) {
      const e = await b.exited;
      throw new Error(
        `broker exited (${e.code ?? e.signal}) before it started; stdout: ${b.stdout()} stderr: ${b.stderr()}`,
      );
    }
    if (Date.now() > deadline) {
      await b.kill();
      throw new Error(`broker did not start in ${timeoutMs} ms; stdout: ${b.stdout()} stderr: ${b.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return b;
}

/** SIGKILLs every broker child still running (test teardown). */
export async function killAll(): Promise<void> {
  const all = [...running];
  await Promise.all(
    all.map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once('close', () => r());
          c.kill('SIGKILL');
        }),
    ),
  );
}
