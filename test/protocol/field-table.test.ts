import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkTable,
  Decimal,
  decodeArray,
  decodeTable,
  encodeArray,
  encodeTable,
  type FieldTable,
  type FieldType,
  type FieldValue,
  TableError,
  Typed,
} from '../../src/protocol/field-table.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';

// ---------------------------------------------------------------------------------------------
// helpers

/** Encodes a table (u32 length + body) and returns the bytes. */
function tableBytes(t: FieldTable): Buffer {
  const w = new OutBuffer();
  encodeTable(w, t);
  return Buffer.concat(w.take());
}

function arrayBytes(a: FieldValue[]): Buffer {
  const w = new OutBuffer();
  encodeArray(w, a);
  return Buffer.concat(w.take());
}

/** Decodes bytes produced by tableBytes(). */
function decodeBytes(b: Buffer, typed = false): FieldTable {
  expect(b.readUInt32BE(0)).toBe(b.length - 4);
  return decodeTable(b, 4, b.length, typed);
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The decoder's rule for 'l': a number in [-2^53, 2^53), a bigint outside. */
const SAFE_LO = -(2n ** 53n);
const SAFE_HI = 2n ** 53n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const asDecodedI64 = (v: bigint): number | bigint => (v >= SAFE_LO && v < SAFE_HI ? Number(v) : v);

/** Only TableError and RangeError (Buffer bounds) may escape a decoder. */
function expectOnlyDecodeErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof TableError || e instanceof RangeError)) throw e;
  }
}

/** The plain-mode view of a typed tree, as decodeTable(…, false) should give it. */
function toPlain(v: FieldValue): FieldValue {
  if (!(v instanceof Typed)) throw new Error('expected a Typed value');
  const x = v.value;
  switch (v.type) {
    case 'A':
      return (x as FieldValue[]).map(toPlain);
    case 'F':
      return Object.fromEntries(Object.entries(x as FieldTable).map(([k, y]) => [k, toPlain(y)]));
    case 'T':
      return new Date((x as number) * 1000);
    default:
      return x;
  }
}

/** Makes values comparable with toStrictEqual even when they hold invalid Dates. */
function comparable(v: FieldValue): unknown {
  if (v instanceof Date) return { date: v.getTime() };
  if (Array.isArray(v)) return v.map(comparable);
  if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Decimal)) {
    return Object.fromEntries(Object.entries(v as FieldTable).map(([k, y]) => [k, comparable(y)]));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// arbitraries

/**
 * Table keys: any Unicode (no lone surrogates, which UTF-8 cannot carry) up to 255 UTF-8 bytes.
 * '__proto__' is left out: see the report (decodeTable turns it into the prototype).
 */
const keyArb = fc
  .oneof(
    { weight: 10, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 240, maxLength: 255 }) },
  )
  .filter((k) => Buffer.byteLength(k) <= 255 && k !== '__proto__');

const bytesArb = fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const decimalArb = fc
  .tuple(fc.integer({ min: 0, max: 255 }), u32)
  .map(([scale, value]) => new Decimal(scale, value));

const typedLeaf: fc.Arbitrary<Typed> = fc.oneof(
  fc.boolean().map((v) => new Typed('t', v)),
  fc.integer({ min: -128, max: 127 }).map((v) => new Typed('b', v)),
  fc.integer({ min: 0, max: 255 }).map((v) => new Typed('B', v)),
  fc.integer({ min: -32768, max: 32767 }).map((v) => new Typed('s', v)),
  fc.integer({ min: 0, max: 65535 }).map((v) => new Typed('u', v)),
  fc.integer().map((v) => new Typed('I', v)),
  u32.map((v) => new Typed('i', v)),
  fc
    .oneof(
      fc.bigInt({ min: I64_MIN, max: I64_MAX }),
      fc.constantFrom(SAFE_LO - 1n, SAFE_LO, SAFE_HI - 1n, SAFE_HI, I64_MIN, I64_MAX, 0n, -1n),
    )
    .map((v) => new Typed('l', asDecodedI64(v))),
  fc.float().map((v) => new Typed('f', v)),
  fc.double().map((v) => new Typed('d', v)),
  decimalArb.map((v) => new Typed('D', v)),
  fc.string({ unit: 'binary', maxLength: 24 }).map((v) => new Typed('S', v)),
  bytesArb.map((v) => new Typed('x', v)),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map((v) => new Typed('T', v)),
  fc.constant(new Typed('V', null)),
);

function tableOf(value: fc.Arbitrary<FieldValue>, maxLength = 6): fc.Arbitrary<FieldTable> {
  return fc
    .uniqueArray(fc.tuple(keyArb, value), { selector: (e) => e[0], maxLength })
    .map((entries) => Object.fromEntries(entries) as FieldTable);
}

const typedTree = fc.letrec<{ value: Typed; array: Typed; table: Typed }>((tie) => ({
  value: fc.oneof({ maxDepth: 3, depthSize: 'small' }, typedLeaf, tie('array'), tie('table')),
  array: fc.array(tie('value'), { maxLength: 5 }).map((a) => new Typed('A', a)),
  table: tableOf(tie('value'), 5).map((t) => new Typed('F', t)),
}));

const typedTable = tableOf(typedTree.value, 8);

/** Plain JS values whose encoding and plain decoding are lossless. */
const plainLeaf: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean(),
  fc.integer(), // I
  fc.oneof(
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -2147483649 }),
    fc.integer({ min: 2147483648, max: Number.MAX_SAFE_INTEGER }),
  ), // l, decoded as a number
  fc.oneof(fc.bigInt({ min: I64_MIN, max: SAFE_LO - 1n }), fc.bigInt({ min: SAFE_HI, max: I64_MAX })), // l
  fc.double().filter((v) => !Number.isInteger(v)), // d (NaN and ±Infinity included)
  fc.string({ unit: 'binary', maxLength: 24 }),
  bytesArb,
  fc.integer({ min: 0, max: 8_640_000_000_000 }).map((s) => new Date(s * 1000)), // T, whole seconds
  decimalArb,
  fc.constant(null),
);

const plainTree = fc.letrec<{ value: FieldValue; array: FieldValue; table: FieldValue }>((tie) => ({
  value: fc.oneof({ maxDepth: 3, depthSize: 'small' }, plainLeaf, tie('array'), tie('table')),
  array: fc.array(tie('value'), { maxLength: 5 }),
  table: tableOf(tie('value'), 5),
}));

const plainTable = tableOf(plainTree.value, 8);

// ---------------------------------------------------------------------------------------------

describe('field table round trips (property tests)', () => {
  it('typed trees of all 17 types decode to the same tree and re-encode to the same bytes', () => {
    fc.assert(
      fc.property(typedTable, (t) => {
        const bytes = tableBytes(t);
        const back = decodeBytes(bytes, true);
        expect(back).toStrictEqual(t);
        expect(tableBytes(back).equals(bytes)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('typed trees decode in plain mode to the plain view of each type', () => {
    fc.assert(
      fc.property(typedTable, (t) => {
        const plain = decodeBytes(tableBytes(t), false);
        const expected = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, toPlain(v)]));
        expect(comparable(plain)).toStrictEqual(comparable(expected));
      }),
      { numRuns: 150 },
    );
  });

  it('checkTable throws exactly where decodeTable throws, on every cut and corrupted byte', () => {
    const agree = (b: Buffer) => {
      let decoded = true;
      try {
        decodeTable(b, 0, b.length);
      } catch {
        decoded = false;
      }
      if (decoded) expect(() => checkTable(b, 0, b.length)).not.toThrow();
      else expect(() => checkTable(b, 0, b.length)).toThrow(TableError);
    };
    fc.assert(
      fc.property(typedTable, fc.nat(), fc.nat(255), (t, at, octet) => {
        const body = tableBytes(t).subarray(4);
        agree(body);
        agree(body.subarray(0, at % (body.length + 1)));
        if (body.length > 0) {
          const bad = Buffer.from(body);
          bad[at % bad.length] = octet;
          agree(bad);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('typed arrays round trip through encodeArray/decodeArray', () => {
    fc.assert(
      fc.property(fc.array(typedTree.value, { maxLength: 8 }), (a) => {
        const bytes = arrayBytes(a);
        expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
        const back = decodeArray(bytes, 4, bytes.length, true);
        expect(back).toStrictEqual(a);
        expect(arrayBytes(back).equals(bytes)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('plain JS tables round trip losslessly and re-encode to the same bytes', () => {
    fc.assert(
      fc.property(plainTable, (t) => {
        const bytes = tableBytes(t);
        const back = decodeBytes(bytes);
        expect(back).toStrictEqual(t);
        expect(tableBytes(back).equals(bytes)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('every typed tree covers each of the 17 types somewhere in a run', () => {
    const seen = new Set<FieldType>();
    const walk = (v: FieldValue): void => {
      if (!(v instanceof Typed)) return;
      seen.add(v.type);
      if (v.type === 'A') for (const x of v.value as FieldValue[]) walk(x);
      if (v.type === 'F') for (const x of Object.values(v.value as FieldTable)) walk(x);
    };
    for (const t of fc.sample(typedTable, { numRuns: 200, seed: 7 }))
      for (const v of Object.values(t)) walk(v);
    expect([...seen].sort().join('')).toBe([...'tbBsuIilfdDSxATFV'].sort().join(''));
  });
});

describe('field table byte fixtures', () => {
  it("{ a: Typed('u', 1) } is 00000005 01 61 75 0001", () => {
    const bytes = tableBytes({ a: new Typed('u', 1) });
    expect(bytes.toString('hex')).toBe('00000005016175' + '0001');
    expect(decodeBytes(bytes, true)).toStrictEqual({ a: new Typed('u', 1) });
    expect(decodeBytes(bytes)).toStrictEqual({ a: 1 });
  });

  it('an empty table is a zero length and nothing else; null and undefined encode as empty', () => {
    expect(tableBytes({}).toString('hex')).toBe('00000000');
    const w = new OutBuffer();
    encodeTable(w, null);
    encodeTable(w, undefined);
    expect(Buffer.concat(w.take()).toString('hex')).toBe('0000000000000000');
    expect(decodeTable(Buffer.alloc(0), 0, 0)).toStrictEqual({});
  });

  // [typed value, value bytes after the type octet's key, plain decoding]
  const cases: [Typed, string, FieldValue][] = [
    [new Typed('t', true), '74 01', true],
    [new Typed('t', false), '74 00', false],
    [new Typed('b', -2), '62 fe', -2],
    [new Typed('B', 200), '42 c8', 200],
    [new Typed('s', -2), '73 fffe', -2],
    [new Typed('u', 65535), '75 ffff', 65535],
    [new Typed('I', -1), '49 ffffffff', -1],
    [new Typed('i', 4294967295), '69 ffffffff', 4294967295],
    [new Typed('l', -2), '6c fffffffffffffffe', -2],
    [new Typed('l', 2n ** 62n), '6c 4000000000000000', 2n ** 62n],
    [new Typed('f', 1.5), '66 3fc00000', 1.5],
    [new Typed('d', 1.5), '64 3ff8000000000000', 1.5],
    [new Typed('D', new Decimal(2, 12345)), '44 02 00003039', new Decimal(2, 12345)],
    [new Typed('S', 'é'), '53 00000002 c3a9', 'é'],
    [new Typed('x', Buffer.from([1, 2])), '78 00000002 0102', Buffer.from([1, 2])],
    [new Typed('A', [new Typed('t', false)]), '41 00000002 7400', [false]],
    [new Typed('T', 1700000000), '54 000000006553f100', new Date(1700000000 * 1000)],
    [new Typed('F', { k: new Typed('V', null) }), '46 00000003 016b56', { k: null }],
    [new Typed('V', null), '56', null],
  ];

  it.each(cases)('%o has the exact wire bytes and decodes both ways', (value, body, plain) => {
    const bytes = tableBytes({ v: value });
    const expected = hex(`0176 ${body}`);
    expect(bytes.subarray(4).toString('hex')).toBe(expected.toString('hex'));
    expect(bytes.readUInt32BE(0)).toBe(expected.length);
    expect(decodeBytes(bytes, true)).toStrictEqual({ v: value });
    expect(decodeBytes(bytes)).toStrictEqual({ v: plain });
  });

  it('plain JS values choose the documented wire types', () => {
    const types = (v: FieldValue): string => {
      const b = tableBytes({ k: v });
      return String.fromCharCode(b[6]!);
    };
    expect(types(true)).toBe('t');
    expect(types(1)).toBe('I');
    expect(types(-2147483648)).toBe('I');
    expect(types(2147483647)).toBe('I');
    expect(types(2147483648)).toBe('l');
    expect(types(-2147483649)).toBe('l');
    expect(types(Number.MAX_SAFE_INTEGER)).toBe('l');
    expect(types(1.5)).toBe('d');
    expect(types(Number.NaN)).toBe('d');
    expect(types('s')).toBe('S');
    expect(types(Buffer.from('x'))).toBe('x');
    expect(types([])).toBe('A');
    expect(types(new Date(0))).toBe('T');
    expect(types(new Decimal(0, 0))).toBe('D');
    expect(types(null)).toBe('V');
    expect(types(5n)).toBe('l');
    expect(types({})).toBe('F');
  });

  it('a Date is sent as whole seconds; undefined entries are skipped; undefined array items are void', () => {
    expect(decodeBytes(tableBytes({ d: new Date(1999) }))).toStrictEqual({ d: new Date(1000) });
    expect(decodeBytes(tableBytes({ a: undefined, b: 1 }))).toStrictEqual({ b: 1 });
    expect(decodeBytes(tableBytes({ a: [undefined, 1] }))).toStrictEqual({ a: [null, 1] });
    // a Typed 'T' may also carry a Date
    expect(decodeBytes(tableBytes({ t: new Typed('T', new Date(5000)) }), true)).toStrictEqual({
      t: new Typed('T', 5),
    });
  });

  it("'l' decodes as a number exactly inside [-2^53, 2^53) and as a bigint outside", () => {
    const l = (v: bigint): FieldValue => decodeBytes(tableBytes({ v: new Typed('l', v) }))['v'];
    expect(l(2n ** 53n - 1n)).toBe(2 ** 53 - 1);
    expect(l(-(2n ** 53n))).toBe(-(2 ** 53));
    expect(l(2n ** 53n)).toBe(2n ** 53n);
    expect(l(-(2n ** 53n) - 1n)).toBe(-(2n ** 53n) - 1n);
    expect(l(I64_MAX)).toBe(I64_MAX);
    expect(l(I64_MIN)).toBe(I64_MIN);
    expect(l(-1n)).toBe(-1);
    expect(l(0n)).toBe(0);
  });

  it('keys of exactly 255 UTF-8 bytes round trip; 256 bytes throw RangeError when encoding', () => {
    const k255 = `${'é'.repeat(127)}x`;
    expect(Buffer.byteLength(k255)).toBe(255);
    expect(decodeBytes(tableBytes({ [k255]: 1 }))).toStrictEqual({ [k255]: 1 });
    expect(() => tableBytes({ [`${k255}y`]: 1 })).toThrow(RangeError);
    expect(() => tableBytes({ ['é'.repeat(128)]: 1 })).toThrow(RangeError);
  });

  it('a table at a non-zero offset inside a larger buffer decodes only its own bytes', () => {
    const t = { a: 1, b: 'two', c: [true, null] };
    const body = tableBytes(t);
    const b = Buffer.concat([Buffer.from('junk'), body, Buffer.from([0x49, 1, 2, 3])]);
    expect(decodeTable(b, 8, 4 + body.length)).toStrictEqual(t);
  });
});

describe('malformed tables', () => {
  it('an unknown type octet throws TableError', () => {
    for (const c of ['Z', 'a', '\0', 'U']) {
      const b = Buffer.concat([hex('0161'), Buffer.from(c, 'latin1'), hex('00000000')]);
      expect(() => decodeTable(b, 0, b.length)).toThrow(TableError);
      expect(() => checkTable(b, 0, b.length)).toThrow(TableError);
    }
  });

  it("'L' (py-amqp's 64-bit integer) reads as RabbitMQ's 'l', and re-encodes as 'l'", () => {
    // { a: L -2^35 }
    const b = Buffer.concat([hex('0161'), Buffer.from('L'), hex('fffffff800000000')]);
    expect(decodeTable(b, 0, b.length)).toEqual({ a: -(2 ** 35) });
    expect(() => checkTable(b, 0, b.length)).not.toThrow();
    const typed = decodeTable(b, 0, b.length, true);
    expect(typed['a']).toEqual(new Typed('l', -(2 ** 35)));
    const w = new OutBuffer();
    encodeTable(w, typed);
    expect(Buffer.concat(w.take()).toString('hex')).toBe(
      `0000000b0161${Buffer.from('l').toString('hex')}fffffff800000000`,
    );
  });

  it('checkTable accepts what decodeTable reads and refuses what it refuses', () => {
    const w = new OutBuffer();
    encodeTable(w, {
      s: 'str',
      n: { deep: [1, 'x', 2 ** 40, null, true, Buffer.from('ab')] },
      d: 1.5,
      t: new Date(0),
    });
    const b = Buffer.concat(w.take());
    expect(() => checkTable(b, 4, b.length)).not.toThrow();
    // a nested length that runs past its table, and a truncated value
    for (const cut of [b.length - 1, b.length - 3, 10]) {
      const t = b.subarray(4, cut);
      expect(() => decodeTable(t, 0, t.length)).toThrow();
      expect(() => checkTable(t, 0, t.length)).toThrow(TableError);
    }
  });

  it('a key without a value throws TableError', () => {
    expect(() => decodeTable(hex('0161'), 0, 2)).toThrow(TableError);
    expect(() => decodeTable(hex('05616263'), 0, 4)).toThrow(TableError);
  });

  it('a value length that overruns the table throws TableError', () => {
    for (const t of ['S', 'x', 'A', 'F']) {
      const b = Buffer.concat([hex('0161'), Buffer.from(t), hex('00000064'), Buffer.alloc(10)]);
      expect(() => decodeTable(b, 0, b.length)).toThrow(TableError);
    }
    // nested table whose length runs past the outer table (but not past the buffer)
    const inner = Buffer.concat([hex('0161'), Buffer.from('F'), hex('00000005'), hex('016249')]);
    const b = Buffer.concat([inner, Buffer.alloc(16)]);
    expect(() => decodeTable(b, 0, inner.length)).toThrow(TableError);
  });

  it('a fixed-size value that ends past the table end throws TableError even when the buffer goes on', () => {
    const b = Buffer.concat([hex('0161'), Buffer.from('I'), hex('0000'), hex('00000000')]);
    expect(() => decodeTable(b, 0, 5)).toThrow(TableError);
    const d = Buffer.concat([hex('0161'), Buffer.from('d'), hex('000000'), Buffer.alloc(8)]);
    expect(() => decodeTable(d, 0, 6)).toThrow(TableError);
  });

  it('an array whose items overrun it throws TableError', () => {
    expect(() => decodeArray(hex('4900 000000'), 0, 2)).toThrow(TableError);
    expect(() => decodeArray(hex('4900'), 0, 2)).toThrow(RangeError); // the buffer itself ends
    expect(() => decodeArray(Buffer.concat([hex('5300000009'), Buffer.alloc(4)]), 0, 9)).toThrow(TableError);
  });

  it('a table cut at every length shorter than its stated size throws', () => {
    const full = tableBytes({
      t: true,
      b: new Typed('b', -1),
      B: new Typed('B', 1),
      s: new Typed('s', -1),
      u: new Typed('u', 1),
      I: -5,
      i: new Typed('i', 5),
      l: 2n ** 60n,
      f: new Typed('f', 0.5),
      d: 0.25,
      D: new Decimal(1, 2),
      S: 'string',
      x: Buffer.from('bytes'),
      A: [1, 'a', [null]],
      T: new Date(1000),
      F: { nested: { deeper: 'x' } },
      V: null,
    });
    const body = full.subarray(4);
    for (let k = 0; k < body.length; k++) {
      const cut = Buffer.from(body.subarray(0, k));
      for (const typed of [false, true]) {
        let threw: unknown = null;
        try {
          decodeTable(cut, 0, body.length, typed);
        } catch (e) {
          threw = e;
        }
        expect(threw, `cut at ${k}`).not.toBeNull();
        expect(threw instanceof TableError || threw instanceof RangeError, `cut at ${k}: ${threw}`).toBe(
          true,
        );
      }
    }
  });

  it('random bytes only ever throw TableError or RangeError', () => {
    const typeOctet = fc.constantFrom(...[...'tbBsuIilfdDSxATFV'].map((c) => c.charCodeAt(0)));
    const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), typeOctet, fc.integer({ min: 0, max: 8 }));
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.array(byte, { maxLength: 300 }));
    fc.assert(
      fc.property(bytes, (arr) => {
        const b = Buffer.from(arr);
        expectOnlyDecodeErrors(() => decodeTable(b, 0, b.length));
        expectOnlyDecodeErrors(() => decodeTable(b, 0, b.length, true));
        expectOnlyDecodeErrors(() => decodeArray(b, 0, b.length, true));
      }),
      { numRuns: 3000 },
    );
  });

  it('valid tables with random bytes overwritten only ever throw TableError or RangeError', () => {
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 4,
    });
    fc.assert(
      fc.property(typedTable, mutation, fc.nat(), (t, muts, cutAt) => {
        const b = tableBytes(t);
        for (const [at, v] of muts) b[at % b.length] = v;
        const end = b.length - (cutAt % 3);
        expectOnlyDecodeErrors(() => decodeTable(b, 4, end, true));
        expectOnlyDecodeErrors(() => decodeTable(b, 4, end, false));
      }),
      { numRuns: 500 },
    );
  });
});

describe("a '__proto__' key", () => {
  const tableBytes = (t: Record<string, unknown>): Buffer => {
    const w = new OutBuffer();
    encodeTable(w, t as never);
    return Buffer.concat(w.take());
  };
  const protoBody = (): Buffer =>
    Buffer.concat([
      Buffer.from([9]),
      Buffer.from('__proto__'),
      Buffer.from('F'),
      tableBytes({ 'x-max-length': 5 }),
    ]);

  it('is decoded as an own entry, not as the prototype of the table', () => {
    const body = protoBody();
    for (const typed of [false, true]) {
      const t = decodeTable(body, 0, body.length, typed);
      expect(Object.keys(t)).toEqual(['__proto__']);
      expect(t['x-max-length']).toBeUndefined();
    }
  });

  it('re-encodes to the same bytes', () => {
    const body = protoBody();
    const again = tableBytes(decodeTable(body, 0, body.length, true) as Record<string, unknown>);
    expect(again.subarray(4).equals(body)).toBe(true);
  });
});
