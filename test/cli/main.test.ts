/**
 * The `warren` command, run as a child process from the built dist/main.js (the global setup
 * builds dist before the suite).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = join(ROOT, 'dist/main.js');

interface LogLine {
  msg?: string;
  level?: number;
  port?: number;
  [k: string]: unknown;
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** stdout parsed as JSON lines (non-JSON lines are skipped) */
  logs: () => LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line with this msg; rejects if the process exits first. */
  waitForLog: (msg: string, ms?: number) => Promise<LogLine>;
}

const children: ChildProcess[] = [];
const tempDirs: string[] = [];
const servers: net.Server[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'warren-cli-'));
  tempDirs.push(d);
  return d;
}

/** The environment without any WARREN_* variable of the outer shell. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WARREN_')) env[k] = v;
  return { ...env, ...extra };
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  const listeners: (() => void)[] = [];
  const wake = () => {
    for (const l of listeners.splice(0)) l();
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('close', (code, signal) => {
      done = true;
      wake();
      res({ code, signal });
    });
  });
  const logs = (): LogLine[] => {
    const lines: LogLine[] = [];
    for (const l of out.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(l) as LogLine);
      } catch {
        // a partial line still being written
      }
    }
    return lines;
  };
  const waitForLog = async (msg: string, ms = 10_000): Promise<LogLine> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = logs().find((l) => l.msg === msg);
      if (found) return found;
      if (done) throw new Error(`process exited before logging '${msg}'; stdout: ${out} stderr: ${err}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for '${msg}'; stdout: ${out} stderr: ${err}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        listeners.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };
  return { child, stdout: () => out, stderr: () => err, logs, exited, waitForLog };
}

/** A port that was free a moment ago (listen on 0, read it, close). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Occupies a port on 127.0.0.1 until the end of the test. */
async function occupiedPort(): Promise<number> {
  const s = net.createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as net.AddressInfo).port;
}

/**
 * Connects a client and closes it again. Tests call this before signalling the process: main.ts
 * logs 'warren started' before it installs its SIGINT/SIGTERM handlers, so a signal sent the
 * moment that line is read can kill the process with the default action (a broker bug, reported).
 * Once a connection has been served, the handlers are in place.
 */
async function connectAndLeave(port: number): Promise<void> {
  const model = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${port}`);
  await model.close();
}

const baseArgs = (dataDir: string) => ['--host', '127.0.0.1', '--data-dir', dataDir, '--log-level', 'info'];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('close', r));
      c.kill('SIGKILL');
      await gone;
    }
  }
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('warren CLI', () => {
  it('starts, serves a client, and on SIGTERM closes it with 320 and exits 0', async () => {
    const dataDir = tempDir();
    const port = await freePort();
    const p = run(['--port', String(port), ...baseArgs(dataDir)]);
    const started = await p.waitForLog('warren started');
    expect(started.port).toBe(port);
    expect(started.level).toBe(30);
    expect(started['name']).toBe('warren');
    expect(started['dataDir']).toBe(dataDir);

    const model = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    const errors: Error[] = [];
    model.on('error', (e: Error) => errors.push(e));
    const closed = new Promise<Error | undefined>((r) => model.once('close', (e?: Error) => r(e)));
    const ch = await model.createChannel();
    await ch.close();
    await p.waitForLog('connection opened');

    p.child.kill('SIGTERM');
    const err = (await closed) as (Error & { code?: number }) | undefined;
    expect(err?.code).toBe(320);
    expect(err?.message).toMatch(/CONNECTION_FORCED/);
    expect(errors).toEqual([]);

    expect(await p.exited).toEqual({ code: 0, signal: null });
    const msgs = p.logs().map((l) => l.msg);
    expect(msgs).toContain('shutting down');
    // not necessarily the last line: see the note on signalling below
    expect(msgs).toContain('warren stopped');
    expect(msgs.indexOf('warren stopped')).toBeGreaterThan(msgs.indexOf('shutting down'));
    expect(p.stderr()).toBe('');
  });

  it('exits 0 on SIGINT once its clients have left', async () => {
    const port = await freePort();
    const p = run(['--port', String(port), ...baseArgs(tempDir())]);
    await p.waitForLog('warren started');
    await connectAndLeave(port);
    p.child.kill('SIGINT');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.logs().find((l) => l.msg === 'shutting down')?.['signal']).toBe('SIGINT');
    expect(p.logs().map((l) => l.msg)).toContain('warren stopped');
  });

  it('exits 1 with a one-line message when the port is in use', async () => {
    const port = await occupiedPort();
    const p = run(['--port', String(port), ...baseArgs(tempDir())]);
    expect((await p.exited).code).toBe(1);
    const lines = p
      .stderr()
      .split('\n')
      .filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^warren: port ${port} `));
    expect(lines[0]).toMatch(/already in use/);
    expect(p.logs().map((l) => l.msg)).not.toContain('warren started');
  });

  it('exits 1 with a one-line message when the data dir is unusable', async () => {
    const dir = tempDir();
    const file = join(dir, 'a-file');
    writeFileSync(file, 'not a directory');
    const bad = join(file, 'sub');
    const port = await freePort();
    const p = run(['--port', String(port), ...baseArgs(bad)]);
    expect((await p.exited).code).toBe(1);
    const lines = p
      .stderr()
      .split('\n')
      .filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.startsWith(`warren: cannot use data dir ${bad}`)).toBe(true);
  });

  it('prints usage for --help and exits 0', async () => {
    const p = run(['--help']);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    const out = p.stdout();
    expect(out.startsWith('Usage: warren [options]')).toBe(true);
    for (const flag of ['--port', '--data-dir', '--log-level', '--frame-max', '--heartbeat']) {
      expect(out).toContain(flag);
    }
    expect(out).toContain('WARREN_PORT');
    expect(p.stderr()).toBe('');
  });

  it('honours WARREN_PORT', async () => {
    const port = await freePort();
    const p = run(baseArgs(tempDir()), { WARREN_PORT: String(port) });
    const started = await p.waitForLog('warren started');
    expect(started.port).toBe(port);
    await connectAndLeave(port);
    p.child.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
  });

  it('lets --port win over WARREN_PORT', async () => {
    const envPort = await occupiedPort();
    const flagPort = await freePort();
    const p = run(['--port', String(flagPort), ...baseArgs(tempDir())], { WARREN_PORT: String(envPort) });
    const started = await p.waitForLog('warren started');
    expect(started.port).toBe(flagPort);
    await connectAndLeave(flagPort);
    p.child.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
  });

  it('exits 1 with a message for an invalid flag value', async () => {
    const p = run(['--frame-max', 'abc', ...baseArgs(tempDir())]);
    expect((await p.exited).code).toBe(1);
    const first = p.stderr().split('\n')[0];
    expect(first).toBe("warren: --frame-max: 'abc' is not a whole number");
    expect(p.stdout()).toBe('');
  });

  it('exits 1 with a message for an invalid environment value', async () => {
    const p = run(baseArgs(tempDir()), { WARREN_HEARTBEAT: '-5' });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr().split('\n')[0]).toBe("warren: WARREN_HEARTBEAT: '-5' is not a whole number");
  });

  it('exits 1 with a message for an unknown flag', async () => {
    const p = run(['--no-such-flag']);
    expect((await p.exited).code).toBe(1);
    const first = p.stderr().split('\n')[0]!;
    expect(first.startsWith('warren: ')).toBe(true);
    expect(first).toContain('--no-such-flag');
  });
});
