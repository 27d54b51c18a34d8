/**
 * Side-by-side runner: the scenario matrix against Warren and against a reference RabbitMQ,
 * interleaved per scenario (W R, then R W, ...) so machine noise hits both, printed as one
 * Markdown table. Starts its own Warren from dist/ when no --warren-uri is given (a fresh process
 * per scenario, so peak RSS belongs to that scenario). See bench/README.md.
 *
 *   npm run bench:compare -- [--warren-uri URI --warren-pid PID] [--rabbit-uri URI --rabbit-pid PID]
 *                            [--duration 15] [--scenarios a,b,c] [--backlog-count 1M] [--rounds 1]
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchConnection, parseUri } from './client.js';
import { type BenchOptions, DEFAULTS, parseCount, validate } from './options.js';
import { findListenerPid, isLocalHost } from './proc.js';
import { type BenchResult, runBench, summaryLine } from './run.js';

// ---------------------------------------------------------------------------------------------
// The matrix

interface Scenario {
  id: string;
  title: string;
  opts: Partial<BenchOptions>;
}

const MANUAL: Partial<BenchOptions> = { ackEvery: 100, prefetch: 1000 };

function matrix(backlogCount: number): Scenario[] {
  return [
    { id: 'a', title: '1→1, 16 B, transient, auto-ack', opts: {} },
    { id: 'b', title: '1→1, 16 B, manual ack every 100, prefetch 1000', opts: { ...MANUAL } },
    {
      id: 'c',
      title: 'persistent, durable queue, confirms (window 1000), manual ack',
      opts: { ...MANUAL, persistent: true, durable: true, confirm: 1000 },
    },
    {
      id: 'd',
      title: 'fanout 1→10 queues, 10 consumers',
      opts: { ...MANUAL, exchangeType: 'fanout', queues: 10, consumers: 10 },
    },
    {
      id: 'e',
      title: 'topic, 1,000 wildcard bindings, 10 queues/consumers',
      opts: { ...MANUAL, exchangeType: 'topic', bindings: 1000, queues: 10, consumers: 10 },
    },
    { id: 'f1', title: '1→1, 4 KiB bodies, manual ack', opts: { ...MANUAL, size: 4096 } },
    { id: 'f2', title: '1→1, 256 KiB bodies, manual ack', opts: { ...MANUAL, size: 262144 } },
    {
      id: 'g',
      title: `backlog: ${fmtCount(backlogCount)} × 16 B persistent, confirms, filled then drained`,
      opts: {
        ...MANUAL,
        mode: 'backlog',
        count: backlogCount,
        persistent: true,
        durable: true,
        confirm: 1000,
      },
    },
    { id: 'h', title: 'connection open/close churn (4 loops)', opts: { mode: 'churn', churnParallel: 4 } },
    // beyond the issue's matrix: work queues whose consumers are bound by their prefetch
    {
      id: 'i',
      title: '2→2 on one queue, 1 KiB, manual ack every 10, prefetch 100',
      opts: { producers: 2, consumers: 2, size: 1024, ackEvery: 10, prefetch: 100 },
    },
    {
      id: 'j',
      title: '1→1, 16 B, prefetch 1, ack each',
      opts: { ackEvery: 1, prefetch: 1 },
    },
    // the publisher writes every message on its own, as the Java client, pika and amqplib do
    {
      id: 'k',
      title: '1→1, 16 B, one socket write per publish, manual ack every 100, prefetch 1000',
      opts: { ...MANUAL, batch: 1 },
    },
  ];
}

function fmtCount(n: number): string {
  if (n >= 1e6 && n % 1e6 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 1e3 === 0) return `${n / 1e3}k`;
  return String(n);
}

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `Usage: npm run bench:compare -- [options]

  --warren-uri URI      a running Warren (default: start one from dist/main.js per scenario)
  --warren-pid PID      its pid (default: the listener of a local URI's port)
  --rabbit-uri URI      the reference RabbitMQ (default amqp://guest:guest@127.0.0.1:5682/)
  --rabbit-pid PID      its pid (default: the listener of a local URI's port)
  --no-rabbit           Warren only
  --duration S          seconds per throughput/churn run (default 15)
  --scenarios LIST      e.g. a,b,c or f (= f1,f2) (default: all: a b c d e f1 f2 g h i j k)
  --backlog-count N     messages for (g) (default 1M)
  --rounds N            runs per broker and scenario, order alternating; medians reported (default 1)
  --processes N         worker processes per run (default 2)
  --rate R              cap each producer of the throughput scenarios at R msgs/s (default: unlimited)
  --pause S             seconds of rest between runs (default 2)
  --max-broker-rss MiB  abort a run whose broker grows beyond this (default 8192)
  --no-restart          with a self-started Warren: one process for all scenarios
  --warren-main FILE    the Warren entry to start (default dist/main.js; run \`npm run build\` first)
  --json FILE           write every result as JSON
  --markdown FILE       also write the table to FILE
`;

interface CompareOptions {
  warrenUri: string;
  warrenPid: number;
  rabbitUri: string;
  rabbitPid: number;
  rabbit: boolean;
  duration: number;
  scenarios: string[];
  backlogCount: number;
  rounds: number;
  processes: number;
  rate: number;
  pause: number;
  maxBrokerRss: number;
  restart: boolean;
  warrenMain: string;
  json: string;
  markdown: string;
}

function parseCompare(argv: string[]): CompareOptions | null {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'warren-uri': { type: 'string' },
      'warren-pid': { type: 'string' },
      'rabbit-uri': { type: 'string' },
      'rabbit-pid': { type: 'string' },
      'no-rabbit': { type: 'boolean' },
      duration: { type: 'string' },
      scenarios: { type: 'string' },
      'backlog-count': { type: 'string' },
      rounds: { type: 'string' },
      processes: { type: 'string' },
      rate: { type: 'string' },
      pause: { type: 'string' },
      'max-broker-rss': { type: 'string' },
      'no-restart': { type: 'boolean' },
      'warren-main': { type: 'string' },
      json: { type: 'string' },
      markdown: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (v.help === true) return null;
  const num = (k: string, d: number): number => {
    const s = (v as Record<string, unknown>)[k];
    return typeof s === 'string' ? parseCount(k, s) : d;
  };
  const all = ['a', 'b', 'c', 'd', 'e', 'f1', 'f2', 'g', 'h', 'i', 'j', 'k'];
  let scenarios = all;
  if (v.scenarios !== undefined) {
    scenarios = [];
    for (const s of v.scenarios.split(',').map((x) => x.trim().toLowerCase())) {
      if (s === 'f') scenarios.push('f1', 'f2');
      else if (all.includes(s)) scenarios.push(s);
      else throw new Error(`--scenarios: unknown scenario ${s} (known: a b c d e f f1 f2 g h i j k)`);
    }
  }
  return {
    warrenUri: v['warren-uri'] ?? '',
    warrenPid: num('warren-pid', 0),
    rabbitUri: v['rabbit-uri'] ?? 'amqp://guest:guest@127.0.0.1:5682/',
    rabbitPid: num('rabbit-pid', 0),
    rabbit: v['no-rabbit'] !== true,
    duration: num('duration', 15),
    scenarios,
    backlogCount: num('backlog-count', 1_000_000),
    rounds: Math.max(1, num('rounds', 1)),
    processes: num('processes', DEFAULTS.processes),
    rate: num('rate', 0),
    pause: num('pause', 2),
    maxBrokerRss: num('max-broker-rss', DEFAULTS.maxBrokerRss),
    restart: v['no-restart'] !== true,
    warrenMain: path.resolve(v['warren-main'] ?? path.join(ROOT, 'dist', 'main.js')),
    json: v.json ?? '',
    markdown: v.markdown ?? '',
  };
}

// ---------------------------------------------------------------------------------------------
// A Warren of our own

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

class OwnWarren {
  private child: ChildProcess | null = null;
  private dataDir = '';
  uri = '';
  pid = 0;
  private stderr = '';

  constructor(private readonly main: string) {}

  async start(): Promise<void> {
    const main = this.main;
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first`);
    const port = await freePort();
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), 'warren-bench-'));
    this.stderr = '';
    const child = spawn(
      process.execPath,
      [
        main,
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
        '--data-dir',
        this.dataDir,
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 4000) this.stderr += d.toString();
    });
    this.pid = child.pid ?? 0;
    this.uri = `amqp://guest:guest@127.0.0.1:${port}/`;
    const until = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`warren exited at start: ${this.stderr.trim()}`);
      if (await canConnect(port)) return;
      if (Date.now() > until) throw new Error('warren did not start listening within 20 s');
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (c !== null && c.exitCode === null) {
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await Promise.race([exited, sleep(2000)]);
      }
    }
    if (this.dataDir !== '') rmSync(this.dataDir, { recursive: true, force: true });
    this.dataDir = '';
  }

  /** Stderr of the process so far (warnings, crashes). */
  log(): string {
    return this.stderr.trim();
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Table

interface Row {
  id: string;
  title: string;
  /** delivered msgs/s (or fill, drain, connections/s) */
  rate: (r: BenchResult) => number | null;
  /** published msgs/s, for rows that have it */
  published: ((r: BenchResult) => number | null) | null;
  cpu: (r: BenchResult) => number | null;
  latency: boolean;
}

function rowsFor(s: Scenario): Row[] {
  const cpu = (r: BenchResult) => r.broker?.cpuSecondsPerMillion ?? null;
  if (s.id === 'g') {
    return [
      {
        id: 'g fill',
        title: `${s.title} — fill`,
        rate: (r) => r.backlog?.fill.rate ?? null,
        published: null,
        cpu: (r) => r.backlog?.fill.cpuSecondsPerMillion ?? null,
        latency: false,
      },
      {
        id: 'g drain',
        title: `${s.title} — drain`,
        rate: (r) => r.backlog?.drain.rate ?? null,
        published: null,
        cpu: (r) => r.backlog?.drain.cpuSecondsPerMillion ?? null,
        latency: false,
      },
    ];
  }
  if (s.id === 'h') {
    return [
      {
        id: 'h',
        title: `${s.title} (connections/s)`,
        rate: (r) => r.churn?.rate ?? null,
        published: null,
        cpu,
        latency: false,
      },
    ];
  }
  return [
    {
      id: s.id,
      title: s.title,
      rate: (r) => r.consumeRate,
      published: (r) => r.publishRate,
      cpu,
      latency: true,
    },
  ];
}

function emptyResult(): BenchResult {
  return {
    tool: 'warren-bench',
    version: 1,
    label: '',
    mode: 'throughput',
    uri: '',
    options: DEFAULTS,
    startedAt: new Date().toISOString(),
    ok: false,
    errors: [],
    seconds: 0,
    published: 0,
    publishRate: 0,
    confirmed: 0,
    nacked: 0,
    consumed: 0,
    consumeRate: 0,
    latency: null,
    broker: null,
    client: null,
    leftInQueues: null,
    samples: [],
  };
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function pick(runs: BenchResult[], f: (r: BenchResult) => number | null | undefined): number | null {
  return median(runs.filter((r) => r.ok).flatMap((r) => (typeof f(r) === 'number' ? [f(r) as number] : [])));
}

const n0 = (v: number | null): string => (v === null ? '–' : Math.round(v).toLocaleString('en-US'));
const n2 = (v: number | null): string =>
  v === null ? '–' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(v >= 10 ? 1 : 2);
const lat = (p50: number | null, p99: number | null): string =>
  p50 === null || p99 === null ? '–' : `${n2(p50)} / ${n2(p99)}`;

function cell(
  runs: BenchResult[],
  f: (r: BenchResult) => number | null,
  fmt: (v: number | null) => string,
): string {
  if (runs.length === 0) return '–';
  if (runs.every((r) => !r.ok)) return 'failed';
  return fmt(pick(runs, f));
}

function table(
  scenarios: Scenario[],
  results: Map<string, { warren: BenchResult[]; rabbit: BenchResult[] }>,
  withRabbit: boolean,
): string {
  const head = [
    'scenario',
    'Warren msgs/s',
    'RabbitMQ msgs/s',
    'ratio W/R',
    'published/s W / R',
    'latency p50 / p99 ms W',
    'latency p50 / p99 ms R',
    'Warren CPU-s/M',
    'RabbitMQ CPU-s/M',
    'peak RSS MiB W / R',
  ];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_h, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  for (const s of scenarios) {
    const res = results.get(s.id);
    if (res === undefined) continue;
    for (const row of rowsFor(s)) {
      const w = res.warren;
      const r = res.rabbit;
      const wr = pick(w, row.rate);
      const rr = pick(r, row.rate);
      const ratio = wr !== null && rr !== null && rr > 0 ? `${(wr / rr).toFixed(2)}×` : '–';
      const pf = row.published;
      const pub = pf === null ? '–' : `${cell(w, pf, n0)} / ${withRabbit ? cell(r, pf, n0) : '–'}`;
      const latOf = (runs: BenchResult[]) =>
        row.latency && runs.length > 0
          ? lat(
              pick(runs, (x) => x.latency?.p50Ms ?? null),
              pick(runs, (x) => x.latency?.p99Ms ?? null),
            )
          : '–';
      const rss = (runs: BenchResult[]) => cell(runs, (x) => x.broker?.peakRssMiB ?? null, n0);
      lines.push(
        `| ${row.id}: ${row.title} | ${cell(w, row.rate, n0)} | ${withRabbit ? cell(r, row.rate, n0) : '–'} | ${ratio} | ${pub} | ${latOf(w)} | ${withRabbit ? latOf(r) : '–'} | ${cell(w, row.cpu, n2)} | ${withRabbit ? cell(r, row.cpu, n2) : '–'} | ${rss(w)} / ${withRabbit ? rss(r) : '–'} |`,
      );
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  let co: CompareOptions | null;
  try {
    co = parseCompare(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench:compare: ${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  if (co === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = (s: string) => process.stderr.write(`${s}\n`);

  const own = co.warrenUri === '' ? new OwnWarren(co.warrenMain) : null;
  let withRabbit = co.rabbit;
  let rabbitPid = co.rabbitPid;
  if (withRabbit) {
    try {
      const c = await BenchConnection.connect(parseUri(co.rabbitUri), { timeoutMs: 5000 });
      await c.close();
    } catch (e) {
      log(
        `RabbitMQ at ${co.rabbitUri} is not reachable (${e instanceof Error ? e.message : String(e)}); Warren only.`,
      );
      log('Start the reference with: /work/shared/tools/reference-rabbitmq start');
      withRabbit = false;
    }
    const ru = parseUri(co.rabbitUri);
    if (withRabbit && rabbitPid === 0 && isLocalHost(ru.host)) rabbitPid = findListenerPid(ru.port) ?? 0;
  }

  const scenarios = matrix(co.backlogCount).filter((s) => co.scenarios.includes(s.id));
  const results = new Map<string, { warren: BenchResult[]; rabbit: BenchResult[] }>();
  const all: BenchResult[] = [];
  const notes: string[] = [];
  let runIndex = 0;

  const runOne = async (s: Scenario, broker: 'warren' | 'rabbit'): Promise<BenchResult> => {
    let uri: string;
    let pid: number;
    if (broker === 'warren') {
      if (own !== null) {
        if (co.restart || own.uri === '') {
          await own.stop();
          try {
            await own.start();
          } catch (e) {
            own.uri = '';
            return failed(s, 'Warren', e);
          }
        }
        uri = own.uri;
        pid = own.pid;
      } else {
        uri = co.warrenUri;
        pid = co.warrenPid;
      }
    } else {
      uri = co.rabbitUri;
      pid = rabbitPid;
    }
    const o: BenchOptions = {
      ...DEFAULTS,
      ...s.opts,
      uri,
      brokerPid: pid,
      duration: co.duration,
      processes: co.processes,
      rate: (s.opts.mode ?? 'throughput') === 'throughput' ? co.rate : 0,
      maxBrokerRss: co.maxBrokerRss,
      label: `${s.id} ${broker === 'warren' ? 'Warren' : 'RabbitMQ'}`,
      quiet: true,
    };
    validate(o);
    if (runIndex++ > 0 && co.pause > 0) await sleep(co.pause * 1000);
    log(`-- ${o.label}: ${s.title}`);
    const r = await runBench(o, log);
    log(`   ${summaryLine(r)}`);
    if (!r.ok) notes.push(`${o.label}: ${r.errors.join('; ')}`);
    if (broker === 'warren' && own !== null && own.log() !== '') {
      notes.push(`${o.label}: Warren stderr: ${own.log().slice(0, 500)}`);
    }
    all.push(r);
    return r;
  };

  const failed = (s: Scenario, name: string, e: unknown): BenchResult => {
    const msg = e instanceof Error ? e.message : String(e);
    log(`-- ${s.id} ${name}: could not run: ${msg}`);
    notes.push(`${s.id} ${name}: ${msg.split('\n').slice(0, 6).join(' ')}`);
    const r = { ...emptyResult(), label: `${s.id} ${name}`, ok: false, errors: [msg] };
    all.push(r);
    return r;
  };

  let code = 0;
  try {
    for (const [si, s] of scenarios.entries()) {
      const entry = { warren: [] as BenchResult[], rabbit: [] as BenchResult[] };
      results.set(s.id, entry);
      for (let round = 0; round < co.rounds; round++) {
        const order: Array<'warren' | 'rabbit'> = !withRabbit
          ? ['warren']
          : (si + round) % 2 === 0
            ? ['warren', 'rabbit']
            : ['rabbit', 'warren'];
        for (const b of order) entry[b].push(await runOne(s, b));
      }
    }
  } catch (e) {
    log(`bench:compare: ${e instanceof Error ? e.message : String(e)}`);
    code = 1;
  } finally {
    await own?.stop();
  }

  const md = [
    `Warren vs RabbitMQ — ${co.duration} s per run, ${co.rounds} round(s)${co.rounds > 1 ? ' (medians)' : ''}` +
      `${co.rate > 0 ? `, producers capped at ${co.rate} msgs/s` : ''}, ${os.cpus().length} CPUs, ${new Date().toISOString()}`,
    '',
    table(scenarios, results, withRabbit),
    '',
    'msgs/s: deliveries per second to consumers (fanout counts every queue); g: fill and drain rates; h: connections/s.',
    'CPU-s/M: broker CPU-seconds (utime+stime) per million deliveries; g: per million messages of that phase; h: per million connections.',
    'ratio > 1: Warren faster. Latency: publish to receipt (g: time spent in the backlog, not shown).',
    ...(notes.length > 0 ? ['', 'Notes:', ...notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
  process.stdout.write(`\n${md}\n`);
  if (co.markdown !== '') writeFileSync(co.markdown, `${md}\n`);
  if (co.json !== '') writeFileSync(co.json, `${JSON.stringify(all, null, 2)}\n`);
  return code;
}

process.exit(await main());
