/**
 * The headers exchange's binding match, with RabbitMQ's rules (`rabbit_exchange_type_headers`):
 *
 * - `x-match` is `all` (also when absent, and for any value that is not one of the four, as
 *   RabbitMQ does for legacy bindings it never validated), `any`, `all-with-x` or `any-with-x`.
 * - The `x-match` key itself never takes part. Other binding keys starting with `x-` are ignored
 *   in `all` / `any` and compared like any other key in the `-with-x` modes.
 * - A binding key whose value is void (`null`, or `Typed('V', …)`) matches when the header is
 *   present, whatever its value (void included).
 * - Otherwise the header must be present with an equal value. RabbitMQ compares the values and
 *   not their wire types (Erlang `==`): 1 as a signed int equals 1 as a long or as the double
 *   1.0; a longstr equals a byte array with the same bytes; a timestamp is its integer seconds;
 *   a decimal equals only a decimal with the same scale and digits; a bool equals only a bool.
 * - `all` matches when every considered binding key matches, so a binding with none matches
 *   every message; `any` matches when at least one does, so a binding with none matches nothing.
 *   A message without headers is treated as an empty table.
 *
 * One deliberate difference: inside arrays and nested tables RabbitMQ compares each element's wire
 * type too (and nested tables in wire order). Plain decoded values have lost those types, so here
 * nested values compare by value with the same rules as top-level ones, and tables regardless of
 * key order.
 */

import {
  Decimal,
  FIELD_TYPE_NAMES,
  type FieldTable,
  type FieldType,
  type FieldValue,
  Typed,
  wireTypeOf,
} from '../../protocol/field-table.js';

/** The four `x-match` modes. */
export type XMatchMode = 'all' | 'any' | 'all-with-x' | 'any-with-x';

/** The binding's match mode: RabbitMQ falls back to `all` for anything unrecognised. */
export function xMatchMode(bindingArgs: FieldTable): XMatchMode {
  const v = longstr(own(bindingArgs, 'x-match'));
  return v === 'any' || v === 'all-with-x' || v === 'any-with-x' ? v : 'all';
}

/** True if a message with `headers` is routed through a headers binding with `bindingArgs`. */
export function headersMatch(bindingArgs: FieldTable, headers: FieldTable | undefined): boolean {
  const mode = xMatchMode(bindingArgs);
  const withX = mode === 'all-with-x' || mode === 'any-with-x';
  const all = mode === 'all' || mode === 'all-with-x';
  for (const key in bindingArgs) {
    if (!Object.hasOwn(bindingArgs, key)) continue;
    const want = bindingArgs[key];
    // undefined is never encoded: the key is not really there
    if (want === undefined || key === 'x-match') continue;
    if (!withX && key.startsWith('x-')) continue;
    const got = headers ? own(headers, key) : undefined;
    const ok = got !== undefined && (isVoid(want) || valueEquals(want, got));
    // all: the first miss decides; any: the first hit decides
    if (ok !== all) return ok;
  }
  return all;
}

/**
 * Checks a headers binding's `x-match` argument as RabbitMQ's `validate_binding/2` does; returns
 * the error text (the caller answers 406 PRECONDITION_FAILED) or null when it is valid or absent.
 */
export function validateXMatch(args: FieldTable): string | null {
  const v = own(args, 'x-match');
  if (v === undefined) return null;
  const type = wireTypeOf(args, 'x-match') ?? wireType(v);
  if (type !== 'S') {
    const raw = v instanceof Typed ? v.value : v;
    return `Invalid x-match field type ${ERLANG_TYPE[type]} (value ${erlangTerm(type, raw)}); expected longstr`;
  }
  const mode = longstr(v);
  if (mode === 'all' || mode === 'any' || mode === 'all-with-x' || mode === 'any-with-x') return null;
  return `Invalid x-match field value ${erlangTerm('S', mode ?? '')}; expected all, any, all-with-x, or any-with-x`;
}

/** The text of a longstr value (a plain string, or `Typed('S', …)` holding a string or bytes). */
function longstr(v: FieldValue): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Typed && v.type === 'S') {
    if (typeof v.value === 'string') return v.value;
    if (Buffer.isBuffer(v.value)) return v.value.toString('utf8');
  }
  return undefined;
}

/** An own property only: a header called `__proto__` or `constructor` is data, not the prototype. */
function own(t: FieldTable, key: string): FieldValue {
  return Object.hasOwn(t, key) ? t[key] : undefined;
}

function isVoid(v: FieldValue): boolean {
  return v === null || (v instanceof Typed && v.type === 'V');
}

/** A value with its wire type stripped, and timestamps as their integer seconds. */
function plain(v: FieldValue): FieldValue {
  while (v instanceof Typed) v = v.value;
  if (v instanceof Date) return Math.floor(v.getTime() / 1000);
  return v;
}

/** Value equality with RabbitMQ's top-level rules, applied recursively (see the file comment). */
export function valueEquals(a: FieldValue, b: FieldValue): boolean {
  a = plain(a);
  b = plain(b);
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) {
    return numbersEqual(a, b);
  }
  if (typeof a === 'string' || Buffer.isBuffer(a)) {
    if (typeof b !== 'string' && !Buffer.isBuffer(b)) return false;
    if (typeof a === 'string' && typeof b === 'string') return false; // === above
    return bytes(a).equals(bytes(b));
  }
  if (a instanceof Decimal) return b instanceof Decimal && a.scale === b.scale && a.value === b.value;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!valueEquals(a[i], b[i])) return false;
    return true;
  }
  if (typeof a === 'object' && typeof b === 'object' && isTable(a) && isTable(b)) return tablesEqual(a, b);
  return false;
}

function numbersEqual(a: number | bigint, b: number | bigint): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (typeof a === 'bigint' && typeof b === 'bigint') return a === b;
  const n = (typeof a === 'number' ? a : b) as number;
  const big = (typeof a === 'bigint' ? a : b) as bigint;
  return Number.isInteger(n) && BigInt(n) === big;
}

function bytes(v: string | Buffer): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

function isTable(v: object): v is FieldTable {
  return !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Decimal) && !(v instanceof Date);
}

function tablesEqual(a: FieldTable, b: FieldTable): boolean {
  let n = 0;
  for (const k in a) {
    if (!Object.hasOwn(a, k) || a[k] === undefined) continue;
    n++;
    const bv = own(b, k);
    if (bv === undefined || !valueEquals(a[k], bv)) return false;
  }
  for (const k in b) if (Object.hasOwn(b, k) && b[k] !== undefined) n--;
  return n === 0;
}

/** Erlang's names for the wire types, as RabbitMQ prints them in errors. */
const ERLANG_TYPE = FIELD_TYPE_NAMES;

/** The wire type a value has, or would be encoded with (the encoder's choice for plain values). */
function wireType(v: FieldValue): FieldType {
  if (v instanceof Typed) return v.type;
  switch (typeof v) {
    case 'boolean':
      return 't';
    case 'string':
      return 'S';
    case 'bigint':
      return 'l';
    case 'number':
      if (!Number.isInteger(v)) return 'd';
      return v >= -2147483648 && v <= 2147483647 ? 'I' : 'l';
    default:
      if (v === null || v === undefined) return 'V';
      if (Buffer.isBuffer(v)) return 'x';
      if (Array.isArray(v)) return 'A';
      if (v instanceof Date) return 'T';
      if (v instanceof Decimal) return 'D';
      return 'F';
  }
}

/** Renders a value of wire type `type` as Erlang's `~tp` prints RabbitMQ's decoded term. */
function erlangTerm(type: FieldType, v: FieldValue): string {
  switch (type) {
    case 't':
      return v ? 'true' : 'false';
    case 'V':
      return 'undefined';
    case 'f':
    case 'd': {
      const n = Number(v);
      return Number.isInteger(n) ? `${n}.0` : String(n);
    }
    case 'T':
      return String(v instanceof Date ? Math.floor(v.getTime() / 1000) : v);
    case 'D':
      return v instanceof Decimal ? `{${v.scale},${v.value}}` : String(v);
    case 'S':
    case 'x':
      return typeof v === 'string' || Buffer.isBuffer(v) ? erlangBinary(bytes(v)) : String(v);
    case 'A':
      return `[${(Array.isArray(v) ? v : []).map((e) => `{${ERLANG_TYPE[wireType(e)]},${erlangTerm(wireType(e), plainTyped(e))}}`).join(',')}]`;
    case 'F': {
      const t = v !== null && typeof v === 'object' && isTable(v) ? v : {};
      const parts = Object.keys(t).map((k) => {
        const e = t[k];
        const et = wireType(e);
        return `{${erlangBinary(Buffer.from(k, 'utf8'))},${ERLANG_TYPE[et]},${erlangTerm(et, plainTyped(e))}}`;
      });
      return `[${parts.join(',')}]`;
    }
    default:
      return String(v);
  }
}

function plainTyped(v: FieldValue): FieldValue {
  return v instanceof Typed ? v.value : v;
}

/** `<<"abc">>`, `<<"é"/utf8>>` or `<<1,2,3>>`, roughly as `~tp` picks (full Unicode printable range). */
function erlangBinary(b: Buffer): string {
  if (b.length === 0) return '<<>>';
  const text = b.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(b)) return `<<${Array.from(b).join(',')}>>`;
  let esc = '';
  let ascii = true;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c === 0x5c) esc += '\\\\';
    else if (c === 0x22) esc += '\\"';
    else if (c === 0x0a) esc += '\\n';
    else if (c === 0x0d) esc += '\\r';
    else if (c === 0x09) esc += '\\t';
    // other control characters are not printable: Erlang falls back to the byte list
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) return `<<${Array.from(b).join(',')}>>`;
    else esc += ch;
    if (c > 0x7f) ascii = false;
  }
  return ascii ? `<<"${esc}">>` : `<<"${esc}"/utf8>>`;
}
