/**
 * Differential testing: run the same client scenarios against a reference RabbitMQ and against an
 * in-process Warren, and print the scenarios whose (normalised) transcripts differ.
 *
 *   npm run differential -- [filter...] [--all] [--ref URL] [--json out.json]
 *
 * Needs a RabbitMQ (../shared/tools/reference-rabbitmq start; default amqp://guest:guest@127.0.0.1:5682).
 * A development tool: the test suite never depends on RabbitMQ.
 *
 * filter: only scenarios whose name contains one of the words. --all: print every transcript.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import amqplib from 'amqplib';
import { Broker } from '../src/broker.js';

const require = createRequire(import.meta.url);
// biome-ignore lint: raw protocol definitions of amqplib (same module instance as amqplib's)
const defs: any = require('../node_modules/amqplib/lib/defs.js');

const argv = process.argv.slice(2);
const flag = (f: string) => argv.includes(f);
const optv = (f: string) => {
  const i = argv.indexOf(f);
  return i >= 0 ? argv[i + 1] : undefined;
};
const REF = optv('--ref') ?? 'amqp://guest:guest@127.0.0.1:5682';
const JSON_OUT = optv('--json');
const filters = argv.filter(
  (a, i) => !a.startsWith('--') && !['--ref', '--json'].includes(argv[i - 1] ?? ''),
);
const RUN = `dt${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new TimeoutError(`TIMEOUT(${what} ${ms}ms)`)), ms);
    }),
  ]);
}
class TimeoutError extends Error {}

// ---------------------------------------------------------------------------------------------
// raw frame tap: sees every frame the server sends on an amqplib connection

interface RawFrame {
  type: number;
  ch: number;
  payload: Buffer;
}
function tap(c: any, on: (f: RawFrame) => void) {
  const s = c.connection.stream;
  const orig = s.read.bind(s);
  let buf = Buffer.alloc(0);
  s.read = (...a: unknown[]) => {
    const b = orig(...a);
    if (b && b.length) {
      buf = buf.length ? Buffer.concat([buf, b]) : b;
      while (buf.length >= 7) {
        const size = buf.readUInt32BE(3);
        if (buf.length < size + 8) break;
        try {
          on({ type: buf[0], ch: buf.readUInt16BE(1), payload: buf.subarray(7, 7 + size) });
        } catch {}
        buf = buf.subarray(size + 8);
      }
    }
    return b;
  };
}
function shortstr(p: Buffer, o: number): [string, number] {
  const n = p[o];
  return [p.toString('utf8', o + 1, o + 1 + n), o + 1 + n];
}
/** Decodes the few server methods we care about from raw payloads. */
function decodeRaw(f: RawFrame): any {
  if (f.type === 2) return { kind: 'header', ch: f.ch, hex: f.payload.toString('hex') };
  if (f.type !== 1) return null;
  const p = f.payload;
  const cls = p.readUInt16BE(0);
  const m = p.readUInt16BE(2);
  if ((cls === 10 && m === 50) || (cls === 20 && m === 40)) {
    const code = p.readUInt16BE(4);
    const [text, o] = shortstr(p, 6);
    return {
      kind: cls === 10 ? 'connection.close' : 'channel.close',
      ch: f.ch,
      code,
      text,
      classId: p.readUInt16BE(o),
      methodId: p.readUInt16BE(o + 2),
    };
  }
  if (cls === 60 && (m === 80 || m === 120)) {
    return {
      kind: m === 80 ? 'ack' : 'nack',
      ch: f.ch,
      tag: Number(p.readBigUInt64BE(4)),
      multiple: !!(p[12] & 1),
    };
  }
  if (cls === 60 && m === 50) {
    const code = p.readUInt16BE(4);
    const [text, o] = shortstr(p, 6);
    const [ex, o2] = shortstr(p, o);
    const [rk] = shortstr(p, o2);
    return { kind: 'return', ch: f.ch, code, text, ex, rk };
  }
  if (cls === 60 && m === 30) {
    const [tag] = shortstr(p, 4);
    return { kind: 'server-cancel', ch: f.ch, tag };
  }
  if (cls === 60 && m === 71) {
    return { kind: 'get-ok', ch: f.ch };
  }
  return { kind: 'method', ch: f.ch, cls, m };
}

// ---------------------------------------------------------------------------------------------
// normalisation

function normStr(s: string): string {
  return s
    .split(RUN)
    .join('P')
    .replace(/amq\.gen-[A-Za-z0-9_\-+/=]+/g, 'amq.gen-*')
    .replace(/amq\.ctag-[A-Za-z0-9_\-+/=]+/g, 'amq.ctag-*')
    .replace(/amq\.rabbitmq\.reply-to\.[A-Za-z0-9_\-+/=.]+/g, 'amq.rabbitmq.reply-to.*');
}
function norm(v: any): any {
  if (v === undefined) return null;
  if (typeof v === 'string') return normStr(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Buffer.isBuffer(v)) return { buf: v.toString('hex') };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') {
    const o: any = {};
    for (const k of Object.keys(v)) o[k] = norm(v[k]);
    return o;
  }
  return v;
}
function errInfo(e: any) {
  if (e instanceof TimeoutError) return { timeout: e.message };
  const msg = String(e?.message ?? e);
  const m = /with message "([\s\S]*)"/.exec(msg);
  const kind = msg.startsWith('Operation failed')
    ? 'op-failed'
    : msg.startsWith('Channel closed by server')
      ? 'channel-closed-by-server'
      : msg.startsWith('Connection closed')
        ? 'connection-closed'
        : msg.startsWith('Channel closed')
          ? 'channel-closed'
          : msg.split(/[:(]/)[0];
  return { code: e?.code ?? null, kind, text: m ? m[1] : msg.split('\n')[0] };
}
export function msgSummary(m: any) {
  if (!m) return m;
  const len = m.content.length;
  const out: any = {
    body:
      len > 200
        ? `<${len} bytes sha1=${createHash('sha1').update(m.content).digest('hex').slice(0, 12)}>`
        : m.content.toString(),
    redelivered: m.fields.redelivered,
    tag: m.fields.deliveryTag,
    ex: m.fields.exchange,
    rk: m.fields.routingKey,
  };
  if (m.fields.messageCount !== undefined) out.messageCount = m.fields.messageCount;
  return out;
}

// ---------------------------------------------------------------------------------------------
// scenario context

class Ctx {
  log: any[] = [];
  notes: any[] = [];
  conns: any[] = [];
  acs: AMQPClient[] = [];
  raw: Record<string, any[]> = {};
  closing = false;
  constructor(
    readonly url: string,
    readonly scen: string,
  ) {}
  /** a unique (per run) name; normalised back to P-<scenario>-<s> */
  n(s: string) {
    return `${RUN}-${this.scen}-${s}`;
  }
  rec(...a: any[]) {
    this.log.push(norm(a.length === 1 ? a[0] : a));
  }
  note(...a: any[]) {
    this.notes.push(norm(a.length === 1 ? a[0] : a));
  }
  async conn(label = 'c'): Promise<any> {
    const c: any = await amqplib.connect(this.url);
    this.conns.push(c);
    this.raw[label] = [];
    c.on('error', () => {});
    c.on('close', () => {
      if (!this.closing) this.rec('conn-closed-event', label);
    });
    tap(c, (f) => {
      const d = decodeRaw(f);
      if (!d) return;
      this.raw[label].push(d);
      if (d.kind === 'connection.close' || d.kind === 'channel.close') {
        const { kind, ...rest } = d;
        this.rec(`<< ${kind}`, label, rest);
      }
    });
    return c;
  }
  async ch(c: any, confirm = false): Promise<any> {
    const ch = confirm ? await c.createConfirmChannel() : await c.createChannel();
    ch.on('error', () => {});
    ch.on('handler-error', (e: any) => this.rec('handler-error', String(e?.message ?? e)));
    return ch;
  }
  /** run fn, record ok(result) or err(info) under label; returns result or undefined */
  async t<T>(label: string, fn: () => Promise<T> | T, ms = 4000): Promise<T | undefined> {
    try {
      const r = await withTimeout(Promise.resolve().then(fn), ms, label);
      this.rec(label, 'ok', r === undefined ? null : r);
      return r;
    } catch (e) {
      this.recErr(label, e);
      return undefined;
    }
  }
  /** records an error; folds in the close frame just received for it (class/method ids) */
  recErr(label: string, e: unknown) {
    const info: any = norm(errInfo(e));
    const last = this.log[this.log.length - 1];
    if (
      Array.isArray(last) &&
      typeof last[0] === 'string' &&
      last[0].startsWith('<< ') &&
      last[2]?.text === info.text
    ) {
      this.log.pop();
      this.log.push([
        label,
        'err',
        {
          ...info,
          frame: `${last[0].slice(3)}/${last[1]}`,
          classId: last[2].classId,
          methodId: last[2].methodId,
        },
      ]);
    } else this.log.push([label, 'err', info]);
  }
  /** like t but records only ok/err without the result value */
  async ok(label: string, fn: () => Promise<unknown> | unknown, ms = 4000) {
    try {
      await withTimeout(Promise.resolve().then(fn), ms, label);
      this.rec(label, 'ok');
      return true;
    } catch (e) {
      this.recErr(label, e);
      return false;
    }
  }
  /** run one operation on a fresh channel of c (closed afterwards); records the result */
  async op<T>(c: any, label: string, fn: (ch: any) => Promise<T>, confirm = false): Promise<T | undefined> {
    let ch: any;
    try {
      ch = await withTimeout(this.ch(c, confirm), 3000, 'channel.open');
    } catch (e) {
      this.rec(label, 'channel-open-failed', errInfo(e));
      return undefined;
    }
    const r = await this.t(label, () => fn(ch));
    await withTimeout(ch.close(), 1000, 'ch.close').catch(() => {});
    return r;
  }
  /** silent helper op: no record unless it fails */
  async quiet(c: any, fn: (ch: any) => Promise<unknown>) {
    const ch = await this.ch(c);
    try {
      await withTimeout(fn(ch), 4000, 'setup');
    } catch (e) {
      this.rec('SETUP FAILED', errInfo(e));
    }
    await withTimeout(ch.close(), 1000, 'ch.close').catch(() => {});
  }
  /** waits until the channel closes (by server) or ms elapses; records which */
  async closed(ch: any, label = 'channel', ms = 1500) {
    let closed = false;
    ch.once('close', () => {
      closed = true;
    });
    // a round trip: if the server closed the channel this rejects
    try {
      await withTimeout(ch.checkExchange('amq.direct'), ms, 'sync');
    } catch {}
    await until(() => closed, 300);
    this.rec(`${label} closed?`, closed);
    return closed;
  }
  async amqpClient(): Promise<any> {
    const c = new AMQPClient(this.url);
    this.acs.push(c);
    await c.connect();
    return c;
  }
  async cleanup() {
    this.closing = true;
    for (const c of this.conns) {
      try {
        await withTimeout(c.close(), 1500, 'conn.close');
      } catch {
        try {
          c.connection.stream.destroy();
        } catch {}
      }
    }
    for (const c of this.acs) {
      try {
        if (!c.closed) await withTimeout(c.close(), 1500, 'ac.close');
      } catch {
        try {
          (c as any).socket?.destroy();
        } catch {}
      }
    }
  }
}

/** publish on a confirm channel and wait for the confirm (so the message is routed) */
async function pubc(ch: any, ex: string, rk: string, body: string | Buffer, opts: any = {}) {
  await new Promise<void>((res, rej) => {
    ch.publish(ex, rk, Buffer.isBuffer(body) ? body : Buffer.from(body), opts, (err: any) =>
      err ? rej(err) : res(),
    );
  });
}
/** all bodies currently in q via basic.get(noAck) */
async function drain(ch: any, q: string, max = 100) {
  const out: string[] = [];
  for (let i = 0; i < max; i++) {
    const m = await ch.get(q, { noAck: true });
    if (!m) break;
    out.push(m.content.length > 200 ? `<${m.content.length} bytes>` : m.content.toString());
  }
  return out;
}
async function counts(ch: any, q: string) {
  const r = await ch.checkQueue(q);
  return { messages: r.messageCount, consumers: r.consumerCount };
}

type Scenario = (x: Ctx) => Promise<void>;
const scenarios: [string, Scenario][] = [];
const S = (name: string, fn: Scenario) => scenarios.push([name, fn]);

const Q = (o: any = {}) => ({ durable: false, ...o });

// =============================================================================================
// exchange.declare / delete

S('ex-declare-types', async (x) => {
  const c = await x.conn();
  for (const t of ['direct', 'fanout', 'topic', 'headers']) {
    await x.op(c, `declare ${t}`, (ch) => ch.assertExchange(x.n(t), t, { durable: false }));
    await x.op(c, `passive ${t}`, (ch) => ch.checkExchange(x.n(t)));
    await x.op(c, `redeclare same ${t}`, (ch) => ch.assertExchange(x.n(t), t, { durable: false }));
  }
  await x.op(c, 'declare durable direct', (ch) => ch.assertExchange(x.n('dur'), 'direct', { durable: true }));
  await x.op(c, 'declare with args', (ch) =>
    ch.assertExchange(x.n('args'), 'topic', { durable: false, arguments: { foo: 'bar', n: 1 } }),
  );
  await x.op(c, 'redeclare args different (ignored?)', (ch) =>
    ch.assertExchange(x.n('args'), 'topic', { durable: false, arguments: { foo: 'baz' } }),
  );
  await x.quiet(c, (ch) => ch.deleteExchange(x.n('dur')));
  const c2 = await x.conn('c2');
  await x.op(c2, 'x-consistent-hash (plugin type, not enabled)', (ch) =>
    ch.assertExchange(x.n('ch'), 'x-consistent-hash', { durable: false }),
  );
});

S('ex-passive-missing', async (x) => {
  const c = await x.conn();
  await x.op(c, 'passive missing', (ch) => ch.checkExchange(x.n('nope')));
  await x.op(c, 'passive missing amq.nope', (ch) => ch.checkExchange('amq.nope'));
  await x.op(c, 'passive amq.direct', (ch) => ch.checkExchange('amq.direct'));
  await x.op(c, 'passive amq.headers', (ch) => ch.checkExchange('amq.headers'));
  await x.op(c, 'passive amq.match', (ch) => ch.checkExchange('amq.match'));
  await x.op(c, 'passive amq.rabbitmq.trace', (ch) => ch.checkExchange('amq.rabbitmq.trace'));
  await x.op(c, 'passive default ""', (ch) => ch.checkExchange(''));
  await x.op(c, 'passive missing with other type arg', (ch) =>
    ch.rpc(
      defs.ExchangeDeclare,
      {
        exchange: x.n('nope2'),
        type: 'bogus',
        passive: true,
        durable: true,
        autoDelete: false,
        internal: false,
        nowait: false,
        arguments: {},
      },
      defs.ExchangeDeclareOk,
    ),
  );
  await x.op(c, 'passive existing with different type/durable', (ch) =>
    ch.rpc(
      defs.ExchangeDeclare,
      {
        exchange: 'amq.direct',
        type: 'fanout',
        passive: true,
        durable: false,
        autoDelete: true,
        internal: true,
        nowait: false,
        arguments: {},
      },
      defs.ExchangeDeclareOk,
    ),
  );
});

S('ex-redeclare-mismatch', async (x) => {
  const c = await x.conn();
  const e = x.n('e');
  await x.op(c, 'declare direct durable', (ch) => ch.assertExchange(e, 'direct', { durable: true }));
  await x.op(c, 'as fanout', (ch) => ch.assertExchange(e, 'fanout', { durable: true }));
  await x.op(c, 'non-durable', (ch) => ch.assertExchange(e, 'direct', { durable: false }));
  await x.op(c, 'auto-delete', (ch) => ch.assertExchange(e, 'direct', { durable: true, autoDelete: true }));
  await x.op(c, 'internal', (ch) => ch.assertExchange(e, 'direct', { durable: true, internal: true }));
  await x.op(c, 'fanout + non-durable (order)', (ch) => ch.assertExchange(e, 'fanout', { durable: false }));
  await x.op(c, 'non-durable + auto-delete (order)', (ch) =>
    ch.assertExchange(e, 'direct', { durable: false, autoDelete: true }),
  );
  await x.op(c, 'auto-delete + internal (order)', (ch) =>
    ch.assertExchange(e, 'direct', { durable: true, autoDelete: true, internal: true }),
  );
  await x.op(c, 'alternate-exchange added', (ch) =>
    ch.assertExchange(e, 'direct', { durable: true, alternateExchange: 'amq.fanout' }),
  );
  await x.op(c, 'same again ok', (ch) => ch.assertExchange(e, 'direct', { durable: true }));
  const e2 = x.n('e2');
  await x.op(c, 'declare with AE', (ch) =>
    ch.assertExchange(e2, 'direct', { durable: false, alternateExchange: 'amq.fanout' }),
  );
  await x.op(c, 'AE different', (ch) =>
    ch.assertExchange(e2, 'direct', { durable: false, alternateExchange: 'amq.topic' }),
  );
  await x.op(c, 'AE removed', (ch) => ch.assertExchange(e2, 'direct', { durable: false }));
  await x.quiet(c, (ch) => ch.deleteExchange(e));
});

S('ex-amq-prefix', async (x) => {
  const c = await x.conn();
  await x.op(c, 'declare amq.foo', (ch) =>
    ch.assertExchange(`amq.${x.n('foo')}`, 'direct', { durable: false }),
  );
  await x.op(c, 'declare AMQ.foo (case)', (ch) =>
    ch.assertExchange(`AMQ.${x.n('foo')}`, 'direct', { durable: false }),
  );
  await x.op(c, 'redeclare amq.direct identical', (ch) =>
    ch.assertExchange('amq.direct', 'direct', { durable: true }),
  );
  await x.op(c, 'redeclare amq.direct non-durable', (ch) =>
    ch.assertExchange('amq.direct', 'direct', { durable: false }),
  );
  await x.op(c, 'redeclare amq.direct as fanout', (ch) =>
    ch.assertExchange('amq.direct', 'fanout', { durable: true }),
  );
  await x.op(c, 'redeclare amq.fanout identical', (ch) =>
    ch.assertExchange('amq.fanout', 'fanout', { durable: true }),
  );
  await x.op(c, 'redeclare amq.rabbitmq.trace', (ch) =>
    ch.assertExchange('amq.rabbitmq.trace', 'topic', { durable: true, internal: true }),
  );
  await x.op(c, 'declare amq.rabbitmq.reply-to', (ch) =>
    ch.assertExchange('amq.rabbitmq.reply-to', 'direct', { durable: false }),
  );
});

S('ex-unknown-type', async (x) => {
  const c = await x.conn();
  await x.op(c, "declare type 'foo'", (ch) => ch.assertExchange(x.n('foo'), 'foo', { durable: false }));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
  const c2 = await x.conn('c2');
  await x.op(c2, "declare type ''", (ch) => ch.assertExchange(x.n('foo2'), '', { durable: false }));
  await x.op(c2, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
  const c3 = await x.conn('c3');
  await x.op(c3, "passive with type 'foo' on existing", (ch) =>
    ch.rpc(
      defs.ExchangeDeclare,
      {
        exchange: 'amq.topic',
        type: 'foo',
        passive: true,
        durable: true,
        autoDelete: false,
        internal: false,
        nowait: false,
        arguments: {},
      },
      defs.ExchangeDeclareOk,
    ),
  );
  await x.op(c3, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('ex-default', async (x) => {
  const c = await x.conn();
  await x.op(c, "declare '' direct", (ch) => ch.assertExchange('', 'direct', { durable: true }));
  await x.op(c, "declare '' fanout", (ch) => ch.assertExchange('', 'fanout', { durable: false }));
  await x.op(c, "passive ''", (ch) => ch.checkExchange(''));
  await x.op(c, "delete ''", (ch) => ch.deleteExchange(''));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('ex-delete', async (x) => {
  const c = await x.conn();
  await x.op(c, 'delete missing', (ch) => ch.deleteExchange(x.n('nope')));
  await x.op(c, 'delete missing if-unused', (ch) => ch.deleteExchange(x.n('nope'), { ifUnused: true }));
  const e = x.n('e');
  const q = x.n('q');
  await x.quiet(c, async (ch) => {
    await ch.assertExchange(e, 'direct', { durable: false });
    await ch.assertQueue(q, Q());
    await ch.bindQueue(q, e, 'k');
  });
  await x.op(c, 'delete if-unused with queue binding', (ch) => ch.deleteExchange(e, { ifUnused: true }));
  const src = x.n('src');
  const dst = x.n('dst');
  await x.quiet(c, async (ch) => {
    await ch.assertExchange(src, 'fanout', { durable: false });
    await ch.assertExchange(dst, 'fanout', { durable: false });
    await ch.bindExchange(dst, src, '');
  });
  await x.op(c, 'delete if-unused: source of e2e binding', (ch) =>
    ch.deleteExchange(src, { ifUnused: true }),
  );
  await x.op(c, 'delete if-unused: destination of e2e binding', (ch) =>
    ch.deleteExchange(dst, { ifUnused: true }),
  );
  await x.op(c, 'delete dst (binding removed)', (ch) => ch.deleteExchange(dst));
  await x.op(c, 'delete if-unused src now unused', (ch) => ch.deleteExchange(src, { ifUnused: true }));
  await x.op(c, 'delete e (with binding)', (ch) => ch.deleteExchange(e));
  await x.op(c, 'queue still exists', (ch) => ch.checkQueue(q));
  await x.op(c, 'delete amq.direct', (ch) => ch.deleteExchange('amq.direct'));
  await x.op(c, 'amq.direct still there', (ch) => ch.checkExchange('amq.direct'));
  await x.op(c, 'delete amq.nope (missing, reserved name)', (ch) => ch.deleteExchange(`amq.${x.n('nope')}`));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

// =============================================================================================
// queue.declare

S('q-server-named', async (x) => {
  const c = await x.conn();
  const r: any = await x.op(c, 'declare ""', (ch) => ch.assertQueue('', { durable: false, exclusive: true }));
  x.rec('prefix', r?.queue?.startsWith('amq.gen-'), 'len', r?.queue?.length);
  x.note('server-named', r?.queue);
  await x.op(c, 'declare "" durable', (ch) =>
    ch.assertQueue('', { durable: true, exclusive: false, autoDelete: true }),
  );
  await x.op(c, 'passive ""  (no last queue on fresh channel)', (ch) => ch.checkQueue(''));
  await x.op(c, 'declare "" then passive "" on same channel', async (ch) => {
    await ch.assertQueue('', { exclusive: true, durable: false });
    return ch.checkQueue('');
  });
  const ch = await x.ch(c);
  await x.t('declare "" (becomes last queue)', () =>
    ch.assertQueue('', { exclusive: true, durable: false }).then(() => 'ok'),
  );
  await x.t('bind "" (last declared)', async () => ch.bindQueue('', 'amq.fanout', ''));
  await x.t('publish to amq.fanout, get ""', async () => {
    ch.publish('amq.fanout', '', Buffer.from('hi'));
    await sleep(100);
    const m = await ch.get('', { noAck: true });
    return msgSummary(m);
  });
  await x.t('purge ""', () => ch.purgeQueue(''));
  await x.t('delete ""', () => ch.deleteQueue(''));
  await x.t('delete "" again (last queue gone)', () => ch.deleteQueue(''));
});

S('q-passive-missing', async (x) => {
  const c = await x.conn();
  await x.op(c, 'passive missing', (ch) => ch.checkQueue(x.n('nope')));
  await x.op(c, 'passive amq.foo missing', (ch) => ch.checkQueue(`amq.${x.n('nope')}`));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('q-redeclare-mismatch', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.op(c, 'declare durable', (ch) => ch.assertQueue(q, { durable: true }));
  await x.op(c, 'non-durable', (ch) => ch.assertQueue(q, { durable: false }));
  await x.op(c, 'auto-delete', (ch) => ch.assertQueue(q, { durable: true, autoDelete: true }));
  await x.op(c, 'exclusive', (ch) => ch.assertQueue(q, { durable: true, exclusive: true }));
  await x.op(c, 'x-message-ttl added', (ch) => ch.assertQueue(q, { durable: true, messageTtl: 1000 }));
  await x.op(c, 'x-max-length added', (ch) => ch.assertQueue(q, { durable: true, maxLength: 10 }));
  await x.op(c, 'unknown arg added (ignored?)', (ch) =>
    ch.assertQueue(q, { durable: true, arguments: { foo: 1 } }),
  );
  await x.op(c, 'non-durable + auto-delete (order)', (ch) =>
    ch.assertQueue(q, { durable: false, autoDelete: true }),
  );
  await x.op(c, 'auto-delete + ttl (order)', (ch) =>
    ch.assertQueue(q, { durable: true, autoDelete: true, messageTtl: 5 }),
  );
  await x.op(c, 'exclusive + auto-delete (order)', (ch) =>
    ch.assertQueue(q, { durable: true, exclusive: true, autoDelete: true }),
  );
  await x.op(c, 'non-durable + exclusive (order)', (ch) =>
    ch.assertQueue(q, { durable: false, exclusive: true }),
  );
  await x.op(c, 'ttl + max-length (order)', (ch) =>
    ch.assertQueue(q, { durable: true, messageTtl: 5, maxLength: 3 }),
  );
  await x.op(c, 'same again ok', (ch) => ch.assertQueue(q, { durable: true }));
  await x.quiet(c, (ch) => ch.deleteQueue(q));

  const q2 = x.n('q2');
  await x.op(c, 'declare with ttl 1000, max-length 10', (ch) =>
    ch.assertQueue(q2, Q({ messageTtl: 1000, maxLength: 10 })),
  );
  await x.op(c, 'ttl different', (ch) => ch.assertQueue(q2, Q({ messageTtl: 2000, maxLength: 10 })));
  await x.op(c, 'ttl missing', (ch) => ch.assertQueue(q2, Q({ maxLength: 10 })));
  await x.op(c, 'max-length different', (ch) => ch.assertQueue(q2, Q({ messageTtl: 1000, maxLength: 11 })));
  await x.op(c, 'both args missing', (ch) => ch.assertQueue(q2, Q()));
  await x.op(c, 'ttl as long type (same value)', (ch) =>
    ch.assertQueue(
      q2,
      Q({ arguments: { 'x-message-ttl': { '!': 'long', value: 1000 }, 'x-max-length': 10 } }),
    ),
  );
  await x.op(c, 'ttl as string', (ch) =>
    ch.assertQueue(q2, Q({ arguments: { 'x-message-ttl': '1000', 'x-max-length': 10 } })),
  );
  await x.op(c, 'same ok', (ch) => ch.assertQueue(q2, Q({ messageTtl: 1000, maxLength: 10 })));
  await x.op(c, 'passive ignores props', (ch) =>
    ch.rpc(
      defs.QueueDeclare,
      {
        queue: q2,
        passive: true,
        durable: true,
        exclusive: true,
        autoDelete: true,
        nowait: false,
        arguments: { 'x-message-ttl': 7 },
      },
      defs.QueueDeclareOk,
    ),
  );
  const q3 = x.n('q3');
  await x.op(c, 'declare classic without x-queue-type', (ch) => ch.assertQueue(q3, Q()));
  await x.op(c, 'redeclare with x-queue-type classic', (ch) =>
    ch.assertQueue(q3, Q({ arguments: { 'x-queue-type': 'classic' } })),
  );
  const q4 = x.n('q4');
  await x.op(c, 'declare with x-queue-type classic', (ch) =>
    ch.assertQueue(q4, Q({ arguments: { 'x-queue-type': 'classic' } })),
  );
  await x.op(c, 'redeclare without x-queue-type', (ch) => ch.assertQueue(q4, Q()));
  const q5 = x.n('q5');
  await x.op(c, 'declare with many args', (ch) =>
    ch.assertQueue(
      q5,
      Q({ maxLength: 5, deadLetterExchange: 'dlx', expires: 100000, maxPriority: 3, overflow: 'drop-head' }),
    ),
  );
  await x.op(c, 'all args differ (which first?)', (ch) =>
    ch.assertQueue(
      q5,
      Q({
        maxLength: 6,
        deadLetterExchange: 'dly',
        expires: 100001,
        maxPriority: 4,
        overflow: 'reject-publish',
      }),
    ),
  );
  await x.op(c, 'max-length + dlx differ', (ch) =>
    ch.assertQueue(
      q5,
      Q({ maxLength: 6, deadLetterExchange: 'dly', expires: 100000, maxPriority: 3, overflow: 'drop-head' }),
    ),
  );
  await x.op(c, 'max-priority + overflow differ', (ch) =>
    ch.assertQueue(
      q5,
      Q({
        maxLength: 5,
        deadLetterExchange: 'dlx',
        expires: 100000,
        maxPriority: 4,
        overflow: 'reject-publish',
      }),
    ),
  );
  await x.op(c, 'durable + args differ', (ch) => ch.assertQueue(q5, { durable: true, maxLength: 6 }));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('q-exclusive-lifecycle', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.op(c, 'declare exclusive on ch A', (ch) => ch.assertQueue(q, Q({ exclusive: true })));
  await x.op(c, 'after ch A closed: passive on ch B (same conn)', (ch) => ch.checkQueue(q));
  await x.op(c, 'consume + get from another channel of the owner', async (ch) => {
    await ch.consume(q, () => {}, { noAck: true, exclusive: true });
    return ch.checkQueue(q);
  });
  const q2 = x.n('q2');
  await x.op(c, 'declare exclusive auto-delete + consume then cancel', async (ch) => {
    await ch.assertQueue(q2, Q({ exclusive: true, autoDelete: true }));
    const ok = await ch.consume(q2, () => {}, { noAck: true });
    await ch.cancel(ok.consumerTag);
    return 'ok';
  });
  await x.op(c, 'exclusive auto-delete after cancel', (ch) => ch.checkQueue(q2));
  const c2 = await x.conn('c2');
  await x.op(c2, 'declare exclusive durable on c2', (ch) =>
    ch.assertQueue(x.n('q3'), { durable: true, exclusive: true }),
  );
  await x.t('close c2', () => c2.close());
  await sleep(200);
  await x.op(c, 'exclusive durable queue gone after owner closed', (ch) => ch.checkQueue(x.n('q3')));
  await x.op(c, 'redeclare that name non-exclusive from c', (ch) =>
    ch.assertQueue(x.n('q3'), Q({ autoDelete: true })),
  );
});

S('q-invalid-args', async (x) => {
  const c = await x.conn();
  await x.op(c, 'x-message-ttl negative', (ch) => ch.assertQueue(x.n('a'), Q({ messageTtl: -1 })));
  await x.op(c, 'x-message-ttl string', (ch) =>
    ch.assertQueue(x.n('b'), Q({ arguments: { 'x-message-ttl': 'abc' } })),
  );
  await x.op(c, 'x-max-length negative', (ch) => ch.assertQueue(x.n('c'), Q({ maxLength: -1 })));
  await x.op(c, 'x-expires 0', (ch) => ch.assertQueue(x.n('d'), Q({ expires: 0 })));
  await x.op(c, 'x-overflow bogus', (ch) => ch.assertQueue(x.n('e'), Q({ overflow: 'bogus' })));
  await x.op(c, 'x-max-priority 300', (ch) => ch.assertQueue(x.n('f'), Q({ maxPriority: 300 })));
  await x.op(c, 'x-queue-type bogus', (ch) =>
    ch.assertQueue(x.n('g'), Q({ arguments: { 'x-queue-type': 'bogus' } })),
  );
  await x.op(c, 'x-queue-type classic ok', (ch) =>
    ch.assertQueue(x.n('h'), Q({ arguments: { 'x-queue-type': 'classic' } })),
  );
  await x.op(c, 'x-dead-letter-exchange number', (ch) =>
    ch.assertQueue(x.n('i'), Q({ arguments: { 'x-dead-letter-exchange': 5 } })),
  );
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('q-exclusive-other-conn', async (x) => {
  const c1 = await x.conn('c1');
  const c2 = await x.conn('c2');
  const q = x.n('q');
  const e = x.n('e');
  await x.quiet(c1, async (ch) => {
    await ch.assertExchange(e, 'direct', { durable: false });
    await ch.assertQueue(q, Q({ exclusive: true }));
    ch.sendToQueue(q, Buffer.from('m'));
  });
  await x.op(c2, 'declare (same props)', (ch) => ch.assertQueue(q, Q({ exclusive: true })));
  await x.op(c2, 'declare non-exclusive', (ch) => ch.assertQueue(q, Q()));
  await x.op(c2, 'passive declare', (ch) => ch.checkQueue(q));
  await x.op(c2, 'bind', (ch) => ch.bindQueue(q, e, 'k'));
  await x.op(c2, 'unbind (binding does not exist)', (ch) => ch.unbindQueue(q, e, 'k'));
  await x.quiet(c1, (ch) => ch.bindQueue(q, e, 'owner-key'));
  await x.op(c2, 'unbind an existing binding of the exclusive queue', (ch) =>
    ch.unbindQueue(q, e, 'owner-key'),
  );
  await x.op(c2, 'publish via the binding -> still bound?', async (ch) => {
    ch.publish(e, 'owner-key', Buffer.from('via binding'));
    await sleep(100);
    return 'sent';
  });
  await x.op(c2, 'consume', (ch) => ch.consume(q, () => {}, { noAck: true }));
  await x.op(c2, 'get', (ch) => ch.get(q).then(msgSummary));
  await x.op(c2, 'purge', (ch) => ch.purgeQueue(q));
  await x.op(c2, 'delete', (ch) => ch.deleteQueue(q));
  await x.op(c2, 'publish to it (allowed)', async (ch) => {
    ch.sendToQueue(q, Buffer.from('from c2'));
    await sleep(100);
    return 'sent';
  });
  await x.op(c2, 'c2 still usable', (ch) => ch.checkExchange('amq.direct'));
  await x.op(c1, 'owner counts', (ch) => counts(ch, q));
  await x.op(c1, 'owner declares with exclusive=false', (ch) => ch.assertQueue(q, Q()));
  await x.op(c1, 'owner passive', (ch) => ch.checkQueue(q));
  await x.t('close owner', () => c1.close());
  await sleep(200);
  await x.op(c2, 'after owner closed: passive', (ch) => ch.checkQueue(q));
});

S('q-amq-prefix', async (x) => {
  const c = await x.conn();
  await x.op(c, 'declare amq.foo', (ch) => ch.assertQueue(`amq.${x.n('foo')}`, Q()));
  await x.op(c, 'declare amq.gen-foo', (ch) => ch.assertQueue(`amq.gen-${x.n('foo')}`, Q()));
  await x.op(c, 'declare AMQ.foo (case)', (ch) =>
    ch.assertQueue(`AMQ.${x.n('foo')}`, Q({ autoDelete: true })),
  );
  await x.op(c, 'delete amq.foo missing', (ch) => ch.deleteQueue(`amq.${x.n('foo')}`));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
  await x.quiet(c, (ch) => ch.deleteQueue(`AMQ.${x.n('foo')}`));
});

S('q-quorum', async (x) => {
  const c = await x.conn();
  const qa = { arguments: { 'x-queue-type': 'quorum' } };
  await x.op(c, 'quorum non-durable', (ch) => ch.assertQueue(x.n('a'), { durable: false, ...qa }));
  await x.op(c, 'quorum exclusive', (ch) =>
    ch.assertQueue(x.n('b'), { durable: true, exclusive: true, ...qa }),
  );
  await x.op(c, 'quorum auto-delete', (ch) =>
    ch.assertQueue(x.n('c'), { durable: true, autoDelete: true, ...qa }),
  );
  await x.op(c, 'quorum exclusive non-durable (order)', (ch) =>
    ch.assertQueue(x.n('d'), { durable: false, exclusive: true, ...qa }),
  );
  await x.op(c, 'quorum server-named', (ch) => ch.assertQueue('', { durable: true, ...qa }));
  const q = x.n('ok');
  await x.op(c, 'quorum ok', (ch) => ch.assertQueue(q, { durable: true, ...qa }));
  await x.op(c, 'redeclare as classic (no type arg)', (ch) => ch.assertQueue(q, { durable: true }));
  await x.op(c, 'redeclare as classic (explicit)', (ch) =>
    ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'classic' } }),
  );
  await x.op(c, 'publish+get', async (ch) => {
    await ch.sendToQueue(q, Buffer.from('qq'));
    await sleep(200);
    const m = await ch.get(q, { noAck: false });
    const s = msgSummary(m);
    ch.nack(m, false, true);
    await sleep(100);
    const m2 = await ch.get(q, { noAck: true });
    return { first: s, second: msgSummary(m2), headers: m2?.properties?.headers };
  });
  await x.op(c, 'quorum with x-max-priority', (ch) =>
    ch.assertQueue(x.n('p'), { durable: true, maxPriority: 5, ...qa }),
  );
  await x.quiet(c, (ch) => ch.deleteQueue(q));
});

S('q-declare-ok-counts', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  await sleep(200);
  await x.t('redeclare after 3 msgs', () => ch.assertQueue(q, Q()));
  const cch = await x.ch(c);
  await cch.prefetch(1);
  await x.t('consume (prefetch 1, no ack)', () => cch.consume(q, () => {}).then(() => 'ok'));
  await sleep(200);
  await x.t('passive with 1 unacked, 2 ready, 1 consumer', () => ch.checkQueue(q));
  await x.t('declare same', () => ch.assertQueue(q, Q()));
  const g = await x.t('get-ok messageCount', () => ch.get(q, { noAck: false }).then(msgSummary));
  void g;
  await x.t('passive after get (unacked)', () => ch.checkQueue(q));
});

// =============================================================================================
// bindings

S('bind-missing', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const e = x.n('e');
  await x.quiet(c, async (ch) => {
    await ch.assertQueue(q, Q());
    await ch.assertExchange(e, 'direct', { durable: false });
  });
  await x.op(c, 'bind missing queue', (ch) => ch.bindQueue(x.n('noq'), e, 'k'));
  await x.op(c, 'bind missing exchange', (ch) => ch.bindQueue(q, x.n('noe'), 'k'));
  await x.op(c, 'bind both missing', (ch) => ch.bindQueue(x.n('noq'), x.n('noe'), 'k'));
  await x.op(c, 'unbind missing queue', (ch) => ch.unbindQueue(x.n('noq'), e, 'k'));
  await x.op(c, 'unbind missing exchange', (ch) => ch.unbindQueue(q, x.n('noe'), 'k'));
  await x.op(c, 'unbind both missing', (ch) => ch.unbindQueue(x.n('noq'), x.n('noe'), 'k'));
  await x.op(c, 'e2e bind missing dest', (ch) => ch.bindExchange(x.n('noe'), e, 'k'));
  await x.op(c, 'e2e bind missing source', (ch) => ch.bindExchange(e, x.n('noe'), 'k'));
  await x.op(c, 'e2e bind both missing', (ch) => ch.bindExchange(x.n('noe1'), x.n('noe2'), 'k'));
  await x.op(c, 'e2e unbind missing', (ch) => ch.unbindExchange(x.n('noe1'), e, 'k'));
  await x.op(c, 'bind to amq.nope', (ch) => ch.bindQueue(q, `amq.${x.n('nope')}`, 'k'));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('bind-default-exchange', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.quiet(c, (ch) => ch.assertQueue(q, Q()));
  await x.op(c, 'bind to ""', (ch) => ch.bindQueue(q, '', 'k'));
  await x.op(c, 'bind to "" with key = queue name', (ch) => ch.bindQueue(q, '', q));
  await x.op(c, 'unbind from ""', (ch) => ch.unbindQueue(q, '', q));
  await x.op(c, 'e2e bind dest ""', (ch) => ch.bindExchange('', 'amq.fanout', 'k'));
  await x.op(c, 'e2e bind source ""', (ch) => ch.bindExchange('amq.fanout', '', 'k'));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('bind-unbind-nonexistent', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const e = x.n('e');
  await x.quiet(c, async (ch) => {
    await ch.assertQueue(q, Q());
    await ch.assertExchange(e, 'direct', { durable: false });
  });
  await x.op(c, 'unbind never-bound', (ch) => ch.unbindQueue(q, e, 'k'));
  await x.op(c, 'bind', (ch) => ch.bindQueue(q, e, 'k'));
  await x.op(c, 'bind again (idempotent)', (ch) => ch.bindQueue(q, e, 'k'));
  await x.op(c, 'unbind different args', (ch) => ch.unbindQueue(q, e, 'k', { a: 1 }));
  await x.op(c, 'unbind', (ch) => ch.unbindQueue(q, e, 'k'));
  await x.op(c, 'unbind again', (ch) => ch.unbindQueue(q, e, 'k'));
  await x.op(c, 'e2e unbind never-bound', (ch) => ch.unbindExchange(e, 'amq.direct', 'k'));
  await x.op(c, 'routes nothing now', async (ch) => {
    ch.publish(e, 'k', Buffer.from('x'));
    await sleep(100);
    return counts(ch, q);
  });
  // bindings with args are distinct
  await x.op(c, 'bind with args a=1 and a=2 (two bindings)', async (ch) => {
    await ch.bindQueue(q, e, 'k', { a: 1 });
    await ch.bindQueue(q, e, 'k', { a: 2 });
    ch.publish(e, 'k', Buffer.from('y'));
    await sleep(100);
    return counts(ch, q);
  });
});

S('e2e-bind', async (x) => {
  const c = await x.conn();
  const a = x.n('a');
  const b = x.n('b');
  const qa = x.n('qa');
  const qb = x.n('qb');
  const ch = await x.ch(c, true);
  await x.ok('setup', async () => {
    await ch.assertExchange(a, 'direct', { durable: false });
    await ch.assertExchange(b, 'topic', { durable: false });
    await ch.assertQueue(qa, Q());
    await ch.assertQueue(qb, Q());
    await ch.bindQueue(qa, a, 'x');
    await ch.bindQueue(qb, b, '#');
  });
  await x.t('bind b <- a (dest b, source a, key x)', () => ch.bindExchange(b, a, 'x'));
  await pubc(ch, a, 'x', 'via a x');
  await pubc(ch, a, 'y', 'via a y');
  await pubc(ch, b, 'x', 'via b x');
  await x.t('qa', () => drain(ch, qa));
  await x.t('qb', () => drain(ch, qb));
  await x.t('bind a <- b (dest a, source b, key #)', () => ch.bindExchange(a, b, '#'));
  await pubc(ch, b, 'x', 'via b x 2');
  await pubc(ch, b, 'z', 'via b z');
  await x.t('qa2', () => drain(ch, qa));
  await x.t('qb2', () => drain(ch, qb));
  await x.t('unbind b <- a', () => ch.unbindExchange(b, a, 'x'));
  await pubc(ch, a, 'x', 'via a x 3');
  await x.t('qa3', () => drain(ch, qa));
  await x.t('qb3', () => drain(ch, qb));
  await x.t('delete b (destination of a <- b? no: b is source of a)', () => ch.deleteExchange(b));
  await x.t('a still exists', () => ch.checkExchange(a));
  await x.t('publish to a after b deleted', () => pubc(ch, a, 'x', 'via a x 4'));
  await x.t('qa4', () => drain(ch, qa));
});

S('e2e-cycle', async (x) => {
  const c = await x.conn();
  const a = x.n('a');
  const b = x.n('b');
  const cc = x.n('c');
  const q1 = x.n('q1');
  const q2 = x.n('q2');
  const ch = await x.ch(c, true);
  await x.ok('setup', async () => {
    await ch.assertExchange(a, 'fanout', { durable: false });
    await ch.assertExchange(b, 'fanout', { durable: false });
    await ch.assertExchange(cc, 'fanout', { durable: false });
    await ch.assertQueue(q1, Q());
    await ch.assertQueue(q2, Q());
    await ch.bindExchange(b, a, '');
    await ch.bindExchange(a, b, '');
    await ch.bindExchange(cc, b, '');
    await ch.bindExchange(a, cc, '');
    await ch.bindQueue(q1, a, '');
    await ch.bindQueue(q1, b, '');
    await ch.bindQueue(q2, cc, '');
  });
  await x.t('publish once to a (confirm)', () => pubc(ch, a, '', 'once', { mandatory: true }));
  await sleep(100);
  await x.t('q1', () => drain(ch, q1));
  await x.t('q2', () => drain(ch, q2));
  await x.t('publish once to cc', () => pubc(ch, cc, '', 'once-c'));
  await sleep(100);
  await x.t('q1 b', () => drain(ch, q1));
  await x.t('q2 b', () => drain(ch, q2));
  await x.t('self binding a <- a', () => ch.bindExchange(a, a, ''));
  await x.t('publish to a after self-binding', () => pubc(ch, a, '', 'self'));
  await sleep(100);
  await x.t('q1 c', () => drain(ch, q1));
});

S('alternate-exchange', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  const ex = x.n('ex');
  const ae = x.n('ae');
  const aeq = x.n('aeq');
  const q = x.n('q');
  const returns: any[] = [];
  ch.on('return', (m: any) =>
    returns.push({ ...msgSummary(m), code: m.fields.replyCode, text: m.fields.replyText }),
  );
  await x.ok('setup', async () => {
    await ch.assertExchange(ae, 'fanout', { durable: false });
    await ch.assertExchange(ex, 'direct', { durable: false, alternateExchange: ae });
    await ch.assertQueue(aeq, Q());
    await ch.assertQueue(q, Q());
    await ch.bindQueue(aeq, ae, '');
    await ch.bindQueue(q, ex, 'hit');
  });
  await x.t('routable', () => pubc(ch, ex, 'hit', 'r1'));
  await x.t('unroutable', () => pubc(ch, ex, 'miss', 'u1'));
  await x.t('unroutable mandatory', () => pubc(ch, ex, 'miss', 'u2', { mandatory: true }));
  await sleep(100);
  await x.t('q', () => drain(ch, q));
  await x.t('aeq', () => drain(ch, aeq));
  await x.t('returns', () => returns.splice(0));
  // AE pointing to a missing exchange
  const ex2 = x.n('ex2');
  await x.t('declare ex2 with missing AE', () =>
    ch.assertExchange(ex2, 'direct', { durable: false, alternateExchange: x.n('missing') }),
  );
  await x.t('unroutable mandatory via missing AE', () => pubc(ch, ex2, 'miss', 'u3', { mandatory: true }));
  await sleep(100);
  await x.t('returns 2', () => returns.splice(0));
  // AE that itself has no binding
  const ae3 = x.n('ae3');
  const ex3 = x.n('ex3');
  await x.t('setup ex3 with unbound AE', async () => {
    await ch.assertExchange(ae3, 'direct', { durable: false });
    await ch.assertExchange(ex3, 'direct', { durable: false, alternateExchange: ae3 });
  });
  await x.t('unroutable mandatory via unbound AE', () => pubc(ch, ex3, 'miss', 'u4', { mandatory: true }));
  await sleep(100);
  await x.t('returns 3', () => returns.splice(0));
  // AE chain: ex4 -> ae4 (direct, no match, AE=ae) -> aeq
  const ae4 = x.n('ae4');
  const ex4 = x.n('ex4');
  await x.t('setup AE chain', async () => {
    await ch.assertExchange(ae4, 'direct', { durable: false, alternateExchange: ae });
    await ch.assertExchange(ex4, 'direct', { durable: false, alternateExchange: ae4 });
  });
  await x.t('unroutable via AE chain', () => pubc(ch, ex4, 'miss', 'u5', { mandatory: true }));
  await sleep(100);
  await x.t('aeq after chain', () => drain(ch, aeq));
  await x.t('returns 4', () => returns.splice(0));
  // AE cycle: e5 AE=e6, e6 AE=e5
  const e5 = x.n('e5');
  const e6 = x.n('e6');
  await x.t('setup AE cycle', async () => {
    await ch.assertExchange(e5, 'direct', { durable: false, alternateExchange: e6 });
    await ch.assertExchange(e6, 'direct', { durable: false, alternateExchange: e5 });
  });
  await x.t('unroutable via AE cycle', () => pubc(ch, e5, 'miss', 'u6', { mandatory: true }));
  await sleep(100);
  await x.t('returns 5', () => returns.splice(0));
  // AE on the default exchange? (not possible) ; AE given as non-string
  await x.op(c, 'AE arg as number', (ch2) =>
    ch2.assertExchange(x.n('ex7'), 'direct', { durable: false, arguments: { 'alternate-exchange': 5 } }),
  );
});

S('auto-delete-exchange', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c);
  const e = x.n('e');
  const q = x.n('q');
  await x.ok('setup', async () => {
    await ch.assertExchange(e, 'direct', { durable: false, autoDelete: true });
    await ch.assertQueue(q, Q());
  });
  await x.op(c, 'exists without ever having bindings', (ch2) => ch2.checkExchange(e));
  await x.t('bind k1', () => ch.bindQueue(q, e, 'k1'));
  await x.t('bind k2', () => ch.bindQueue(q, e, 'k2'));
  await x.t('unbind k1', () => ch.unbindQueue(q, e, 'k1'));
  await x.op(c, 'exists with 1 binding', (ch2) => ch2.checkExchange(e));
  await x.t('unbind k2', () => ch.unbindQueue(q, e, 'k2'));
  await x.op(c, 'after last unbind', (ch2) => ch2.checkExchange(e));
  // deleted by queue deletion
  const e2 = x.n('e2');
  const q2 = x.n('q2');
  await x.op(c, 'setup e2 bound to q2', async (ch2) => {
    await ch2.assertExchange(e2, 'fanout', { durable: false, autoDelete: true });
    await ch2.assertQueue(q2, Q());
    await ch2.bindQueue(q2, e2, '');
  });
  await x.op(c, 'delete q2', (ch2) => ch2.deleteQueue(q2));
  await x.op(c, 'e2 after queue deleted', (ch2) => ch2.checkExchange(e2));
  // e2e: auto-delete source exchange losing its exchange binding
  const e3 = x.n('e3');
  const e4 = x.n('e4');
  await x.op(c, 'setup e3 (autodelete) -> e4', async (ch2) => {
    await ch2.assertExchange(e3, 'fanout', { durable: false, autoDelete: true });
    await ch2.assertExchange(e4, 'fanout', { durable: false, autoDelete: true });
    await ch2.bindExchange(e4, e3, '');
  });
  await x.op(c, 'unbind e4 <- e3', (ch2) => ch2.unbindExchange(e4, e3, ''));
  await x.op(c, 'e3 (source) after unbind', (ch2) => ch2.checkExchange(e3));
  await x.op(c, 'e4 (destination, never had own bindings as source)', (ch2) => ch2.checkExchange(e4));
  // exclusive auto-delete queue bound; connection closes
  const e5 = x.n('e5');
  const c2 = await x.conn('c2');
  await x.op(c2, 'setup e5 with exclusive queue on c2', async (ch2) => {
    await ch2.assertExchange(e5, 'fanout', { durable: false, autoDelete: true });
    const r = await ch2.assertQueue('', { exclusive: true, durable: false });
    await ch2.bindQueue(r.queue, e5, '');
  });
  await x.t('close c2', () => c2.close());
  await sleep(300);
  await x.op(c, 'e5 after exclusive queue gone', (ch2) => ch2.checkExchange(e5));
});

S('headers-exchange', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  const e = x.n('h');
  const qs: Record<string, any> = {
    all: { 'x-match': 'all', a: 1, b: 'two' },
    any: { 'x-match': 'any', a: 1, b: 'two' },
    dflt: { a: 1, b: 'two' },
    allx: { 'x-match': 'all-with-x', 'x-k': 'v', a: 1 },
    anyx: { 'x-match': 'any-with-x', 'x-k': 'v', a: 9 },
    allxplain: { 'x-match': 'all', 'x-k': 'v' },
    anyxplain: { 'x-match': 'any', 'x-k': 'v' },
    empty_all: { 'x-match': 'all' },
    empty_any: { 'x-match': 'any' },
    voidv: { 'x-match': 'all', v: null },
    numtype: { 'x-match': 'all', n: { '!': 'long', value: 1 } },
  };
  await x.ok('setup', async () => {
    await ch.assertExchange(e, 'headers', { durable: false });
    for (const [k, args] of Object.entries(qs)) {
      await ch.assertQueue(x.n(k), Q());
      await ch.bindQueue(x.n(k), e, '', args);
    }
  });
  const msgs: [string, any][] = [
    ['none', undefined],
    ['a1', { a: 1 }],
    ['a1b2', { a: 1, b: 'two' }],
    ['a1bX', { a: 1, b: 'X' }],
    ['a1 as long', { a: { '!': 'long', value: 1 } }],
    ['a1 as string', { a: '1' }],
    ['xk', { 'x-k': 'v' }],
    ['xk a1', { 'x-k': 'v', a: 1 }],
    ['v void', { v: null }],
    ['v other', { v: 1 }],
    ['n int8 1', { n: 1 }],
    ['b bytes two', { b: Buffer.from('two') }],
  ];
  for (const [body, headers] of msgs) await pubc(ch, e, 'rk', body, { headers });
  const res: any = {};
  for (const k of Object.keys(qs)) res[k] = await drain(ch, x.n(k));
  x.rec('routed', res);
});

S('headers-invalid-xmatch', async (x) => {
  const c = await x.conn();
  const e = x.n('h');
  const q = x.n('q');
  await x.quiet(c, async (ch) => {
    await ch.assertExchange(e, 'headers', { durable: false });
    await ch.assertQueue(q, Q());
  });
  await x.op(c, "x-match 'foo'", (ch) => ch.bindQueue(q, e, '', { 'x-match': 'foo' }));
  await x.op(c, 'x-match number', (ch) => ch.bindQueue(q, e, '', { 'x-match': 1 }));
  await x.op(c, "x-match 'ALL'", (ch) => ch.bindQueue(q, e, '', { 'x-match': 'ALL' }));
  await x.op(c, "x-match 'foo' on amq.match", (ch) => ch.bindQueue(q, 'amq.match', '', { 'x-match': 'foo' }));
  await x.op(c, "x-match 'foo' on direct exchange (ignored?)", (ch) =>
    ch.bindQueue(q, 'amq.direct', 'k', { 'x-match': 'foo' }),
  );
  await x.op(c, "e2e bind with x-match 'foo'", (ch) =>
    ch.bindExchange('amq.fanout', e, '', { 'x-match': 'foo' }),
  );
  await x.op(c, "unbind with x-match 'foo'", (ch) => ch.unbindQueue(q, e, '', { 'x-match': 'foo' }));
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
});

S('topic-patterns', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  const e = x.n('t');
  const patterns = [
    '#',
    '*',
    '',
    'a..b',
    'a.*.c',
    'a.#',
    '#.c',
    'a.#.c',
    '*.*',
    '#.#',
    'a.*',
    '*.b.#',
    '.',
    'a.',
    'a.#.#.c',
    '#.*',
  ];
  await x.ok('setup', async () => {
    await ch.assertExchange(e, 'topic', { durable: false });
    for (let i = 0; i < patterns.length; i++) {
      await ch.assertQueue(x.n(`q${i}`), Q());
      await ch.bindQueue(x.n(`q${i}`), e, patterns[i]);
    }
  });
  const keys = [
    '',
    'a',
    'a.b',
    'a..b',
    'a.b.c',
    'a.c',
    'a.x.y.c',
    '.',
    'a.',
    '.a',
    'b',
    'x.b.y',
    'a.b.c.d',
    'c',
    'A.B',
  ];
  for (const k of keys) await pubc(ch, e, k, `[${k}]`);
  const res: any = {};
  for (let i = 0; i < patterns.length; i++) res[`'${patterns[i]}'`] = await drain(ch, x.n(`q${i}`));
  x.rec('routed', res);
});

S('direct-fanout-routing', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  const d = x.n('d');
  const f = x.n('f');
  const q1 = x.n('q1');
  const q2 = x.n('q2');
  await x.ok('setup', async () => {
    await ch.assertExchange(d, 'direct', { durable: false });
    await ch.assertExchange(f, 'fanout', { durable: false });
    await ch.assertQueue(q1, Q());
    await ch.assertQueue(q2, Q());
    await ch.bindQueue(q1, d, 'k');
    await ch.bindQueue(q1, d, 'K');
    await ch.bindQueue(q1, d, '');
    await ch.bindQueue(q2, d, 'k');
    await ch.bindQueue(q1, f, 'ignored');
  });
  for (const k of ['k', 'K', '', 'x']) await pubc(ch, d, k, `d[${k}]`);
  await pubc(ch, f, 'anything', 'f');
  await pubc(ch, '', q1, 'default');
  x.rec('q1', await drain(ch, q1));
  x.rec('q2', await drain(ch, q2));
  await x.t('CC header', async () => {
    await pubc(ch, d, 'x', 'cc', { CC: ['k'] });
    await pubc(ch, d, 'x', 'bcc', { BCC: ['k'] });
    const m = await ch.get(q2, { noAck: true });
    const m2 = await ch.get(q2, { noAck: true });
    return [
      { ...msgSummary(m), headers: m?.properties?.headers },
      { ...msgSummary(m2), headers: m2?.properties?.headers },
    ];
  });
});

// =============================================================================================
// publish

S('publish-missing-exchange', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c);
  ch.publish(x.n('nope'), 'k', Buffer.from('x'));
  await x.closed(ch);
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  // with confirms: nack or close?
  const cc = await x.ch(c, true);
  const ev: any[] = [];
  cc.on('ack', (f: any) => ev.push(['ack', f]));
  cc.on('nack', (f: any) => ev.push(['nack', f]));
  cc.publish(x.n('nope'), 'k', Buffer.from('x'), {}, () => {});
  await x.closed(cc, 'confirm channel');
  x.rec('confirm events', ev);
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  const ch3 = await x.ch(c);
  ch3.publish(`amq.${x.n('nope')}`, 'k', Buffer.from('x'));
  await x.closed(ch3, 'amq.nope');
});

S('publish-internal', async (x) => {
  const c = await x.conn();
  const e = x.n('int');
  const q = x.n('q');
  await x.quiet(c, async (ch) => {
    await ch.assertExchange(e, 'fanout', { durable: false, internal: true });
    await ch.assertQueue(q, Q());
    await ch.bindQueue(q, e, '');
    await ch.bindExchange(e, 'amq.fanout', '');
  });
  const ch = await x.ch(c);
  ch.publish(e, 'k', Buffer.from('x'));
  await x.closed(ch);
  await x.op(c, 'publish via amq.fanout -> internal (routes)', async (ch2) => {
    ch2.publish('amq.fanout', '', Buffer.from('via'));
    await sleep(150);
    return drain(ch2, q);
  });
  const ch4 = await x.ch(c);
  ch4.publish('amq.rabbitmq.trace', 'k', Buffer.from('x'));
  await x.closed(ch4, 'amq.rabbitmq.trace');
  await x.quiet(c, (ch2) => ch2.unbindExchange(e, 'amq.fanout', ''));
});

S('publish-mandatory', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  let ev: any[] = [];
  // acks expanded per tag (multiple acks are legal coalescing); returns carry the tag they belong to
  let lastAcked = 0;
  let pubTag = 0;
  const tagOf = new Map<string, number>();
  const onAck = (kind: string) => (f: any) => {
    const upto = f.deliveryTag;
    const from = f.multiple ? lastAcked + 1 : upto;
    for (let t = from; t <= upto; t++) ev.push([kind, t]);
    lastAcked = Math.max(lastAcked, upto);
  };
  ch.on('return', (m: any) =>
    ev.push([
      'return',
      tagOf.get(m.content.toString()),
      { ...msgSummary(m), code: m.fields.replyCode, text: m.fields.replyText, props: m.properties },
    ]),
  );
  ch.on('ack', onAck('ack'));
  ch.on('nack', onAck('nack'));
  const pub = (ex: string, rk: string, body: string, o: any) => {
    tagOf.set(body, ++pubTag);
    ch.publish(ex, rk, Buffer.from(body), o, () => {});
  };
  pub('amq.direct', x.n('nowhere'), 'ret1', { mandatory: true, messageId: 'm1', headers: { h: 1 } });
  pub('amq.direct', x.n('nowhere'), 'noret', { mandatory: false });
  pub('', x.n('noq'), 'ret2', { mandatory: true });
  await x.t('waitForConfirms', () => ch.waitForConfirms());
  await sleep(100);
  // per tag: the return (if any) must come before the ack
  const byTag = (list: any[]) => {
    const out: any = {};
    list.forEach((e, i) => {
      const t = e[1];
      out[t] ??= [];
      out[t].push(e[0] === 'return' ? ['return', e[2]] : e[0]);
      void i;
    });
    return out;
  };
  x.rec('events per tag, in order', byTag(ev));
  x.note(
    'raw order',
    ev.map((e) => `${e[0]}${e[1]}`),
  );
  ev = [];
  // non-confirm channel
  const ch2 = await x.ch(c);
  ch2.on('return', (m: any) =>
    ev.push(['return', { ...msgSummary(m), code: m.fields.replyCode, text: m.fields.replyText }]),
  );
  ch2.publish('', x.n('noq'), Buffer.from(''), { mandatory: true });
  await sleep(200);
  x.rec('events plain channel', ev.splice(0));
  // mandatory to a max-length 0 queue: routed (then dropped) -> no return
  const q = x.n('q');
  await x.t('declare q', () => ch.assertQueue(q, Q({ maxLength: 0 })));
  pub('', q, 'to max-length 0 queue', { mandatory: true });
  await x.t('waitForConfirms 2', () => ch.waitForConfirms());
  await sleep(100);
  x.rec('events max-length 0 (routed but dropped)', ev.splice(0));
  const ea = x.n('ea');
  const eb = x.n('eb');
  await x.t('declare ea -> eb (no queues)', async () => {
    await ch.assertExchange(ea, 'fanout', { durable: false });
    await ch.assertExchange(eb, 'fanout', { durable: false });
    await ch.bindExchange(eb, ea, '');
  });
  pub(ea, 'k', 'via e2e to nowhere', { mandatory: true });
  await x.t('waitForConfirms 3', () => ch.waitForConfirms());
  await sleep(100);
  x.rec(
    'events e2e to nowhere',
    ev.splice(0).map((e) => e.slice(0, 2)),
  );
  await x.t('count', () => counts(ch, q));
});

S('publish-immediate', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.quiet(c, (ch) => ch.assertQueue(q, Q()));
  const ch = await x.ch(c);
  ch.sendMessage(
    { exchange: '', routingKey: q, mandatory: false, immediate: true, ticket: 0 },
    { headers: {} },
    Buffer.from('imm'),
  );
  await x.closed(ch);
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
});

S('publish-user-id', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.quiet(c, (ch) => ch.assertQueue(q, Q()));
  await x.op(c, 'user_id guest ok', async (ch) => {
    ch.sendToQueue(q, Buffer.from('u'), { userId: 'guest' });
    await sleep(100);
    const m = await ch.get(q, { noAck: true });
    return { ...msgSummary(m), userId: m?.properties?.userId };
  });
  const ch = await x.ch(c);
  ch.sendToQueue(q, Buffer.from('u'), { userId: 'bob' });
  await x.closed(ch);
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  const ch2 = await x.ch(c);
  ch2.sendToQueue(q, Buffer.from('u'), { userId: '' });
  await x.closed(ch2, 'empty user_id');
  const ch3 = await x.ch(c);
  ch3.sendToQueue(q, Buffer.from('u'), { userId: 'GUEST' });
  await x.closed(ch3, 'GUEST');
});

S('publish-check-order', async (x) => {
  const c = await x.conn();
  const e = x.n('int');
  await x.quiet(c, (ch) => ch.assertExchange(e, 'fanout', { durable: false, internal: true }));
  const bad = async (label: string, ex: string, rk: string, props: any, immediate = false) => {
    const ch = await x.ch(c);
    x.rec(label);
    ch.sendMessage(
      { exchange: ex, routingKey: rk, mandatory: false, immediate, ticket: 0 },
      { headers: {}, ...props },
      Buffer.from('x'),
    );
    if (!(await x.closed(ch, label))) await withTimeout(ch.close(), 1000, 'close').catch(() => {});
  };
  await bad('expiration "abc"', 'amq.direct', 'k', { expiration: 'abc' });
  await bad('expiration "-1"', 'amq.direct', 'k', { expiration: '-1' });
  await bad('expiration "" (empty)', 'amq.direct', 'k', { expiration: '' });
  await bad('expiration "1.5"', 'amq.direct', 'k', { expiration: '1.5' });
  await bad('bad user_id + missing exchange', x.n('nope'), 'k', { userId: 'bob' });
  await bad('bad user_id + internal exchange', e, 'k', { userId: 'bob' });
  await bad('bad user_id + reply-to without consumer', 'amq.direct', 'k', {
    userId: 'bob',
    replyTo: 'amq.rabbitmq.reply-to',
  });
  await bad('bad user_id + bad expiration', 'amq.direct', 'k', { userId: 'bob', expiration: 'abc' });
  await bad('immediate + missing exchange (connection error?)', x.n('nope'), 'k', {}, true);
});

S('publish-bodies', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  await x.t('empty body', async () => {
    await pubc(ch, '', q, Buffer.alloc(0));
    const m = await ch.get(q, { noAck: true });
    return { ...msgSummary(m), len: m?.content?.length };
  });
  const big = Buffer.alloc(5 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
  await x.t(
    '5MB body via get',
    async () => {
      await pubc(ch, '', q, big);
      const m = await ch.get(q, { noAck: true });
      return { len: m?.content?.length, equal: m ? Buffer.compare(m.content, big) === 0 : false };
    },
    20000,
  );
  await x.t(
    '5MB body via consume',
    async () => {
      await pubc(ch, '', q, big);
      let got: any = null;
      const ok = await ch.consume(
        q,
        (m: any) => {
          got = m;
        },
        { noAck: true },
      );
      await until(() => got !== null, 10000);
      await ch.cancel(ok.consumerTag);
      return { len: got?.content?.length, equal: got ? Buffer.compare(got.content, big) === 0 : false };
    },
    20000,
  );
  const frames = x.raw.c.filter((f) => f.kind === 'header');
  x.rec(
    'header frames (hex)',
    frames.map((f) => f.hex),
  );
});

S('publish-properties-roundtrip', async (x) => {
  const c = await x.conn();
  const cg = await x.conn('g');
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  const headers = {
    str: 'hello',
    emptystr: '',
    utf8: 'héllo ✓',
    bool_t: true,
    bool_f: false,
    i8: { '!': 'int8', value: -5 },
    u8: { '!': 'uint8', value: 250 },
    i16: { '!': 'int16', value: -30000 },
    u16: { '!': 'uint16', value: 60000 },
    i32: { '!': 'int32', value: -2000000000 },
    u32: { '!': 'uint32', value: 4000000000 },
    i64: { '!': 'int64', value: -9007199254740991 },
    f32: { '!': 'float', value: 1.5 },
    f64: { '!': 'double', value: Math.PI },
    dec: { '!': 'decimal', value: { places: 2, digits: 12345 } },
    ts: { '!': 'timestamp', value: 1700000000 },
    nested: { a: 1, b: { c: 'd' }, arr: [1, 'x'] },
    arr: [1, 'two', true, null, { k: 'v' }, [1, 2], Buffer.from([0, 1, 2]), { '!': 'float', value: 2.5 }],
    emptyarr: [],
    emptytbl: {},
    bytes: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
    void: null,
  };
  const props = {
    contentType: 'application/json',
    contentEncoding: 'gzip',
    headers,
    deliveryMode: 2,
    priority: 7,
    correlationId: 'corr-1',
    replyTo: 'reply-q',
    expiration: '60000',
    messageId: 'mid-1',
    timestamp: 1700000001,
    type: 'my.type',
    userId: 'guest',
    appId: 'app-1',
  };
  await x.t('publish all props', () => pubc(ch, '', q, 'props', props));
  await x.t('publish no props', () => pubc(ch, '', q, 'noprops', {}));
  await x.t('publish only deliveryMode 1', () => pubc(ch, '', q, 'dm1', { deliveryMode: 1 }));
  await x.t('publish priority 0 + empty strings', () =>
    pubc(ch, '', q, 'zero', { priority: 0, contentType: '', messageId: '', headers: {} }),
  );
  const gch = await x.ch(cg);
  for (let i = 0; i < 4; i++) {
    await x.t(`get ${i}`, async () => {
      const m = await gch.get(q, { noAck: true });
      return { ...msgSummary(m), properties: m?.properties };
    });
  }
  x.rec(
    'raw header frames seen by getter',
    x.raw.g.filter((f) => f.kind === 'header').map((f) => f.hex),
  );
  // same via consume
  await x.t('publish all props again', () => pubc(ch, '', q, 'props2', props));
  const got: any[] = [];
  await x.t('consume', () => gch.consume(q, (m: any) => got.push(m), { noAck: true }).then(() => 'ok'));
  await until(() => got.length > 0);
  x.rec(
    'raw header frame via deliver',
    x.raw.g
      .filter((f) => f.kind === 'header')
      .map((f) => f.hex)
      .slice(4),
  );
});

// =============================================================================================
// consume

S('consume-basics', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  const ok: any = await x.t('consume server tag', () => ch.consume(q, () => {}));
  x.rec('tag prefix amq.ctag-', ok?.consumerTag?.startsWith('amq.ctag-'));
  x.note('ctag', ok?.consumerTag);
  await x.t('consume explicit tag', () => ch.consume(q, () => {}, { consumerTag: 'my-tag' }));
  await x.t('passive: 2 consumers', () => ch.checkQueue(q));
  await x.t('cancel my-tag', () => ch.cancel('my-tag'));
  await x.t('cancel unknown tag', () => ch.cancel('nope-tag'));
  await x.t('cancel my-tag again', () => ch.cancel('my-tag'));
  await x.t('same tag on another channel', async () => {
    const ch2 = await x.ch(c);
    const r = await ch2.consume(q, () => {}, { consumerTag: ok?.consumerTag ?? 'x' });
    return r;
  });
  await x.t('still usable', () => ch.checkQueue(q));
  await x.t('consume with empty-string queue on fresh channel (no last queue)', async () => {
    const ch3 = await x.ch(c);
    return ch3.consume('', () => {});
  });
  await x.op(c, 'consume missing queue', (ch4) => ch4.consume(x.n('noq'), () => {}));
  await x.op(c, 'next channel works?', (ch5) => ch5.checkExchange('amq.direct'));
});

S('consume-exclusive', async (x) => {
  const c = await x.conn();
  const c2 = await x.conn('c2');
  const q = x.n('q');
  const q2 = x.n('q2');
  await x.quiet(c, async (ch) => {
    await ch.assertQueue(q, Q());
    await ch.assertQueue(q2, Q());
  });
  const ch = await x.ch(c);
  await x.t('normal consumer on q', () => ch.consume(q, () => {}, { consumerTag: 't1' }));
  await x.op(c2, 'exclusive consume on q (other conn)', (ch2) =>
    ch2.consume(q, () => {}, { exclusive: true }),
  );
  await x.op(c, 'exclusive consume on q (same conn, other channel)', (ch2) =>
    ch2.consume(q, () => {}, { exclusive: true }),
  );
  await x.t('exclusive consume on q (same channel)', () => ch.consume(q, () => {}, { exclusive: true }));
  const ch3 = await x.ch(c);
  await x.t('exclusive consumer on q2', () =>
    ch3.consume(q2, () => {}, { exclusive: true, consumerTag: 'ex' }),
  );
  await x.op(c2, 'normal consume on q2 (other conn)', (ch2) => ch2.consume(q2, () => {}));
  await x.op(c2, 'exclusive consume on q2 (other conn)', (ch2) =>
    ch2.consume(q2, () => {}, { exclusive: true }),
  );
  await x.t('normal consume on q2 (same channel)', () => ch3.consume(q2, () => {}));
  await x.op(c2, 'after cancel of exclusive: consume on q2', async (ch2) => {
    await ch3.cancel('ex').catch(() => {});
    return ch2.consume(q2, () => {}, { consumerTag: 'after' });
  });
});

S('consume-duplicate-tag', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.quiet(c, (ch) => ch.assertQueue(q, Q()));
  const ch = await x.ch(c);
  await x.t('consume tag dup', () => ch.consume(q, () => {}, { consumerTag: 'dup' }));
  await x.t('consume tag dup again (same channel)', () => ch.consume(q, () => {}, { consumerTag: 'dup' }));
  await sleep(200);
  await x.t('new channel on same connection', async () => {
    const ch2 = await x.ch(c);
    return ch2.checkExchange('amq.direct');
  });
  const c2 = await x.conn('c2');
  const ch2 = await x.ch(c2);
  await x.t('c2: consume dup on q', () => ch2.consume(q, () => {}, { consumerTag: 'dup2' }));
  await x.t('c2: consume dup2 on other queue (same channel)', async () => {
    await ch2.assertQueue(x.n('qq'), Q());
    return ch2.consume(x.n('qq'), () => {}, { consumerTag: 'dup2' });
  });
});

S('consume-cancel-with-unacked', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  for (let i = 1; i <= 5; i++) await pubc(ch, '', q, `m${i}`);
  const got: any[] = [];
  const ok: any = await x.t('consume (manual ack)', () =>
    ch.consume(q, (m: any) => got.push(m), { consumerTag: 'ct' }),
  );
  await until(() => got.length >= 5);
  x.rec('delivered', got.map(msgSummary));
  await x.t('cancel', () => ch.cancel('ct'));
  void ok;
  const ch2 = await x.ch(c);
  await x.t('counts right after cancel (ready msgs)', () => counts(ch2, q));
  await sleep(200);
  await x.t('counts after 200ms', () => counts(ch2, q));
  x.rec('ack m1 after cancel');
  ch.ack(got[0]);
  x.rec('nack m2 requeue after cancel');
  ch.nack(got[1], false, true);
  x.rec('reject m3 no-requeue after cancel');
  ch.reject(got[2], false);
  await x.ok('sync on channel (still open?)', () => ch.checkQueue(q));
  await sleep(100);
  await x.t('counts after ack/nack/reject', () => counts(ch2, q));
  await x.t('get requeued m2', () => ch2.get(q, { noAck: true }).then(msgSummary));
  await x.t('recover (m4, m5 unacked, no consumer)', () => ch.recover());
  await sleep(200);
  await x.t('counts after recover', () => counts(ch2, q));
  await x.t('ack m4 after recover (stale tag?)', async () => {
    ch.ack(got[3]);
    return ch.checkQueue(q);
  });
  await x.t('counts', () => counts(ch2, q));
  await x.t('drain', () => drain(ch2, q));
});

S('consume-cancel-then-close', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  for (let i = 1; i <= 3; i++) await pubc(ch, '', q, `m${i}`);
  const got: any[] = [];
  await x.t('consume', () => ch.consume(q, (m: any) => got.push(m), { consumerTag: 'ct' }));
  await until(() => got.length >= 3);
  await x.t('cancel', () => ch.cancel('ct'));
  const ch2 = await x.ch(c);
  await x.t('counts after cancel', () => counts(ch2, q));
  await x.t('close consuming channel', () => ch.close());
  await sleep(200);
  await x.t('counts after close', () => counts(ch2, q));
  await x.t('drain (order, redelivered)', async () => {
    const out = [];
    for (;;) {
      const m = await ch2.get(q, { noAck: true });
      if (!m) break;
      out.push(msgSummary(m));
    }
    return out;
  });
});

S('consume-server-cancel', async (x) => {
  const c = await x.conn();
  const c2 = await x.conn('c2');
  const q = x.n('q');
  const ch = await x.ch(c);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  const events: any[] = [];
  await x.t('consume', () =>
    ch.consume(q, (m: any) => events.push(m === null ? 'null (cancelled)' : msgSummary(m)), {
      consumerTag: 'ct',
    }),
  );
  ch.sendToQueue(q, Buffer.from('before'));
  await until(() => events.length >= 1);
  await x.op(c2, 'delete queue from other conn', (ch2) => ch2.deleteQueue(q));
  await until(() => events.length >= 2);
  await sleep(100);
  x.rec('consumer callback events', events);
  x.rec(
    'raw server-cancel frames',
    x.raw.c.filter((f) => f.kind === 'server-cancel'),
  );
  await x.t('channel still usable', () => ch.checkExchange('amq.direct'));
  await x.t('cancel the server-cancelled tag', () =>
    ch.rpc(defs.BasicCancel, { consumerTag: 'ct', nowait: false }, defs.BasicCancelOk),
  );
  // exclusive queue deleted by owner connection closing -> consumer on other channel of same conn gets nothing
  // consume on own queue then delete it on the same channel
  const q2 = x.n('q2');
  const ev2: any[] = [];
  await x.t('declare q2 + consume + delete on same channel', async () => {
    await ch.assertQueue(q2, Q());
    await ch.consume(q2, (m: any) => ev2.push(m === null ? 'null' : msgSummary(m)), { consumerTag: 'ct2' });
    return ch.deleteQueue(q2);
  });
  await sleep(200);
  x.rec('same-channel delete events', ev2);
});

S('consume-auto-delete-queue', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c);
  await x.t('declare auto-delete', () => ch.assertQueue(q, Q({ autoDelete: true })));
  await x.op(c, 'exists with no consumers ever', (ch2) => ch2.checkQueue(q));
  await x.t('consume a', () => ch.consume(q, () => {}, { consumerTag: 'a' }));
  await x.t('consume b', () => ch.consume(q, () => {}, { consumerTag: 'b' }));
  await x.t('cancel a', () => ch.cancel('a'));
  await x.op(c, 'exists with 1 consumer', (ch2) => ch2.checkQueue(q));
  await x.t('cancel b', () => ch.cancel('b'));
  await sleep(100);
  await x.op(c, 'after last cancel', (ch2) => ch2.checkQueue(q));
  // auto-delete via channel close
  const q2 = x.n('q2');
  const ch3 = await x.ch(c);
  await x.t('declare q2 auto-delete and consume', async () => {
    await ch3.assertQueue(q2, Q({ autoDelete: true }));
    return ch3.consume(q2, () => {}, { consumerTag: 'z' }).then(() => 'ok');
  });
  await x.t('close channel', () => ch3.close());
  await sleep(200);
  await x.op(c, 'q2 after channel close', (ch2) => ch2.checkQueue(q2));
  // auto-delete queue used via basic.get only
  const q3 = x.n('q3');
  await x.op(c, 'q3 declare, get', async (ch2) => {
    await ch2.assertQueue(q3, Q({ autoDelete: true }));
    return ch2.get(q3);
  });
  await x.op(c, 'q3 still exists', (ch2) => ch2.checkQueue(q3));
  await x.quiet(c, (ch2) => ch2.deleteQueue(q3));
});

S('consume-priority', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  const who: string[] = [];
  await x.t('consume low (default)', () =>
    ch.consume(q, (m: any) => who.push(`low:${m.content}`), { noAck: true, consumerTag: 'low' }),
  );
  await x.t('consume high (x-priority 10)', () =>
    ch.consume(q, (m: any) => who.push(`high:${m.content}`), {
      noAck: true,
      consumerTag: 'high',
      priority: 10,
    }),
  );
  await x.t('consume mid (x-priority 5)', () =>
    ch.consume(q, (m: any) => who.push(`mid:${m.content}`), {
      noAck: true,
      consumerTag: 'mid',
      arguments: { 'x-priority': 5 },
    }),
  );
  for (let i = 0; i < 5; i++) await pubc(ch, '', q, `m${i}`);
  await until(() => who.length >= 5);
  x.rec('deliveries', who.splice(0));
  // with manual ack and prefetch 1, high gets blocked -> next goes to mid
  const ch2 = await x.ch(c, true);
  await ch2.prefetch(1);
  const q2 = x.n('q2');
  await x.t('declare q2', () => ch2.assertQueue(q2, Q()));
  await x.t('consume q2 high/low prefetch 1', async () => {
    await ch2.consume(q2, (m: any) => who.push(`high:${m.content}`), { consumerTag: 'h2', priority: 10 });
    await ch2.consume(q2, (m: any) => who.push(`low:${m.content}`), { consumerTag: 'l2' });
  });
  for (let i = 0; i < 3; i++) await pubc(ch2, '', q2, `n${i}`);
  await until(() => who.length >= 2);
  await sleep(200);
  x.rec('deliveries prefetch 1', who.splice(0));
  await x.op(c, 'x-priority as string', (ch3) =>
    ch3.consume(q, () => {}, { arguments: { 'x-priority': 'high' } }),
  );
});

S('consume-round-robin', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const pc = await x.ch(c, true);
  await x.t('declare', () => pc.assertQueue(q, Q()));
  const who: string[] = [];
  const ch1 = await x.ch(c);
  const ch2 = await x.ch(c);
  await x.t('consume a (ch1), b (ch2), c (ch1)', async () => {
    await ch1.consume(q, (m: any) => who.push(`a:${m.content}`), { noAck: true, consumerTag: 'a' });
    await ch2.consume(q, (m: any) => who.push(`b:${m.content}`), { noAck: true, consumerTag: 'b' });
    await ch1.consume(q, (m: any) => who.push(`c:${m.content}`), { noAck: true, consumerTag: 'c' });
  });
  for (let i = 0; i < 6; i++) await pubc(pc, '', q, `m${i}`);
  await until(() => who.length >= 6);
  await sleep(100);
  x.rec('deliveries (sorted by consumer)', [...who].sort());
  x.note('deliveries order', who);
  // noAck consumers ignore prefetch
  const q2 = x.n('q2');
  const ch3 = await x.ch(c);
  const got: any[] = [];
  await x.t('qos 1 (both kinds) + noAck consumer', async () => {
    await ch3.assertQueue(q2, Q());
    await ch3.prefetch(1, false);
    await ch3.prefetch(1, true);
    await ch3.consume(q2, (m: any) => got.push(m.content.toString()), { noAck: true });
  });
  for (let i = 0; i < 5; i++) await pubc(pc, '', q2, `n${i}`);
  await until(() => got.length >= 5, 1000);
  x.rec('noAck consumer with prefetch 1 got', got);
  // manual-ack consumer + noAck consumer on the same channel with global prefetch 1
  const q3 = x.n('q3');
  const ch4 = await x.ch(c);
  const m1: any[] = [];
  const m2: any[] = [];
  await x.t('global qos 1: ack consumer + noAck consumer on one channel', async () => {
    await ch4.assertQueue(q3, Q());
    await ch4.prefetch(1, true);
    await ch4.consume(q3, (m: any) => m1.push(m.content.toString()), { consumerTag: 'ack' });
    await ch4.consume(q3, (m: any) => m2.push(m.content.toString()), { consumerTag: 'noack', noAck: true });
  });
  for (let i = 0; i < 4; i++) await pubc(pc, '', q3, `o${i}`);
  await sleep(300);
  x.rec('ack consumer count', m1.length, 'noAck consumer count', m2.length);
});

S('consume-prefetch', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const pc = await x.ch(c, true);
  await x.t('declare', () => pc.assertQueue(q, Q()));
  const ch = await x.ch(c);
  await x.t('qos 2 per-consumer', () => ch.prefetch(2, false));
  await x.t('qos 3 global', () => ch.prefetch(3, true));
  const a: any[] = [];
  const b: any[] = [];
  await x.t('consume a', () => ch.consume(q, (m: any) => a.push(m), { consumerTag: 'a' }));
  await x.t('consume b', () => ch.consume(q, (m: any) => b.push(m), { consumerTag: 'b' }));
  for (let i = 0; i < 10; i++) await pubc(pc, '', q, `m${i}`);
  await sleep(400);
  x.rec('a,b counts', a.length, b.length, 'total', a.length + b.length);
  await x.t('queue counts', () => counts(pc, q));
  ch.ack(a[0]);
  await sleep(300);
  x.rec('after ack a[0]: a,b', a.length, b.length);
  ch.ack(b[0]);
  await sleep(300);
  x.rec('after ack b[0]: a,b', a.length, b.length);
  // consumers registered before qos change keep their old limit?
  const ch2 = await x.ch(c);
  const q2 = x.n('q2');
  await x.t('declare q2', () => ch2.assertQueue(q2, Q()));
  const d: any[] = [];
  await x.t('qos 1 then consume d, then qos 5', async () => {
    await ch2.prefetch(1);
    await ch2.consume(q2, (m: any) => d.push(m), { consumerTag: 'd' });
    await ch2.prefetch(5);
  });
  for (let i = 0; i < 6; i++) await pubc(pc, '', q2, `n${i}`);
  await sleep(400);
  x.rec('d count (limit fixed at consume time?)', d.length);
  // qos 0 = unlimited
  const ch3 = await x.ch(c);
  const q3 = x.n('q3');
  await x.t('declare q3', () => ch3.assertQueue(q3, Q()));
  const e: any[] = [];
  await x.t('qos 0 global + consume e', async () => {
    await ch3.prefetch(0, true);
    await ch3.consume(q3, (m: any) => e.push(m), { consumerTag: 'e' });
  });
  for (let i = 0; i < 6; i++) await pubc(pc, '', q3, `o${i}`);
  await sleep(300);
  x.rec('e count', e.length);
  // prefetch with basic.get: not limited
  const ch4 = await x.ch(c);
  await x.t('qos 1 then two gets without ack', async () => {
    await ch4.prefetch(1, true);
    await pubc(pc, '', q3, 'g1');
    await pubc(pc, '', q3, 'g2');
    const ch5 = await x.ch(c);
    const q4 = x.n('q4');
    await ch5.assertQueue(q4, Q());
    await pubc(pc, '', q4, 'g1');
    await pubc(pc, '', q4, 'g2');
    const m1 = await ch4.get(q4);
    const m2 = await ch4.get(q4);
    return [msgSummary(m1), msgSummary(m2)];
  });
});

S('qos-invalid', async (x) => {
  const c = await x.conn();
  await x.op(c, 'prefetch-size 1000', (ch) =>
    ch.rpc(defs.BasicQos, { prefetchSize: 1000, prefetchCount: 0, global: false }, defs.BasicQosOk),
  );
  await x.op(c, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
  const c2 = await x.conn('c2');
  await x.op(c2, 'prefetch-size 1000 global', (ch) =>
    ch.rpc(defs.BasicQos, { prefetchSize: 1000, prefetchCount: 5, global: true }, defs.BasicQosOk),
  );
  await x.op(c2, 'next channel works?', (ch) => ch.checkExchange('amq.direct'));
  const c3 = await x.conn('c3');
  await x.op(c3, 'prefetch-count 65535', (ch) => ch.prefetch(65535));
});

// =============================================================================================
// acks

async function setupMsgs(x: Ctx, c: any, n: number, qname = 'q') {
  const q = x.n(qname);
  await x.quiet(c, async (ch) => {
    await ch.assertQueue(q, Q());
    for (let i = 1; i <= n; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
    await sleep(150);
  });
  return q;
}

S('ack-unknown-tag', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 2);
  const ch = await x.ch(c);
  await x.t('get m1', () => ch.get(q).then(msgSummary));
  x.rec('ack tag 99');
  ch.ack({ fields: { deliveryTag: 99 } });
  await x.closed(ch);
  const ch2 = await x.ch(c);
  const m = await ch2.get(q);
  x.rec('double ack');
  ch2.ack(m);
  ch2.ack(m);
  await x.closed(ch2, 'double ack channel');
  const ch3 = await x.ch(c);
  x.rec('nack unknown 5');
  ch3.nack({ fields: { deliveryTag: 5 } }, false, true);
  await x.closed(ch3, 'nack unknown');
  const ch4 = await x.ch(c);
  x.rec('reject unknown 7');
  ch4.reject({ fields: { deliveryTag: 7 } }, true);
  await x.closed(ch4, 'reject unknown');
  const ch5 = await x.ch(c);
  x.rec('ack multiple unknown 3 with nothing outstanding');
  ch5.ack({ fields: { deliveryTag: 3 } }, true);
  await x.closed(ch5, 'ack multiple unknown');
  const ch6 = await x.ch(c);
  x.rec('ack 0 multiple=false with nothing outstanding');
  ch6.ack({ fields: { deliveryTag: 0 } }, false);
  await x.closed(ch6, 'ack 0 single');
  const ch7 = await x.ch(c);
  x.rec('ack 0 multiple=true with nothing outstanding');
  ch7.ackAll();
  await x.closed(ch7, 'ack 0 multiple');
  await x.op(c, 'next channel works?', (ch8) => ch8.checkExchange('amq.direct'));
});

S('ack-multiple', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 6);
  const ch = await x.ch(c);
  const ms: any[] = [];
  for (let i = 0; i < 6; i++) ms.push(await ch.get(q));
  x.rec('got', ms.map(msgSummary));
  x.rec('ack tag 3 multiple');
  ch.ack(ms[2], true);
  await x.t('counts', () => counts(ch, q));
  x.rec('ack tag 0 multiple (all remaining)');
  ch.ackAll();
  await x.t('sync', () => ch.checkQueue(q));
  await x.t('close channel', () => ch.close());
  const ch2 = await x.ch(c);
  await x.t('counts after close (nothing requeued)', () => counts(ch2, q));
  // nack multiple requeue
  const q2 = await setupMsgs(x, c, 4, 'q2');
  const ch3 = await x.ch(c);
  const ns: any[] = [];
  for (let i = 0; i < 4; i++) ns.push(await ch3.get(q2));
  ch3.nack(ns[2], true, true);
  await x.t('after nack tag3 multiple requeue: drain', async () => {
    const out = [];
    for (;;) {
      const m = await ch3.get(q2, { noAck: true });
      if (!m) break;
      out.push(msgSummary(m));
    }
    return out;
  });
  x.rec('nackAll requeue=false');
  ch3.nackAll(false);
  await x.t('sync', () => ch3.checkQueue(q2));
  await x.t('close channel', () => ch3.close());
  const ch4 = await x.ch(c);
  await x.t('q2 counts after close', () => counts(ch4, q2));
});

S('nack-requeue-position', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 4);
  const ch = await x.ch(c);
  const m1 = await ch.get(q);
  const m2 = await ch.get(q);
  x.rec('got', msgSummary(m1), msgSummary(m2));
  x.rec('nack m2 requeue, then nack m1 requeue');
  ch.nack(m2, false, true);
  ch.nack(m1, false, true);
  await x.t('drain', async () => {
    const out = [];
    for (;;) {
      const m = await ch.get(q, { noAck: true });
      if (!m) break;
      out.push(msgSummary(m));
    }
    return out;
  });
  // with a consumer: nack requeue gets redelivered to the same consumer first?
  const q2 = await setupMsgs(x, c, 3, 'q2');
  const ch2 = await x.ch(c);
  await ch2.prefetch(1);
  const seen: any[] = [];
  let nacked = false;
  await x.t('consume prefetch 1, nack first delivery once', () =>
    ch2.consume(q2, (m: any) => {
      seen.push(msgSummary(m));
      if (!nacked) {
        nacked = true;
        ch2.nack(m, false, true);
      } else ch2.ack(m);
    }),
  );
  await until(() => seen.length >= 4);
  await sleep(100);
  x.rec('consumer saw', seen);
  // reject requeue=false drops
  const q3 = await setupMsgs(x, c, 2, 'q3');
  const ch3 = await x.ch(c);
  const r1 = await ch3.get(q3);
  ch3.reject(r1, false);
  await x.t('after reject requeue=false: counts', () => counts(ch3, q3));
  const r2 = await ch3.get(q3);
  ch3.reject(r2, true);
  await x.t('after reject requeue=true: get', () => ch3.get(q3, { noAck: true }).then(msgSummary));
});

S('recover', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 3);
  const ch = await x.ch(c);
  const seen: any[] = [];
  await x.t('consume', () => ch.consume(q, (m: any) => seen.push(m), { consumerTag: 'r' }));
  await until(() => seen.length >= 3);
  x.rec('first', seen.map(msgSummary));
  await x.t('recover (requeue=true)', () => ch.recover());
  await until(() => seen.length >= 6);
  await sleep(100);
  x.rec('after recover', seen.slice(3).map(msgSummary));
  await x.t('ack old tag 1 (stale after recover?)', async () => {
    ch.ack(seen[0]);
    return ch.checkQueue(q);
  });
  const ch2 = await x.ch(c);
  await x.t('recover requeue=false', () =>
    ch2.rpc(defs.BasicRecover, { requeue: false }, defs.BasicRecoverOk),
  );
  await x.op(c, 'next channel works?', (ch3) => ch3.checkExchange('amq.direct'));
  const c2 = await x.conn('c2');
  const q2 = await setupMsgs(x, c2, 2, 'q2');
  const ch4 = await x.ch(c2);
  const g1 = await ch4.get(q2);
  x.rec('got via get', msgSummary(g1));
  await x.t('recover requeue=false with get-unacked', () =>
    ch4.rpc(defs.BasicRecover, { requeue: false }, defs.BasicRecoverOk),
  );
  const c3 = await x.conn('c3');
  const ch5 = await x.ch(c3);
  await x.t('recover-async', async () => {
    const m = await ch5.get(q2);
    ch5.sendImmediately(defs.BasicRecoverAsync, { requeue: true });
    await sleep(200);
    return { got: msgSummary(m), counts: await counts(ch5, q2) };
  });
  await x.op(c3, 'next channel works?', (ch6) => ch6.checkExchange('amq.direct'));
});

S('requeue-on-channel-close', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 5);
  const ch = await x.ch(c);
  const seen: any[] = [];
  await x.t('consume', () => ch.consume(q, (m: any) => seen.push(m)));
  await until(() => seen.length >= 5);
  ch.ack(seen[1]);
  ch.ack(seen[3]);
  await x.t('close channel with 3 unacked', () => ch.close());
  const ch2 = await x.ch(c);
  await x.t('counts', () => counts(ch2, q));
  await x.t('drain', async () => {
    const out = [];
    for (;;) {
      const m = await ch2.get(q, { noAck: true });
      if (!m) break;
      out.push(msgSummary(m));
    }
    return out;
  });
  // unacked messages requeued on connection close, ahead of messages published later?
  const c2 = await x.conn('c2');
  const q2 = await setupMsgs(x, c2, 3, 'q2');
  const ch3 = await x.ch(c2);
  const a = await ch3.get(q2);
  const b = await ch3.get(q2);
  x.rec('c2 got', msgSummary(a), msgSummary(b));
  await x.op(c, 'publish m4 to q2 while m1,m2 unacked', async (chp) => {
    chp.sendToQueue(q2, Buffer.from('m4'));
    await sleep(100);
  });
  await x.t('close connection c2', () => c2.close());
  await sleep(200);
  await x.op(c, 'drain q2', async (chd) => {
    const out = [];
    for (;;) {
      const m = await chd.get(q2, { noAck: true });
      if (!m) break;
      out.push(msgSummary(m));
    }
    return out;
  });
});

// =============================================================================================
// basic.get

S('basic-get', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  await x.t('get empty', () => ch.get(q));
  await x.t('get empty noAck', () => ch.get(q, { noAck: true }));
  for (let i = 1; i <= 3; i++) ch.sendToQueue(q, Buffer.from(`m${i}`), { messageId: `id${i}` });
  await sleep(150);
  await x.t('get (ack) -> message-count', () => ch.get(q).then(msgSummary));
  await x.t('get noAck', () => ch.get(q, { noAck: true }).then(msgSummary));
  await x.t('get (ack) last', () => ch.get(q).then(msgSummary));
  await x.t('get empty again', () => ch.get(q));
  await x.t('counts (2 unacked, 0 ready)', () => counts(ch, q));
  await x.t('get missing queue', () => ch.get(x.n('nope')));
  const ch2 = await x.ch(c);
  await drain(ch2, q);
  await x.t('get-empty raw (cluster-id)', async () => {
    const f = await new Promise<any>((res, rej) =>
      ch2._rpc(defs.BasicGet, { queue: q, noAck: true, ticket: 0 }, defs.BasicGetEmpty, (e: any, f: any) =>
        e ? rej(e) : res(f.fields),
      ),
    );
    return f;
  });
});

// =============================================================================================
// confirms & transactions

S('confirm-select', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  await x.t('confirm.select again', () =>
    ch.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk),
  );
  await x.t('tx.select on confirm channel', () => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  const ch3 = await x.ch(c);
  await x.t('tx.select', () => ch3.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  await x.t('tx.select again', () => ch3.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  await x.t('confirm.select on tx channel', () =>
    ch3.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk),
  );
  await x.op(c, 'tx.commit without select', (ch4) => ch4.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  await x.op(c, 'tx.rollback without select', (ch4) => ch4.rpc(defs.TxRollback, {}, defs.TxRollbackOk));
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  // confirms on a channel used before select: tags start at 1 from select
  const ch5 = await x.ch(c);
  const ev: any[] = [];
  ch5.on('ack', (f: any) => ev.push(f));
  await x.t('publish before confirm.select, then select, then publish', async () => {
    ch5.publish('amq.direct', 'x', Buffer.from('a'));
    await ch5.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk);
    ch5.publish('amq.direct', 'x', Buffer.from('b'));
    await sleep(200);
    return ev;
  });
});

S('confirm-1000', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  const acked = new Map<number, number>();
  let multipleUsed = 0;
  const raw = () => x.raw.c.filter((f) => f.kind === 'ack' || f.kind === 'nack');
  let cbs = 0;
  for (let i = 0; i < 1000; i++) ch.sendToQueue(q, Buffer.from(`m${i}`), {}, () => cbs++);
  await x.t('waitForConfirms', () => ch.waitForConfirms(), 15000);
  await sleep(100);
  let prev = 0;
  const problems: string[] = [];
  for (const f of raw()) {
    if (f.kind !== 'ack') problems.push(`nack ${f.tag}`);
    if (f.multiple) {
      multipleUsed++;
      if (f.tag <= prev) problems.push(`multiple ack ${f.tag} <= ${prev}`);
      for (let t = prev + 1; t <= f.tag; t++) acked.set(t, (acked.get(t) ?? 0) + 1);
    } else {
      acked.set(f.tag, (acked.get(f.tag) ?? 0) + 1);
    }
    prev = Math.max(prev, f.tag);
  }
  for (let t = 1; t <= 1000; t++)
    if (acked.get(t) !== 1) problems.push(`tag ${t} acked ${acked.get(t) ?? 0} times`);
  if (acked.size !== 1000) problems.push(`acked ${acked.size} distinct tags`);
  x.rec('callbacks', cbs, 'problems', problems.slice(0, 10));
  x.note('ack frames', raw().length, 'multiple used', multipleUsed);
  await x.t('counts', () => counts(ch, q));
  // unroutable with confirms: ack (not nack)
  const ev: any[] = [];
  ch.on('ack', (f: any) => ev.push(['ack', f.deliveryTag]));
  ch.on('nack', (f: any) => ev.push(['nack', f.deliveryTag]));
  ch.publish('amq.direct', x.n('nowhere'), Buffer.from('u'), {}, () => {});
  await x.t('wait', () => ch.waitForConfirms());
  x.rec('unroutable confirm', ev.splice(0));
  // persistent messages to a durable queue (storage path)
  const dq = x.n('durable');
  await x.t('declare durable queue', () => ch.assertQueue(dq, { durable: true }));
  const t0 = raw().length;
  for (let i = 0; i < 200; i++) ch.sendToQueue(dq, Buffer.from(`p${i}`), { persistent: true }, () => {});
  ch.sendToQueue(dq, Buffer.from('transient'), { persistent: false }, () => {});
  await x.t('waitForConfirms persistent', () => ch.waitForConfirms().then(() => 'ok'), 15000);
  const acks = raw().slice(t0);
  x.rec(
    'persistent: nacks',
    acks.filter((f) => f.kind === 'nack').length,
    'highest acked',
    Math.max(...acks.map((f) => f.tag)),
  );
  await x.t('durable counts', () => counts(ch, dq));
  await x.t('delete durable', () => ch.deleteQueue(dq));
});

S('tx-publish', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch = await x.ch(c);
  const obs = await x.ch(c);
  await x.t('declare', () => ch.assertQueue(q, Q()));
  await x.t('tx.select', () => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  ch.sendToQueue(q, Buffer.from('t1'));
  ch.sendToQueue(q, Buffer.from('t2'));
  await sleep(150);
  await x.t('counts before commit', () => counts(obs, q));
  await x.t('rollback', () => ch.rpc(defs.TxRollback, {}, defs.TxRollbackOk));
  await x.t('counts after rollback', () => counts(obs, q));
  ch.sendToQueue(q, Buffer.from('t3'));
  await x.t('commit', () => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  await x.t('counts after commit', () => counts(obs, q));
  await x.t('commit empty tx', () => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  // mandatory unroutable in tx: return on publish or on commit?
  const ev: any[] = [];
  ch.on('return', (m: any) => ev.push(['return', m.content.toString(), m.fields.replyCode]));
  ch.publish('amq.direct', x.n('nowhere'), Buffer.from('tx-ret'), { mandatory: true });
  await sleep(200);
  ev.push('before commit');
  await x.t('commit with unroutable mandatory', () => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  ev.push('after commit');
  await sleep(100);
  x.rec('events', ev);
  // publish to missing exchange in tx: error at publish or at commit?
  ch.publish(x.n('missing'), 'k', Buffer.from('x'));
  await x.closed(ch, 'tx channel after publish to missing exchange');
  // close tx channel with pending publishes -> discarded
  const ch2 = await x.ch(c);
  await x.t('tx.select 2', () => ch2.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  ch2.sendToQueue(q, Buffer.from('pending'));
  await x.t('close with pending', () => ch2.close());
  await x.t('counts after close', () => counts(obs, q));
});

S('tx-ack', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 3);
  const ch = await x.ch(c);
  const obs = await x.ch(c);
  await x.t('tx.select', () => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk));
  const m1 = await ch.get(q);
  const m2 = await ch.get(q);
  x.rec('got', msgSummary(m1), msgSummary(m2));
  ch.ack(m1);
  await x.t('counts after tx ack (uncommitted)', () => counts(obs, q));
  await x.t('rollback', () => ch.rpc(defs.TxRollback, {}, defs.TxRollbackOk));
  await x.t('counts after rollback', () => counts(obs, q));
  ch.ack(m1);
  ch.nack(m2, false, true);
  await x.t('commit ack m1 + nack m2', () => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  await x.t('counts after commit', () => counts(obs, q));
  await x.t('get after commit', async () => {
    const m = await ch.get(q);
    ch.ack(m);
    await ch.rpc(defs.TxCommit, {}, defs.TxCommitOk);
    return msgSummary(m);
  });
  x.rec('ack unknown tag inside tx');
  ch.ack({ fields: { deliveryTag: 77 } });
  await x.t('commit after bad ack', () => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk));
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
  // nack requeue rolled back
  const q2 = await setupMsgs(x, c, 1, 'q2');
  const ch3 = await x.ch(c);
  await ch3.rpc(defs.TxSelect, {}, defs.TxSelectOk);
  const n1 = await ch3.get(q2);
  ch3.reject(n1, true);
  await x.t('rollback reject', () => ch3.rpc(defs.TxRollback, {}, defs.TxRollbackOk));
  await x.t('q2 counts (still unacked)', () => counts(obs, q2));
  await x.t('close channel', () => ch3.close());
  await x.t('q2 drain after close', async () => {
    const m = await obs.get(q2, { noAck: true });
    return msgSummary(m);
  });
});

// =============================================================================================
// direct reply-to

S('direct-reply-to', async (x) => {
  const c = await x.conn();
  const cs = await x.conn('srv');
  const rq = x.n('rpc');
  const sch = await x.ch(cs);
  const srvReturns: any[] = [];
  sch.on('return', (m: any) =>
    srvReturns.push([m.content.toString(), m.fields.replyCode, m.fields.replyText]),
  );
  await x.t('server declare', () => sch.assertQueue(rq, Q()));
  const reqs: any[] = [];
  await x.t('server consume', () =>
    sch.consume(
      rq,
      (m: any) => {
        reqs.push({
          ...msgSummary(m),
          replyTo: m.properties.replyTo,
          correlationId: m.properties.correlationId,
        });
        if (m.properties.replyTo) {
          sch.sendToQueue(m.properties.replyTo, Buffer.from(`re:${m.content}`), {
            correlationId: m.properties.correlationId,
          });
        }
        sch.ack(m);
      },
      { consumerTag: 'srv' },
    ),
  );
  const ch = await x.ch(c);
  const replies: any[] = [];
  const ok: any = await x.t('consume amq.rabbitmq.reply-to noAck', () =>
    ch.consume('amq.rabbitmq.reply-to', (m: any) => replies.push({ ...msgSummary(m), props: m.properties }), {
      noAck: true,
    }),
  );
  x.note('reply-to ctag', ok?.consumerTag);
  ch.sendToQueue(rq, Buffer.from('ping'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c1' });
  ch.sendToQueue(rq, Buffer.from('ping2 (with timestamp)'), {
    replyTo: 'amq.rabbitmq.reply-to',
    correlationId: 'c2',
    timestamp: 1,
  });
  await until(() => replies.length >= 2);
  x.rec('server saw', reqs);
  x.rec('replies', replies.splice(0));
  x.note(
    'raw replyTo',
    reqs.map((r) => r.replyTo),
  );
  // reqs[1] carried a timestamp too (Warren rewrote that one); use it for the rest
  const rt = reqs[1]?.replyTo ?? 'x';
  await x.t('passive declare amq.rabbitmq.reply-to (same channel)', () =>
    ch.checkQueue('amq.rabbitmq.reply-to'),
  );
  await x.op(c, 'passive declare amq.rabbitmq.reply-to (fresh channel)', (ch2) =>
    ch2.checkQueue('amq.rabbitmq.reply-to'),
  );
  await x.op(c, 'declare amq.rabbitmq.reply-to non-passive', (ch2) =>
    ch2.assertQueue('amq.rabbitmq.reply-to', Q()),
  );
  const c4 = await x.conn('c4');
  await x.op(c4, 'passive declare of the full reply-to name (other conn, consumer alive)', (ch2) =>
    ch2.checkQueue(rt),
  );
  await x.op(c4, 'declare of the full reply-to name non-passive (other conn)', (ch2) =>
    ch2.assertQueue(rt, Q()),
  );
  await x.op(c4, 'publish to full reply-to name with mandatory (other conn)', async (ch2) => {
    const ev: any[] = [];
    ch2.on('return', (m: any) => ev.push([m.fields.replyCode, m.fields.replyText]));
    ch2.sendToQueue(rt, Buffer.from('from c4'), { mandatory: true });
    await until(() => replies.length > 0, 500);
    return { ev, replies: replies.splice(0).map((r) => r.body) };
  });
  await x.t('cancel reply consumer, then server replies again (mandatory)', async () => {
    await ch.cancel(ok?.consumerTag);
    sch.sendToQueue(rt, Buffer.from('late'), { mandatory: true });
    await sleep(300);
    return {
      replies: replies.splice(0),
      srvReturns: srvReturns.splice(0),
      srv: await sch.checkExchange('amq.direct'),
    };
  });
  await x.t('consume reply-to again on same channel after cancel', () =>
    ch
      .consume('amq.rabbitmq.reply-to', (m: any) => replies.push(msgSummary(m)), { noAck: true })
      .then(() => 'ok'),
  );
  await x.t('old reply-to name still reaches the channel?', async () => {
    sch.sendToQueue(rt, Buffer.from('after re-consume'), { mandatory: true });
    await sleep(300);
    return { replies: replies.splice(0), srvReturns: srvReturns.splice(0) };
  });

  // errors, on their own connection
  const c2 = await x.conn('c2');
  const ch2 = await x.ch(c2);
  await x.t('c2: consume reply-to', () =>
    ch2.consume('amq.rabbitmq.reply-to', () => {}, { noAck: true }).then(() => 'ok'),
  );
  await x.t('c2: consume reply-to twice on same channel', () =>
    ch2.consume('amq.rabbitmq.reply-to', () => {}, { noAck: true }),
  );
  await x.op(c2, 'consume reply-to with noAck=false', (ch3) =>
    ch3.consume('amq.rabbitmq.reply-to', () => {}, { noAck: false }),
  );
  await x.op(c2, 'consume reply-to exclusive', (ch3) =>
    ch3.consume('amq.rabbitmq.reply-to', () => {}, { noAck: true, exclusive: true }),
  );
  await x.op(c2, 'publish with reply-to without consuming', async (ch3) => {
    ch3.sendToQueue(rq, Buffer.from('orphan'), { replyTo: 'amq.rabbitmq.reply-to' });
    await sleep(300);
    return ch3.checkExchange('amq.direct');
  });
  await x.op(c2, 'publish with reply-to + timestamp without consuming', async (ch3) => {
    ch3.sendToQueue(rq, Buffer.from('orphan2'), { replyTo: 'amq.rabbitmq.reply-to', timestamp: 5 });
    await sleep(300);
    return ch3.checkExchange('amq.direct');
  });
  await x.op(c2, 'reply to bogus reply-to name', async (ch3) => {
    ch3.sendToQueue('amq.rabbitmq.reply-to.bogus', Buffer.from('x'));
    await sleep(300);
    return ch3.checkExchange('amq.direct');
  });
  await x.op(c2, 'mandatory reply to bogus reply-to name', async (ch3) => {
    const ev: any[] = [];
    ch3.on('return', (m: any) => ev.push([m.fields.replyCode, m.fields.replyText]));
    ch3.sendToQueue('amq.rabbitmq.reply-to.bogus', Buffer.from('x'), { mandatory: true });
    await sleep(300);
    return ev;
  });
  await x.op(c2, 'next channel works?', (ch3) => ch3.checkExchange('amq.direct'));
  x.rec('server saw (orphans)', reqs.slice(2));

  // RabbitMQ 3.10 kills the connection (541) for this one, so it goes last on its own connection
  const c5 = await x.conn('c5');
  const ch5 = await x.ch(c5);
  await x.t('c5: consume reply-to', () =>
    ch5.consume('amq.rabbitmq.reply-to', () => {}, { noAck: true }).then(() => 'ok'),
  );
  const got5: any[] = [];
  await x.t('c5: publish request', async () => {
    const n0 = reqs.length;
    ch5.sendToQueue(rq, Buffer.from('c5req'), { replyTo: 'amq.rabbitmq.reply-to', timestamp: 1 });
    await until(() => reqs.length > n0);
    got5.push(reqs[n0]?.replyTo);
    return 'ok';
  });
  await x.t('c5: passive declare own full reply-to name on same channel', () =>
    ch5.checkQueue(got5[0] ?? 'x'),
  );
});

S('q-limits-ttl-dlx', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c, true);
  const res = (p: Promise<unknown>) =>
    p.then(
      () => 'ack',
      (e) => `nack:${e?.message ?? e}`,
    );
  const pub = (q: string, body: string, o: any = {}) =>
    res(
      new Promise<void>((ok, ko) => ch.sendToQueue(q, Buffer.from(body), o, (e: any) => (e ? ko(e) : ok()))),
    );
  // max-length drop-head
  const q1 = x.n('maxlen2');
  await x.t('declare max-length 2', () => ch.assertQueue(q1, Q({ maxLength: 2 })));
  x.rec('confirms', await Promise.all([1, 2, 3, 4, 5].map((i) => pub(q1, `m${i}`))));
  await x.t('drain max-length 2', () => drain(ch, q1));
  const q0 = x.n('maxlen0');
  await x.t('declare max-length 0', () => ch.assertQueue(q0, Q({ maxLength: 0 })));
  x.rec('confirms', await Promise.all([1, 2].map((i) => pub(q0, `z${i}`))));
  await x.t('drain max-length 0', () => drain(ch, q0));
  // reject-publish
  const q2 = x.n('rejpub');
  await x.t('declare max-length 1 reject-publish', () =>
    ch.assertQueue(q2, Q({ maxLength: 1, overflow: 'reject-publish' })),
  );
  x.rec('confirms reject-publish', await Promise.all([1, 2, 3].map((i) => pub(q2, `r${i}`))));
  await x.t('drain reject-publish', () => drain(ch, q2));
  // max-length-bytes
  const q3 = x.n('maxbytes');
  await x.t('declare max-length-bytes 10', () =>
    ch.assertQueue(q3, Q({ arguments: { 'x-max-length-bytes': 10 } })),
  );
  x.rec('confirms', await Promise.all([1, 2, 3].map((i) => pub(q3, `bbbb${i}`))));
  await x.t('drain max-length-bytes', () => drain(ch, q3));
  // ttl
  const q4 = x.n('ttl');
  await x.t('declare message-ttl 100', () => ch.assertQueue(q4, Q({ messageTtl: 100 })));
  await pub(q4, 't1');
  await x.t('get immediately', () =>
    ch.get(q4, { noAck: false }).then((m: any) => (m ? (ch.nack(m, false, true), msgSummary(m)) : m)),
  );
  await sleep(350);
  await x.t('counts after 350ms (requeued msg expired?)', () => counts(ch, q4));
  const q5 = x.n('plain');
  await x.t('declare plain', () => ch.assertQueue(q5, Q()));
  await pub(q5, 'e100', { expiration: '100' });
  await pub(q5, 'e0', { expiration: '0' });
  await pub(q5, 'keep');
  await sleep(300);
  await x.t('per-message expiration', () => drain(ch, q5));
  // dead-lettering
  const dq = x.n('dead');
  const src = x.n('src');
  await x.t('declare dlx target + source (ttl 50, dlx "", dlrk dead)', async () => {
    await ch.assertQueue(dq, Q());
    await ch.assertQueue(src, Q({ messageTtl: 50, deadLetterExchange: '', deadLetterRoutingKey: dq }));
  });
  await pub(src, 'dies', { headers: { mine: 1 }, expiration: '20' });
  await sleep(400);
  const clean = (h: any) => {
    if (!h) return h;
    const o = { ...h };
    if (Array.isArray(o['x-death']))
      o['x-death'] = o['x-death'].map((d: any) => ({ ...d, time: d.time ? 'T' : d.time }));
    return o;
  };
  await x.t('dead-lettered by ttl', async () => {
    const m = await ch.get(dq, { noAck: true });
    return (
      m && { ...msgSummary(m), headers: clean(m.properties.headers), expiration: m.properties.expiration }
    );
  });
  const src2 = x.n('src2');
  await x.t('declare src2 (dlx "", dlrk dead)', () =>
    ch.assertQueue(src2, Q({ deadLetterExchange: '', deadLetterRoutingKey: dq })),
  );
  await pub(src2, 'rejected');
  await x.t('reject requeue=false -> dead-lettered', async () => {
    const m = await ch.get(src2);
    ch.reject(m, false);
    await sleep(200);
    const d = await ch.get(dq, { noAck: true });
    return d && { ...msgSummary(d), headers: clean(d.properties.headers) };
  });
  await pub(src2, 'nacked');
  await x.t('nack requeue=false, dead-lettered twice through same queue', async () => {
    const m = await ch.get(src2);
    ch.nack(m, false, false);
    await sleep(200);
    const d = await ch.get(dq, { noAck: true });
    return d && { ...msgSummary(d), headers: clean(d.properties.headers) };
  });
  // expires
  const q9 = x.n('expires');
  await x.t('declare x-expires 200', () => ch.assertQueue(q9, Q({ expires: 200 })));
  await sleep(600);
  await x.op(c, 'x-expires queue after 600ms', (chx) => chx.checkQueue(q9));
  // priority
  const qp = x.n('prio');
  await x.t('declare x-max-priority 5', () => ch.assertQueue(qp, Q({ maxPriority: 5 })));
  for (const [b, p] of [
    ['p0', undefined],
    ['p3', 3],
    ['p9', 9],
    ['p1', 1],
    ['p5', 5],
    ['p3b', 3],
  ] as const)
    await pub(qp, b, p === undefined ? {} : { priority: p });
  await x.t('priority order', () => drain(ch, qp));
});

S('nowait-ops', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c);
  const q = x.n('q');
  const e = x.n('e');
  const before = x.raw.c.length;
  ch.sendImmediately(defs.ExchangeDeclare, {
    exchange: e,
    type: 'fanout',
    passive: false,
    durable: false,
    autoDelete: false,
    internal: false,
    nowait: true,
    arguments: {},
    ticket: 0,
  });
  ch.sendImmediately(defs.QueueDeclare, {
    queue: q,
    passive: false,
    durable: false,
    exclusive: false,
    autoDelete: false,
    nowait: true,
    arguments: {},
    ticket: 0,
  });
  ch.sendImmediately(defs.QueueBind, {
    queue: q,
    exchange: e,
    routingKey: '',
    nowait: true,
    arguments: {},
    ticket: 0,
  });
  const got: any[] = [];
  ch.registerConsumer('nw', (m: any) => got.push(m && m.content.toString()));
  ch.sendImmediately(defs.BasicConsume, {
    queue: q,
    consumerTag: 'nw',
    noLocal: false,
    noAck: true,
    exclusive: false,
    nowait: true,
    arguments: {},
    ticket: 0,
  });
  ch.publish(e, '', Buffer.from('via nowait'));
  await until(() => got.length > 0, 1000);
  x.rec('delivered', got);
  ch.sendImmediately(defs.BasicCancel, { consumerTag: 'nw', nowait: true });
  await x.t('sync', () => ch.checkQueue(q));
  x.rec(
    'methods received on ch (besides sync)',
    x.raw.c
      .slice(before)
      .filter((f) => f.kind === 'method')
      .map((f) => `${f.cls}.${f.m}`),
  );
  ch.sendImmediately(defs.QueueDeclare, {
    queue: x.n('nope'),
    passive: true,
    durable: false,
    exclusive: false,
    autoDelete: false,
    nowait: true,
    arguments: {},
    ticket: 0,
  });
  await x.closed(ch, 'after nowait passive declare of missing queue');
  const ch2 = await x.ch(c);
  ch2.sendImmediately(defs.QueueDelete, {
    queue: q,
    ifUnused: false,
    ifEmpty: false,
    nowait: true,
    ticket: 0,
  });
  ch2.sendImmediately(defs.ExchangeDelete, { exchange: e, ifUnused: false, nowait: true, ticket: 0 });
  await x.op(c, 'queue gone?', (ch3) => ch3.checkQueue(q));
  await x.op(c, 'exchange gone?', (ch3) => ch3.checkExchange(e));
});

// =============================================================================================
// purge / delete

S('queue-purge-delete', async (x) => {
  const c = await x.conn();
  const q = await setupMsgs(x, c, 4);
  const ch = await x.ch(c);
  const m = await ch.get(q);
  x.rec('got 1 (unacked)', msgSummary(m));
  await x.t('purge (3 ready, 1 unacked)', () => ch.purgeQueue(q));
  await x.t('counts', () => counts(ch, q));
  ch.nack(m, false, true);
  await x.t('counts after nack requeue (purge does not touch unacked)', () => counts(ch, q));
  await x.op(c, 'purge missing', (ch2) => ch2.purgeQueue(x.n('nope')));
  await x.op(c, 'delete if-empty (1 msg)', (ch2) => ch2.deleteQueue(q, { ifEmpty: true }));
  const cch = await x.ch(c);
  await x.t('consume', () => cch.consume(q, () => {}, { noAck: true, consumerTag: 'cc' }));
  await sleep(100);
  await x.op(c, 'delete if-unused (1 consumer)', (ch2) => ch2.deleteQueue(q, { ifUnused: true }));
  await x.op(c, 'delete if-unused + if-empty (order)', async (ch2) => {
    ch2.sendToQueue(x.n('q'), Buffer.from('x'));
    await sleep(50);
    return ch2.deleteQueue(q, { ifUnused: true, ifEmpty: true });
  });
  await x.t('cancel', () => cch.cancel('cc'));
  await x.op(c, 'publish 2', async (ch2) => {
    ch2.sendToQueue(q, Buffer.from('a'));
    ch2.sendToQueue(q, Buffer.from('b'));
    await sleep(100);
    return counts(ch2, q);
  });
  await x.op(c, 'delete-ok count', (ch2) => ch2.deleteQueue(q));
  await x.op(c, 'delete missing', (ch2) => ch2.deleteQueue(q));
  await x.op(c, 'delete missing if-empty', (ch2) => ch2.deleteQueue(q, { ifEmpty: true }));
  const q2 = await setupMsgs(x, c, 2, 'q2');
  const ch3 = await x.ch(c);
  const u = await ch3.get(q2);
  x.rec('got', msgSummary(u));
  await x.op(c, 'delete count with 1 unacked', (ch2) => ch2.deleteQueue(q2));
  x.rec('ack the message of a deleted queue');
  ch3.ack(u);
  await x.t('channel still fine?', () => ch3.checkExchange('amq.direct'));
  await x.op(c, 'next channel works?', (ch2) => ch2.checkExchange('amq.direct'));
});

// =============================================================================================
// connection errors / channel errors leave connection usable

S('channel-errors-isolated', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  const ch1 = await x.ch(c);
  await x.t('declare on ch1', () => ch1.assertQueue(q, Q()));
  const got: any[] = [];
  await x.t('consume on ch1', () =>
    ch1.consume(q, (m: any) => got.push(m.content.toString()), { noAck: true }),
  );
  await x.op(c, 'error on ch2', (ch2) => ch2.checkQueue(x.n('nope')));
  await x.op(c, 'error on ch3', (ch2) => ch2.checkExchange(x.n('nope')));
  await x.op(c, 'publish from ch4', async (ch2) => {
    ch2.sendToQueue(q, Buffer.from('after errors'));
    await until(() => got.length > 0);
    return got;
  });
  await x.t('ch1 still usable', () => ch1.checkQueue(q));
});

// =============================================================================================
// amqp-client (@cloudamqp) flows

S('amqp-client-flows', async (x) => {
  const c = await x.amqpClient();
  const ch = await c.channel();
  const q = x.n('q');
  await x.t('queueDeclare', () => ch.queueDeclare(q, { durable: false }));
  await x.t('confirmSelect', () => ch.confirmSelect());
  await x.t('publish (confirm tag)', () =>
    ch.basicPublish('', q, 'hello', { messageId: 'm', headers: { a: 1 } }),
  );
  await x.t('publish 2', () => ch.basicPublish('', q, 'world'));
  const m: any = await x.t('basicGet', async () => {
    const r = await ch.basicGet(q, { noAck: false });
    return (
      r && {
        body: r.bodyString(),
        tag: r.deliveryTag,
        redelivered: r.redelivered,
        messageCount: r.messageCount,
        props: r.properties,
      }
    );
  });
  void m;
  await x.t('nack requeue', () => ch.basicNack(1, true));
  const seen: any[] = [];
  const consumer: any = await x.t('basicConsume', async () => {
    const cons = await ch.basicConsume(q, { noAck: false, tag: 'ac' }, (msg: any) => {
      seen.push({ body: msg.bodyString(), tag: msg.deliveryTag, redelivered: msg.redelivered });
    });
    return cons.tag;
  });
  void consumer;
  await until(() => seen.length >= 2);
  x.rec('seen', seen);
  await x.t('basicAck multiple', () => ch.basicAck(3, true));
  await x.t('basicCancel', () => ch.basicCancel('ac').then(() => 'ok'));
  await x.t('queueDeclare passive', () => ch.queueDeclare(q, { passive: true }));
  const ch2 = await c.channel();
  await x.t('queueDeclare passive missing', () => ch2.queueDeclare(x.n('nope'), { passive: true }));
  await x.t('channel 2 closed?', () => ch2.closed);
  const ch3 = await c.channel();
  await x.t('exchangeDeclare bad type', () =>
    ch3.exchangeDeclare(x.n('e'), 'foo' as any, { durable: false }),
  );
  await sleep(200);
  await x.t('connection closed?', () => c.closed);
  await x.t('queueDelete', async () => {
    const c2 = await x.amqpClient();
    const chx = await c2.channel();
    return chx.queueDelete(q);
  });
});

// =============================================================================================
// found by the probes of 2026-11-23 (each fixed; kept here so a later run compares them again)

const L = (v: number) => ({ '!': 'long', value: v });
const death = (queue: string, reason: string, count: number) => ({
  count: L(count),
  reason,
  queue,
  exchange: '',
  'routing-keys': [queue],
});
async function waitGet(ch: any, q: string) {
  for (let i = 0; i < 100; i++) {
    const m = await ch.get(q, { noAck: false });
    if (m) return m;
    await sleep(10);
  }
  return null;
}

S('dlx-xdeath-history', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c);
  const [src, dl] = [x.n('src'), x.n('dl')];
  await ch.assertQueue(dl, Q());
  await ch.assertQueue(src, Q({ deadLetterExchange: '', deadLetterRoutingKey: dl }));
  const histories: [string, any[]][] = [
    ['one', [death('qa', 'expired', 1)]],
    ['three', [death('qa', 'expired', 1), death('qb', 'expired', 2), death('qc', 'maxlen', 3)]],
    ['dup', [death('qa', 'expired', 1), death('qb', 'expired', 2), death('qa', 'expired', 3)]],
    ['match middle', [death('qa', 'expired', 1), death(src, 'rejected', 2), death('qc', 'maxlen', 3)]],
  ];
  for (const [label, deaths] of histories) {
    ch.sendToQueue(src, Buffer.from(label), { headers: { 'x-death': deaths } });
    const m = await waitGet(ch, src);
    if (m) ch.reject(m, false);
    const d = await waitGet(ch, dl);
    if (d) ch.ack(d);
    x.rec(
      label,
      d ? d.properties.headers['x-death'].map((e: any) => `${e.queue}/${e.reason}/${e.count}`) : null,
    );
  }
  // a cycle with no rejection before the target's entry is dropped; one with a rejection is not
  const tgt = x.n('target');
  const ttl0 = x.n('ttl0');
  await ch.assertQueue(tgt, Q());
  await ch.assertQueue(ttl0, Q({ messageTtl: 0, deadLetterExchange: '', deadLetterRoutingKey: tgt }));
  ch.sendToQueue(ttl0, Buffer.from('cycle'), {
    headers: { 'x-death': [death('o', 'rejected', 1), death(tgt, 'expired', 1)] },
  });
  ch.sendToQueue(ttl0, Buffer.from('no cycle'), {
    headers: { 'x-death': [death(tgt, 'expired', 1), death('o', 'rejected', 1)] },
  });
  await sleep(200);
  x.rec('reached target', await drain(ch, tgt));
});

S('dlx-bcc-ttl0-deleted', async (x) => {
  const c = await x.conn();
  const ch = await x.ch(c);
  const dlx = x.n('dlx');
  await ch.assertExchange(dlx, 'direct', { durable: false });
  const src = x.n('src');
  for (const k of [src, 'kcc', 'kbcc']) {
    await ch.assertQueue(x.n(`to-${k}`), Q());
    await ch.bindQueue(x.n(`to-${k}`), dlx, k);
  }
  await ch.assertQueue(src, Q({ deadLetterExchange: dlx }));
  ch.sendToQueue(src, Buffer.from('m'), { headers: { CC: ['kcc'], BCC: ['kbcc'] } });
  const m = await waitGet(ch, src);
  if (m) ch.reject(m, false);
  await sleep(150);
  for (const k of [src, 'kcc', 'kbcc']) x.rec(`to-${k}`, await drain(ch, x.n(`to-${k}`)));
  // TTL 0 taken by a consumer and requeued: expired, not redelivered
  const dl = x.n('dl');
  const t0 = x.n('t0');
  await ch.assertQueue(dl, Q());
  await ch.assertQueue(t0, Q({ messageTtl: 0, deadLetterExchange: '', deadLetterRoutingKey: dl }));
  const cch = await x.ch(c);
  await cch.prefetch(1);
  const got: string[] = [];
  await cch.consume(t0, (d: any) => {
    got.push(`${d.content}${d.fields.redelivered ? ' again' : ''}`);
    if (!d.fields.redelivered) cch.nack(d, false, true);
  });
  ch.sendToQueue(t0, Buffer.from('ttl0'));
  await sleep(300);
  x.rec('consumer saw', got);
  x.rec('dead-lettered', await drain(ch, dl));
  // a reject after the queue was deleted dead-letters nothing
  const gone = x.n('gone');
  await ch.assertQueue(gone, Q({ deadLetterExchange: '', deadLetterRoutingKey: dl }));
  ch.sendToQueue(gone, Buffer.from('held'));
  const held = await waitGet(ch, gone);
  await x.t('delete with one unacked', () => ch.deleteQueue(gone));
  if (held) ch.reject(held, false);
  await sleep(150);
  x.rec('dead-lettered after delete', await drain(ch, dl));
});

S('arg-types-and-flags', async (x) => {
  const c = await x.conn();
  const q = x.n('q');
  await x.op(c, 'declare ttl 100', (ch) => ch.assertQueue(q, Q({ arguments: { 'x-message-ttl': 100 } })));
  await x.op(c, 'redeclare ttl long 100', (ch) =>
    ch.assertQueue(q, Q({ arguments: { 'x-message-ttl': L(100) } })),
  );
  await x.op(c, 'redeclare ttl double 100', (ch) =>
    ch.assertQueue(q, Q({ arguments: { 'x-message-ttl': { '!': 'double', value: 100 } } })),
  );
  const ch = await x.ch(c, true);
  const [h, bq] = [x.n('h'), x.n('bq')];
  await ch.assertExchange(h, 'headers', { durable: false });
  await ch.assertQueue(bq, Q());
  await ch.bindQueue(bq, h, '', { 'x-match': 'any', a: 1 });
  await x.t('unbind with a long 1', () => ch.unbindQueue(bq, h, '', { 'x-match': 'any', a: L(1) }));
  await pubc(ch, h, '', 'after long unbind', { headers: { a: 1 } });
  await x.t('unbind with the same byte 1', () => ch.unbindQueue(bq, h, '', { a: 1, 'x-match': 'any' }));
  await pubc(ch, h, '', 'after byte unbind', { headers: { a: 1 } });
  x.rec('routed', await drain(ch, bq));
  const ex = x.n('ex');
  await x.op(c, 'exclusive, durable', (c2) => c2.assertQueue(ex, { exclusive: true, durable: true }));
  await x.op(c, 'exclusive, not durable', (c2) => c2.assertQueue(ex, { exclusive: true, durable: false }));
  await x.op(c, 'declare an amq.rabbitmq.reply-to.x name', (c2) =>
    c2.assertQueue('amq.rabbitmq.reply-to.x', { exclusive: true }),
  );
});

S('quorum-corners', async (x) => {
  const c = await x.conn();
  const qq = (a: any) => ({ durable: true, arguments: { 'x-queue-type': 'quorum', ...a } });
  const q = x.n('q');
  const ch = await x.ch(c, true);
  await x.t('declare reject-publish-dlx max 1', () =>
    ch.assertQueue(q, qq({ 'x-max-length': 1, 'x-overflow': 'reject-publish-dlx' })),
  );
  const answers: string[] = [];
  for (const b of ['a', 'b', 'c'])
    answers.push(
      await pubc(ch, '', q, b).then(
        () => 'ack',
        () => 'nack',
      ),
    );
  x.rec('confirms', answers);
  x.rec('left', await drain(ch, q));
  await ch.deleteQueue(q);
  const sac = x.n('sac');
  await x.op(c, 'declare quorum SAC', (c2) => c2.assertQueue(sac, qq({ 'x-single-active-consumer': true })));
  await x.op(c, 'basic.get on it', (c2) => c2.get(sac).then(msgSummary));
  for (const v of [0, -1, 'x', 3])
    await x.op(c, `x-quorum-initial-group-size ${v}`, (c2) =>
      c2.assertQueue(x.n(`g${v}`), qq({ 'x-quorum-initial-group-size': v })).then(() => 'ok'),
    );
  await x.op(c, 'cleanup', async (c2) => {
    await c2.deleteQueue(sac);
    await c2.deleteQueue(x.n('g3'));
    return 'ok';
  });
});

S('quorum-returns', async (x) => {
  const qq = (a: any) => ({ durable: true, arguments: { 'x-queue-type': 'quorum', ...a } });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  for (const [label, args] of [
    ['no limit', {}],
    ['delivery limit', { 'x-delivery-limit': 10 }],
  ] as const) {
    const c = await x.conn();
    const ch = await x.ch(c, true);
    const q = x.n(label === 'no limit' ? 'n' : 'l');
    await ch.assertQueue(q, qq(args));
    const fill = async (...bodies: string[]) => {
      for (const b of bodies) await pubc(ch, '', q, b);
    };
    // nacks: m3 first, then m1
    await fill('m1', 'm2', 'm3', 'm4');
    const got: any[] = [];
    for (let i = 0; i < 3; i++) got.push(await ch.get(q, { noAck: false }));
    ch.nack(got[2], false, true);
    ch.nack(got[0], false, true);
    ch.ack(got[1]);
    await sleep(100);
    x.rec(`${label}: after nacks`, await drain(ch, q));
    // basic.recover
    await fill('r1', 'r2', 'r3');
    const rc = await x.ch(c);
    for (let i = 0; i < 2; i++) await rc.get(q, { noAck: false });
    await rc.recover();
    await sleep(100);
    x.rec(`${label}: after recover`, await drain(ch, q));
    // two connections go, the later taker first
    await fill('c1', 'c2', 'c3', 'c4');
    const a = await x.conn('a');
    const b = await x.conn('b');
    const ca = await x.ch(a);
    const cb = await x.ch(b);
    for (let i = 0; i < 2; i++) await ca.get(q, { noAck: false });
    await cb.get(q, { noAck: false });
    await b.close();
    await sleep(100);
    await a.close();
    await sleep(100);
    x.rec(`${label}: after closes`, await drain(ch, q));
    await ch.deleteQueue(q);
  }
});

// =============================================================================================
// runner

async function runScenario(url: string, name: string, fn: Scenario) {
  const x = new Ctx(url, name);
  try {
    await withTimeout(fn(x), 45000, `scenario ${name}`);
  } catch (e) {
    x.rec('SCENARIO THREW', errInfo(e));
  }
  await x.cleanup();
  return { log: x.log, notes: x.notes };
}

/** LCS line diff: '=' common, 'R' only in RabbitMQ, 'W' only in Warren (R/W pairs interleaved) */
function diffLines(a: string[], b: string[]): [string, string][] {
  const n = a.length;
  const m = b.length;
  const L: number[][] = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      L[i]![j] = a[i] === b[j] ? L[i + 1]![j + 1]! + 1 : Math.max(L[i + 1]![j]!, L[i]![j + 1]!);
  const out: [string, string][] = [];
  let i = 0;
  let j = 0;
  let ra: string[] = [];
  let wb: string[] = [];
  const flush = () => {
    const k = Math.max(ra.length, wb.length);
    for (let t = 0; t < k; t++) {
      if (t < ra.length) out.push(['R', ra[t]!]);
      if (t < wb.length) out.push(['W', wb[t]!]);
    }
    ra = [];
    wb = [];
  };
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      flush();
      out.push(['=', a[i]!]);
      i++;
      j++;
    } else if (j < m && (i >= n || L[i]![j + 1]! >= L[i + 1]![j]!)) wb.push(b[j++]!);
    else ra.push(a[i++]!);
  }
  flush();
  return out;
}

function fmt(v: any) {
  return JSON.stringify(v);
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'warren-diff-'));
  const broker = await Broker.start({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' } as any);
  const results: any[] = [];
  const selected = scenarios.filter(([n]) => filters.length === 0 || filters.some((f) => n.includes(f)));
  let diffs = 0;
  try {
    for (const [name, fn] of selected) {
      const [ref, war] = await Promise.all([runScenario(REF, name, fn), runScenario(broker.url, name, fn)]);
      const same = fmt(ref.log) === fmt(war.log);
      results.push({ name, same, rabbitmq: ref, warren: war });
      if (!same) diffs++;
      process.stdout.write(`${same ? 'same' : 'DIFF'}  ${name}\n`);
      if (!same || flag('--all')) {
        for (const [k, line] of diffLines(ref.log.map(fmt), war.log.map(fmt))) {
          if (k === '=') {
            if (flag('--all') || flag('-v')) console.log(`    = ${line}`);
          } else console.log(`    ${k} ${line}`);
        }
        if (flag('--notes')) console.log('    notes R', fmt(ref.notes), '\n    notes W', fmt(war.notes));
      }
    }
  } finally {
    await Promise.race([broker.stop(), sleep(3000)]);
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(`\n${selected.length} scenarios, ${diffs} differ (run ${RUN})`);
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(results, null, 2));
  process.exit(0);
}

const hard = setTimeout(() => {
  console.error('global timeout');
  process.exit(2);
}, 15 * 60_000);
hard.unref();
await main();
