/**
 * Splits a byte stream into AMQP frames, whatever the chunking: a frame across chunks, many
 * frames in one chunk, one byte at a time. A frame that lies whole inside a chunk is handed
 * over in place (zero-copy); a frame that straddles chunks is assembled into its own buffer,
 * except a body frame when the sink takes body pieces: those are handed over in place, piece
 * by piece (the receiver copies body bytes into the message anyway, so assembling the frame
 * first would copy a large body twice).
 *
 * Frame: type u8 | channel u16 | size u32 | payload[size] | 0xCE
 */

export const FRAME_HEADER_SIZE = 7;
/** Header plus the frame-end octet. */
export const FRAME_OVERHEAD = 8;

export interface FrameSink {
  /** Called once per frame; `buf[off, off + len)` is the payload, valid only during the call. */
  onFrame(type: number, channel: number, buf: Buffer, off: number, len: number): void;
  /**
   * Optional: part of a body frame (type 3) that straddles chunks, in order; the pieces of a
   * frame concatenate to its payload. `frameLeft` is the frame's payload from this piece on
   * (this piece included), so a receiver can refuse a frame too big for the body before taking
   * any of it. The last piece is handed over only once the frame-end octet has been checked.
   * Valid only during the call.
   */
  onBodyPiece?(channel: number, buf: Buffer, off: number, len: number, frameLeft: number): void;
}

/** Size of the buffers that keep what a hold left of a chunk (a read is at most this long). */
const KEEP_SIZE = 256 * 1024;
/** Such buffers kept for the next hold, over all connections. */
const SPARE_KEEPS = 4;
const spareKeeps: Buffer[] = [];

/** A framing fault: the connection must be closed with FRAME_ERROR (501). */
export class FrameError extends Error {}

export class FrameParser {
  /** Largest accepted frame, overhead included (the negotiated frame-max). */
  frameMax: number;
  /** Set by the sink to stop parsing the rest of a chunk (e.g. after a connection error). */
  stopped = false;
  /** Set by the sink to stop after the current frame; the rest waits for resume() (flow control). */
  hold = false;
  private rest: Buffer | null = null;
  /** the buffer `rest` lies in (see keepRest) */
  private kept: Buffer | null = null;
  private readonly sink: FrameSink;
  /** Bytes of a frame that straddles chunks, assembled here. */
  private partial: Buffer | null = null;
  private partialLen = 0;
  /** Header bytes carried over when a chunk ends inside a frame header. */
  private readonly head = Buffer.alloc(FRAME_HEADER_SIZE);
  private headLen = 0;
  /** Streaming a body frame: its channel and the payload bytes still to come (-1: not streaming). */
  private streamChannel = 0;
  private streamLeft = -1;
  /** The end of a streamed payload whose frame-end octet is in the next chunk. */
  private streamTail: Buffer | null = null;

  constructor(sink: FrameSink, frameMax: number) {
    this.sink = sink;
    this.frameMax = frameMax;
  }

  /** Feeds one chunk. Throws FrameError on a framing fault; nothing else is thrown by parsing. */
  push(chunk: Buffer): void {
    try {
      this.parse(chunk);
    } finally {
      // what a hold kept back was parsed (frames are valid only during their call): its buffer
      // goes back for the next hold
      if (this.rest === null && this.kept !== null) this.releaseKept();
    }
  }

  private parse(chunk: Buffer): void {
    if (this.stopped) return;
    if (this.rest !== null) {
      chunk = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    let o = 0;
    const n = chunk.length;
    if (this.streamLeft >= 0) {
      o = this.continueStream(chunk, 0);
      if (o < 0) return;
    } else if (this.headLen > 0 || this.partial !== null) {
      o = this.continuePartial(chunk);
      if (o < 0) return;
    }
    while (o < n && !this.stopped) {
      if (this.hold) {
        this.rest = this.keepRest(chunk, o);
        return;
      }
      if (n - o < FRAME_HEADER_SIZE) {
        chunk.copy(this.head, 0, o, n);
        this.headLen = n - o;
        return;
      }
      const size = chunk.readUInt32BE(o + 3);
      this.checkSize(chunk[o]!, size);
      const stop = o + FRAME_HEADER_SIZE + size;
      if (stop < n) {
        if (chunk[stop] !== 0xce) throw new FrameError(badEnd(chunk[stop]!));
        this.sink.onFrame(chunk[o]!, chunk.readUInt16BE(o + 1), chunk, o + FRAME_HEADER_SIZE, size);
        o = stop + 1;
      } else if (chunk[o] === 3 && size > 0 && this.sink.onBodyPiece !== undefined) {
        // A body frame that continues in a later chunk: hand it over piece by piece.
        this.streamChannel = chunk.readUInt16BE(o + 1);
        this.streamLeft = size;
        this.continueStream(chunk, o + FRAME_HEADER_SIZE);
        return;
      } else {
        // The frame continues in a later chunk: assemble it.
        this.partial = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
        chunk.copy(this.partial, 0, o, n);
        this.partialLen = n - o;
        return;
      }
    }
  }

  /**
   * Goes on with a streamed body frame from chunk[o]; returns the offset after its frame-end
   * octet, or -1 when the chunk ended first.
   */
  private continueStream(chunk: Buffer, o: number): number {
    const n = chunk.length;
    const left = this.streamLeft;
    if (left > 0) {
      const take = Math.min(left, n - o);
      if (take < left) {
        if (take > 0) this.sink.onBodyPiece!(this.streamChannel, chunk, o, take, left);
        this.streamLeft = left - take;
        return -1;
      }
      if (o + take === n) {
        // the payload ends with this chunk; its end octet (checked first) comes with the next
        this.streamTail = Buffer.from(chunk.subarray(o, n));
        this.streamLeft = 0;
        return -1;
      }
      const end = chunk[o + take]!;
      if (end !== 0xce) throw new FrameError(badEnd(end));
      this.streamLeft = -1;
      this.sink.onBodyPiece!(this.streamChannel, chunk, o, take, take);
      return o + take + 1;
    }
    // only the end octet is missing
    if (o >= n) return -1;
    const end = chunk[o]!;
    if (end !== 0xce) throw new FrameError(badEnd(end));
    const tail = this.streamTail;
    this.streamTail = null;
    this.streamLeft = -1;
    if (tail !== null) this.sink.onBodyPiece!(this.streamChannel, tail, 0, tail.length, tail.length);
    return o + 1;
  }

  /**
   * What a hold leaves of a chunk, kept past the call: a copy (the chunk is the socket's shared
   * read buffer), in a buffer reused from hold to hold. Allocating a new one per hold (up to
   * READ_SIZE bytes) cost scenario i about 8% of the broker's CPU. A chunk that is itself what
   * was kept (parsing resumed, then held again) stays where it is.
   */
  private keepRest(chunk: Buffer, o: number): Buffer {
    const kept = this.kept;
    if (kept !== null && chunk.buffer === kept.buffer) return chunk.subarray(o);
    if (kept !== null) this.releaseKept();
    const len = chunk.length - o;
    const k =
      len <= KEEP_SIZE
        ? (spareKeeps.pop() ?? Buffer.allocUnsafeSlow(KEEP_SIZE))
        : Buffer.allocUnsafeSlow(len);
    chunk.copy(k, 0, o);
    this.kept = k;
    return k.subarray(0, len);
  }

  private releaseKept(): void {
    const k = this.kept!;
    this.kept = null;
    if (k.length === KEEP_SIZE && spareKeeps.length < SPARE_KEEPS) spareKeeps.push(k);
  }

  /** Lifts a hold and parses what was kept back. */
  resume(): void {
    this.hold = false;
    const r = this.rest;
    this.rest = null;
    if (r !== null && !this.stopped) this.push(r);
  }

  /** Completes a carried-over header or frame; returns the offset in chunk to continue at, or -1. */
  private continuePartial(chunk: Buffer): number {
    let o = 0;
    if (this.headLen > 0) {
      const need = FRAME_HEADER_SIZE - this.headLen;
      const take = Math.min(need, chunk.length);
      chunk.copy(this.head, this.headLen, 0, take);
      this.headLen += take;
      o = take;
      if (this.headLen < FRAME_HEADER_SIZE) return -1;
      const size = this.head.readUInt32BE(3);
      this.headLen = 0;
      this.checkSize(this.head[0]!, size);
      if (this.head[0] === 3 && size > 0 && this.sink.onBodyPiece !== undefined) {
        this.streamChannel = this.head.readUInt16BE(1);
        this.streamLeft = size;
        return this.continueStream(chunk, o);
      }
      this.partial = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
      this.head.copy(this.partial, 0);
      this.partialLen = FRAME_HEADER_SIZE;
    }
    const p = this.partial!;
    const take = Math.min(p.length - this.partialLen, chunk.length - o);
    chunk.copy(p, this.partialLen, o, o + take);
    this.partialLen += take;
    o += take;
    if (this.partialLen < p.length) return -1;
    this.partial = null;
    this.partialLen = 0;
    const end = p[p.length - 1]!;
    if (end !== 0xce) throw new FrameError(badEnd(end));
    this.sink.onFrame(p[0]!, p.readUInt16BE(1), p, FRAME_HEADER_SIZE, p.length - FRAME_OVERHEAD);
    return o;
  }

  /**
   * RabbitMQ's leeway: a payload may be as long as frame-max itself (the whole frame 8 bytes
   * more), since some clients cut bodies at frame-max without the overhead; its reply text too.
   */
  private checkSize(type: number, size: number): void {
    if (size > this.frameMax || size + FRAME_OVERHEAD > 0xffffffff) {
      throw new FrameError(
        `type ${type}, all octets = <<>>: {frame_too_large,${size},${this.frameMax - FRAME_OVERHEAD}}`,
      );
    }
  }
}

function badEnd(octet: number): string {
  return `frame end octet was 0x${octet.toString(16).padStart(2, '0')}, expected 0xce`;
}
