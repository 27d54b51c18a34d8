/** The package version, read once from package.json. */
import { readFileSync } from 'node:fs';

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** The RabbitMQ release whose client-visible behaviour Warren follows (connection.start's version). */
export const RABBITMQ_COMPAT_VERSION = '3.10.8';
