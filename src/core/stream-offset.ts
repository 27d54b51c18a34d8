/**
 * Where a stream consumer starts: basic.consume's `x-stream-offset` argument, as RabbitMQ reads
 * it. `first`, `last` (the start of the last chunk written), `next` (only what comes after), an
 * absolute offset, a timestamp (`T`, seconds: the first chunk written at or after it) or an
 * interval back from now (`"30m"`, units Y M D h m s, as x-max-age). Absent means `next`.
 */
import { Decimal, type FieldValue } from '../protocol/field-table.js';

export type StreamStart =
  | { kind: 'first' | 'last' | 'next' }
  | { kind: 'offset'; offset: number }
  | { kind: 'time'; ms: number };

const DAY = 24 * 3600_000;
/** x-max-age and x-stream-offset interval units, in ms (RabbitMQ: a month is 30 days). */
const UNITS: Record<string, number> = { Y: 365 * DAY, M: 30 * DAY, D: DAY, h: 3600_000, m: 60_000, s: 1000 };

/** An interval such as "7D" in ms, or -1 when it is not one (digits, then one unit, above 0). */
export function intervalMs(s: string): number {
  const m = /^(\d+)([YMDhms])$/.exec(s);
  if (m === null) return -1;
  const n = Number(m[1]) * UNITS[m[2]!]!;
  return n > 0 ? n : -1;
}

/** The start a consumer asked for, or a reply text naming what is wrong with it. */
export function streamStart(v: FieldValue, now: number): StreamStart | string {
  if (v === undefined) return { kind: 'next' };
  if (Buffer.isBuffer(v)) v = v.toString('utf8');
  if (typeof v === 'string') {
    if (v === 'first' || v === 'last' || v === 'next') return { kind: v };
    const ms = intervalMs(v);
    if (ms > 0) return { kind: 'time', ms: now - ms };
    // what starts with digits was read as an interval: RabbitMQ's text for one that is not
    if (/^\d/.test(v)) return `{invalid_stream_offset_arg,{longstr,<<"${v}">>}}`;
    return `expected 'first', 'last', 'next', an offset, a timestamp or an interval such as '1h', got '${v}'`;
  }
  if (typeof v === 'bigint') return { kind: 'offset', offset: Number(v) };
  if (typeof v === 'number' && Number.isInteger(v)) return { kind: 'offset', offset: v };
  if (v instanceof Date) return { kind: 'time', ms: v.getTime() };
  const what = v instanceof Decimal ? 'a decimal' : typeof v === 'number' ? 'a float' : `a ${typeof v}`;
  return `expected 'first', 'last', 'next', an offset, a timestamp or an interval such as '1h', got ${what}`;
}
