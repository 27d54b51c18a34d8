import { describe, expect, it } from 'vitest';
import {
  headersMatch,
  validateXMatch,
  valueEquals,
  xMatchMode,
} from '../../src/core/exchange/headers-match.js';
import { Decimal, type FieldTable, type FieldValue, Typed } from '../../src/protocol/field-table.js';

type Case = readonly [name: string, args: FieldTable, headers: FieldTable | undefined, expected: boolean];

const cases: Case[] = [
  // x-match all (the default)
  ['all: every key present and equal', { 'x-match': 'all', a: 1, b: 'x' }, { a: 1, b: 'x', c: true }, true],
  ['all: default mode when x-match is absent', { a: 1, b: 'x' }, { a: 1, b: 'x' }, true],
  ['all: one key missing', { a: 1, b: 'x' }, { a: 1 }, false],
  ['all: one value differs', { 'x-match': 'all', a: 1, b: 'x' }, { a: 1, b: 'y' }, false],
  ['all: no keys matches everything', { 'x-match': 'all' }, { a: 1 }, true],
  ['all: no keys matches a message without headers', {}, undefined, true],
  ['all: a key against no headers', { a: 1 }, undefined, false],
  ['all: x- keys are ignored', { 'x-match': 'all', 'x-foo': 'bar', a: 1 }, { a: 1 }, true],
  ['all: only x- keys matches everything', { 'x-foo': 'bar' }, {}, true],
  ['all: x- header is not compared', { 'x-foo': 'bar' }, { 'x-foo': 'baz' }, true],
  ['all: an unknown x-match value falls back to all', { 'x-match': 'foo', a: 1, b: 2 }, { a: 1 }, false],
  ['all: typed x-match string', { 'x-match': new Typed('S', 'any'), a: 1, b: 2 }, { a: 1 }, true],
  // x-match any
  ['any: one key matches', { 'x-match': 'any', a: 1, b: 2 }, { a: 1, b: 3 }, true],
  ['any: none match', { 'x-match': 'any', a: 1, b: 2 }, { a: 2, c: 2 }, false],
  ['any: no keys matches nothing', { 'x-match': 'any' }, { a: 1 }, false],
  ['any: no keys, no headers', { 'x-match': 'any' }, undefined, false],
  ['any: only x- keys matches nothing', { 'x-match': 'any', 'x-a': 1 }, { 'x-a': 1 }, false],
  ['any: x- key equal is not a match', { 'x-match': 'any', 'x-a': 1, b: 2 }, { 'x-a': 1 }, false],
  // the -with-x modes
  ['all-with-x: x- keys must match', { 'x-match': 'all-with-x', 'x-a': 1, b: 2 }, { 'x-a': 1, b: 2 }, true],
  ['all-with-x: x- key differs', { 'x-match': 'all-with-x', 'x-a': 1, b: 2 }, { 'x-a': 9, b: 2 }, false],
  ['all-with-x: x- key missing', { 'x-match': 'all-with-x', 'x-a': 1 }, {}, false],
  ['all-with-x: x-match itself is never compared', { 'x-match': 'all-with-x' }, {}, true],
  ['any-with-x: an x- key matches', { 'x-match': 'any-with-x', 'x-a': 1, b: 2 }, { 'x-a': 1 }, true],
  ['any-with-x: nothing matches', { 'x-match': 'any-with-x', 'x-a': 1 }, { 'x-a': 2 }, false],
  [
    'any-with-x: x-match header is not a match',
    { 'x-match': 'any-with-x' },
    { 'x-match': 'any-with-x' },
    false,
  ],
  // void binding values test presence
  ['void: present with any value', { a: null }, { a: 'whatever' }, true],
  ['void: present with a void value', { a: null }, { a: null }, true],
  ['void: typed void', { a: new Typed('V', null) }, { a: 5 }, true],
  ['void: absent', { a: null }, { b: 1 }, false],
  ['void: any with one present', { 'x-match': 'any', a: null, b: null }, { b: 0 }, true],
  ['void header vs a non-void binding value', { a: 1 }, { a: null }, false],
  ['undefined binding value is no key at all', { a: undefined, b: 1 }, { b: 1 }, true],
  ['undefined header value is no header', { a: null }, { a: undefined }, false],
  // values: compared by value, not by wire type
  ['int vs long of the same value', { a: new Typed('I', 7) }, { a: new Typed('l', 7) }, true],
  ['byte vs unsignedint', { a: new Typed('b', 7) }, { a: new Typed('i', 7) }, true],
  ['number vs bigint', { a: 5 }, { a: 5n }, true],
  ['bigint vs bigint', { a: 2n ** 60n }, { a: 2n ** 60n }, true],
  ['bigint beyond 2^53 vs the nearest double', { a: 2n ** 53n + 1n }, { a: 2 ** 53 + 1 }, false],
  ['int vs double 1.0', { a: new Typed('I', 1) }, { a: new Typed('d', 1) }, true],
  ['double vs double', { a: 1.5 }, { a: 1.5 }, true],
  ['number vs numeric string', { a: 1 }, { a: '1' }, false],
  ['bool vs bool', { a: true }, { a: true }, true],
  ['bool vs different bool', { a: true }, { a: false }, false],
  ['bool vs string', { a: true }, { a: 'true' }, false],
  ['bool vs 1', { a: true }, { a: 1 }, false],
  ['string vs byte array with the same bytes', { a: 'héllo' }, { a: Buffer.from('héllo') }, true],
  ['byte arrays by bytes', { a: Buffer.from([1, 2]) }, { a: Buffer.from([1, 2]) }, true],
  ['byte arrays differ', { a: Buffer.from([1, 2]) }, { a: Buffer.from([1, 3]) }, false],
  ['string case matters', { a: 'Abc' }, { a: 'abc' }, false],
  ['dates by their seconds', { a: new Date(1_700_000_000_000) }, { a: new Date(1_700_000_000_400) }, true],
  ['dates differ', { a: new Date(1_700_000_000_000) }, { a: new Date(1_700_000_001_000) }, false],
  ['typed timestamp vs date', { a: new Typed('T', 1_700_000_000) }, { a: new Date(1_700_000_000_000) }, true],
  ['decimal vs decimal', { a: new Decimal(2, 150) }, { a: new Decimal(2, 150) }, true],
  ['decimal scale matters', { a: new Decimal(1, 5) }, { a: new Decimal(2, 5) }, false],
  ['decimal is not numeric equality', { a: new Decimal(1, 15) }, { a: new Decimal(2, 150) }, false],
  ['decimal vs number', { a: new Decimal(0, 1) }, { a: 1 }, false],
  // nested values
  ['arrays equal', { a: [1, 'x', [true]] }, { a: [1, 'x', [true]] }, true],
  ['arrays differ in length', { a: [1, 2] }, { a: [1, 2, 3] }, false],
  ['arrays differ in order', { a: [1, 2] }, { a: [2, 1] }, false],
  ['array vs table', { a: [] }, { a: {} }, false],
  ['tables equal in any key order', { a: { x: 1, y: { z: 'q' } } }, { a: { y: { z: 'q' }, x: 1 } }, true],
  ['tables differ in a nested value', { a: { x: 1, y: { z: 'q' } } }, { a: { x: 1, y: { z: 'r' } } }, false],
  ['table with an extra key', { a: { x: 1 } }, { a: { x: 1, y: 2 } }, false],
  ['table vs string', { a: { x: 1 } }, { a: 'x' }, false],
  // keys that look like Object.prototype members are data
  ['a header named __proto__ is only matched when present', { ['__proto__']: null } as FieldTable, {}, false],
  ['constructor key absent', { constructor: null } as FieldTable, {}, false],
  ['constructor key present', { constructor: 'c' } as FieldTable, { constructor: 'c' } as FieldTable, true],
];

describe('headersMatch', () => {
  it.each(cases)('%s', (_name, args, headers, expected) => {
    expect(headersMatch(args, headers)).toBe(expected);
  });

  it('treats a __proto__ own header as a header', () => {
    const args: FieldTable = {};
    Object.defineProperty(args, '__proto__', {
      value: 1,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    const headers: FieldTable = {};
    expect(headersMatch(args, headers)).toBe(false);
    Object.defineProperty(headers, '__proto__', {
      value: 1,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    expect(headersMatch(args, headers)).toBe(true);
  });
});

describe('xMatchMode', () => {
  it.each([
    [{}, 'all'],
    [{ 'x-match': 'all' }, 'all'],
    [{ 'x-match': 'any' }, 'any'],
    [{ 'x-match': 'all-with-x' }, 'all-with-x'],
    [{ 'x-match': 'any-with-x' }, 'any-with-x'],
    [{ 'x-match': 'ANY' }, 'all'],
    [{ 'x-match': 1 }, 'all'],
    [{ 'x-match': new Typed('S', 'any') }, 'any'],
    [{ 'x-match': new Typed('S', Buffer.from('any-with-x')) }, 'any-with-x'],
    [{ 'x-match': Buffer.from('any') }, 'all'],
  ] as [FieldTable, string][])('%j → %s', (args, mode) => {
    expect(xMatchMode(args)).toBe(mode);
  });
});

describe('validateXMatch', () => {
  it.each([
    [{}, null],
    [{ a: 1 }, null],
    [{ 'x-match': 'all' }, null],
    [{ 'x-match': 'any' }, null],
    [{ 'x-match': 'all-with-x' }, null],
    [{ 'x-match': new Typed('S', 'any-with-x') }, null],
    [{ 'x-match': new Typed('S', Buffer.from('any')) }, null],
    [
      { 'x-match': 'bogus' },
      'Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x',
    ],
    [{ 'x-match': '' }, 'Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x'],
    [
      { 'x-match': 'ALL' },
      'Invalid x-match field value <<"ALL">>; expected all, any, all-with-x, or any-with-x',
    ],
    [
      { 'x-match': 'a"b' },
      'Invalid x-match field value <<"a\\"b">>; expected all, any, all-with-x, or any-with-x',
    ],
    [
      { 'x-match': 'é' },
      'Invalid x-match field value <<"é"/utf8>>; expected all, any, all-with-x, or any-with-x',
    ],
    [{ 'x-match': new Typed('b', 1) }, 'Invalid x-match field type byte (value 1); expected longstr'],
    [{ 'x-match': 1 }, 'Invalid x-match field type signedint (value 1); expected longstr'],
    [{ 'x-match': true }, 'Invalid x-match field type bool (value true); expected longstr'],
    [{ 'x-match': null }, 'Invalid x-match field type void (value undefined); expected longstr'],
    [{ 'x-match': 1.5 }, 'Invalid x-match field type double (value 1.5); expected longstr'],
    [
      { 'x-match': Buffer.from('all') },
      'Invalid x-match field type binary (value <<"all">>); expected longstr',
    ],
    [
      { 'x-match': Buffer.from([0, 255]) },
      'Invalid x-match field type binary (value <<0,255>>); expected longstr',
    ],
    [{ 'x-match': new Decimal(2, 5) }, 'Invalid x-match field type decimal (value {2,5}); expected longstr'],
    [
      { 'x-match': ['all'] },
      'Invalid x-match field type array (value [{longstr,<<"all">>}]); expected longstr',
    ],
    [
      { 'x-match': { k: 1 } },
      'Invalid x-match field type table (value [{<<"k">>,signedint,1}]); expected longstr',
    ],
  ] as [FieldTable, string | null][])('%j', (args, error) => {
    expect(validateXMatch(args)).toBe(error);
  });
});

describe('valueEquals', () => {
  it('is symmetric over a mixed bag of values', () => {
    const vals: FieldValue[] = [
      null,
      0,
      1,
      1n,
      1.5,
      'a',
      Buffer.from('a'),
      true,
      false,
      new Date(1000),
      new Decimal(1, 1),
      [1],
      [1n],
      { a: 1 },
      { a: 1n },
      new Typed('l', 1),
      new Typed('V', null),
    ];
    for (const a of vals) for (const b of vals) expect(valueEquals(a, b)).toBe(valueEquals(b, a));
    expect(valueEquals([1], [1n])).toBe(true);
    expect(valueEquals({ a: 1 }, { a: new Typed('l', 1n) })).toBe(true);
    expect(valueEquals(new Date(1000), 1)).toBe(true);
  });
});
