/**
 * A minimal AMQP 0-9-1 client for the load generator, on raw sockets and the project's own codec,
 * so the client is cheap enough not to be the bottleneck.
 *
 * - BenchConnection: handshake (PLAIN from the URI, heartbeats off), one channel (number 1),
 *   pipelined synchronous methods (declare, bind, delete, qos, consume, confirm.select) answered in
 *   order, and errors: a connection.close or channel.close from the broker fails the connection.
 * - Publisher: a stream of one fixed message (per routing key), precomputed as frame bytes and
 *   written in batches of about 64 KiB, with an optional publisher-confirm window and rate cap.
 *   The first 8 body bytes carry the send time (µs, CLOCK_MONOTONIC, shared by all processes on
 *   the machine) when the body is at least 8 bytes, for end-to-end latency.
 * - Consumer: parses deliveries in place, reading only the delivery tag, the body size and the
 *   timestamp; auto-ack, or manual ack every N with multiple=true.
 *
 * Nothing here is general purpose: no heartbeats, no content for anything but deliveries, no
 * channel other than 1.
 */

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { readU64 } from '../src/protocol/field-table.js';
import { FrameParser, type FrameSink } from '../src/protocol/frame-parser.js';
import {
  decodeChannelClose,
  decodeConnectionClose,
  decodeConnectionTune,
  decodeQueueDeclareOk,
  encodeBasicAck,
  encodeBasicConsume,
  encodeBasicPublish,
  encodeBasicQos,
  encodeChannelCloseOk,
  encodeChannelFlowOk,
  encodeChannelOpen,
  encodeConfirmSelect,
  encodeConnectionClose,
  encodeConnectionCloseOk,
  encodeConnectionOpen,
  encodeConnectionStartOk,
  encodeConnectionTuneOk,
  encodeExchangeDeclare,
  encodeExchangeDelete,
  encodeQueueBind,
  encodeQueueDeclare,
  encodeQueueDelete,
} from '../src/protocol/generated/methods.js';
import { encodeBasicProperties } from '../src/protocol/generated/properties.js';
import { Method } from '../src/protocol/generated/spec.js';
import { OutBuffer } from '../src/protocol/out-buffer.js';
import { Histogram } from './histogram.js';

/** Microseconds on CLOCK_MONOTONIC: comparable between processes on one machine. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface AmqpUri {
  host: string;
  port: number;
  user: string;
  pass: string;
  vhost: string;
}

/** Parses amqp://user:pass@host:port/vhost (an empty path or "/" is the vhost "/"). */
export function parseUri(s: string): AmqpUri {
  const u = new URL(s);
  if (u.protocol !== 'amqp:')
    throw new Error(`unsupported URI scheme ${u.protocol} (only amqp: is supported)`);
  const path = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host: host === '' ? '127.0.0.1' : host,
    port: u.port === '' ? 5672 : Number(u.port),
    user: u.username === '' ? 'guest' : decodeURIComponent(u.username),
    pass: u.password === '' ? 'guest' : decodeURIComponent(u.password),
    vhost: path,
  };
}

/** The URI without its password, for reports. */
export function redactUri(s: string): string {
  try {
    const u = new URL(s);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return s;
  }
}

/** A connection.close or channel.close from the broker. */
export class AmqpError extends Error {
  constructor(
    readonly scope: 'connection' | 'channel',
    readonly code: number,
    readonly text: string,
    readonly methodId: number,
  ) {
    super(
      `${scope}.close ${code} ${text}` +
        (methodId !== 0 ? ` (class ${methodId >>> 16} method ${methodId & 0xffff})` : ''),
    );
  }
}

interface Pending {
  id: number;
  resolve: (payload: Buffer) => void;
  reject: (e: Error) => void;
}

const CH = 1;
const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);

export interface ConnectOptions {
  /** Largest frame to ask for (default 131072; the broker's limit wins when lower). */
  frameMax?: number;
  /** Connection name shown by the broker. */
  name?: string;
  /** Handshake timeout in ms (default 10 s). */
  timeoutMs?: number;
}

export class BenchConnection implements FrameSink {
  readonly out = new OutBuffer();
  readonly parser: FrameParser;
  frameMax = 131072;
  /** The first failure (broker close, socket error); every later call rejects with it. */
  error: Error | null = null;
  /** connection.blocked from the broker (resource alarm) is in force. */
  blocked = false;
  consumer: Consumer | null = null;
  publisher: Publisher | null = null;
  /** Called once on the first failure. */
  onError: ((e: Error) => void) | null = null;
  private readonly pending: Pending[] = [];
  private closing = false;

  private constructor(readonly sock: net.Socket) {
    this.parser = new FrameParser(this, 1 << 20);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      const c = this.consumer;
      if (c !== null) c.now = nowUs();
      try {
        this.parser.push(chunk);
      } catch (e) {
        this.fail(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (this.out.length > 0) this.flush();
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => {
      if (!this.closing) this.fail(new Error('connection closed by the broker'));
      this.rejectAll(this.error ?? new Error('connection closed'));
    });
  }

  /** Connects, authenticates, opens the vhost and channel 1. */
  static async connect(uri: AmqpUri, opts: ConnectOptions = {}): Promise<BenchConnection> {
    const sock = net.connect({ host: uri.host, port: uri.port });
    const c = new BenchConnection(sock);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const timer = setTimeout(() => c.fail(new Error(`handshake timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        const onErr = (e: Error) => reject(e);
        sock.once('error', onErr);
        sock.once('connect', () => {
          sock.off('error', onErr);
          resolve();
        });
      });
      const start = c.expect(Method.CONNECTION_START);
      sock.write(PROTOCOL_HEADER);
      await start;
      const tuneP = c.expect(Method.CONNECTION_TUNE);
      encodeConnectionStartOk(c.out, 0, {
        clientProperties: {
          product: 'warren-bench',
          platform: `Node.js ${process.version}`,
          connection_name: opts.name ?? 'warren-bench',
          capabilities: { 'connection.blocked': true, publisher_confirms: true },
        },
        mechanism: 'PLAIN',
        response: `\u0000${uri.user}\u0000${uri.pass}`,
        locale: 'en_US',
      });
      c.flush();
      const tuneBuf = await tuneP;
      const tune = decodeConnectionTune(tuneBuf, 0, tuneBuf.length);
      const want = opts.frameMax ?? 131072;
      c.frameMax = tune.frameMax === 0 ? want : Math.min(tune.frameMax, want);
      c.parser.frameMax = c.frameMax;
      encodeConnectionTuneOk(c.out, 0, { channelMax: tune.channelMax, frameMax: c.frameMax, heartbeat: 0 });
      const openOk = c.expect(Method.CONNECTION_OPEN_OK);
      encodeConnectionOpen(c.out, 0, { virtualHost: uri.vhost });
      const chOpenOk = c.expect(Method.CHANNEL_OPEN_OK);
      encodeChannelOpen(c.out, CH, {});
      c.flush();
      await openOk;
      await chOpenOk;
      return c;
    } catch (e) {
      sock.destroy();
      throw c.error ?? e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- hot path ----

  onFrame(type: number, _channel: number, buf: Buffer, off: number, len: number): void {
    if (type === 3) {
      this.consumer?.onBody(buf, off, len);
      return;
    }
    if (type === 2) {
      this.consumer?.onHeader(buf, off);
      return;
    }
    if (type !== 1) return; // heartbeats: none were negotiated
    const id = buf.readUInt32BE(off);
    if (id === Method.BASIC_DELIVER) {
      this.consumer?.onDeliver(buf, off + 4);
    } else if (id === Method.BASIC_ACK || id === Method.BASIC_NACK) {
      this.publisher?.onConfirm(readU64(buf, off + 4), (buf[off + 12]! & 1) !== 0, id === Method.BASIC_NACK);
    } else {
      this.onMethod(id, buf, off + 4, off + len);
    }
  }

  private onMethod(id: number, buf: Buffer, o: number, end: number): void {
    switch (id) {
      case Method.CONNECTION_CLOSE: {
        const a = decodeConnectionClose(buf, o, end);
        encodeConnectionCloseOk(this.out, 0, {});
        this.flush();
        this.fail(new AmqpError('connection', a.replyCode, a.replyText, (a.classId << 16) | a.methodId));
        this.sock.end();
        return;
      }
      case Method.CHANNEL_CLOSE: {
        const a = decodeChannelClose(buf, o, end);
        encodeChannelCloseOk(this.out, CH, {});
        this.flush();
        this.fail(new AmqpError('channel', a.replyCode, a.replyText, (a.classId << 16) | a.methodId));
        return;
      }
      case Method.CHANNEL_FLOW:
        encodeChannelFlowOk(this.out, CH, { active: (buf[o]! & 1) !== 0 });
        return;
      case Method.CONNECTION_BLOCKED:
        this.blocked = true;
        return;
      case Method.CONNECTION_UNBLOCKED:
        this.blocked = false;
        return;
      case Method.BASIC_CANCEL:
        this.fail(new Error('the broker cancelled the consumer (queue deleted?)'));
        return;
    }
    const p = this.pending[0];
    if (p !== undefined && p.id === id) {
      this.pending.shift();
      p.resolve(Buffer.from(buf.subarray(o, end)));
    }
    // anything else (basic.return, a stray reply) is ignored
  }

  // ---- plumbing ----

  /** Writes what has been encoded into `out` as one writev. */
  flush(): void {
    const chunks = this.out.take();
    if (chunks.length === 0 || this.sock.destroyed) return;
    if (chunks.length === 1) {
      this.sock.write(chunks[0]!);
      return;
    }
    this.sock.cork();
    for (const c of chunks) this.sock.write(c);
    this.sock.uncork();
  }

  /** Registers interest in the next method `id` (replies come in order, so several may wait). */
  private expect(id: number): Promise<Buffer> {
    if (this.error !== null) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.pending.push({ id, resolve, reject }));
  }

  private rejectAll(e: Error): void {
    for (const p of this.pending.splice(0)) p.reject(e);
  }

  fail(e: Error): void {
    if (this.error !== null) return;
    this.error = e;
    this.rejectAll(e);
    this.publisher?.abandon();
    this.onError?.(e);
    if (!(e instanceof AmqpError)) this.sock.destroy();
  }

  /** Sends an encoded synchronous method and waits for its reply `id`. */
  private call(id: number, encode: () => void): Promise<Buffer> {
    const p = this.expect(id);
    if (this.error === null) {
      encode();
      this.flush();
    }
    return p;
  }

  // ---- synchronous methods (pipelining several is fine) ----

  async queueDeclare(
    queue: string,
    o: { durable?: boolean; passive?: boolean; autoDelete?: boolean } = {},
  ): Promise<{ queue: string; messageCount: number; consumerCount: number }> {
    const b = await this.call(Method.QUEUE_DECLARE_OK, () =>
      encodeQueueDeclare(this.out, CH, {
        queue,
        passive: o.passive ?? false,
        durable: o.durable ?? false,
        exclusive: false,
        autoDelete: o.autoDelete ?? false,
        noWait: false,
        arguments: {},
      }),
    );
    return decodeQueueDeclareOk(b, 0, b.length);
  }

  async exchangeDeclare(exchange: string, type: string, durable: boolean): Promise<void> {
    await this.call(Method.EXCHANGE_DECLARE_OK, () =>
      encodeExchangeDeclare(this.out, CH, {
        exchange,
        type,
        passive: false,
        durable,
        autoDelete: false,
        internal: false,
        noWait: false,
        arguments: {},
      }),
    );
  }

  async queueBind(queue: string, exchange: string, routingKey: string): Promise<void> {
    await this.call(Method.QUEUE_BIND_OK, () =>
      encodeQueueBind(this.out, CH, { queue, exchange, routingKey, noWait: false, arguments: {} }),
    );
  }

  /** Deletes a queue; returns how many messages it held. */
  async queueDelete(queue: string): Promise<number> {
    const b = await this.call(Method.QUEUE_DELETE_OK, () =>
      encodeQueueDelete(this.out, CH, { queue, ifUnused: false, ifEmpty: false, noWait: false }),
    );
    return b.readUInt32BE(0);
  }

  async exchangeDelete(exchange: string): Promise<void> {
    await this.call(Method.EXCHANGE_DELETE_OK, () =>
      encodeExchangeDelete(this.out, CH, { exchange, ifUnused: false, noWait: false }),
    );
  }

  async qos(prefetchCount: number): Promise<void> {
    await this.call(Method.BASIC_QOS_OK, () =>
      encodeBasicQos(this.out, CH, { prefetchSize: 0, prefetchCount, global: false }),
    );
  }

  async confirmSelect(): Promise<void> {
    await this.call(Method.CONFIRM_SELECT_OK, () => encodeConfirmSelect(this.out, CH, { nowait: false }));
  }

  async consume(queue: string, noAck: boolean, consumerTag = ''): Promise<void> {
    await this.call(Method.BASIC_CONSUME_OK, () =>
      encodeBasicConsume(this.out, CH, {
        queue,
        consumerTag,
        noLocal: false,
        noAck,
        exclusive: false,
        noWait: false,
        arguments: {},
      }),
    );
  }

  /** Closes cleanly (connection.close, waiting up to timeoutMs for close-ok), then the socket. */
  async close(timeoutMs = 3000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.consumer?.stop();
    this.publisher?.abandon();
    if (this.error === null && !this.sock.destroyed) {
      const ok = this.expect(Method.CONNECTION_CLOSE_OK);
      encodeConnectionClose(this.out, 0, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
      this.flush();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        ok.catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Publisher

export interface PublishOptions {
  exchange: string;
  /** Cycled through, one per message. */
  routingKeys: readonly string[];
  /** Body size in bytes. */
  size: number;
  /** delivery-mode 2. */
  persistent: boolean;
  /** Publisher confirms with at most this many unconfirmed messages; 0: no confirms. */
  confirmWindow: number;
  /** Messages per second for this publisher; 0: as fast as possible. */
  rate: number;
  /** Messages per socket write; 0: as many as fit BATCH_BYTES. */
  batch: number;
}

/** Bytes written per event-loop turn before yielding to I/O (confirms, acks, timers). */
const BYTES_PER_TURN = 256 * 1024;
/** Stop writing while this much is queued in the socket's user-space buffer. */
const HIGH_WATER = 1024 * 1024;
/** Target size of one batch write for small messages. */
const BATCH_BYTES = 64 * 1024;
/** Messages at least this long are written as shared frames plus a small stamped piece. */
const LARGE = 16 * 1024;

enum Wait {
  None,
  Immediate,
  Drain,
  Confirm,
  Timer,
  /** serial mode: the last write has not completed */
  Write,
}

/** Serial mode: writes chained by completion before yielding to the event loop. */
const SERIAL_CHAIN = 64;

/** A publish stream of one fixed message. See the file comment. */
export class Publisher {
  /** Messages written to the socket. */
  published = 0;
  confirmed = 0;
  nacked = 0;
  private readonly sock: net.Socket;
  /** Small path: `tmpl` holds `starts.length - 1` whole messages back to back. */
  private readonly tmpl: Buffer;
  private readonly starts: number[];
  /** Offset of the 8-byte timestamp inside each message, relative to its start; -1: none. */
  private readonly stampAt: number;
  private readonly batchMsgs: number;
  /** Length of the body frames that end every message. */
  private readonly bodyLen: number;
  private pos = 0;
  /** Bytes handed to the socket. */
  bytesOut = 0;
  /** Large path: per-key method+header frames, then the body frames split at `stampAt`. */
  private readonly heads: Buffer[] = [];
  private readonly bodyHead: Buffer;
  private readonly bodyTail: Buffer;
  private readonly large: boolean;
  private keyIdx = 0;
  /**
   * `--batch N`: one write at a time, the next only when it completed, as a client whose socket
   * writes block (the Java client, pika); Node would otherwise gather queued writes into one.
   */
  private readonly serial: boolean;
  private chained = 0;

  private ackedUpTo = 0;
  private readonly singles = new Set<number>();
  private limit = Number.POSITIVE_INFINITY;
  private rateStart = 0;
  private stopped = true;
  private wait = Wait.None;
  private done: (() => void) | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly conn: BenchConnection,
    readonly opts: PublishOptions,
  ) {
    this.sock = conn.sock;
    this.serial = opts.batch > 0;
    conn.publisher = this;
    const keys = opts.routingKeys.length > 0 ? opts.routingKeys : [''];
    // body frames, identical for every key
    const body = Buffer.alloc(opts.size, 0x78);
    const bodyFrames = new OutBuffer();
    const max = conn.frameMax - 8;
    for (let o = 0; o < opts.size; o += max) bodyFrames.bodyFrame(CH, body, o, Math.min(max, opts.size - o));
    const bodyBytes = Buffer.concat(bodyFrames.take());
    const heads = keys.map((k) => {
      const w = new OutBuffer();
      encodeBasicPublish(w, CH, {
        exchange: opts.exchange,
        routingKey: k,
        mandatory: false,
        immediate: false,
      });
      const at = w.beginFrame(2, CH);
      w.u32(0x003c0000); // class 60, weight 0
      w.u64(opts.size);
      encodeBasicProperties(w, opts.persistent ? { deliveryMode: 2 } : {});
      w.endFrame(at);
      return Buffer.concat(w.take());
    });
    const msgLen = heads[0]!.length + bodyBytes.length;
    this.bodyLen = bodyBytes.length;
    this.large = msgLen >= LARGE;
    // the stamp sits right after the first body frame's 7-byte header
    const bodyStamp = opts.size >= 8 ? 7 : -1;
    if (this.large) {
      this.heads = heads;
      this.bodyHead = bodyBytes.subarray(0, 15);
      this.bodyTail = bodyBytes.subarray(15);
      this.tmpl = Buffer.alloc(0);
      this.starts = [0];
      this.stampAt = bodyStamp;
      this.batchMsgs = 1;
    } else {
      const per = opts.batch > 0 ? opts.batch : Math.max(1, Math.floor(BATCH_BYTES / msgLen));
      const copies = Math.max(1, Math.ceil(per / keys.length));
      const parts: Buffer[] = [];
      this.starts = [0];
      let at = 0;
      for (let c = 0; c < copies; c++) {
        for (const h of heads) {
          parts.push(h, bodyBytes);
          at += h.length + bodyBytes.length;
          this.starts.push(at);
        }
      }
      this.tmpl = Buffer.concat(parts);
      this.stampAt = bodyStamp; // relative to the body frames, which end each message
      this.batchMsgs = per;
      this.bodyHead = Buffer.alloc(0);
      this.bodyTail = Buffer.alloc(0);
    }
  }

  /**
   * Publishes until `count` messages, the deadline (performance.now() ms) or stop(); resolves
   * when stopped and every published message is confirmed (with confirms on), or after
   * `confirmGraceMs` more.
   */
  run(count: number, deadlineMs: number, confirmGraceMs = 10_000): Promise<void> {
    this.limit = count;
    this.stopped = false;
    this.rateStart = performance.now();
    return new Promise<void>((resolve) => {
      let graceTimer: NodeJS.Timeout | null = null;
      this.done = () => {
        if (graceTimer !== null) clearTimeout(graceTimer);
        this.done = null;
        resolve();
      };
      const onStopped = () => {
        if (this.outstanding() === 0 || this.conn.error !== null) this.done?.();
        else graceTimer = setTimeout(() => this.done?.(), confirmGraceMs);
      };
      this.onStopped = onStopped;
      if (Number.isFinite(deadlineMs)) {
        this.deadlineTimer = setTimeout(() => this.stop(), Math.max(0, deadlineMs - performance.now()));
      }
      this.schedule();
    });
  }

  private onStopped: (() => void) | null = null;

  /** Stops publishing (the run resolves once confirms are in). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    const f = this.onStopped;
    this.onStopped = null;
    f?.();
  }

  outstanding(): number {
    return this.opts.confirmWindow > 0 ? this.published - this.confirmed - this.nacked : 0;
  }

  /** Stops and resolves the run at once, without waiting for confirms (connection closing or failed). */
  abandon(): void {
    this.stop();
    this.done?.();
  }

  private schedule(): void {
    if (this.wait !== Wait.None) return;
    this.wait = Wait.Immediate;
    setImmediate(this.pump);
  }

  private readonly resume = (): void => {
    this.wait = Wait.None;
    this.pump();
  };

  private readonly pump = (): void => {
    this.wait = Wait.None;
    if (this.stopped) return;
    if (this.conn.error !== null) {
      this.stop();
      return;
    }
    const window = this.opts.confirmWindow;
    let budget = BYTES_PER_TURN;
    while (budget > 0) {
      if (this.published >= this.limit) {
        this.stop();
        return;
      }
      if (this.sock.writableLength >= HIGH_WATER) {
        this.wait = Wait.Drain;
        this.sock.once('drain', this.resume);
        return;
      }
      let n = Math.min(this.batchMsgs, this.limit - this.published);
      if (window > 0) {
        const room = window - this.outstanding();
        if (room <= 0) {
          this.wait = Wait.Confirm;
          return;
        }
        if (room < n) n = room;
      }
      if (this.opts.rate > 0) {
        const t = performance.now();
        const allowed = Math.floor(((t - this.rateStart) * this.opts.rate) / 1000) + 1 - this.published;
        if (allowed <= 0) {
          this.wait = Wait.Timer;
          const ms = Math.max(1, Math.ceil((this.published * 1000) / this.opts.rate - (t - this.rateStart)));
          setTimeout(this.resume, ms);
          return;
        }
        if (allowed < n) n = allowed;
      }
      const before = this.bytesOut;
      this.published += this.large ? this.writeLarge() : this.writeSmall(n);
      budget -= this.bytesOut - before;
      if (this.serial) {
        this.wait = Wait.Write;
        return;
      }
    }
    this.schedule();
  };

  private readonly written = (): void => {
    if (this.wait !== Wait.Write) return;
    this.wait = Wait.None;
    // completions come as microtasks: yield to I/O (confirms, acks) every so often
    if (++this.chained % SERIAL_CHAIN === 0) this.schedule();
    else this.pump();
  };

  /** Writes up to n messages from the template (fewer at its end); returns how many. */
  private writeSmall(n: number): number {
    const total = this.starts.length - 1;
    if (this.pos + n > total) n = total - this.pos;
    const from = this.starts[this.pos]!;
    const to = this.starts[this.pos + n]!;
    const b = Buffer.allocUnsafe(to - from);
    this.tmpl.copy(b, 0, from, to);
    if (this.stampAt >= 0) {
      const t = nowUs();
      // every message ends with the same body frames; the stamp is inside the first one
      const back = this.bodyLen - this.stampAt;
      for (let i = 1; i <= n; i++) b.writeDoubleBE(t, this.starts[this.pos + i]! - from - back);
    }
    this.pos += n;
    if (this.pos === total) this.pos = 0;
    this.sock.write(b, this.serial ? this.written : undefined);
    this.bytesOut += b.length;
    return n;
  }

  private writeLarge(): number {
    const head = this.heads[this.keyIdx]!;
    this.keyIdx = this.keyIdx + 1 === this.heads.length ? 0 : this.keyIdx + 1;
    const piece = Buffer.allocUnsafe(this.bodyHead.length);
    this.bodyHead.copy(piece);
    if (this.stampAt >= 0) piece.writeDoubleBE(nowUs(), this.stampAt);
    this.sock.cork();
    this.sock.write(head);
    this.sock.write(piece);
    this.sock.write(this.bodyTail, this.serial ? this.written : undefined);
    this.sock.uncork();
    this.bytesOut += head.length + this.bodyHead.length + this.bodyTail.length;
    return 1;
  }

  onConfirm(tag: number, multiple: boolean, nack: boolean): void {
    let n = 0;
    if (multiple) {
      if (tag <= this.ackedUpTo) return;
      n = tag - this.ackedUpTo;
      if (this.singles.size > 0) {
        for (const t of this.singles) {
          if (t <= tag) {
            this.singles.delete(t);
            n--;
          }
        }
      }
      this.ackedUpTo = tag;
    } else {
      if (tag <= this.ackedUpTo || this.singles.has(tag)) return;
      n = 1;
      if (tag === this.ackedUpTo + 1) {
        this.ackedUpTo = tag;
        while (this.singles.delete(this.ackedUpTo + 1)) this.ackedUpTo++;
      } else {
        this.singles.add(tag);
      }
    }
    if (nack) this.nacked += n;
    else this.confirmed += n;
    if (this.stopped) {
      if (this.done !== null && this.outstanding() === 0) this.done();
    } else if (this.wait === Wait.Confirm) {
      this.wait = Wait.None;
      this.schedule();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Consumer

export interface ConsumeOptions {
  queue: string;
  /** Manual ack every N deliveries (multiple=true); 0: auto-ack (no-ack). */
  ackEvery: number;
  /** basic.qos prefetch-count; 0: no basic.qos. */
  prefetch: number;
}

/** Parses deliveries on one connection; see the file comment. */
export class Consumer {
  consumed = 0;
  /** Record end-to-end latency while true. */
  recording = false;
  readonly hist = new Histogram();
  /** Receive time of the chunk being parsed (set by the connection). */
  now = 0;
  private tag = 0;
  private bodyLeft = 0;
  private first = false;
  private stamp = 0;
  private unacked = 0;
  private lastTag = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastSeen = 0;

  constructor(
    readonly conn: BenchConnection,
    readonly opts: ConsumeOptions,
  ) {
    conn.consumer = this;
  }

  /** basic.qos (if any) then basic.consume. */
  async start(): Promise<void> {
    if (this.opts.prefetch > 0) await this.conn.qos(this.opts.prefetch);
    await this.conn.consume(this.opts.queue, this.opts.ackEvery === 0);
    if (this.opts.ackEvery > 0) {
      // acks whatever is left when deliveries pause, so a prefetch below N cannot stall
      this.idleTimer = setInterval(() => {
        if (this.unacked > 0 && this.consumed === this.lastSeen) this.ack();
        this.lastSeen = this.consumed;
        if (this.conn.out.length > 0) this.conn.flush();
      }, 50);
    }
  }

  stop(): void {
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.idleTimer = null;
  }

  onDeliver(buf: Buffer, o: number): void {
    const n = buf[o]!; // consumer-tag length
    this.tag = readU64(buf, o + 1 + n);
  }

  onHeader(buf: Buffer, off: number): void {
    this.bodyLeft = readU64(buf, off + 4);
    this.first = true;
    this.stamp = 0;
    if (this.bodyLeft === 0) this.complete();
  }

  onBody(buf: Buffer, off: number, len: number): void {
    if (this.first) {
      this.first = false;
      if (len >= 8) this.stamp = buf.readDoubleBE(off);
    }
    this.bodyLeft -= len;
    if (this.bodyLeft <= 0) this.complete();
  }

  private complete(): void {
    this.consumed++;
    if (this.recording && this.stamp > 0) {
      const d = this.now - this.stamp;
      // a body that was not stamped by us reads as garbage: keep plausible values only
      if (d >= 0 && d < 3.6e9) this.hist.record(d);
    }
    if (this.opts.ackEvery > 0) {
      this.lastTag = this.tag;
      if (++this.unacked >= this.opts.ackEvery) this.ack();
    }
  }

  private ack(): void {
    encodeBasicAck(this.conn.out, CH, { deliveryTag: this.lastTag, multiple: true });
    this.unacked = 0;
  }
}

/** One churn iteration: connect (handshake + channel.open), then close cleanly. */
export async function openAndClose(uri: AmqpUri): Promise<void> {
  const c = await BenchConnection.connect(uri, { name: 'warren-bench churn' });
  await c.close();
}
