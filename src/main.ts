/** The `warren` command: reads settings, starts the broker, stops it cleanly on SIGINT/SIGTERM. */
import { Broker, StartupError } from './broker.js';
import { ConfigError, loadConfig, usage } from './config.js';
import { enableExternalGc } from './util/external-gc.js';
import { VERSION } from './version.js';

async function main(): Promise<void> {
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    process.stderr.write(`warren: ${e instanceof ConfigError ? e.message : String(e)}\n${usage()}\n`);
    process.exit(1);
  }
  if (loaded.help) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if (loaded.version) {
    process.stdout.write(`warren ${VERSION}\n`);
    return;
  }
  // handlers go in before the broker starts, so a signal during startup still stops it cleanly
  let broker: Broker | null = null;
  let signalled: string | null = null;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = signal;
    if (broker) stop(broker, signal);
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  enableExternalGc();
  try {
    broker = await Broker.start(loaded.config);
  } catch (e) {
    const msg =
      e instanceof StartupError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`warren: ${msg}\n`);
    process.exit(1);
  }
  if (signalled) stop(broker, signalled);
  // a stray rejection (a library promise nobody waited on) is logged; it must not take down a
  // broker that holds everyone's unconfirmed and in-memory messages
  // (at most a line per 5 s: a failing disk can reject one per commit)
  const log = broker.log;
  let count = 0;
  let logged = 0;
  process.on('unhandledRejection', (err) => {
    // lmdb-js makes a promise of its own for the first write of each batch and hands it to
    // nobody; a failed commit rejects it along with the writes' promises, which the store
    // handles and reports ('store write failed')
    if (isCommitFailure(err)) return;
    count++;
    const now = Date.now();
    if (now - logged < 5000) return;
    log.error({ err, count }, 'unhandled rejection');
    count = 0;
    logged = now;
  });
}

/** lmdb-js's failed-commit error: it carries the underlying error as a promise, `commitError`. */
function isCommitFailure(err: unknown): boolean {
  const inner = (err as { commitError?: unknown } | null)?.commitError;
  if (!(err instanceof Error) || !(inner instanceof Promise)) return false;
  inner.then(undefined, () => {});
  return true;
}

function stop(broker: Broker, signal: string): void {
  broker.log.info({ signal }, 'shutting down');
  broker.stop().then(
    () => process.exit(0),
    (e: unknown) => {
      broker.log.error({ err: e }, 'error while stopping');
      process.exit(1);
    },
  );
}

await main();
