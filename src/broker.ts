/**
 * The broker: owns the listening socket, the connections, the user and vhost registries and the
 * data directory. Embeddable: `const broker = await Broker.start({ port: 0 })`, `broker.url`,
 * `await broker.stop()`.
 */
import { accessSync, constants, mkdirSync, statfsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { Connection, type ConnectionContext } from './amqp/connection.js';
import { FlowControl } from './amqp/publish-flow.js';
import { type Config, DEFAULTS } from './config.js';
import { UserStore } from './core/users.js';
import { VHostRegistry } from './core/vhost.js';
import { createLogger, type Logger } from './log.js';
import type { FieldTable } from './protocol/field-table.js';
import { ReplyCode } from './protocol/generated/spec.js';
import { recover } from './recovery.js';
import { LmdbStore } from './storage/lmdb-store.js';
import { DataDirLock, DataDirLocked } from './storage/lock.js';
import { MemoryStore } from './storage/memory-store.js';
import type { Store } from './storage/store.js';
import { trimBodies } from './util/body-pool.js';
import { COARSE_PERIOD_MS, updateCoarseClock } from './util/coarse-clock.js';
import { checkExternalMemory, setTightHeap } from './util/external-gc.js';
import { updateLoad } from './util/load.js';
import { setTickErrorHandler } from './util/tick.js';
import { RABBITMQ_COMPAT_VERSION, VERSION } from './version.js';

export interface BrokerOptions extends Partial<Config> {
  /** A logger to use instead of creating one from logLevel. */
  logger?: Logger;
}

/** A startup failure with a one-line explanation (no stack trace needed). */
export class StartupError extends Error {}

function describe(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return e instanceof Error ? (code ? `${code} ${e.message}` : e.message) : String(e);
}

/** Capabilities this build really implements (advertised in connection.start). */
export const CAPABILITIES: FieldTable = {
  publisher_confirms: true,
  exchange_exchange_bindings: true,
  'basic.nack': true,
  consumer_cancel_notify: true,
  'connection.blocked': true,
  consumer_priorities: true,
  authentication_failure_close: true,
  per_consumer_qos: true,
  direct_reply_to: true,
};

export class Broker implements ConnectionContext {
  readonly config: Config;
  readonly log: Logger;
  readonly users: UserStore;
  readonly vhosts = new VHostRegistry();
  store: Store = new MemoryStore();
  readonly flow = new FlowControl(() => this.connections);
  private lock: DataDirLock | null = null;
  private monitor: NodeJS.Timeout | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  private storeFailures = 0;
  private storeFailureLogged = 0;
  readonly serverProperties: FieldTable;
  readonly connections = new Set<Connection>();
  private server: Server | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.users = new UserStore(config.loopbackUsers);
    // Clients gate RabbitMQ's extensions on product 'RabbitMQ' (amqp091-go skips its
    // RabbitMQ-only tests otherwise) and some on its version, so Warren answers with the
    // RabbitMQ release whose behaviour it follows and names itself in platform and information
    // (the same keys as RabbitMQ's: clients compare the set).
    this.serverProperties = {
      product: 'RabbitMQ',
      version: RABBITMQ_COMPAT_VERSION,
      platform: `Warren ${VERSION} on Node.js ${process.version}`,
      copyright: 'Copyright (c) the Warren authors',
      information: `Warren ${VERSION}, an AMQP 0-9-1 broker compatible with RabbitMQ ${RABBITMQ_COMPAT_VERSION}. Licensed under the MIT License`,
      cluster_name: `warren@${hostname()}`,
      capabilities: CAPABILITIES,
    };
  }

  static async start(options: BrokerOptions = {}): Promise<Broker> {
    const { logger, ...rest } = options;
    const config: Config = { ...DEFAULTS, ...rest };
    const broker = new Broker(config, logger ?? createLogger(config.logLevel));
    try {
      broker.openDataDir();
      await broker.store.finishDeletes();
      const live = recover(broker);
      await broker.store.cleanup(live);
      for (const v of broker.vhosts.all()) for (const q of v.queues.values()) q.afterRecovery();
      broker.store.markRunning();
      broker.startMonitor();
      await broker.listen();
    } catch (e) {
      await broker.closeStore();
      throw e instanceof StartupError
        ? e
        : new StartupError(
            `recovery from ${resolve(config.dataDir, 'warren.mdb')} failed (corrupt store?): ${describe(e)}`,
          );
    }
    return broker;
  }

  /** The address clients connect to, e.g. amqp://guest:guest@127.0.0.1:5672 */
  get url(): string {
    const host =
      this.config.host === '' || this.config.host === '0.0.0.0' || this.config.host === '::'
        ? '127.0.0.1'
        : this.config.host;
    const h = host.includes(':') ? `[${host}]` : host;
    return `amqp://${encodeURIComponent(this.config.defaultUser)}:${encodeURIComponent(this.config.defaultPass)}@${h}:${this.port}`;
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  /** Creates and locks the data dir and opens the store; any failure names the path. */
  private openDataDir(): void {
    const dir = resolve(this.config.dataDir);
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.R_OK | constants.W_OK);
    } catch (e) {
      throw new StartupError(`cannot use data dir ${dir}: ${describe(e)}`);
    }
    try {
      this.lock = DataDirLock.acquire(dir);
    } catch (e) {
      if (e instanceof DataDirLocked) throw new StartupError(e.message);
      throw new StartupError(`cannot lock data dir ${dir}: ${describe(e)}`);
    }
    const path = resolve(dir, 'warren.mdb');
    try {
      this.store = new LmdbStore({
        path,
        sync: this.config.sync,
        onError: (e) => this.storeFailed(e),
        onBusy: () => this.flow.set('store', true),
        onDrained: () => this.flow.set('store', false),
        mapLimit: this.config.storeMapLimit * 1024 * 1024,
      });
    } catch (e) {
      throw new StartupError(
        `cannot open the store ${path} (corrupt or not a Warren store?): ${describe(e)}`,
      );
    }
    setTickErrorHandler((e) => this.log.error({ err: e }, 'internal error in a tick phase'));
  }

  /** Memory and disk alarms, checked once a second: publishers are blocked while either is raised. */
  /**
   * A failed store write (its confirms are nacked by the store). Logged at most every 5 s with
   * the number of failed batches since the last line: a full disk fails every commit, and one
   * line per tick would bury everything else (and fill that disk further).
   */
  private storeFailed(err: unknown): void {
    this.storeFailures++;
    const now = Date.now();
    if (now - this.storeFailureLogged < 5000) return;
    this.log.error(
      { err, failedBatches: this.storeFailures },
      'store write failed; the affected confirms are nacked',
    );
    this.storeFailures = 0;
    this.storeFailureLogged = now;
  }

  private startMonitor(): void {
    const limit = (this.config.memoryLimit || Math.floor((totalmem() * 0.4) / 1048576)) * 1048576;
    const floor = this.config.diskFreeLimit * 1048576;
    const dir = resolve(this.config.dataDir);
    const check = () => {
      const rss = residentBytes();
      // (unreadable: the process is out of file descriptors; the alarm stays as it was)
      if (rss < 0) return;
      if (rss > limit !== this.flow.reasons.includes('memory')) {
        this.log.warn(
          { rss, limit },
          rss > limit ? 'memory alarm: blocking publishers' : 'memory alarm cleared',
        );
      }
      this.flow.set('memory', rss > limit);
      try {
        const st = statfsSync(dir);
        const free = st.bavail * st.bsize;
        if (free < floor !== this.flow.reasons.includes('disk')) {
          this.log.warn(
            { free, floor },
            free < floor ? 'disk alarm: blocking publishers' : 'disk alarm cleared',
          );
        }
        this.flow.set('disk', free < floor);
      } catch {
        // statfs may be unavailable; the disk alarm then stays off
      }
    };
    this.monitor = setInterval(check, 1000);
    this.monitor.unref();
    this.gcTimer = setInterval(() => {
      updateCoarseClock();
      updateLoad();
      this.checkAckTimeouts();
      checkExternalMemory();
      trimBodies(this.flow.reasons.includes('memory'));
      if (this.store instanceof LmdbStore) this.store.checkMapped();
      setTightHeap(this.anyQueuePaging());
    }, COARSE_PERIOD_MS);
    this.gcTimer.unref();
  }

  /** Closes channels whose oldest unacked delivery is past the consumer timeout. */
  private checkAckTimeouts(): void {
    const timeout = this.config.consumerTimeout;
    if (timeout === 0) return;
    const now = Date.now();
    for (const c of this.connections) {
      for (const ch of c.channels.values()) {
        try {
          ch.checkAckTimeout(now, timeout);
        } catch (e) {
          c.fail(e, ch.number, 0, 0);
        }
      }
    }
  }

  private anyQueuePaging(): boolean {
    for (const v of this.vhosts.all()) for (const q of v.queues.values()) if (q.paging) return true;
    return false;
  }

  private listen(): Promise<void> {
    return new Promise((resolveListen, reject) => {
      const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
      server.once('error', (e: NodeJS.ErrnoException) => {
        const where = `${this.config.host || '*'}:${this.config.port}`;
        reject(
          new StartupError(
            e.code === 'EADDRINUSE'
              ? `port ${this.config.port} is already in use (${where})`
              : `cannot listen on ${where}: ${e.code ?? e.message}`,
          ),
        );
      });
      const onListening = () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.log.error({ err: e }, 'server socket error'));
        this.server = server;
        this.log.info(
          { port: this.port, dataDir: resolve(this.config.dataDir), version: VERSION },
          'warren started',
        );
        resolveListen();
      };
      if (this.config.host === '') server.listen(this.config.port, onListening);
      else server.listen(this.config.port, this.config.host, onListening);
    });
  }

  private accept(socket: Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const c = new Connection(socket, this);
    this.connections.add(c);
  }

  connectionClosed(c: Connection): void {
    this.connections.delete(c);
  }

  /** Closes every connection with 320 CONNECTION_FORCED, stops listening and closes the store. */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const server = this.server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of this.connections) {
      c.forceClose(
        ReplyCode.CONNECTION_FORCED,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
      );
    }
    // wait for close-ok (bounded by the connection's own close timeout), then drop stragglers
    const deadline = Date.now() + 3_500;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.connections) c.destroy('shutdown');
    await closed;
    await this.closeStore();
    this.log.info('warren stopped');
  }

  private async closeStore(): Promise<void> {
    if (this.monitor) clearInterval(this.monitor);
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.monitor = null;
    // every channel has requeued its unacked entries by now
    for (const v of this.vhosts.all()) for (const q of v.queues.values()) q.keepDeliveries();
    const store = this.store;
    this.store = new MemoryStore();
    await store.close();
    this.lock?.release();
    this.lock = null;
  }
}

/** The process's RSS, or -1 when it cannot be read (reading /proc needs a file descriptor). */
function residentBytes(): number {
  try {
    return process.memoryUsage.rss();
  } catch {
    return -1;
  }
}
