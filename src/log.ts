/** The broker's logger: pino, JSON lines on stdout. Nothing per message above trace. */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'warren' } });
}
