/**
 * The broker: owns the listening socket, the connections, the user and vhost registries and the
 * data directory. Embeddable: `const broker = await Broker.start({ port: 0 })`, `broker.url`,
 * `await broker.stop()`.
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { Connection, type ConnectionContext } from './amqp/connection.js';
import { type Config, DEFAULTS } from './config.js';
import { UserStore } from './core/users.js';
import { VHost, VHostRegistry } from './core/vhost.js';
import { createLogger, type Logger } from './log.js';
import type { FieldTable } from './protocol/field-table.js';
import { ReplyCode } from './protocol/generated/spec.js';
import { MemoryStore, type Store } from './storage/store.js';
import { VERSION } from './version.js';

export interface BrokerOptions extends Partial<Config> {
  /** A logger to use instead of creating one from logLevel. */
  logger?: Logger;
}

/** A startup failure with a one-line explanation (no stack trace needed). */
export class StartupError extends Error {}

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
  readonly store: Store = new MemoryStore();
  readonly serverProperties: FieldTable;
  readonly connections = new Set<Connection>();
  private server: Server | null = null;
  private db: RootDatabase | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.users = new UserStore(config.loopbackUsers);
    this.serverProperties = {
      product: 'Warren',
      version: VERSION,
      platform: `Node.js ${process.version}`,
      copyright: 'Copyright (c) the Warren authors',
      information: 'Licensed under the MIT License',
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
      broker.users.add(config.defaultUser, config.defaultPass, ['administrator'], ['/']);
      broker.vhosts.add(new VHost('/', broker.store));
      await broker.listen();
    } catch (e) {
      await broker.closeStore();
      throw e;
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

  private openDataDir(): void {
    const dir = resolve(this.config.dataDir);
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.R_OK | constants.W_OK);
      this.db = open({ path: resolve(dir, 'warren.mdb') });
      if (this.db.get('meta:format') === undefined) this.db.putSync('meta:format', 1);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new StartupError(
        `cannot use data dir ${dir}: ${code ?? (e instanceof Error ? e.message : String(e))}`,
      );
    }
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
    const db = this.db;
    this.db = null;
    if (db) await db.close();
  }
}
