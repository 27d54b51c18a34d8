/**
 * Every setting, typed, with defaults. The only place that reads flags and environment
 * variables: each flag `--frame-max` also reads `WARREN_FRAME_MAX`; a flag wins over the env.
 */
import { parseArgs } from 'node:util';

export interface Config {
  /** TCP port for AMQP; 0 picks a free one. */
  port: number;
  /** Interface to listen on; empty means every interface. */
  host: string;
  /** Directory of the embedded LMDB store. */
  dataDir: string;
  logLevel: string;
  /** Largest frame we accept and offer in connection.tune, overhead included. */
  frameMax: number;
  /** Highest channel number we offer in connection.tune. */
  channelMax: number;
  /** Heartbeat interval we offer, in seconds (0 disables). */
  heartbeat: number;
  /** A connection must complete the handshake within this many milliseconds. */
  handshakeTimeout: number;
  /** Bodies larger than this are refused with 406, as RabbitMQ's max_message_size. */
  maxMessageSize: number;
  /** User created when the store has none. */
  defaultUser: string;
  defaultPass: string;
  /** Users that may only connect from loopback addresses. */
  loopbackUsers: string[];
  /** When publisher confirms for persistent messages go out: after fsync, or at commit. */
  sync: 'always' | 'off';
  /** Publishers are blocked while the broker's RSS is above this many MiB (0: 40% of RAM). */
  memoryLimit: number;
  /** Publishers are blocked while the data dir's disk has less free space than this, in MiB. */
  diskFreeLimit: number;
  /**
   * A queue whose consumers all wait on their sockets holds its publishers at most this long
   * without delivering, in ms (core/queue-congestion.ts).
   */
  flowHoldLimit: number;
  /**
   * A channel whose oldest unacknowledged delivery is older than this is closed with 406, as
   * RabbitMQ's consumer_timeout does (its default too), in ms. 0: never.
   */
  consumerTimeout: number;
  /**
   * Store file pages that may stay mapped (resident) before the store is reopened to unmap
   * them, in MiB (storage/lmdb-store.ts checkMapped). 0: reopen whenever any grew.
   */
  storeMapLimit: number;
}

export const DEFAULTS: Config = {
  port: 5672,
  host: '',
  dataDir: './data',
  logLevel: 'info',
  frameMax: 131072,
  channelMax: 2047,
  heartbeat: 60,
  handshakeTimeout: 10_000,
  maxMessageSize: 128 * 1024 * 1024,
  defaultUser: 'guest',
  defaultPass: 'guest',
  loopbackUsers: ['guest'],
  sync: 'always',
  memoryLimit: 0,
  diskFreeLimit: 50,
  flowHoldLimit: 500,
  consumerTimeout: 1_800_000,
  storeMapLimit: 8,
};

interface Setting {
  key: keyof Config;
  flag: string;
  kind: 'int' | 'string' | 'list' | 'enum';
  values?: string[];
  help: string;
  min?: number;
  max?: number;
}

export const SETTINGS: Setting[] = [
  { key: 'port', flag: 'port', kind: 'int', min: 0, max: 65535, help: 'AMQP port' },
  { key: 'host', flag: 'host', kind: 'string', help: 'interface to bind (default: all)' },
  { key: 'dataDir', flag: 'data-dir', kind: 'string', help: 'data directory (LMDB)' },
  { key: 'logLevel', flag: 'log-level', kind: 'string', help: 'trace|debug|info|warn|error|fatal|silent' },
  {
    key: 'frameMax',
    flag: 'frame-max',
    kind: 'int',
    min: 4096,
    max: 1 << 30,
    help: 'largest frame in bytes',
  },
  { key: 'channelMax', flag: 'channel-max', kind: 'int', min: 1, max: 65535, help: 'highest channel number' },
  {
    key: 'heartbeat',
    flag: 'heartbeat',
    kind: 'int',
    min: 0,
    max: 65535,
    help: 'heartbeat seconds (0: off)',
  },
  {
    key: 'handshakeTimeout',
    flag: 'handshake-timeout',
    kind: 'int',
    min: 100,
    help: 'handshake timeout, ms',
  },
  {
    key: 'maxMessageSize',
    flag: 'max-message-size',
    kind: 'int',
    min: 1,
    max: 512 * 1024 * 1024,
    help: 'bytes',
  },
  { key: 'defaultUser', flag: 'default-user', kind: 'string', help: 'user created on first start' },
  { key: 'defaultPass', flag: 'default-pass', kind: 'string', help: "that user's password" },
  {
    key: 'loopbackUsers',
    flag: 'loopback-users',
    kind: 'list',
    help: 'comma-separated users limited to loopback',
  },
  {
    key: 'sync',
    flag: 'sync',
    kind: 'enum',
    values: ['always', 'off'],
    help: 'confirm persistent messages after fsync (always) or at commit (off)',
  },
  {
    key: 'memoryLimit',
    flag: 'memory-limit',
    kind: 'int',
    min: 0,
    help: 'block publishers above this RSS, MiB (0: 40% of RAM)',
  },
  {
    key: 'diskFreeLimit',
    flag: 'disk-free-limit',
    kind: 'int',
    min: 0,
    help: 'block publishers below this free disk, MiB',
  },
  {
    key: 'flowHoldLimit',
    flag: 'flow-hold-limit',
    kind: 'int',
    min: 1,
    help: 'longest hold of a publisher by a queue whose consumers take nothing, ms',
  },
  {
    key: 'consumerTimeout',
    flag: 'consumer-timeout',
    kind: 'int',
    min: 0,
    help: 'close a channel whose oldest unacked delivery is older than this, ms (0: never)',
  },
  {
    key: 'storeMapLimit',
    flag: 'store-map-limit',
    kind: 'int',
    min: 0,
    help: 'store file pages kept mapped before the store unmaps them, MiB',
  },
];

export class ConfigError extends Error {}

const envName = (flag: string): string => `WARREN_${flag.replace(/-/g, '_').toUpperCase()}`;

function convert(s: Setting, raw: string, source: string): Config[keyof Config] {
  if (s.kind === 'string') return raw;
  if (s.kind === 'enum') {
    if (!s.values!.includes(raw))
      throw new ConfigError(`${source}: '${raw}' is not one of ${s.values!.join(', ')}`);
    return raw;
  }
  if (s.kind === 'list') {
    return raw
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
  }
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${source}: '${raw}' is not a whole number`);
  const n = Number(raw);
  if (s.min !== undefined && n < s.min)
    throw new ConfigError(`${source}: ${n} is below the minimum ${s.min}`);
  if (s.max !== undefined && n > s.max)
    throw new ConfigError(`${source}: ${n} is above the maximum ${s.max}`);
  return n;
}

/** Merges defaults, environment and flags (in that order of precedence, lowest first). */
export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv,
): { config: Config; help: boolean; version: boolean } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const s of SETTINGS) options[s.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : String(e));
  }
  const config = { ...DEFAULTS } as Record<keyof Config, unknown>;
  for (const s of SETTINGS) {
    const e = env[envName(s.flag)];
    if (e !== undefined && e !== '') config[s.key] = convert(s, e, envName(s.flag));
    const f = values[s.flag];
    if (typeof f === 'string') config[s.key] = convert(s, f, `--${s.flag}`);
  }
  return {
    config: config as unknown as Config,
    help: values['help'] === true,
    version: values['version'] === true,
  };
}

export function usage(): string {
  const lines = [
    'Usage: warren [options]',
    '',
    'Every option can also be set as an environment variable.',
    '',
  ];
  for (const s of SETTINGS) {
    const def = DEFAULTS[s.key];
    const shown = Array.isArray(def) ? def.join(',') : String(def);
    lines.push(
      `  --${s.flag.padEnd(20)} ${envName(s.flag).padEnd(26)} ${s.help} (default: ${shown === '' ? 'all' : shown})`,
    );
  }
  lines.push('  --help, --version');
  return lines.join('\n');
}
