/**
 * A raw AMQP peer for wire tests: sends exact bytes, collects every frame the broker sends,
 * and decodes method frames with the generated codec.
 */
import net from 'node:net';
import { expect } from 'vitest';
import { FrameParser } from '../../src/protocol/frame-parser.js';
import * as M from '../../src/protocol/generated/methods.js';
import { type BasicProperties, encodeBasicProperties } from '../../src/protocol/generated/properties.js';
import { Method, methodName } from '../../src/protocol/generated/spec.js';
import { OutBuffer } from '../../src/protocol/out-buffer.js';

export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
  /** for method frames */
  methodId?: number;
  name?: string;
  args?: Record<string, unknown>;
}

export const PROTOCOL_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

/** Builds one frame's bytes. */
export function frame(type: number, channel: number, payload: Buffer, end = 0xce): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b[0] = type;
  b.writeUInt16BE(channel, 1);
  b.writeUInt32BE(payload.length, 3);
  payload.copy(b, 7);
  b[7 + payload.length] = end;
  return b;
}

/** queue.declare on `channel`: every flag false unless `flags` sets it. */
export function declareQueue(
  w: OutBuffer,
  channel: number,
  queue: string,
  args: M.QueueDeclare['arguments'] = {},
  flags: Partial<Omit<M.QueueDeclare, 'queue' | 'arguments'>> = {},
): void {
  M.encodeQueueDeclare(w, channel, {
    queue,
    passive: false,
    durable: false,
    exclusive: false,
    autoDelete: false,
    noWait: false,
    ...flags,
    arguments: args,
  });
}

/**
 * basic.publish to the default exchange on `channel`, its content header and one body frame, as
 * one buffer. `props` are encoded, or sent as these raw property bytes.
 */
export function publishBytes(
  channel: number,
  routingKey: string,
  body: string | Buffer,
  props: BasicProperties | Buffer = {},
): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(60, 0);
  h.writeBigUInt64BE(BigInt(b.length), 4);
  return Buffer.concat([
    bytes((w) =>
      M.encodeBasicPublish(w, channel, { exchange: '', routingKey, mandatory: false, immediate: false }),
    ),
    frame(
      2,
      channel,
      Buffer.concat([h, Buffer.isBuffer(props) ? props : bytes((w) => encodeBasicProperties(w, props))]),
    ),
    frame(3, channel, b),
  ]);
}

/** Encodes frames with the generated encoders: `bytes(w => M.encodeChannelOpen(w, 1, {}))`. */
export function bytes(fn: (w: OutBuffer) => void): Buffer {
  const w = new OutBuffer();
  fn(w);
  return Buffer.concat(w.take());
}

export class RawClient {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  /** every chunk received, joined on demand (a protocol header reply, exact bytes) */
  private chunks: Buffer[] = [];
  closed = false;
  /** the socket error's code, if the socket ended with one (ECONNRESET: the broker reset it) */
  socketError: string | null = null;
  private readonly parser: FrameParser;
  private waiters: (() => void)[] = [];
  private parseFrames = true;

  /** Every byte received so far. */
  get raw(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser = new FrameParser(
      {
        onFrame: (type, channel, buf, off, len) => {
          const payload = Buffer.from(buf.subarray(off, off + len));
          const f: Frame = { type, channel, payload };
          if (type === 1) {
            f.methodId = payload.readUInt32BE(0);
            f.name = methodName(f.methodId);
            f.args = M.decodeMethodArgs(f.methodId, payload, 4, payload.length) as Record<string, unknown>;
          }
          this.frames.push(f);
        },
      },
      1 << 30,
    );
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      if (this.parseFrames) this.parser.push(d);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.socketError = e.code ?? e.message;
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, completes the handshake (PLAIN guest/guest) and opens vhost '/'. */
  static async open(
    port: number,
    tune: { channelMax?: number; frameMax?: number; heartbeat?: number } = {},
  ): Promise<RawClient> {
    const c = await RawClient.connect(port);
    c.write(PROTOCOL_HEADER);
    const start = await c.expectMethod(Method.CONNECTION_START);
    void start;
    c.send((w) =>
      M.encodeConnectionStartOk(w, 0, {
        clientProperties: {
          capabilities: { authentication_failure_close: true, 'connection.blocked': true },
        },
        mechanism: 'PLAIN',
        response: Buffer.from('\0guest\0guest'),
        locale: 'en_US',
      }),
    );
    const t = (await c.expectMethod(Method.CONNECTION_TUNE)).args as unknown as M.ConnectionTune;
    c.send((w) => {
      M.encodeConnectionTuneOk(w, 0, {
        channelMax: tune.channelMax ?? t.channelMax,
        frameMax: tune.frameMax ?? t.frameMax,
        heartbeat: tune.heartbeat ?? 0,
      });
      M.encodeConnectionOpen(w, 0, { virtualHost: '/' });
    });
    await c.expectMethod(Method.CONNECTION_OPEN_OK);
    return c;
  }

  /** Stops frame parsing (for tests that read raw bytes). */
  rawOnly(): void {
    this.parseFrames = false;
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  send(fn: (w: OutBuffer) => void): void {
    this.write(bytes(fn));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `pred` holds, re-checked on every received chunk; rejects after `ms`. */
  async until(pred: () => boolean, what: string, ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the next not-yet-consumed method frame with this id and returns it. */
  private cursor = 0;
  async expectMethod(id: number, ms = 5_000): Promise<Frame> {
    let found: Frame | undefined;
    await this.until(
      () => {
        for (let i = this.cursor; i < this.frames.length; i++) {
          if (this.frames[i]!.methodId === id) {
            found = this.frames[i];
            this.cursor = i + 1;
            return true;
          }
        }
        return false;
      },
      methodName(id),
      ms,
    );
    return found!;
  }

  /** Waits for connection.close from the broker; answers close-ok unless told not to. */
  async expectConnectionClose(answer = true): Promise<M.ConnectionClose> {
    const f = await this.expectMethod(Method.CONNECTION_CLOSE);
    if (answer && !this.socket.destroyed) this.send((w) => M.encodeConnectionCloseOk(w, 0, {}));
    return f.args as unknown as M.ConnectionClose;
  }

  async expectClosed(ms = 5_000): Promise<void> {
    await this.until(() => this.closed, 'socket close', ms);
  }

  describe(): string {
    return JSON.stringify(
      this.frames.map((f) =>
        f.type === 1 ? `${f.channel}:${f.name} ${JSON.stringify(f.args)}` : `type ${f.type}`,
      ),
    );
  }

  close(): void {
    this.socket.destroy();
  }
}

/** After an error case: a new connection still completes the handshake and opens a channel. */
export async function expectStillServing(port: number): Promise<void> {
  const c = await RawClient.open(port);
  try {
    c.send((w) => M.encodeChannelOpen(w, 1, {}));
    const ok = await c.expectMethod(Method.CHANNEL_OPEN_OK);
    expect(ok.channel).toBe(1);
  } finally {
    c.close();
  }
}
