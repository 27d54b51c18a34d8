/**
 * The coordinator of one bench run: declares the topology, starts the workers (child processes
 * or inline), drives the mode (throughput, backlog, churn), measures the broker through /proc and
 * returns one result object. Every run ends by itself: by duration or message count, and by a
 * hard timeout; whatever it declared is deleted at the end.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BenchConnection, type ConsumeOptions, type PublishOptions, parseUri, redactUri } from './client.js';
import { Histogram, type HistogramExport, type LatencySummary, summarize } from './histogram.js';
import type { BenchOptions, ExchangeType } from './options.js';
import { BrokerMonitor, commandOf, findListenerPid, isLocalHost, processExists } from './proc.js';
import { type ChurnReport, type Snapshot, type WorkerConfig, WorkerCore, type WorkerOp } from './roles.js';

// ---------------------------------------------------------------------------------------------
// Result

export interface Phase {
  messages: number;
  seconds: number;
  rate: number;
  cpuSeconds: number | null;
  cpuSecondsPerMillion: number | null;
}

export interface BenchResult {
  tool: 'warren-bench';
  version: 1;
  label: string;
  mode: BenchOptions['mode'];
  uri: string;
  options: BenchOptions;
  startedAt: string;
  ok: boolean;
  errors: string[];
  /** Seconds measured: the throughput/churn window, or fill + drain for backlog. */
  seconds: number;
  published: number;
  publishRate: number;
  confirmed: number;
  nacked: number;
  /** Deliveries (a message fanned out to 10 queues counts 10 times). */
  consumed: number;
  consumeRate: number;
  /** End-to-end latency, publish (batch write) to receipt; null when size < 8 or no consumer. */
  latency: LatencySummary | null;
  broker: {
    pid: number;
    command: string;
    cpuSeconds: number | null;
    cpuSecondsPerMillion: number | null;
    /** What the million counts: consumed deliveries, published messages, backlog messages, connections. */
    per: 'consumed' | 'published' | 'messages' | 'connections';
    startRssMiB: number;
    peakRssMiB: number;
    endRssMiB: number;
  } | null;
  backlog?: { fill: Phase; drain: Phase; depthAfterFill: number | null };
  churn?: { connections: number; failures: number; rate: number; openCloseLatency: LatencySummary | null };
  /**
   * CPU used by the load generator's own processes during the measurement, in cores (CPU-seconds
   * per second): if one of them is near 1.0 the client, not the broker, may be the limit.
   */
  client: { producerCores: number; consumerCores: number; processes: number } | null;
  /** Messages still in the queues when they were deleted at the end (unconsumed backlog). */
  leftInQueues: number | null;
  /** Cumulative counters, about once a second. */
  samples: Array<{ t: number; published: number; consumed: number }>;
}

// ---------------------------------------------------------------------------------------------
// Workers

interface WorkerHandle {
  readonly name: string;
  call<T>(msg: WorkerOp): Promise<T>;
  kill(): void;
}

class InlineWorker implements WorkerHandle {
  private readonly core = new WorkerCore();
  constructor(readonly name: string) {}
  call<T>(msg: WorkerOp): Promise<T> {
    return this.core.handle(msg) as Promise<T>;
  }
  kill(): void {
    void this.core.close();
  }
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

class ChildWorker implements WorkerHandle {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited: Error | null = null;

  constructor(readonly name: string) {
    const file = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const execArgv = process.execArgv.some((a) => a.includes('tsx'))
      ? process.execArgv
      : [...process.execArgv, '--import', 'tsx'];
    this.child = fork(file, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${this.name}: ${m.error}`));
    });
    this.child.on('exit', (code, signal) => {
      this.exited = new Error(`${this.name} exited (${signal ?? code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  call<T>(msg: WorkerOp): Promise<T> {
    if (this.exited !== null) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, msg });
    });
  }

  kill(): void {
    if (this.exited === null) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Topology

interface Topology {
  exchange: string;
  exchangeType: ExchangeType;
  queues: string[];
  bindings: Array<{ queue: string; key: string }>;
  producerKeys: (j: number) => string[];
  consumerQueue: (i: number) => string;
  /** Deliveries per published message. */
  routesPerMessage: number;
}

function planTopology(o: BenchOptions, prefix: string): Topology {
  const t = o.exchangeType;
  const nq = o.queues > 0 ? o.queues : t === 'fanout' || t === 'topic' ? Math.max(1, o.consumers) : 1;
  const queues = Array.from({ length: nq }, (_, i) => `${prefix}-q${i}`);
  const exchange = t === 'default' ? '' : `${prefix}-x`;
  const bindings: Array<{ queue: string; key: string }> = [];
  let keys: string[] = [];
  if (t === 'direct' || t === 'fanout') {
    const key = t === 'direct' ? 'bench' : '';
    for (const q of queues) bindings.push({ queue: q, key });
    keys = [key];
  } else if (t === 'topic') {
    // binding i matches exactly the key "bench.<i>.x", alternating "*" and "#" patterns
    const width = Math.max(4, String(o.bindings - 1).length);
    for (let i = 0; i < o.bindings; i++) {
      const n = String(i).padStart(width, '0');
      bindings.push({ queue: queues[i % nq]!, key: i % 2 === 0 ? `bench.${n}.*` : `*.${n}.#` });
      keys.push(`bench.${n}.x`);
    }
  }
  return {
    exchange,
    exchangeType: t,
    queues,
    bindings,
    producerKeys: (j) => {
      if (t === 'default') return [queues[j % nq]!];
      // rotate so producers do not walk the keys in lockstep
      const s = (j * 7919) % keys.length;
      return [...keys.slice(s), ...keys.slice(0, s)];
    },
    consumerQueue: (i) => queues[i % nq]!,
    routesPerMessage: t === 'direct' || t === 'fanout' ? nq : 1,
  };
}

/** Splits n items into k near-equal shares. */
function shares(n: number, k: number): number[] {
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}

// ---------------------------------------------------------------------------------------------
// The run

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mib = (kib: number): number => Math.round((kib / 1024) * 10) / 10;

export async function runBench(
  o: BenchOptions,
  log: (line: string) => void = () => {},
): Promise<BenchResult> {
  const uri = parseUri(o.uri);
  const prefix = o.prefix !== '' ? o.prefix : `bench-${randomBytes(4).toString('hex')}`;
  const topo = planTopology(o, prefix);
  const result: BenchResult = {
    tool: 'warren-bench',
    version: 1,
    label: o.label,
    mode: o.mode,
    uri: redactUri(o.uri),
    options: { ...o, uri: redactUri(o.uri) },
    startedAt: new Date().toISOString(),
    ok: true,
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

  // broker metrics
  let pid = Math.max(o.brokerPid, 0);
  if (pid === 0 && isLocalHost(uri.host)) pid = findListenerPid(uri.port) ?? 0;
  if (pid > 0 && !processExists(pid)) {
    result.errors.push(`broker pid ${pid} does not exist; no broker metrics`);
    pid = 0;
  }
  const monitor = pid > 0 ? new BrokerMonitor(pid) : null;

  // abort: hard timeout, RSS limit, worker errors
  let abortReason: string | null = null;
  let abortReject: (e: Error) => void = () => {};
  const aborted = new Promise<never>((_, rej) => {
    abortReject = rej;
  });
  aborted.catch(() => {});
  const abort = (reason: string): void => {
    if (abortReason !== null) return;
    abortReason = reason;
    abortReject(new Error(reason));
  };
  const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, aborted]);
  const timeoutS =
    o.timeout > 0 ? o.timeout : o.mode === 'backlog' ? 1800 : o.duration + 60 + o.bindings / 1000;
  const hard = setTimeout(() => abort(`hard timeout after ${timeoutS} s`), timeoutS * 1000);
  if (monitor !== null) {
    monitor.limitKiB = o.maxBrokerRss * 1024;
    monitor.onOverLimit = (kib) =>
      abort(`broker RSS ${mib(kib)} MiB exceeded --max-broker-rss ${o.maxBrokerRss}`);
    monitor.start();
  }

  const workers: WorkerHandle[] = [];
  const producerWorkers: Array<{ w: WorkerHandle; n: number }> = [];
  const consumerWorkers: WorkerHandle[] = [];
  let setup: BenchConnection | null = null;
  let declared = false;
  let cpuStart = Number.NaN;
  let cpuEnd = Number.NaN;
  let unitCount = 0;

  try {
    setup = await guard(BenchConnection.connect(uri, { frameMax: o.frameMax, name: 'warren-bench setup' }));
    const conn = setup;
    conn.onError = (e) => abort(`setup connection: ${e.message}`);

    if (o.mode !== 'churn') {
      declared = true;
      if (topo.exchange !== '')
        await guard(conn.exchangeDeclare(topo.exchange, topo.exchangeType, o.durable));
      await guard(Promise.all(topo.queues.map((q) => conn.queueDeclare(q, { durable: o.durable }))));
      for (let i = 0; i < topo.bindings.length; i += 200) {
        const part = topo.bindings.slice(i, i + 200);
        await guard(Promise.all(part.map((b) => conn.queueBind(b.queue, topo.exchange, b.key))));
      }
    }

    // workers and their share of connections
    const mk = (name: string): WorkerHandle =>
      o.processes === 0 ? new InlineWorker(name) : new ChildWorker(name);
    const pub = (j: number): PublishOptions => ({
      exchange: topo.exchange,
      routingKeys: topo.producerKeys(j),
      size: o.size,
      persistent: o.persistent,
      confirmWindow: o.confirm,
      rate: o.rate,
      batch: o.batch,
    });
    const con = (i: number): ConsumeOptions => ({
      queue: topo.consumerQueue(i),
      ackEvery: o.ackEvery,
      prefetch: o.prefetch,
    });
    const base = { uri: o.uri, frameMax: o.frameMax, churnParallel: o.churnParallel };
    const configs: Array<{ w: WorkerHandle; cfg: WorkerConfig; producers: number }> = [];
    if (o.mode === 'churn') {
      const k = Math.max(1, o.processes);
      const par = shares(Math.max(1, o.churnParallel), k).filter((n) => n > 0);
      par.forEach((n, i) => {
        configs.push({
          w: mk(`churn-${i}`),
          cfg: { ...base, producers: [], consumers: [], churnParallel: n },
          producers: 0,
        });
      });
    } else if (o.processes <= 1 || o.producers === 0 || o.consumers === 0) {
      const k = Math.max(o.processes, 1);
      const ps = shares(o.producers, k);
      const cs = shares(o.consumers, k);
      let pj = 0;
      let ci = 0;
      for (let i = 0; i < k; i++) {
        const producers = Array.from({ length: ps[i]! }, () => pub(pj++));
        const consumers = Array.from({ length: cs[i]! }, () => con(ci++));
        if (producers.length + consumers.length === 0) continue;
        configs.push({
          w: mk(`worker-${i}`),
          cfg: { ...base, producers, consumers },
          producers: producers.length,
        });
      }
    } else {
      const kp = Math.min(o.producers, Math.ceil(o.processes / 2));
      const kc = Math.min(o.consumers, Math.max(1, o.processes - kp));
      let pj = 0;
      let ci = 0;
      for (const [i, n] of shares(o.producers, kp).entries()) {
        const producers = Array.from({ length: n }, () => pub(pj++));
        configs.push({ w: mk(`producers-${i}`), cfg: { ...base, producers, consumers: [] }, producers: n });
      }
      for (const [i, n] of shares(o.consumers, kc).entries()) {
        const consumers = Array.from({ length: n }, () => con(ci++));
        configs.push({ w: mk(`consumers-${i}`), cfg: { ...base, producers: [], consumers }, producers: 0 });
      }
    }
    for (const c of configs) {
      workers.push(c.w);
      if (c.producers > 0) producerWorkers.push({ w: c.w, n: c.producers });
      if (c.cfg.consumers.length > 0) consumerWorkers.push(c.w);
    }
    await guard(Promise.all(configs.map((c) => c.w.call({ op: 'init', config: c.cfg }))));
    await guard(Promise.all(workers.map((w) => w.call({ op: 'connect' }))));

    const snapshot = async (): Promise<Snapshot> => {
      const all = await guard(Promise.all(workers.map((w) => w.call<Snapshot>({ op: 'snapshot' }))));
      const s: Snapshot = { published: 0, confirmed: 0, nacked: 0, consumed: 0, blocked: false, errors: [] };
      for (const x of all) {
        s.published += x.published;
        s.confirmed += x.confirmed;
        s.nacked += x.nacked;
        s.consumed += x.consumed;
        s.blocked ||= x.blocked;
        s.errors.push(...x.errors);
      }
      if (s.errors.length > 0) abort(s.errors[0]!);
      return s;
    };
    const latency = async (): Promise<LatencySummary | null> => {
      const h = new Histogram();
      const parts = await guard(
        Promise.all(consumerWorkers.map((w) => w.call<HistogramExport>({ op: 'latency' }))),
      );
      for (const p of parts) h.merge(p);
      return o.size >= 8 ? summarize(h) : null;
    };
    const cpu = (): number => (monitor !== null ? monitor.cpu() : Number.NaN);
    const clientCpu = (): Promise<number[]> =>
      guard(Promise.all(workers.map((w) => w.call<number>({ op: 'cpu' }))));
    const clientReport = (a: number[], b: number[], seconds: number): void => {
      let p = 0;
      let c = 0;
      workers.forEach((w, i) => {
        const d = b[i]! - a[i]!;
        if (consumerWorkers.includes(w) && !producerWorkers.some((x) => x.w === w)) c += d;
        else p += d;
      });
      result.client = {
        producerCores: round(p / seconds, 2),
        consumerCores: round(c / seconds, 2),
        processes: o.processes === 0 ? 0 : workers.length,
      };
    };
    let last = { t: 0, published: 0, consumed: 0 };
    const progress = (t: number, s: Snapshot, phase: string): void => {
      const sample = { t: Math.round(t * 1000) / 1000, published: s.published, consumed: s.consumed };
      result.samples.push(sample);
      const dt = t - last.t;
      if (!o.quiet && dt > 0) {
        const rss = monitor !== null ? `  broker RSS ${mib(monitor.lastKiB)} MiB` : '';
        log(
          `[${t.toFixed(0).padStart(4)}s] ${phase}published ${fmt((s.published - last.published) / dt)} msg/s` +
            `  consumed ${fmt((s.consumed - last.consumed) / dt)} msg/s${rss}${s.blocked ? '  (blocked)' : ''}`,
        );
      }
      last = sample;
    };

    if (o.mode === 'throughput') {
      await guard(Promise.all(consumerWorkers.map((w) => w.call({ op: 'consume' }))));
      await guard(Promise.all(consumerWorkers.map((w) => w.call({ op: 'record', on: true }))));
      const counts = o.count > 0 ? shares(o.count, o.producers) : [];
      let pi = 0;
      const expected = o.count > 0 && o.consumers > 0 ? o.count * topo.routesPerMessage : 0;
      const c0 = await clientCpu();
      cpuStart = cpu();
      const t0 = performance.now();
      let pubSettled = producerWorkers.length === 0;
      const pubDone = Promise.all(
        producerWorkers.map(({ w, n }) => {
          const c = counts.length > 0 ? counts.slice(pi, pi + n) : [];
          pi += n;
          return w.call({ op: 'publish', counts: c, durationMs: o.duration * 1000, confirmGraceMs: 10_000 });
        }),
      ).finally(() => {
        pubSettled = true;
      });
      pubDone.catch(() => {});
      const durMs = o.duration * 1000;
      let s: Snapshot = await snapshot();
      let nextTick = t0 + 1000;
      for (;;) {
        const now = performance.now();
        if (now - t0 >= durMs) break;
        if (o.count > 0 && pubSettled && s.consumed >= expected) break;
        // count-limited runs check often so the window ends when the last delivery arrives
        const wake = Math.min(nextTick, t0 + durMs, o.count > 0 ? now + 50 : nextTick);
        await guard(sleep(Math.max(0, wake - now)));
        s = await snapshot();
        if (performance.now() >= nextTick) {
          progress((performance.now() - t0) / 1000, s, '');
          nextTick += 1000;
        }
      }
      const t1 = performance.now();
      s = await snapshot();
      cpuEnd = cpu();
      clientReport(c0, await clientCpu(), (t1 - t0) / 1000);
      result.seconds = (t1 - t0) / 1000;
      result.published = s.published;
      result.consumed = s.consumed;
      await guard(Promise.all(consumerWorkers.map((w) => w.call({ op: 'record', on: false }))));
      await guard(Promise.all(producerWorkers.map(({ w }) => w.call({ op: 'stopPublishing' }))));
      await guard(pubDone);
      const after = await snapshot();
      result.confirmed = after.confirmed;
      result.nacked = after.nacked;
      result.publishRate = result.published / result.seconds;
      result.consumeRate = result.consumed / result.seconds;
      result.latency = await latency();
      unitCount = o.consumers > 0 ? result.consumed : result.published;
    } else if (o.mode === 'backlog') {
      const counts = shares(o.count, o.producers);
      let pi = 0;
      const c0 = await clientCpu();
      cpuStart = cpu();
      const t0 = performance.now();
      let settled = false;
      const fill = Promise.all(
        producerWorkers.map(({ w, n }) => {
          const c = counts.slice(pi, pi + n);
          pi += n;
          return w.call({ op: 'publish', counts: c, durationMs: timeoutS * 1000, confirmGraceMs: 60_000 });
        }),
      ).finally(() => {
        settled = true;
      });
      fill.catch(() => {});
      while (!settled) {
        await guard(Promise.race([sleep(1000), fill]));
        if (!settled) progress((performance.now() - t0) / 1000, await snapshot(), 'fill: ');
      }
      await guard(fill);
      const t1 = performance.now();
      const cpuMid = cpu();
      let s = await snapshot();
      result.published = s.published;
      result.confirmed = s.confirmed;
      result.nacked = s.nacked;
      const filled = o.confirm > 0 ? s.confirmed : s.published;
      let depth: number | null = 0;
      for (const q of topo.queues)
        depth += (await guard(conn.queueDeclare(q, { passive: true }))).messageCount;
      if (!o.quiet)
        log(
          `fill done: ${fmt(filled)} messages in ${((t1 - t0) / 1000).toFixed(1)} s, queue depth ${fmt(depth)}`,
        );
      const expected = o.count * topo.routesPerMessage;
      await guard(Promise.all(consumerWorkers.map((w) => w.call({ op: 'record', on: true }))));
      await guard(Promise.all(consumerWorkers.map((w) => w.call({ op: 'consume' }))));
      let nextTick = performance.now() + 1000;
      while (s.consumed < expected) {
        await guard(sleep(50));
        s = await snapshot();
        if (performance.now() >= nextTick) {
          progress((performance.now() - t0) / 1000, s, 'drain: ');
          nextTick += 1000;
        }
      }
      const t2 = performance.now();
      cpuEnd = cpu();
      clientReport(c0, await clientCpu(), (t2 - t0) / 1000);
      result.consumed = s.consumed;
      result.seconds = (t2 - t0) / 1000;
      const phase = (messages: number, seconds: number, c: number): Phase => ({
        messages,
        seconds,
        rate: messages / seconds,
        cpuSeconds: Number.isNaN(c) ? null : c,
        cpuSecondsPerMillion: Number.isNaN(c) || messages === 0 ? null : c / (messages / 1e6),
      });
      const fillPhase = phase(filled, (t1 - t0) / 1000, cpuMid - cpuStart);
      const drainPhase = phase(s.consumed, (t2 - t1) / 1000, cpuEnd - cpuMid);
      result.backlog = { fill: fillPhase, drain: drainPhase, depthAfterFill: depth };
      result.publishRate = fillPhase.rate;
      result.consumeRate = drainPhase.rate;
      result.latency = await latency();
      unitCount = o.count;
    } else {
      const c0 = await clientCpu();
      cpuStart = cpu();
      const t0 = performance.now();
      const reports = await guard(
        Promise.all(
          workers.map((w, i) =>
            w.call<ChurnReport>({
              op: 'churn',
              durationMs: o.duration * 1000,
              parallel: shares(Math.max(1, o.churnParallel), workers.length)[i]!,
            }),
          ),
        ),
      );
      const t1 = performance.now();
      cpuEnd = cpu();
      clientReport(c0, await clientCpu(), (t1 - t0) / 1000);
      const h = new Histogram();
      let connections = 0;
      let failures = 0;
      for (const r of reports) {
        connections += r.connections;
        failures += r.failures;
        h.merge(r.latency);
      }
      result.seconds = (t1 - t0) / 1000;
      result.churn = {
        connections,
        failures,
        rate: connections / result.seconds,
        openCloseLatency: summarize(h),
      };
      if (failures > 0) result.errors.push(`${failures} connection attempts failed`);
      unitCount = connections;
    }
  } catch (e) {
    result.ok = false;
    result.errors.push(abortReason ?? (e instanceof Error ? e.message : String(e)));
    if (result.samples.length > 0 && result.seconds === 0) {
      // keep what was measured before the failure
      const s = result.samples[result.samples.length - 1]!;
      result.seconds = s.t;
      result.published = s.published;
      result.consumed = s.consumed;
      result.publishRate = s.t > 0 ? s.published / s.t : 0;
      result.consumeRate = s.t > 0 ? s.consumed / s.t : 0;
    }
  } finally {
    clearTimeout(hard);
    await Promise.race([Promise.allSettled(workers.map((w) => w.call({ op: 'close' }))), sleep(5000)]);
    for (const w of workers) w.kill();
    if (declared) {
      try {
        if (setup === null || setup.error !== null) {
          await setup?.close(500);
          setup = await BenchConnection.connect(uri, { frameMax: o.frameMax, name: 'warren-bench cleanup' });
        }
        const c = setup;
        await withTimeout(
          (async () => {
            let left = 0;
            for (const q of topo.queues) left += await c.queueDelete(q);
            result.leftInQueues = left;
            if (topo.exchange !== '') await c.exchangeDelete(topo.exchange);
          })(),
          30_000,
        );
      } catch (e) {
        result.errors.push(`cleanup: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    await setup?.close(1000);
    monitor?.stop();
  }

  if (monitor !== null) {
    const cpuS = cpuEnd - cpuStart;
    const valid = !Number.isNaN(cpuS);
    result.broker = {
      pid: monitor.pid,
      command: commandOf(monitor.pid),
      cpuSeconds: valid ? round(cpuS, 2) : null,
      cpuSecondsPerMillion: valid && unitCount > 0 ? round(cpuS / (unitCount / 1e6), 2) : null,
      per:
        o.mode === 'churn'
          ? 'connections'
          : o.mode === 'backlog'
            ? 'messages'
            : o.consumers > 0
              ? 'consumed'
              : 'published',
      startRssMiB: mib(monitor.startKiB),
      peakRssMiB: mib(monitor.peakKiB),
      endRssMiB: mib(monitor.lastKiB),
    };
  }
  if (result.errors.length > 0 && abortReason !== null) result.ok = false;
  result.seconds = round(result.seconds, 3);
  result.publishRate = Math.round(result.publishRate);
  result.consumeRate = Math.round(result.consumeRate);
  return result;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The one-line human summary of a result. */
export function summaryLine(r: BenchResult): string {
  const parts: string[] = [];
  const head = r.label !== '' ? `${r.label}: ` : '';
  if (r.mode === 'throughput') {
    parts.push(
      `${head}throughput ${r.seconds.toFixed(1)} s: published ${fmt(r.publishRate)} msg/s, consumed ${fmt(r.consumeRate)} msg/s`,
    );
    if (r.options.confirm > 0)
      parts.push(`confirmed ${fmt(r.confirmed)}${r.nacked > 0 ? `, nacked ${fmt(r.nacked)}` : ''}`);
  } else if (r.mode === 'backlog' && r.backlog !== undefined) {
    const b = r.backlog;
    parts.push(
      `${head}backlog ${fmt(b.fill.messages)} msgs: fill ${fmt(b.fill.rate)} msg/s (${b.fill.seconds.toFixed(1)} s), drain ${fmt(b.drain.rate)} msg/s (${b.drain.seconds.toFixed(1)} s)`,
    );
  } else if (r.mode === 'churn' && r.churn !== undefined) {
    const l = r.churn.openCloseLatency;
    parts.push(
      `${head}churn ${r.seconds.toFixed(1)} s: ${fmt(r.churn.rate)} connections/s` +
        (l !== null ? ` (open+close p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms)` : ''),
    );
  } else {
    parts.push(
      `${head}${r.mode} stopped after ${r.seconds.toFixed(1)} s: published ${fmt(r.published)}, consumed ${fmt(r.consumed)}`,
    );
  }
  if (r.latency !== null) {
    parts.push(`latency p50 ${r.latency.p50Ms} ms, p95 ${r.latency.p95Ms} ms, p99 ${r.latency.p99Ms} ms`);
  }
  if (r.broker !== null) {
    const c = r.broker.cpuSecondsPerMillion;
    parts.push(
      `broker ${c === null ? '?' : c} CPU-s per million ${r.broker.per}, peak RSS ${r.broker.peakRssMiB} MiB`,
    );
  }
  if (r.client !== null) {
    parts.push(`client ${r.client.producerCores} + ${r.client.consumerCores} cores`);
  }
  if (!r.ok || r.errors.length > 0) parts.push(`${r.ok ? 'warnings' : 'FAILED'}: ${r.errors.join('; ')}`);
  return parts.join('; ');
}
