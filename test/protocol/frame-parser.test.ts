import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameError, FrameParser, type FrameSink } from '../../src/protocol/frame-parser.js';
import { encodeMethod, type MethodArgs } from '../../src/protocol/generated/methods.js';
import { encodeBasicProperties } from '../../src/protocol/generated/properties.js';
import { Method } from '../../src/protocol/generated/spec.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';

interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

/** Serializes a frame independently of OutBuffer. */
function raw(f: Frame, end = 0xce): Buffer {
  const h = Buffer.alloc(7);
  h[0] = f.type;
  h.writeUInt16BE(f.channel, 1);
  h.writeUInt32BE(f.payload.length, 3);
  return Buffer.concat([h, f.payload, Buffer.from([end])]);
}

function methodFrame(channel: number, id: number, args: object): Frame {
  const w = new OutBuffer();
  encodeMethod(w, channel, id, args as MethodArgs);
  const b = Buffer.concat(w.take());
  return { type: 1, channel, payload: Buffer.from(b.subarray(7, b.length - 1)) };
}

function headerFrame(channel: number, bodySize: number): Frame {
  const w = new OutBuffer();
  w.u16(60);
  w.u16(0);
  w.u64(bodySize);
  encodeBasicProperties(w, { contentType: 'text/plain', deliveryMode: 2, headers: { n: 1 } });
  return { type: 2, channel, payload: Buffer.concat(w.take()) };
}

const body = (channel: number, payload: Buffer): Frame => ({ type: 3, channel, payload });
const HEARTBEAT: Frame = { type: 8, channel: 0, payload: Buffer.alloc(0) };

/** A few hundred bytes: methods, a header, small and empty bodies, heartbeats. */
const SMALL: Frame[] = [
  methodFrame(0, Method.CONNECTION_TUNE_OK, { channelMax: 2047, frameMax: 131072, heartbeat: 60 }),
  methodFrame(0, Method.CONNECTION_OPEN, { virtualHost: '/' }),
  methodFrame(1, Method.CHANNEL_OPEN, {}),
  HEARTBEAT,
  methodFrame(1, Method.BASIC_PUBLISH, { exchange: 'amq.topic', routingKey: 'a.b.c', mandatory: true }),
  headerFrame(1, 11),
  body(1, Buffer.from('hello')),
  body(1, Buffer.alloc(0)),
  body(1, Buffer.from(' world')),
  methodFrame(1, Method.BASIC_ACK, { deliveryTag: 2 ** 40, multiple: true }),
  HEARTBEAT,
  methodFrame(65535, Method.CHANNEL_CLOSE, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }),
];

const BIG_BODY = Buffer.alloc(100 * 1024);
for (let i = 0; i < BIG_BODY.length; i++) BIG_BODY[i] = (i * 31 + (i >> 8)) & 0xff;

/** The small stream plus a 100 KB body and more frames after it. */
const BIG: Frame[] = [
  ...SMALL,
  methodFrame(2, Method.BASIC_PUBLISH, { exchange: '', routingKey: 'q' }),
  headerFrame(2, BIG_BODY.length + 3),
  body(2, BIG_BODY),
  body(2, Buffer.from('end')),
  HEARTBEAT,
  methodFrame(2, Method.BASIC_NACK, { deliveryTag: 7, multiple: false, requeue: true }),
];

const FRAME_MAX = 131072;
const streamOf = (frames: Frame[]): Buffer => Buffer.concat(frames.map((f) => raw(f)));
const SMALL_STREAM = streamOf(SMALL);
const BIG_STREAM = streamOf(BIG);

/** Feeds the chunks and returns the frames seen (payloads copied) and what was thrown, if anything. */
function run(chunks: Buffer[], frameMax = FRAME_MAX): { frames: Frame[]; error: unknown } {
  const frames: Frame[] = [];
  const parser = new FrameParser(
    {
      onFrame(type, channel, buf, off, len) {
        frames.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) });
      },
    },
    frameMax,
  );
  try {
    for (const c of chunks) parser.push(c);
  } catch (e) {
    return { frames, error: e };
  }
  return { frames, error: null };
}

/**
 * As run(), with a sink that takes body pieces (as the broker's connections do). Pieces are
 * copied and joined back into frames using the expected frames' payload sizes; `pieces` counts
 * how many body frames arrived in more than one piece, `bodyBytes` every body byte handed over.
 */
function runPieces(
  chunks: Buffer[],
  expected: Frame[],
  frameMax = FRAME_MAX,
): { frames: Frame[]; error: unknown; split: number; bodyBytes: number } {
  const frames: Frame[] = [];
  let acc: Buffer[] = [];
  let accLen = 0;
  let split = 0;
  let bodyBytes = 0;
  const parser = new FrameParser(
    {
      onFrame(type, channel, buf, off, len) {
        if (type === 3) bodyBytes += len;
        frames.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) });
      },
      onBodyPiece(channel, buf, off, len) {
        bodyBytes += len;
        acc.push(Buffer.from(buf.subarray(off, off + len)));
        accLen += len;
        const want = expected[frames.length];
        if (want === undefined || accLen >= want.payload.length) {
          if (acc.length > 1) split++;
          frames.push({ type: 3, channel, payload: Buffer.concat(acc) });
          acc = [];
          accLen = 0;
        }
      },
    },
    frameMax,
  );
  try {
    for (const c of chunks) parser.push(c);
  } catch (e) {
    return { frames, error: e, split, bodyBytes };
  }
  return { frames, error: null, split, bodyBytes };
}

/** Splits a buffer at the given (sorted, deduplicated) offsets. */
function splitAt(b: Buffer, points: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...new Set(points)].sort((x, y) => x - y)) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
}

function expectFrames(actual: Frame[], expected: Frame[], what: string): void {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (a.type !== e.type || a.channel !== e.channel || !a.payload.equals(e.payload)) {
      expect(a, `${what}: frame ${i}`).toEqual(e);
    }
  }
}

/** Offsets at which each frame of a stream starts (and the stream's end). */
function boundaries(frames: Frame[]): number[] {
  const out = [0];
  for (const f of frames) out.push(out[out.length - 1]! + f.payload.length + 8);
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('frame parser: identical frames for every split of a recorded stream', () => {
  it('the small stream is a few hundred bytes and parses whole', () => {
    expect(SMALL_STREAM.length).toBeGreaterThan(200);
    expect(SMALL_STREAM.length).toBeLessThan(1000);
    const r = run([SMALL_STREAM]);
    expect(r.error).toBeNull();
    expectFrames(r.frames, SMALL, 'whole');
  });

  it('small stream: every single split point into two chunks', () => {
    for (let i = 0; i <= SMALL_STREAM.length; i++) {
      const r = run(splitAt(SMALL_STREAM, [i]));
      expect(r.error).toBeNull();
      expectFrames(r.frames, SMALL, `split at ${i}`);
    }
  });

  it('small stream: every pair of split points into three chunks', () => {
    const n = SMALL_STREAM.length;
    for (let i = 0; i <= n; i++) {
      for (let j = i; j <= n; j++) {
        const r = run([SMALL_STREAM.subarray(0, i), SMALL_STREAM.subarray(i, j), SMALL_STREAM.subarray(j)]);
        if (r.error !== null || r.frames.length !== SMALL.length) expect(r.error, `${i}/${j}`).toBeNull();
        expectFrames(r.frames, SMALL, `split at ${i} and ${j}`);
      }
    }
  });

  it('small stream: byte by byte, and with empty chunks in between', () => {
    const bytes = [...SMALL_STREAM].map((_, i) => SMALL_STREAM.subarray(i, i + 1));
    expectFrames(run(bytes).frames, SMALL, 'byte by byte');
    const withEmpty = bytes.flatMap((b) => [Buffer.alloc(0), b]);
    expectFrames(run(withEmpty).frames, SMALL, 'with empty chunks');
  });

  it('big stream (100 KB body): whole, byte by byte, and at sampled split points', () => {
    expectFrames(run([BIG_STREAM]).frames, BIG, 'whole');
    const bytes: Buffer[] = [];
    for (let i = 0; i < BIG_STREAM.length; i++) bytes.push(BIG_STREAM.subarray(i, i + 1));
    expectFrames(run(bytes).frames, BIG, 'byte by byte');
    // every point within 9 bytes of a frame boundary, plus evenly spread points
    const points = new Set<number>();
    for (const b of boundaries(BIG)) for (let d = -9; d <= 9; d++) points.add(b + d);
    for (let p = 0; p < BIG_STREAM.length; p += 997) points.add(p);
    for (const p of points) {
      if (p < 0 || p > BIG_STREAM.length) continue;
      expectFrames(run(splitAt(BIG_STREAM, [p])).frames, BIG, `split at ${p}`);
    }
  });

  it('random multi-splits (fast-check) give the same frames', () => {
    for (const [stream, frames] of [
      [SMALL_STREAM, SMALL],
      [BIG_STREAM, BIG],
    ] as const) {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }), (points) => {
          const r = run(splitAt(stream, points));
          expect(r.error).toBeNull();
          expectFrames(r.frames, frames, `split at ${points.join(',')}`);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('keeps no reference to a pushed chunk after push returns', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: SMALL_STREAM.length }), { maxLength: 30 }), (points) => {
        const chunks = splitAt(SMALL_STREAM, points).map((c) => Buffer.from(c));
        const frames: Frame[] = [];
        const p = new FrameParser(
          {
            onFrame(type, channel, buf, off, len) {
              frames.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) });
            },
          },
          FRAME_MAX,
        );
        for (const c of chunks) {
          p.push(c);
          c.fill(0x55); // the socket reuses its buffer
        }
        expectFrames(frames, SMALL, 'with reused chunk buffers');
      }),
      { numRuns: 200 },
    );
  });

  it('a frame lying whole inside a chunk is handed over in place', () => {
    const seen: { buf: Buffer; off: number }[] = [];
    const p = new FrameParser(
      {
        onFrame(_t, _c, buf, off) {
          seen.push({ buf, off });
        },
      },
      FRAME_MAX,
    );
    p.push(SMALL_STREAM);
    expect(seen.length).toBe(SMALL.length);
    expect(seen.every((s) => s.buf === SMALL_STREAM)).toBe(true);
    expect(seen.map((s) => s.off)).toEqual(
      boundaries(SMALL)
        .slice(0, -1)
        .map((b) => b + 7),
    );
  });

  it('stopped = true from the sink stops delivery for the rest of the chunk and after', () => {
    let count = 0;
    const p: FrameParser = new FrameParser(
      {
        onFrame() {
          count += 1;
          if (count === 3) p.stopped = true;
        },
      },
      FRAME_MAX,
    );
    p.push(SMALL_STREAM);
    expect(count).toBe(3);
    p.push(SMALL_STREAM);
    expect(count).toBe(3);
  });
});

describe('frame parser: body frames handed over in pieces', () => {
  it('big stream: whole, byte by byte, and at sampled split points, the pieces join into the same frames', () => {
    expectFrames(runPieces([BIG_STREAM], BIG).frames, BIG, 'whole');
    const bytes: Buffer[] = [];
    for (let i = 0; i < BIG_STREAM.length; i++) bytes.push(BIG_STREAM.subarray(i, i + 1));
    const r = runPieces(bytes, BIG);
    expect(r.error).toBeNull();
    expectFrames(r.frames, BIG, 'byte by byte');
    expect(r.split).toBeGreaterThan(0);
    const points = new Set<number>();
    for (const b of boundaries(BIG)) for (let d = -9; d <= 9; d++) points.add(b + d);
    for (let p = 0; p < BIG_STREAM.length; p += 997) points.add(p);
    for (const p of points) {
      if (p < 0 || p > BIG_STREAM.length) continue;
      const one = runPieces(splitAt(BIG_STREAM, [p]), BIG);
      expect(one.error, `split at ${p}`).toBeNull();
      expectFrames(one.frames, BIG, `split at ${p}`);
    }
  });

  it('random multi-splits (fast-check), with the socket reusing its buffers, give the same frames', () => {
    for (const [stream, frames] of [
      [SMALL_STREAM, SMALL],
      [BIG_STREAM, BIG],
    ] as const) {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }), (points) => {
          const chunks = splitAt(stream, points).map((c) => Buffer.from(c));
          const got: Frame[] = [];
          let acc: Buffer[] = [];
          const p = new FrameParser(
            {
              onFrame(type, channel, buf, off, len) {
                got.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) });
              },
              onBodyPiece(channel, buf, off, len) {
                acc.push(Buffer.from(buf.subarray(off, off + len)));
                const joined = Buffer.concat(acc);
                if (joined.length >= frames[got.length]!.payload.length) {
                  got.push({ type: 3, channel, payload: joined });
                  acc = [];
                }
              },
            },
            FRAME_MAX,
          );
          for (const c of chunks) {
            p.push(c);
            c.fill(0x55);
          }
          expectFrames(got, frames, `split at ${points.join(',')}`);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('pieces are views into the pushed chunks, not copies', () => {
    const i = BIG.findIndex((f) => f.payload === BIG_BODY);
    const start = boundaries(BIG)[i]!;
    const chunks = splitAt(BIG_STREAM, [start + 1000, start + 50_000, start + 90_000]);
    const seen: Buffer[] = [];
    const p = new FrameParser(
      {
        onFrame() {},
        onBodyPiece(_c, buf) {
          seen.push(buf);
        },
      },
      FRAME_MAX,
    );
    for (const c of chunks) p.push(c);
    // the body starts in the first chunk and ends in the fourth: one piece from each
    expect(seen.length).toBe(4);
    expect(seen.every((b, k) => b === chunks[k])).toBe(true);
  });

  it('a bad end octet after a streamed body is a FrameError, and the body is never completed', () => {
    const i = BIG.findIndex((f) => f.payload === BIG_BODY);
    const stream = Buffer.concat(BIG.map((f, k) => raw(f, k === i ? 0x00 : 0xce)));
    const start = boundaries(BIG)[i]!;
    const end = boundaries(BIG)[i + 1]!;
    const before = BIG.slice(0, i).reduce((n, f) => n + (f.type === 3 ? f.payload.length : 0), 0);
    for (const p of [start + 5, start + 9, start + 20_000, end - 9, end - 2, end - 1, end]) {
      const r = runPieces(splitAt(stream, [p]), BIG);
      expect(r.error, `split at ${p}`).toBeInstanceOf(FrameError);
      expectFrames(r.frames.slice(0, i), BIG.slice(0, i), `split at ${p}`);
      // of the broken frame, fewer bytes than its payload were handed over
      expect(r.bodyBytes - before, `split at ${p}`).toBeLessThan(BIG_BODY.length);
    }
  });

  it('stopped = true from the sink stops a streamed body too', () => {
    let pieces = 0;
    const p: FrameParser = new FrameParser(
      {
        onFrame() {},
        onBodyPiece() {
          pieces++;
          p.stopped = true;
        },
      },
      FRAME_MAX,
    );
    const i = BIG.findIndex((f) => f.payload === BIG_BODY);
    const start = boundaries(BIG)[i]!;
    for (const c of splitAt(BIG_STREAM, [start + 100, start + 200, start + 300])) p.push(c);
    expect(pieces).toBe(1);
  });
});

describe('frame parser: framing faults', () => {
  it('a bad frame end throws FrameError after the frames before it, at every split point', () => {
    const k = 5;
    const stream = Buffer.concat(SMALL.map((f, i) => raw(f, i === k ? 0x00 : 0xce)));
    const good = SMALL.slice(0, k);
    const whole = run([stream]);
    expect(whole.error).toBeInstanceOf(FrameError);
    expectFrames(whole.frames, good, 'whole');
    for (let i = 0; i <= stream.length; i++) {
      const r = run(splitAt(stream, [i]));
      expect(r.error, `split at ${i}`).toBeInstanceOf(FrameError);
      expectFrames(r.frames, good, `split at ${i}`);
    }
    const bytes = [...stream].map((_, i) => stream.subarray(i, i + 1));
    const r = run(bytes);
    expect(r.error).toBeInstanceOf(FrameError);
    expectFrames(r.frames, good, 'byte by byte');
  });

  it('every end octet other than 0xCE is a FrameError', () => {
    for (let end = 0; end < 256; end++) {
      if (end === 0xce) continue;
      const b = raw(HEARTBEAT, end);
      expect(run([b]).error).toBeInstanceOf(FrameError);
      expect(run([b.subarray(0, 7), b.subarray(7)]).error).toBeInstanceOf(FrameError);
      // also when another frame follows in the same chunk
      expect(run([Buffer.concat([b, raw(HEARTBEAT)])]).error).toBeInstanceOf(FrameError);
    }
  });

  it('a payload of frameMax bytes is accepted (RabbitMQ leeway: the frame is frameMax + 8); one byte more is a FrameError', () => {
    const frameMax = 4096;
    const exact = { type: 3, channel: 1, payload: Buffer.alloc(frameMax, 7) };
    const over = { type: 3, channel: 1, payload: Buffer.alloc(frameMax + 1, 7) };
    const ok = Buffer.concat([raw(exact), raw(HEARTBEAT)]);
    expect(raw(exact).length).toBe(frameMax + 8);
    for (let i = 0; i <= ok.length; i += i < 16 || i > ok.length - 24 ? 1 : 61) {
      const r = run(splitAt(ok, [i]), frameMax);
      expect(r.error, `split at ${i}`).toBeNull();
      expectFrames(r.frames, [exact, HEARTBEAT], `split at ${i}`);
    }
    const bad = Buffer.concat([raw(HEARTBEAT), raw(over)]);
    for (let i = 0; i <= bad.length; i += i < 24 ? 1 : 61) {
      const r = run(splitAt(bad, [i]), frameMax);
      expect(r.error, `split at ${i}`).toBeInstanceOf(FrameError);
      expectFrames(r.frames, [HEARTBEAT], `split at ${i}`);
    }
  });

  it('an oversize frame is refused as soon as its 7-byte header is in, before any payload', () => {
    const p = new FrameParser({ onFrame: () => {} }, 4096);
    const header = raw({ type: 1, channel: 0, payload: Buffer.alloc(5000) }).subarray(0, 7);
    for (let i = 0; i < 6; i++) p.push(header.subarray(i, i + 1));
    expect(() => p.push(header.subarray(6, 7))).toThrow(FrameError);
    const q = new FrameParser({ onFrame: () => {} }, 4096);
    expect(() => q.push(header)).toThrow(FrameError);
    // a size that would overflow 32 bits when the overhead is added
    const huge = Buffer.from([1, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    expect(() => new FrameParser({ onFrame: () => {} }, 0xffffffff).push(huge)).toThrow(FrameError);
  });

  it('a lowered frameMax applies to the following frames', () => {
    const frames: number[] = [];
    const p = new FrameParser({ onFrame: (_t, _c, _b, _o, len) => frames.push(len) }, FRAME_MAX);
    p.push(raw(body(1, Buffer.alloc(5000))));
    p.frameMax = 4096;
    expect(() => p.push(raw(body(1, Buffer.alloc(5000))))).toThrow(FrameError);
    expect(frames).toEqual([5000]);
  });

  it('random garbage, however split, only ever throws FrameError', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.nat(400), { maxLength: 10 }),
        fc.constantFrom(4096, FRAME_MAX),
        (bytes, points, frameMax) => {
          const b = Buffer.from(bytes);
          const r = run(
            splitAt(
              b,
              points.map((p) => p % (b.length + 1)),
            ),
            frameMax,
          );
          if (r.error !== null && !(r.error instanceof FrameError)) throw r.error;
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('frame-shaped garbage (small sizes, mostly good ends) only ever throws FrameError', () => {
    const frameish = fc
      .record({
        type: fc.integer({ min: 0, max: 255 }),
        channel: fc.integer({ min: 0, max: 65535 }),
        payload: fc.uint8Array({ maxLength: 40 }),
        end: fc.oneof({ weight: 8, arbitrary: fc.constant(0xce) }, fc.integer({ min: 0, max: 255 })),
        sizeDelta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: -3, max: 3 })),
      })
      .map(({ type, channel, payload, end, sizeDelta }) => {
        const b = raw({ type, channel, payload: Buffer.from(payload) }, end);
        b.writeUInt32BE(Math.max(0, payload.length + sizeDelta), 3);
        return b;
      });
    fc.assert(
      fc.property(
        fc.array(frameish, { maxLength: 12 }),
        fc.array(fc.nat(600), { maxLength: 12 }),
        (fs, points) => {
          const b = Buffer.concat(fs);
          const r = run(
            splitAt(
              b,
              points.map((p) => p % (b.length + 1)),
            ),
            4096,
          );
          if (r.error !== null && !(r.error instanceof FrameError)) throw r.error;
          // whatever was delivered, the same stream fed whole delivers the same
          const whole = run([b], 4096);
          expect(whole.frames).toEqual(r.frames);
          expect(whole.error === null).toBe(r.error === null);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('hold and resume (publisher flow control)', () => {
  it('stops after the frame that set hold and delivers the rest, in order, on resume', () => {
    const frames = [1, 2, 3, 4, 5].map((i) => {
      const b = Buffer.alloc(9);
      b[0] = 1;
      b.writeUInt16BE(i, 1);
      b.writeUInt32BE(1, 3);
      b[7] = i;
      b[8] = 0xce;
      return b;
    });
    const seen: number[] = [];
    const parser: FrameParser = new FrameParser(
      {
        onFrame(_type, channel) {
          seen.push(channel);
          if (channel === 2) parser.hold = true;
        },
      },
      4096,
    );
    parser.push(Buffer.concat(frames.slice(0, 4)));
    expect(seen).toEqual([1, 2]);
    // bytes arriving while held are kept too
    parser.push(frames[4]!);
    expect(seen).toEqual([1, 2]);
    parser.resume();
    expect(seen).toEqual([1, 2, 3, 4, 5]);
  });
});

/** Small frames, a 30 KB body among them, and more small frames: many frames to hold at. */
const HELD: Frame[] = [
  ...SMALL,
  ...SMALL,
  body(2, BIG_BODY.subarray(0, 30_000)),
  ...SMALL,
  ...SMALL,
  ...SMALL,
];
const HELD_STREAM = streamOf(HELD);

describe('holds on a shared read buffer', () => {
  it('two connections held at random frames, fed through one reused read buffer, see every frame intact', () => {
    // as the broker reads: every chunk of every socket lands in one buffer, overwritten by the
    // next read; a hold keeps the rest of its chunk (in a buffer reused from hold to hold)
    const READ = Buffer.alloc(256 * 1024);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 64, max: 20_000 }), { minLength: 4, maxLength: 12 }),
        fc.array(fc.integer({ min: 64, max: 20_000 }), { minLength: 4, maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }),
        fc.boolean(),
        (cutsA, cutsB, holdsA, holdsB, pieces) => {
          const side = (cuts: number[], holds: boolean[]) => {
            const seen: Frame[] = [];
            let n = 0;
            let piece: Buffer[] = [];
            const sink: FrameSink = {
              onFrame(type, channel, buf, off, len) {
                seen.push({ type, channel, payload: Buffer.from(buf.subarray(off, off + len)) });
                if (holds[n++ % holds.length]) parser.hold = true;
              },
            };
            // as the broker's connection: a body frame across reads comes in pieces
            if (pieces)
              sink.onBodyPiece = (channel, buf, off, len, frameLeft) => {
                piece.push(Buffer.from(buf.subarray(off, off + len)));
                if (frameLeft > len) return;
                seen.push({ type: 3, channel, payload: Buffer.concat(piece) });
                piece = [];
                if (holds[n++ % holds.length]) parser.hold = true;
              };
            const parser: FrameParser = new FrameParser(sink, FRAME_MAX);
            const chunks: Buffer[] = [];
            let at = 0;
            for (let i = 0; at < HELD_STREAM.length; i++) {
              const len = Math.min(cuts[i % cuts.length]!, HELD_STREAM.length - at);
              chunks.push(HELD_STREAM.subarray(at, at + len));
              at += len;
            }
            return { seen, parser, chunks };
          };
          const a = side(cutsA, holdsA);
          const b = side(cutsB, holdsB);
          const feed = (s: typeof a) => {
            const c = s.chunks.shift();
            if (c === undefined) {
              if (s.parser.hold) s.parser.resume();
              return;
            }
            c.copy(READ);
            s.parser.push(READ.subarray(0, c.length));
            READ.fill(0xab, 0, c.length);
            // a held connection is resumed before its next read most of the time
            if (s.parser.hold && c.length % 3 !== 0) s.parser.resume();
          };
          while (a.chunks.length + b.chunks.length > 0) {
            feed(a);
            feed(b);
          }
          for (const s of [a, b]) {
            while (s.parser.hold) s.parser.resume();
            expect(s.seen.length).toBe(HELD.length);
            expect(streamOf(s.seen).equals(HELD_STREAM)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
