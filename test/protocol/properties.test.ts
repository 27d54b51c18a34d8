import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Decimal,
  decodeTable,
  type FieldTable,
  type FieldValue,
  readU64,
  TableError,
} from '../../src/protocol/field-table.js';
import {
  type BasicProperties,
  decodeBasicProperties,
  encodeBasicProperties,
  PropertyFlag,
  PropertyIndex,
  propertyOffset,
} from '../../src/protocol/generated/properties.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';

// ---------------------------------------------------------------------------------------------
// arbitraries

const shortstrArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.array(fc.constantFrom('a', 'é', '€', '😀'), { maxLength: 200 }).map((parts) => {
    let s = '';
    for (const p of parts) {
      if (Buffer.byteLength(s + p) > 255) break;
      s += p;
    }
    return s;
  }),
);

const keyArb = fc.string({ unit: 'binary', maxLength: 10 }).filter((k) => k !== '__proto__');
const leaf: fc.Arbitrary<FieldValue> = fc.oneof(
  fc.boolean(),
  fc.integer(),
  fc.double().filter((v) => !Number.isInteger(v)),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
  fc.integer({ min: 0, max: 4_000_000_000 }).map((s) => new Date(s * 1000)),
  fc.tuple(fc.nat(255), fc.nat()).map(([s, v]) => new Decimal(s, v)),
  fc.constant(null),
);
const tableOf = (v: fc.Arbitrary<FieldValue>): fc.Arbitrary<FieldTable> =>
  fc
    .uniqueArray(fc.tuple(keyArb, v), { selector: (e) => e[0], maxLength: 4 })
    .map((e) => Object.fromEntries(e) as FieldTable);
const headersArb = tableOf(fc.oneof(leaf, fc.array(leaf, { maxLength: 3 }), tableOf(leaf)));
const octet = fc.integer({ min: 0, max: 255 });

/** Any subset of the 14 properties (absent keys are left out, as the decoder leaves them). */
const propsArb: fc.Arbitrary<BasicProperties> = fc
  .record(
    {
      contentType: shortstrArb,
      contentEncoding: shortstrArb,
      headers: headersArb,
      deliveryMode: octet,
      priority: octet,
      correlationId: shortstrArb,
      replyTo: shortstrArb,
      expiration: shortstrArb,
      messageId: shortstrArb,
      timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      type: shortstrArb,
      userId: shortstrArb,
      appId: shortstrArb,
      clusterId: shortstrArb,
    },
    { requiredKeys: [] },
  )
  .map((r) => ({ ...r }));

/** In flag order, with the wire type of each. */
const ORDER: [keyof BasicProperties, 'shortstr' | 'table' | 'octet' | 'timestamp'][] = [
  ['contentType', 'shortstr'],
  ['contentEncoding', 'shortstr'],
  ['headers', 'table'],
  ['deliveryMode', 'octet'],
  ['priority', 'octet'],
  ['correlationId', 'shortstr'],
  ['replyTo', 'shortstr'],
  ['expiration', 'shortstr'],
  ['messageId', 'shortstr'],
  ['timestamp', 'timestamp'],
  ['type', 'shortstr'],
  ['userId', 'shortstr'],
  ['appId', 'shortstr'],
  ['clusterId', 'shortstr'],
];

function encode(p: BasicProperties, prefix = 0): Buffer {
  const w = new OutBuffer();
  for (let i = 0; i < prefix; i++) w.u8(0xaa);
  encodeBasicProperties(w, p);
  return Buffer.concat(w.take());
}

/** Reads the value of one property at offset `o`. */
function readAt(b: Buffer, o: number, type: (typeof ORDER)[number][1]): unknown {
  switch (type) {
    case 'shortstr':
      return b.toString('utf8', o + 1, o + 1 + b[o]!);
    case 'octet':
      return b[o];
    case 'timestamp':
      return readU64(b, o);
    case 'table':
      return decodeTable(b, o + 4, o + 4 + b.readUInt32BE(o));
  }
}

/** Inserts continuation flag words after the first flag word. */
function withContinuation(b: Buffer, at: number, extraWords: number[]): Buffer {
  const flags = b.readUInt16BE(at) | 1;
  const words = Buffer.alloc(2 + extraWords.length * 2);
  words.writeUInt16BE(flags, 0);
  extraWords.forEach((w, i) => {
    // every word but the last keeps the continuation bit set
    words.writeUInt16BE(i < extraWords.length - 1 ? w | 1 : w & 0xfffe, 2 + i * 2);
  });
  return Buffer.concat([b.subarray(0, at), words, b.subarray(at + 2)]);
}

// ---------------------------------------------------------------------------------------------

describe('basic properties', () => {
  it('any subset of the 14 properties round-trips', () => {
    fc.assert(
      fc.property(propsArb, fc.nat(8), (p, prefix) => {
        const b = encode(p, prefix);
        expect(decodeBasicProperties(b, prefix, b.length)).toStrictEqual(p);
      }),
      { numRuns: 400 },
    );
  });

  it('the flag word has one bit per present property, first property in bit 15', () => {
    const flags = Object.values(PropertyFlag);
    expect(flags).toEqual(ORDER.map((_, i) => 0x8000 >>> i));
    fc.assert(
      fc.property(propsArb, (p) => {
        const b = encode(p);
        let expected = 0;
        ORDER.forEach(([k], i) => {
          if (p[k] !== undefined) expected |= 0x8000 >>> i;
        });
        expect(b.readUInt16BE(0)).toBe(expected);
      }),
      { numRuns: 100 },
    );
  });

  it('no properties is just a zero flag word', () => {
    expect(encode({}).toString('hex')).toBe('0000');
    expect(decodeBasicProperties(Buffer.from([0, 0]), 0, 2)).toStrictEqual({});
  });

  it('a fixture: content-type, delivery-mode and expiration', () => {
    const b = encode({ contentType: 'text/plain', deliveryMode: 2, expiration: '60000' });
    expect(b.toString('hex')).toBe(
      `9100 0a${Buffer.from('text/plain').toString('hex')} 02 05${Buffer.from('60000').toString('hex')}`.replace(
        / /g,
        '',
      ),
    );
  });

  it('propertyOffset finds every present property (delivery-mode, priority, expiration, …) and -1 otherwise', () => {
    fc.assert(
      fc.property(propsArb, fc.nat(6), (p, prefix) => {
        const b = encode(p, prefix);
        ORDER.forEach(([key, type], i) => {
          const o = propertyOffset(b, prefix, i);
          if (p[key] === undefined) {
            expect(o, key).toBe(-1);
          } else {
            expect(readAt(b, o, type), key).toStrictEqual(p[key]);
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  it('PropertyIndex names the flag order', () => {
    expect(PropertyIndex.DELIVERY_MODE).toBe(3);
    expect(PropertyIndex.PRIORITY).toBe(4);
    expect(PropertyIndex.EXPIRATION).toBe(7);
    expect(Object.values(PropertyIndex)).toEqual(ORDER.map((_, i) => i));
  });

  it('continuation flag words are skipped by decode and propertyOffset', () => {
    fc.assert(
      fc.property(
        propsArb,
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 3 }),
        fc.nat(4),
        (p, extra, prefix) => {
          const b = withContinuation(encode(p, prefix), prefix, extra);
          expect(decodeBasicProperties(b, prefix, b.length)).toStrictEqual(p);
          for (const idx of [PropertyIndex.DELIVERY_MODE, PropertyIndex.PRIORITY, PropertyIndex.EXPIRATION]) {
            const [key, type] = ORDER[idx]!;
            const o = propertyOffset(b, prefix, idx);
            if (p[key] === undefined) expect(o).toBe(-1);
            else expect(readAt(b, o, type)).toStrictEqual(p[key]);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a property list cut short, or with extra bytes, throws', () => {
    const p: BasicProperties = {
      contentType: 'application/json',
      headers: { a: 1, b: [true, 'x'], c: { d: null } },
      deliveryMode: 2,
      priority: 9,
      expiration: '1000',
      timestamp: 1700000000,
      clusterId: 'c',
    };
    const b = encode(p);
    for (let cut = 0; cut < b.length; cut++) {
      const ok = (e: unknown): boolean => e instanceof RangeError || e instanceof TableError;
      let threw: unknown = null;
      try {
        decodeBasicProperties(b, 0, cut);
      } catch (e) {
        threw = e;
      }
      expect(threw !== null && ok(threw), `end ${cut}: ${String(threw)}`).toBe(true);
      threw = null;
      try {
        decodeBasicProperties(Buffer.from(b.subarray(0, cut)), 0, cut);
      } catch (e) {
        threw = e;
      }
      expect(threw !== null && ok(threw), `cut at ${cut}: ${String(threw)}`).toBe(true);
    }
    const longer = Buffer.concat([b, Buffer.from([0])]);
    expect(() => decodeBasicProperties(longer, 0, longer.length)).toThrow(RangeError);
  });

  it('random bytes only throw RangeError or TableError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (a) => {
        const b = Buffer.from(a);
        try {
          decodeBasicProperties(b, 0, b.length);
        } catch (e) {
          if (!(e instanceof RangeError || e instanceof TableError)) throw e;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
