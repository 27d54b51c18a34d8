/** Options of the load generator (`npm run bench`), their defaults and the command-line parser. */

import { parseArgs } from 'node:util';

export type Mode = 'throughput' | 'backlog' | 'churn';
export type ExchangeType = 'default' | 'direct' | 'fanout' | 'topic';

export interface BenchOptions {
  /** amqp://user:pass@host:port/vhost */
  uri: string;
  mode: Mode;
  producers: number;
  consumers: number;
  /** Body size in bytes. */
  size: number;
  /** Seconds of measurement (throughput, churn). */
  duration: number;
  /** backlog: messages to fill. throughput: stop after publishing this many (0: no limit). */
  count: number;
  /** Publisher-confirm window (unconfirmed messages per producer); 0: no confirms. */
  confirm: number;
  /** delivery-mode 2. */
  persistent: boolean;
  /** Durable queues (and exchange). */
  durable: boolean;
  /** basic.qos prefetch-count per consumer; 0: no basic.qos. */
  prefetch: number;
  /** Manual ack every N deliveries (multiple=true); 0: auto-ack. */
  ackEvery: number;
  exchangeType: ExchangeType;
  /** Number of queues; 0: 1, or one per consumer for fanout and topic. */
  queues: number;
  /** topic: number of wildcard bindings, spread over the queues. */
  bindings: number;
  /** Messages per second per producer; 0: unlimited. */
  rate: number;
  /** Messages per socket write; 0: as many as fit about 64 KiB (1: one write each, as most clients). */
  batch: number;
  /** Worker processes: 0 runs clients in this process; N ≥ 2 splits producers and consumers. */
  processes: number;
  /** Broker pid for CPU and RSS; 0: find the listener of a local URI's port with `ss`. */
  brokerPid: number;
  /** Also write the JSON result to this file. */
  json: string;
  /** Hard timeout of the whole run in seconds; 0: automatic. */
  timeout: number;
  /** Stop the run when the broker's RSS exceeds this many MiB; 0: no limit. */
  maxBrokerRss: number;
  /** churn: concurrent open/close loops. */
  churnParallel: number;
  /** Prefix of queue and exchange names (default: bench-<random>). */
  prefix: string;
  /** Largest frame to negotiate. */
  frameMax: number;
  /** No progress lines. */
  quiet: boolean;
  /** A name for the run, copied into the result. */
  label: string;
}

export const DEFAULTS: BenchOptions = {
  uri: 'amqp://guest:guest@127.0.0.1:5672/',
  mode: 'throughput',
  producers: 1,
  consumers: 1,
  size: 16,
  duration: 15,
  count: 0,
  confirm: 0,
  persistent: false,
  durable: false,
  prefetch: 0,
  ackEvery: 0,
  exchangeType: 'default',
  queues: 0,
  bindings: 1000,
  rate: 0,
  batch: 0,
  processes: 2,
  brokerPid: 0,
  json: '',
  timeout: 0,
  maxBrokerRss: 8192,
  churnParallel: 4,
  prefix: '',
  frameMax: 131072,
  quiet: false,
  label: '',
};

export class UsageError extends Error {}

/** Parses "1000", "1_000", "1,000", "10k", "1M", "1e6"; throws UsageError. */
export function parseCount(flag: string, s: string): number {
  const m = /^([0-9][0-9_,]*(?:\.[0-9]+)?(?:e[0-9]+)?)([kKmMgG]?)$/.exec(s.trim());
  if (m === null) throw new UsageError(`--${flag}: not a number: ${s}`);
  const mult = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 }[m[2]!]!;
  const v = Number(m[1]!.replace(/[_,]/g, '')) * mult;
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`--${flag}: not a non-negative number: ${s}`);
  return v;
}

const NUMERIC: ReadonlyArray<keyof BenchOptions> = [
  'producers',
  'consumers',
  'size',
  'duration',
  'count',
  'confirm',
  'prefetch',
  'ackEvery',
  'queues',
  'bindings',
  'rate',
  'batch',
  'processes',
  'brokerPid',
  'timeout',
  'maxBrokerRss',
  'churnParallel',
  'frameMax',
];

const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export const USAGE = `Usage: npm run bench -- [options]

  --uri URI              broker (default ${DEFAULTS.uri})
  --mode M               throughput | backlog | churn (default throughput)
  --producers N          publishing connections (default 1)
  --consumers N          consuming connections (default 1)
  --size B               body bytes (default 16; ≥ 8 carries a timestamp for latency)
  --duration S           seconds to measure, throughput and churn (default 15)
  --count N              backlog: messages to fill (default 1M); throughput: stop after N published
  --confirm W            publisher confirms, at most W unconfirmed per producer (default off)
  --persistent           delivery-mode 2
  --durable              durable queues and exchange
  --prefetch N           basic.qos prefetch-count per consumer (default: none)
  --ack-every N          manual ack every N deliveries, multiple=true (default: auto-ack)
  --auto-ack             auto-ack (the default)
  --exchange-type T      default | direct | fanout | topic (default: the default exchange)
  --queues N             queues (default 1; fanout/topic: one per consumer)
  --bindings N           topic: wildcard bindings spread over the queues (default 1000)
  --rate R               msgs/s cap per producer (default: unlimited)
  --batch N              messages per socket write (default: as many as fit 64 KiB; 1 = one
                         write per publish, as the Java client, pika and amqplib do)
  --processes N          worker processes: 0 = in this process, 1 = one child, N ≥ 2 = producers
                         and consumers in separate children (default 2)
  --broker-pid PID       broker process for CPU-s per million messages and peak RSS
                         (default: the listener of a local URI's port, found with ss)
  --json FILE            also write the JSON result to FILE
  --timeout S            hard limit for the whole run (default: duration + 60, backlog 1800)
  --max-broker-rss MiB   stop the run if the broker grows beyond this (default 8192; 0 = off)
  --churn-parallel N     churn: concurrent open/close loops (default 4)
  --prefix P             queue/exchange name prefix (default bench-<random>)
  --frame-max B          frame-max to ask for (default 131072)
  --label L              name copied into the result
  --quiet                no progress lines
`;

/** Parses argv (without node and script); returns null for --help. */
export function parseOptions(argv: string[]): BenchOptions | null {
  const spec: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const k of Object.keys(DEFAULTS) as Array<keyof BenchOptions>) {
    spec[kebab(k)] = { type: typeof DEFAULTS[k] === 'boolean' ? 'boolean' : 'string' };
  }
  spec['auto-ack'] = { type: 'boolean' };
  spec['help'] = { type: 'boolean' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (values['help'] === true) return null;
  const o: BenchOptions = { ...DEFAULTS };
  const rec = o as unknown as Record<string, unknown>;
  for (const k of Object.keys(DEFAULTS) as Array<keyof BenchOptions>) {
    const v = values[kebab(k)];
    if (v === undefined) continue;
    if (NUMERIC.includes(k)) rec[k] = parseCount(kebab(k), v as string);
    else rec[k] = v;
  }
  if (values['auto-ack'] === true) o.ackEvery = 0;
  if (values['count'] === undefined && o.mode === 'backlog') o.count = 1_000_000;
  validate(o);
  return o;
}

export function validate(o: BenchOptions): void {
  if (!['throughput', 'backlog', 'churn'].includes(o.mode))
    throw new UsageError(`--mode: unknown mode ${o.mode}`);
  if (!['default', 'direct', 'fanout', 'topic'].includes(o.exchangeType)) {
    throw new UsageError(`--exchange-type: unknown type ${o.exchangeType}`);
  }
  for (const k of NUMERIC) {
    const v = o[k] as number;
    if (k !== 'duration' && !Number.isInteger(v)) throw new UsageError(`--${kebab(k)}: not an integer: ${v}`);
  }
  if (o.mode !== 'churn' && o.producers < 1 && o.mode === 'backlog') {
    throw new UsageError('--mode backlog needs at least one producer');
  }
  if (o.mode === 'backlog' && o.consumers < 1)
    throw new UsageError('--mode backlog needs at least one consumer');
  if (o.mode === 'backlog' && o.count < 1) throw new UsageError('--mode backlog needs --count ≥ 1');
  if (o.mode !== 'backlog' && !(o.duration > 0)) throw new UsageError('--duration must be > 0');
  if (o.mode === 'throughput' && o.producers + o.consumers === 0) {
    throw new UsageError('nothing to do: no producers and no consumers');
  }
  if (o.frameMax < 4096) throw new UsageError('--frame-max must be ≥ 4096');
  if (o.exchangeType === 'topic' && o.bindings < 1) throw new UsageError('--bindings must be ≥ 1 for topic');
  if (o.ackEvery > 0 && o.prefetch > 0 && o.ackEvery > o.prefetch) {
    throw new UsageError('--ack-every larger than --prefetch would stall between idle acks; lower it');
  }
}
