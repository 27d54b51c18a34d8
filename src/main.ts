/** The `warren` command: reads settings, starts the broker, stops it cleanly on SIGINT/SIGTERM. */
import { Broker, StartupError } from './broker.js';
import { ConfigError, loadConfig, usage } from './config.js';
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
  let broker: Broker;
  try {
    broker = await Broker.start(loaded.config);
  } catch (e) {
    const msg =
      e instanceof StartupError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`warren: ${msg}\n`);
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    broker.log.info({ signal }, 'shutting down');
    broker.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        broker.log.error({ err: e }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

await main();
