/** The broker's logger: pino, JSON lines on stdout. Nothing per message above trace. */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  // synchronous writes: log lines are rare (never per message) and must not be lost on exit
  return pino({ level, base: { name: 'warren' } }, pino.destination({ sync: true }));
}
