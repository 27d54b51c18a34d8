import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Decimal, type FieldTable, type FieldValue, TableError } from '../../src/protocol/field-table.js';
import {
  decodeMethodArgs,
  encodeMethod,
  type MethodArgs,
  MethodSyntaxError,
} from '../../src/protocol/generated/methods.js';
import {
  ClassId,
  Constant,
  hasContent,
  isClientMethod,
  isHardError,
  isKnownMethod,
  isSynchronous,
  Method,
  methodName,
  ReplyCode,
  replyCodeName,
  responsesOf,
} from '../../src/protocol/generated/spec.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';

// ---------------------------------------------------------------------------------------------
// the spec table

interface JsonField {
  name: string;
  domain: string;
  reserved?: boolean;
}
interface JsonMethod {
  name: string;
  id: number;
  synchronous: boolean;
  content: boolean;
  sentBy: 'client' | 'server' | 'both';
  responses: string[];
  fields: JsonField[];
}
interface JsonClass {
  name: string;
  id: number;
  methods: JsonMethod[];
}
interface JsonSpec {
  constants: { name: string; value: number }[];
  replyCodes: { name: string; value: number; kind: 'hard' | 'soft' | 'success' }[];
  domains: { name: string; type: string }[];
  classes: JsonClass[];
}

const SPEC = JSON.parse(
  readFileSync(new URL('../../spec/amqp0-9-1.json', import.meta.url), 'utf8'),
) as JsonSpec;

const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const upper = (s: string): string => s.replace(/-/g, '_').toUpperCase();
const typeOf = (domain: string): string => SPEC.domains.find((d) => d.name === domain)?.type ?? domain;

interface M {
  cls: JsonClass;
  m: JsonMethod;
  id: number;
  label: string;
  fields: JsonField[];
}
const METHODS: M[] = SPEC.classes.flatMap((cls) =>
  cls.methods.map((m) => ({
    cls,
    m,
    id: cls.id * 65536 + m.id,
    label: `${cls.name}.${m.name}`,
    fields: m.fields.filter((f) => !f.reserved),
  })),
);

// ---------------------------------------------------------------------------------------------
// arbitraries

/** Strings of at most 255 UTF-8 bytes, mixing 1- to 4-byte characters up to the limit. */
const shortstrArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.constantFrom('a', 'é', '€', '😀', '.', '-'), { maxLength: 260 }).map((parts) => {
    let s = '';
    let n = 0;
    for (const p of parts) {
      const len = Buffer.byteLength(p);
      if (n + len > 255) break;
      s += p;
      n += len;
    }
    return s;
  }),
  fc.constant('x'.repeat(255)),
);

/** A small table of values whose plain encoding and decoding are lossless. */
const keyArb = fc.string({ unit: 'binary', maxLength: 10 }).filter((k) => k !== '__proto__');
const plainLeaf: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean(),
  fc.integer(),
  fc.integer({ min: 2147483648, max: Number.MAX_SAFE_INTEGER }),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n }),
  fc.double().filter((v) => !Number.isInteger(v)),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 0, max: 4_000_000_000 }).map((s) => new Date(s * 1000)),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffffffff }))
    .map(([s, v]) => new Decimal(s, v)),
  fc.constant(null),
);
const tableOf = (v: fc.Arbitrary<FieldValue>): fc.Arbitrary<FieldTable> =>
  fc
    .uniqueArray(fc.tuple(keyArb, v), { selector: (e) => e[0], maxLength: 4 })
    .map((e) => Object.fromEntries(e) as FieldTable);
const tree = fc.letrec<{ value: FieldValue; array: FieldValue; table: FieldValue }>((tie) => ({
  value: fc.oneof({ maxDepth: 2, depthSize: 'small' }, plainLeaf, tie('array'), tie('table')),
  array: fc.array(tie('value'), { maxLength: 3 }),
  table: tableOf(tie('value')),
}));
const tableArb = tableOf(tree.value);

function arbFor(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case 'bit':
      return fc.boolean();
    case 'octet':
      return fc.integer({ min: 0, max: 255 });
    case 'short':
      return fc.integer({ min: 0, max: 65535 });
    case 'long':
      return fc.integer({ min: 0, max: 0xffffffff });
    case 'longlong':
    case 'timestamp':
      return fc.oneof(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
      );
    case 'shortstr':
      return shortstrArb;
    case 'longstr':
      return fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
    case 'table':
      return tableArb;
    default:
      throw new Error(`no arbitrary for ${type}`);
  }
}

function argsArb(fields: JsonField[]): fc.Arbitrary<Record<string, unknown>> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of fields) model[camel(f.name)] = arbFor(typeOf(f.domain));
  // spread: fc.record may build null-prototype objects, which the decoder never returns
  return fc.record(model).map((r) => ({ ...r }));
}

/** Encodes one method frame and returns its bytes. */
function frame(id: number, channel: number, args: Record<string, unknown>): Buffer {
  const w = new OutBuffer();
  encodeMethod(w, channel, id, args as unknown as MethodArgs);
  return Buffer.concat(w.take());
}

/** Checks the frame envelope and returns the payload end offset. */
function checkEnvelope(b: Buffer, id: number, channel: number): number {
  expect(b[0]).toBe(Constant.FRAME_METHOD);
  expect(b.readUInt16BE(1)).toBe(channel);
  const size = b.readUInt32BE(3);
  expect(size).toBe(b.length - 8);
  expect(b[b.length - 1]).toBe(Constant.FRAME_END);
  expect(b.readUInt32BE(7)).toBe(id);
  return 7 + size;
}

function expectDecodeError(fn: () => unknown, what: string): void {
  let threw: unknown = null;
  try {
    fn();
  } catch (e) {
    threw = e;
  }
  expect(threw, `${what} decoded without an error`).not.toBeNull();
  const ok = threw instanceof MethodSyntaxError || threw instanceof TableError || threw instanceof RangeError;
  expect(ok, `${what} threw ${String(threw)}`).toBe(true);
}

// ---------------------------------------------------------------------------------------------

describe('every method round-trips through encodeMethod and decodeMethodArgs', () => {
  it.each(METHODS.map((x) => [x.label, x] as const))('%s', (_label, { id, fields }) => {
    fc.assert(
      fc.property(argsArb(fields), fc.integer({ min: 0, max: 65535 }), (args, channel) => {
        const b = frame(id, channel, args);
        const end = checkEnvelope(b, id, channel);
        expect(decodeMethodArgs(id, b, 11, end)).toStrictEqual(args);
      }),
      { numRuns: 40 },
    );
  });

  it('the round trip also holds when the frame sits inside a larger buffer', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...METHODS).chain((x) => fc.tuple(fc.constant(x), argsArb(x.fields))),
        fc.uint8Array({ maxLength: 16 }),
        fc.uint8Array({ maxLength: 16 }),
        ([x, args], pre, post) => {
          const f = frame(x.id, 1, args);
          const b = Buffer.concat([pre, f, post]);
          const at = pre.length;
          expect(decodeMethodArgs(x.id, b, at + 11, at + f.length - 1)).toStrictEqual(args);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('short strings decoded in a row come back right when they repeat or differ by a byte', () => {
    // the decoder hands back its last two short strings for the same bytes
    const names = fc.constantFrom(
      '',
      'a',
      'b',
      'ab',
      'ba',
      'key.1',
      'key.2',
      'kéy.1',
      'x'.repeat(64),
      'x'.repeat(65),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(names, names, fc.boolean()), { maxLength: 30 }), (publishes) => {
        for (const [exchange, routingKey, mandatory] of publishes) {
          const args = { exchange, routingKey, mandatory, immediate: false };
          const b = frame(Method.BASIC_PUBLISH, 1, args);
          expect(decodeMethodArgs(Method.BASIC_PUBLISH, b, 11, b.length - 1)).toStrictEqual(args);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('longstr fields may be given as strings and decode as their UTF-8 bytes', () => {
    const withLongstr = METHODS.filter((x) => x.fields.some((f) => typeOf(f.domain) === 'longstr'));
    expect(withLongstr.length).toBeGreaterThan(0);
    for (const x of withLongstr) {
      fc.assert(
        fc.property(argsArb(x.fields), fc.string({ unit: 'binary', maxLength: 40 }), (args, s) => {
          const asStrings = { ...args };
          const expected = { ...args };
          for (const f of x.fields) {
            if (typeOf(f.domain) !== 'longstr') continue;
            asStrings[camel(f.name)] = s;
            expected[camel(f.name)] = Buffer.from(s, 'utf8');
          }
          const b = frame(x.id, 0, asStrings);
          expect(decodeMethodArgs(x.id, b, 11, b.length - 1)).toStrictEqual(expected);
        }),
        { numRuns: 20 },
      );
    }
  });

  it('reserved fields are written as zero / empty on the wire', () => {
    // exchange.declare: reserved-1 short before the name; connection.open: two reserved after
    expect(
      frame(Method.EXCHANGE_DECLARE, 0, { exchange: '', type: '', arguments: {} }).subarray(11, 13),
    ).toEqual(Buffer.from([0, 0]));
    const open = frame(Method.CONNECTION_OPEN, 0, { virtualHost: '/' });
    expect(open.subarray(11).toString('hex')).toBe('012f' + '00' + '00' + 'ce');
  });

  it('consecutive bits share an octet, first bit in the least significant position', () => {
    const b = frame(Method.QUEUE_DECLARE, 0, {
      queue: '',
      passive: true,
      durable: false,
      exclusive: true,
      autoDelete: false,
      noWait: true,
      arguments: {},
    });
    // reserved short (2), queue shortstr (1), bits (1), empty table (4)
    expect(b.subarray(11, b.length - 1).toString('hex')).toBe('0000' + '00' + '15' + '00000000');
  });
});

describe('malformed method payloads throw', () => {
  const withFields = METHODS.filter((x) => x.m.fields.length > 0);

  it.each(withFields.map((x) => [x.label, x] as const))('%s cut at every shorter length', (_l, x) => {
    for (const args of fc.sample(argsArb(x.fields), { numRuns: 4, seed: 1234 })) {
      const full = frame(x.id, 3, args);
      const end = full.length - 1;
      for (let cut = 11; cut < end; cut++) {
        // the frame says it is shorter, and other bytes follow in the same buffer
        expectDecodeError(() => decodeMethodArgs(x.id, full, 11, cut), `${x.label} with end ${cut}`);
        // the buffer itself ends there
        const short = Buffer.from(full.subarray(0, cut));
        expectDecodeError(() => decodeMethodArgs(x.id, short, 11, cut), `${x.label} cut at ${cut}`);
      }
    }
  });

  it('a payload longer than its fields throws MethodSyntaxError, for every method', () => {
    for (const x of METHODS) {
      const [args] = fc.sample(argsArb(x.fields), { numRuns: 1, seed: 99 });
      const f = frame(x.id, 0, args!);
      const b = Buffer.concat([f.subarray(0, f.length - 1), Buffer.from([0, 0xce])]);
      expect(() => decodeMethodArgs(x.id, b, 11, b.length - 1), x.label).toThrow(MethodSyntaxError);
    }
  });

  it('random payloads for any method only throw MethodSyntaxError, TableError or RangeError', () => {
    fc.assert(
      fc.property(fc.constantFrom(...METHODS), fc.uint8Array({ maxLength: 64 }), (x, bytes) => {
        const b = Buffer.from(bytes);
        try {
          decodeMethodArgs(x.id, b, 0, b.length);
        } catch (e) {
          if (!(e instanceof MethodSyntaxError || e instanceof TableError || e instanceof RangeError))
            throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('an unknown method id decodes to null and cannot be encoded', () => {
    expect(decodeMethodArgs(0x000a0063, Buffer.alloc(4), 0, 4)).toBeNull();
    expect(decodeMethodArgs(0, Buffer.alloc(0), 0, 0)).toBeNull();
    expect(() => encodeMethod(new OutBuffer(), 0, 0x003c00ff, {} as MethodArgs)).toThrow(RangeError);
  });
});

describe('generated spec tables agree with the JSON', () => {
  it('Method ids are classId << 16 | methodId and there are no extra or missing ones', () => {
    const table = Method as Record<string, number>;
    for (const x of METHODS) {
      expect(table[`${upper(x.cls.name)}_${upper(x.m.name)}`], x.label).toBe((x.cls.id << 16) | x.m.id);
    }
    expect(Object.keys(table).length).toBe(METHODS.length);
  });

  it('ClassId, Constant and ReplyCode match the JSON', () => {
    const cls = ClassId as Record<string, number>;
    for (const c of SPEC.classes) expect(cls[upper(c.name)]).toBe(c.id);
    expect(Object.keys(cls).length).toBe(SPEC.classes.length);
    const con = Constant as Record<string, number>;
    for (const c of SPEC.constants) expect(con[upper(c.name)]).toBe(c.value);
    expect(Object.keys(con).length).toBe(SPEC.constants.length);
    const rc = ReplyCode as Record<string, number>;
    for (const r of SPEC.replyCodes) {
      expect(rc[upper(r.name)]).toBe(r.value);
      expect(replyCodeName(r.value)).toBe(upper(r.name));
      expect(isHardError(r.value), `${r.value}`).toBe(r.kind === 'hard');
    }
    expect(Object.keys(rc).length).toBe(SPEC.replyCodes.length);
    expect(isHardError(999)).toBe(false);
    expect(replyCodeName(999)).toBe('REPLY_999');
  });

  it.each(METHODS.map((x) => [x.label, x] as const))(
    '%s: name, content, synchronous, sender and responses',
    (label, x) => {
      expect(methodName(x.id)).toBe(label);
      expect(hasContent(x.id)).toBe(x.m.content);
      expect(isSynchronous(x.id)).toBe(x.m.synchronous);
      expect(isKnownMethod(x.id)).toBe(true);
      expect(isClientMethod(x.id)).toBe(x.m.sentBy !== 'server');
      expect([...responsesOf(x.id)]).toEqual(
        x.m.responses.map((r) => (x.cls.id << 16) | x.cls.methods.find((m) => m.name === r)!.id),
      );
    },
  );

  it('unknown ids are not known methods and get a descriptive name', () => {
    for (const id of [0, 0x000a0063, 0x00630001, 0xffffffff]) {
      expect(isKnownMethod(id)).toBe(false);
      expect(hasContent(id)).toBe(false);
      expect(isSynchronous(id)).toBe(false);
      expect(responsesOf(id)).toEqual([]);
    }
    expect(methodName(0x000a0063)).toBe('unknown method 10/99');
  });
});
