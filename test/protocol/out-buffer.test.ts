import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameParser } from '../../src/protocol/frame-parser.js';
import { decodeConnectionSecure, encodeConnectionSecure } from '../../src/protocol/generated/methods.js';
import { EXTERNAL_MIN, FRAME_END, OutBuffer } from '../../src/protocol/out-buffer.js';

const all = (w: OutBuffer): Buffer => Buffer.concat(w.take());

/** Builds a frame independently of OutBuffer. */
function rawFrame(type: number, channel: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(7);
  h[0] = type;
  h.writeUInt16BE(channel, 1);
  h.writeUInt32BE(payload.length, 3);
  return Buffer.concat([h, payload, Buffer.from([0xce])]);
}

describe('OutBuffer primitives', () => {
  it('writes big-endian integers and strings', () => {
    const w = new OutBuffer();
    w.u8(0xab);
    w.u16(0x1234);
    w.u32(0xdeadbeef);
    w.u64(2 ** 53 - 1);
    w.u64(2 ** 32);
    w.shortstr('hé');
    w.longstr('hé');
    w.longstr(Buffer.from([1, 2]));
    w.shortbytes(Buffer.from([9]));
    w.bytes(Buffer.from('xyz'));
    expect(w.length).toBe(1 + 2 + 4 + 8 + 8 + 4 + 7 + 6 + 2 + 3);
    expect(all(w).toString('hex')).toBe(
      [
        'ab',
        '1234',
        'deadbeef',
        '001fffffffffffff',
        '0000000100000000',
        '0368c3a9',
        '0000000368c3a9',
        '000000020102',
        '0109',
        '78797a',
      ].join(''),
    );
    expect(w.length).toBe(0);
    expect(w.take()).toEqual([]);
  });

  it('u32 accepts negative numbers as their 32-bit pattern', () => {
    const w = new OutBuffer();
    w.u32(-1);
    expect(all(w).toString('hex')).toBe('ffffffff');
  });

  it('a shortstr of 255 UTF-8 bytes is accepted; 256 bytes throws RangeError (bytes, not characters)', () => {
    const w = new OutBuffer();
    w.shortstr('a'.repeat(255));
    const b = all(w);
    expect(b[0]).toBe(255);
    expect(b.length).toBe(256);
    expect(() => new OutBuffer().shortstr('a'.repeat(256))).toThrow(RangeError);
    expect(() => new OutBuffer().shortstr('é'.repeat(128))).toThrow(RangeError); // 128 chars, 256 bytes
    expect(() => new OutBuffer().shortstr('😀'.repeat(64))).toThrow(RangeError); // 128 code units, 256 bytes
    expect(() => new OutBuffer().shortbytes(Buffer.alloc(256))).toThrow(RangeError);
    const v = new OutBuffer();
    v.shortstr(`${'é'.repeat(127)}a`);
    expect(all(v)[0]).toBe(255);
  });

  it('a failed shortstr leaves nothing written', () => {
    const w = new OutBuffer();
    w.u8(1);
    expect(() => w.shortstr('x'.repeat(300))).toThrow(RangeError);
    w.u8(2);
    expect(all(w).toString('hex')).toBe('0102');
  });
});

describe('OutBuffer frames', () => {
  it('frames written then taken concatenate to the expected bytes', () => {
    const w = new OutBuffer();
    let at = w.beginFrame(1, 5);
    w.u32(0x000a0032);
    w.u16(200);
    w.shortstr('ok');
    w.u16(0);
    w.u16(0);
    w.endFrame(at);
    at = w.beginFrame(8, 0);
    w.endFrame(at);
    w.bodyFrame(7, Buffer.from('--hello--'), 2, 5);
    const expected = Buffer.concat([
      rawFrame(1, 5, Buffer.from('000a003200c8026f6b00000000', 'hex')),
      rawFrame(8, 0, Buffer.alloc(0)),
      rawFrame(3, 7, Buffer.from('hello')),
    ]);
    expect(all(w).equals(expected)).toBe(true);
  });

  it('a frame an encoder threw in is dropped whole; frames before it stay', () => {
    const w = new OutBuffer();
    w.endFrame(w.beginFrame(8, 0));
    const at = w.beginFrame(1, 1);
    w.u32(0x003c003c);
    expect(() => w.shortstr('k'.repeat(300))).toThrow(RangeError);
    w.abandonFrame();
    // nothing open now: a second call changes nothing
    w.abandonFrame();
    w.endFrame(w.beginFrame(8, 0));
    void at;
    expect(
      all(w).equals(Buffer.concat([rawFrame(8, 0, Buffer.alloc(0)), rawFrame(8, 0, Buffer.alloc(0))])),
    ).toBe(true);
  });

  it('channel numbers use both octets', () => {
    const w = new OutBuffer();
    w.endFrame(w.beginFrame(1, 0xabcd));
    expect(all(w).toString('hex')).toBe('01abcd00000000ce');
  });

  it(`a body of at least EXTERNAL_MIN (${EXTERNAL_MIN}) bytes is chained as its own chunk, not copied`, () => {
    const body = Buffer.alloc(EXTERNAL_MIN, 1);
    const w = new OutBuffer();
    w.endFrame(w.beginFrame(8, 0));
    w.bodyFrame(3, body, 0, body.length);
    const chunks = w.take();
    expect(chunks.some((c) => c === body)).toBe(true);
    expect(
      Buffer.concat(chunks).equals(Buffer.concat([rawFrame(8, 0, Buffer.alloc(0)), rawFrame(3, 3, body)])),
    ).toBe(true);
  });

  it('a large slice of a body is chained as a view of the same memory', () => {
    const body = Buffer.alloc(3 * EXTERNAL_MIN);
    for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
    const w = new OutBuffer();
    w.bodyFrame(1, body, 100, 2 * EXTERNAL_MIN);
    const chunks = w.take();
    const view = chunks.find((c) => c.length === 2 * EXTERNAL_MIN)!;
    expect(view.buffer).toBe(body.buffer);
    expect(view.byteOffset).toBe(body.byteOffset + 100);
    expect(Buffer.concat(chunks).equals(rawFrame(3, 1, body.subarray(100, 100 + 2 * EXTERNAL_MIN)))).toBe(
      true,
    );
  });

  it('a body just below EXTERNAL_MIN is copied', () => {
    const body = Buffer.alloc(EXTERNAL_MIN - 1, 2);
    const w = new OutBuffer();
    w.bodyFrame(1, body, 0, body.length);
    const chunks = w.take();
    expect(chunks.some((c) => c === body)).toBe(false);
    body.fill(0); // the copy is unaffected
    expect(Buffer.concat(chunks).equals(rawFrame(3, 1, Buffer.alloc(EXTERNAL_MIN - 1, 2)))).toBe(true);
  });

  it('a frame larger than the slab (200 KB longstr) is still correct after the buffer grows mid-frame', () => {
    const big = Buffer.alloc(200 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const w = new OutBuffer();
    // fill part of the first slab so the growth happens with live bytes before the frame
    for (let i = 0; i < 100; i++) encodeConnectionSecure(w, 0, { challenge: Buffer.from(`c${i}`) });
    encodeConnectionSecure(w, 9, { challenge: big });
    w.endFrame(w.beginFrame(8, 0));
    const out = all(w);
    const frames: { type: number; channel: number; payload: Buffer }[] = [];
    const p = new FrameParser(
      {
        onFrame: (type, channel, buf, off, len) =>
          frames.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) }),
      },
      1 << 20,
    );
    p.push(out);
    expect(frames.length).toBe(102);
    const f = frames[100]!;
    expect(f.channel).toBe(9);
    expect(f.payload.length).toBe(4 + 4 + big.length);
    expect(decodeConnectionSecure(f.payload, 4, f.payload.length).challenge.equals(big)).toBe(true);
    expect(frames[99]!.payload.subarray(8).toString()).toBe('c99');
    expect(frames[101]!.type).toBe(8);
  });

  it('chunks already taken are never overwritten by later writes', () => {
    const w = new OutBuffer();
    const taken: { chunk: Buffer; copy: Buffer }[] = [];
    for (let i = 0; i < 2000; i++) {
      const at = w.beginFrame(1, i & 0xffff);
      w.longstr(Buffer.alloc(i % 300, i & 0xff));
      w.endFrame(at);
      if (i % 7 === 0) for (const c of w.take()) taken.push({ chunk: c, copy: Buffer.from(c) });
    }
    for (const c of w.take()) taken.push({ chunk: c, copy: Buffer.from(c) });
    for (const t of taken) expect(t.chunk.equals(t.copy)).toBe(true);
  });

  it('random sequences of writes and takes match a simple model (fast-check)', () => {
    type Op =
      | { k: 'u8'; v: number }
      | { k: 'u16'; v: number }
      | { k: 'u32'; v: number }
      | { k: 'u64'; v: number }
      | { k: 'shortstr'; v: string }
      | { k: 'longstr'; v: Buffer }
      | { k: 'bytes'; v: Buffer }
      | { k: 'frame'; type: number; channel: number; v: Buffer }
      | { k: 'body'; channel: number; v: Buffer; off: number; len: number }
      | { k: 'take' };
    const sized = fc.oneof(
      { weight: 6, arbitrary: fc.nat(200) },
      { weight: 2, arbitrary: fc.integer({ min: EXTERNAL_MIN - 2, max: EXTERNAL_MIN + 2 }) },
      { weight: 1, arbitrary: fc.integer({ min: 30_000, max: 140_000 }) },
    );
    const buf = sized.map((n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = (i * 13 + n) & 0xff;
      return b;
    });
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.nat(255).map((v) => ({ k: 'u8' as const, v })),
      fc.nat(65535).map((v) => ({ k: 'u16' as const, v })),
      fc.nat(0xffffffff).map((v) => ({ k: 'u32' as const, v })),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map((v) => ({ k: 'u64' as const, v })),
      fc.string({ maxLength: 60 }).map((v) => ({ k: 'shortstr' as const, v })),
      buf.map((v) => ({ k: 'longstr' as const, v })),
      buf.map((v) => ({ k: 'bytes' as const, v })),
      fc
        .record({ type: fc.constantFrom(1, 2, 8), channel: fc.nat(65535), v: buf })
        .map((r) => ({ k: 'frame' as const, ...r })),
      fc.record({ channel: fc.nat(65535), v: buf, a: fc.nat(), b: fc.nat() }).map(({ channel, v, a, b }) => {
        const off = v.length === 0 ? 0 : a % (v.length + 1);
        const len = b % (v.length - off + 1);
        return { k: 'body' as const, channel, v, off, len };
      }),
      fc.constant({ k: 'take' as const }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const w = new OutBuffer();
        const model: Buffer[] = [];
        const got: { chunk: Buffer; copy: Buffer }[] = [];
        const take = (): void => {
          for (const c of w.take()) got.push({ chunk: c, copy: Buffer.from(c) });
        };
        for (const o of ops) {
          const t = Buffer.alloc(8);
          switch (o.k) {
            case 'u8':
              w.u8(o.v);
              model.push(Buffer.from([o.v]));
              break;
            case 'u16':
              w.u16(o.v);
              t.writeUInt16BE(o.v);
              model.push(t.subarray(0, 2));
              break;
            case 'u32':
              w.u32(o.v);
              t.writeUInt32BE(o.v);
              model.push(t.subarray(0, 4));
              break;
            case 'u64':
              w.u64(o.v);
              t.writeBigUInt64BE(BigInt(o.v));
              model.push(t);
              break;
            case 'shortstr': {
              const s = Buffer.from(o.v, 'utf8');
              w.shortstr(o.v);
              model.push(Buffer.from([s.length]), s);
              break;
            }
            case 'longstr':
              w.longstr(o.v);
              t.writeUInt32BE(o.v.length);
              model.push(t.subarray(0, 4), o.v);
              break;
            case 'bytes':
              w.bytes(o.v);
              model.push(o.v);
              break;
            case 'frame': {
              const at = w.beginFrame(o.type, o.channel);
              w.bytes(o.v);
              w.endFrame(at);
              model.push(rawFrame(o.type, o.channel, o.v));
              break;
            }
            case 'body':
              w.bodyFrame(o.channel, o.v, o.off, o.len);
              model.push(rawFrame(3, o.channel, o.v.subarray(o.off, o.off + o.len)));
              break;
            case 'take':
              take();
              expect(w.length).toBe(0);
              break;
          }
        }
        const expected = Buffer.concat(model);
        const pendingBeforeTake = w.length;
        take();
        const total = got.reduce((n, g) => n + g.chunk.length, 0);
        expect(total).toBe(expected.length);
        expect(Buffer.concat(got.map((g) => g.chunk)).equals(expected)).toBe(true);
        // nothing handed out earlier was overwritten later
        for (const g of got) expect(g.chunk.equals(g.copy)).toBe(true);
        expect(pendingBeforeTake).toBeLessThanOrEqual(expected.length);
      }),
      { numRuns: 200 },
    );
  });

  it('FRAME_END is 0xCE', () => {
    expect(FRAME_END).toBe(0xce);
  });
});
