/**
 * The client side of a run, as one worker: a set of producer and consumer connections (or churn
 * loops) driven by the coordinator (bench/run.ts) through a few operations. It runs either in a
 * child process (bench/worker.ts, over IPC) or inline in the coordinator's process.
 */

import { performance } from 'node:perf_hooks';
import {
  BenchConnection,
  type ConsumeOptions,
  Consumer,
  nowUs,
  openAndClose,
  Publisher,
  type PublishOptions,
  parseUri,
} from './client.js';
import { Histogram, type HistogramExport } from './histogram.js';

export interface WorkerConfig {
  uri: string;
  frameMax: number;
  /** One entry per producer connection. */
  producers: PublishOptions[];
  /** One entry per consumer connection. */
  consumers: ConsumeOptions[];
  /** Concurrent open/close loops for the churn mode. */
  churnParallel: number;
}

export interface Snapshot {
  published: number;
  confirmed: number;
  nacked: number;
  consumed: number;
  blocked: boolean;
  errors: string[];
}

export interface ChurnReport {
  connections: number;
  failures: number;
  latency: HistogramExport;
}

export type WorkerOp =
  | { op: 'init'; config: WorkerConfig }
  | { op: 'connect' }
  | { op: 'consume' }
  | { op: 'record'; on: boolean }
  | { op: 'publish'; counts: number[]; durationMs: number; confirmGraceMs: number }
  | { op: 'stopPublishing' }
  | { op: 'snapshot' }
  | { op: 'cpu' }
  | { op: 'latency' }
  | { op: 'churn'; durationMs: number; parallel: number }
  | { op: 'close' };

export class WorkerCore {
  private config: WorkerConfig | null = null;
  private readonly conns: BenchConnection[] = [];
  private readonly publishers: Publisher[] = [];
  private readonly consumers: Consumer[] = [];
  private readonly errors: string[] = [];
  private churnStop = false;

  async handle(m: WorkerOp): Promise<unknown> {
    switch (m.op) {
      case 'init':
        this.config = m.config;
        return null;
      case 'connect':
        return this.connect();
      case 'consume':
        await Promise.all(this.consumers.map((c) => c.start()));
        return null;
      case 'record':
        for (const c of this.consumers) {
          if (m.on) c.hist.clear();
          c.recording = m.on;
        }
        return null;
      case 'publish':
        return this.publish(m.counts, m.durationMs, m.confirmGraceMs);
      case 'stopPublishing':
        for (const p of this.publishers) p.stop();
        return null;
      case 'snapshot':
        return this.snapshot();
      case 'cpu': {
        // this process's CPU time in seconds (user + system)
        const u = process.cpuUsage();
        return (u.user + u.system) / 1e6;
      }
      case 'latency': {
        const h = new Histogram();
        for (const c of this.consumers) h.merge(c.hist.export());
        return h.export();
      }
      case 'churn':
        return this.churn(m.durationMs, m.parallel);
      case 'close':
        return this.close();
    }
  }

  private cfg(): WorkerConfig {
    if (this.config === null) throw new Error('worker not initialised');
    return this.config;
  }

  private async connect(): Promise<null> {
    const cfg = this.cfg();
    const uri = parseUri(cfg.uri);
    const open = async (name: string): Promise<BenchConnection> => {
      const c = await BenchConnection.connect(uri, { frameMax: cfg.frameMax, name });
      c.onError = (e) => this.errors.push(`${name}: ${e.message}`);
      this.conns.push(c);
      return c;
    };
    await Promise.all([
      ...cfg.producers.map(async (p, i) => {
        const c = await open(`warren-bench producer ${i}`);
        if (p.confirmWindow > 0) await c.confirmSelect();
        this.publishers.push(new Publisher(c, p));
      }),
      ...cfg.consumers.map(async (o, i) => {
        const c = await open(`warren-bench consumer ${i}`);
        this.consumers.push(new Consumer(c, o));
      }),
    ]);
    return null;
  }

  private async publish(counts: number[], durationMs: number, graceMs: number): Promise<null> {
    const deadline = performance.now() + durationMs;
    await Promise.all(
      this.publishers.map((p, i) => p.run(counts[i] ?? Number.POSITIVE_INFINITY, deadline, graceMs)),
    );
    return null;
  }

  snapshot(): Snapshot {
    const s: Snapshot = {
      published: 0,
      confirmed: 0,
      nacked: 0,
      consumed: 0,
      blocked: false,
      errors: this.errors,
    };
    for (const p of this.publishers) {
      s.published += p.published;
      s.confirmed += p.confirmed;
      s.nacked += p.nacked;
      if (p.conn.blocked) s.blocked = true;
    }
    for (const c of this.consumers) s.consumed += c.consumed;
    return s;
  }

  private async churn(durationMs: number, parallel: number): Promise<ChurnReport> {
    const uri = parseUri(this.cfg().uri);
    const deadline = performance.now() + durationMs;
    const hist = new Histogram();
    let connections = 0;
    let failures = 0;
    this.churnStop = false;
    const loop = async (): Promise<void> => {
      while (!this.churnStop && performance.now() < deadline) {
        const t = nowUs();
        try {
          await openAndClose(uri);
          connections++;
          hist.record(nowUs() - t);
        } catch (e) {
          failures++;
          if (this.errors.length < 20)
            this.errors.push(`churn: ${e instanceof Error ? e.message : String(e)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, parallel) }, loop));
    return { connections, failures, latency: hist.export() };
  }

  async close(): Promise<null> {
    this.churnStop = true;
    for (const p of this.publishers) p.stop();
    await Promise.all(this.conns.map((c) => c.close(2000)));
    return null;
  }
}
