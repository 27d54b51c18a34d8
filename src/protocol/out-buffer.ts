/**
 * A per-connection output buffer. Frames are appended into a slab; `take()` hands the bytes
 * written since the last take to the socket without copying (the slab region is never reused),
 * and large bodies ride along as their own chunks. Offsets stay valid while a frame is being
 * written, so sizes can be backpatched: growing copies the live region to the same offsets.
 */

const SLAB = 64 * 1024;
/**
 * A new connection's first slab: enough for the handshake, from Node's shared pool. A 64 KiB
 * slab per connection is external memory the collector must account for: at 1,000 connections
 * a second that alone kept the collector busy.
 */
const FIRST_SLAB = 2 * 1024;
/** Bodies at least this large are queued as their own chunk instead of being copied. */
export const EXTERNAL_MIN = 8 * 1024;
const TWO32 = 4294967296;
export const FRAME_END = 0xce;

export class OutBuffer {
  buf: Buffer;
  pos = 0;
  /** Start of the region not yet handed out by take(). */
  private start = 0;
  /** Completed chunks waiting for the next take(). */
  private chunks: Buffer[] = [];
  /** Bytes written since the last take(), including external chunks. */
  pending = 0;
  /** Start of a frame begun and not yet ended; -1 between frames. */
  private frameAt = -1;

  constructor() {
    this.buf = Buffer.allocUnsafe(FIRST_SLAB);
  }

  /** Makes room for n more bytes, keeping every offset of the live region valid. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + SLAB));
    this.buf.copy(next, this.start, this.start, this.pos);
    this.buf = next;
  }

  /** Between frames: start a fresh slab when the current one is nearly used up. */
  private roomForFrame(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.cut();
    this.buf = Buffer.allocUnsafe(Math.max(SLAB, n));
    this.pos = 0;
    this.start = 0;
  }

  private cut(): void {
    if (this.pos > this.start) {
      this.chunks.push(this.buf.subarray(this.start, this.pos));
      this.pending += this.pos - this.start;
      this.start = this.pos;
    }
  }

  get length(): number {
    return this.pending + (this.pos - this.start);
  }

  /** Returns the chunks written since the last call (empty array if none) and resets. */
  take(): Buffer[] {
    this.cut();
    const out = this.chunks;
    this.chunks = [];
    this.pending = 0;
    return out;
  }

  /** Writes a frame header with a size placeholder; returns the offset to give endFrame(). */
  beginFrame(type: number, channel: number, sizeHint = 256): number {
    this.roomForFrame(sizeHint + 8);
    const at = this.pos;
    this.frameAt = at;
    const b = this.buf;
    b[at] = type;
    b[at + 1] = channel >>> 8;
    b[at + 2] = channel & 0xff;
    this.pos = at + 7;
    return at;
  }

  /** Backpatches the size of the frame begun at `at` and appends the frame-end octet. */
  endFrame(at: number): void {
    this.frameAt = -1;
    this.buf.writeUInt32BE(this.pos - at - 7, at + 3);
    this.ensure(1);
    this.buf[this.pos++] = FRAME_END;
  }

  /** Drops a frame an encoder began and then threw in, so what goes out stays well-formed. */
  abandonFrame(): void {
    if (this.frameAt < 0) return;
    this.pos = this.frameAt;
    this.frameAt = -1;
  }

  /** Appends a whole body frame, copying small payloads and chaining large ones. */
  bodyFrame(channel: number, body: Buffer, off: number, len: number): void {
    this.roomForFrame(len < EXTERNAL_MIN ? len + 8 : 8);
    const b = this.buf;
    let p = this.pos;
    b[p] = 3;
    b[p + 1] = channel >>> 8;
    b[p + 2] = channel & 0xff;
    b.writeUInt32BE(len, p + 3);
    p += 7;
    if (len < EXTERNAL_MIN) {
      body.copy(b, p, off, off + len);
      p += len;
      this.pos = p;
    } else {
      this.pos = p;
      this.cut();
      this.chunks.push(off === 0 && len === body.length ? body : body.subarray(off, off + len));
      this.pending += len;
    }
    this.ensure(1);
    this.buf[this.pos++] = FRAME_END;
  }

  /** Appends raw bytes (e.g. a precomputed frame). */
  bytes(src: Buffer): void {
    this.ensure(src.length);
    src.copy(this.buf, this.pos);
    this.pos += src.length;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    const b = this.buf;
    const p = this.pos;
    b[p] = v >>> 8;
    b[p + 1] = v & 0xff;
    this.pos = p + 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.pos = this.buf.writeUInt32BE(v >>> 0, this.pos);
  }

  /** Writes a non-negative integer up to 2^53 as a u64, without BigInt. */
  u64(v: number): void {
    this.ensure(8);
    const hi = Math.floor(v / TWO32);
    this.buf.writeUInt32BE(hi >>> 0, this.pos);
    this.buf.writeUInt32BE(v - hi * TWO32, this.pos + 4);
    this.pos += 8;
  }

  /**
   * Writes a shortstr; throws RangeError if it is longer than 255 bytes in UTF-8. A Buffer is
   * written as it is (a message property that was not UTF-8, passed through unchanged).
   */
  shortstr(s: string | Buffer): void {
    if (typeof s !== 'string') {
      if (s.length > 255) throw new RangeError(`shortstr of ${s.length} bytes exceeds 255`);
      this.u8(s.length);
      this.bytes(s);
      return;
    }
    const len = s.length;
    this.ensure(1 + len * 3);
    const b = this.buf;
    const p = this.pos + 1;
    if (len <= 64) {
      // consumer tags, exchanges and routing keys are short and mostly ASCII: a byte loop
      // beats the native utf8 write's call cost; anything else falls through to it
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p + i] = c;
      }
      if (i === len) {
        b[p - 1] = len;
        this.pos = p + len;
        return;
      }
    }
    const n = b.write(s, p, 'utf8');
    if (n > 255) throw new RangeError(`shortstr of ${n} bytes exceeds 255`);
    this.buf[this.pos] = n;
    this.pos += 1 + n;
  }

  /** Writes a shortstr from raw bytes. */
  shortbytes(src: Buffer): void {
    if (src.length > 255) throw new RangeError(`shortstr of ${src.length} bytes exceeds 255`);
    this.ensure(1 + src.length);
    this.buf[this.pos] = src.length;
    src.copy(this.buf, this.pos + 1);
    this.pos += 1 + src.length;
  }

  longstr(s: string | Buffer): void {
    if (typeof s === 'string') {
      this.ensure(4 + s.length * 3);
      const n = this.buf.write(s, this.pos + 4, 'utf8');
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4 + n;
    } else {
      this.ensure(4 + s.length);
      this.buf.writeUInt32BE(s.length, this.pos);
      s.copy(this.buf, this.pos + 4);
      this.pos += 4 + s.length;
    }
  }
}
