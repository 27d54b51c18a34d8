/**
 * The connection handshake on channel 0:
 *   server: connection.start → client: start-ok (SASL PLAIN / AMQPLAIN)
 *   server: connection.tune  → client: tune-ok (channel-max, frame-max, heartbeat)
 *   client: connection.open (vhost) → server: open-ok
 */
import { isLoopback } from '../core/users.js';
import { accessRefused, channelError, commandInvalid, notAllowed } from '../errors.js';
import { decodeTable, type FieldTable } from '../protocol/field-table.js';
import {
  type ConnectionOpen,
  type ConnectionStartOk,
  type ConnectionTuneOk,
  encodeConnectionOpenOk,
  encodeConnectionStart,
  encodeConnectionTune,
  type MethodArgs,
} from '../protocol/generated/methods.js';
import { Constant, Method } from '../protocol/generated/spec.js';
import { type Connection, ConnState, PROTOCOL_HEADER } from './connection.js';

export const MECHANISMS = ['PLAIN', 'AMQPLAIN'];

/** Accumulates the 8-byte protocol header; returns the bytes after it (empty until complete). */
export function readProtocolHeader(c: Connection, chunk: Buffer): Buffer {
  const have = c.header!;
  const need = 8 - have.length;
  const got = Buffer.concat([have, chunk.subarray(0, need)]);
  // compare as far as we have: a wrong first byte is answered at once
  if (!got.equals(PROTOCOL_HEADER.subarray(0, got.length))) {
    c.header = null;
    c.rejectHeader(got);
    return Buffer.alloc(0);
  }
  if (got.length < 8) {
    c.header = got;
    return Buffer.alloc(0);
  }
  c.header = null;
  c.state = ConnState.Start;
  sendStart(c);
  return chunk.subarray(need);
}

export function sendStart(c: Connection): void {
  encodeConnectionStart(c.out, 0, {
    versionMajor: 0,
    versionMinor: 9,
    serverProperties: c.ctx.serverProperties,
    mechanisms: MECHANISMS.join(' '),
    locales: 'en_US',
  });
  c.markDirty();
}

export function handshakeMethod(c: Connection, id: number, args: MethodArgs): void {
  switch (c.state) {
    case ConnState.Start:
      if (id !== Method.CONNECTION_START_OK) break;
      startOk(c, args as ConnectionStartOk);
      return;
    case ConnState.Tune:
      if (id !== Method.CONNECTION_TUNE_OK) break;
      tuneOk(c, args as ConnectionTuneOk);
      return;
    case ConnState.Opening:
      if (id !== Method.CONNECTION_OPEN) break;
      open(c, args as ConnectionOpen);
      return;
  }
  if (id === Method.CONNECTION_CLOSE && c.state >= ConnState.Tune) {
    c.destroy('client closed the connection during the handshake');
    return;
  }
  throw channelError(`unexpected method in connection state ${stateName(c.state)}`);
}

function stateName(s: ConnState): string {
  return s === ConnState.Start ? 'starting' : s === ConnState.Tune ? 'tuning' : 'opening';
}

function startOk(c: Connection, a: ConnectionStartOk): void {
  c.clientProperties = a.clientProperties;
  const caps = a.clientProperties['capabilities'];
  if (caps && typeof caps === 'object' && !Array.isArray(caps) && !Buffer.isBuffer(caps)) {
    const t = caps as FieldTable;
    c.capAuthFailureClose = t['authentication_failure_close'] === true;
    c.capBlocked = t['connection.blocked'] === true;
    c.capConsumerCancelNotify = t['consumer_cancel_notify'] === true;
  }
  const creds = parseCredentials(a.mechanism, a.response);
  const result = c.ctx.users.authenticate(creds.user, creds.pass, isLoopback(c.socket.remoteAddress));
  if (!result.ok) {
    c.log.warn({ mechanism: a.mechanism, reason: result.reason }, 'login refused');
    const e = accessRefused(
      `Login was refused using authentication mechanism ${a.mechanism}. For details see the broker logfile.`,
    );
    e.noMethod = true;
    throw e;
  }
  c.user = result.user;
  c.state = ConnState.Tune;
  encodeConnectionTune(c.out, 0, {
    channelMax: c.ctx.config.channelMax,
    frameMax: c.ctx.config.frameMax,
    heartbeat: c.ctx.config.heartbeat,
  });
  c.markDirty();
}

/** Extracts user and password from a PLAIN or AMQPLAIN response. */
function parseCredentials(mechanism: string, response: Buffer): { user: string; pass: string } {
  if (mechanism === 'PLAIN') {
    // authzid \0 authcid \0 password, with an empty authzid and no NUL in the password, as
    // RabbitMQ's PLAIN mechanism reads it (it refuses anything else as an invalid response)
    const second = response[0] === 0 ? response.indexOf(0, 1) : -1;
    if (second < 0 || response.indexOf(0, second + 1) >= 0)
      throw accessRefused(
        'PLAIN response is malformed: expected \\0user\\0password (no authorization identity)',
      );
    return {
      user: response.toString('utf8', 1, second),
      pass: response.toString('utf8', second + 1),
    };
  }
  if (mechanism === 'AMQPLAIN') {
    // a field table without its length prefix
    let t: FieldTable;
    try {
      t = decodeTable(response, 0, response.length);
    } catch {
      throw accessRefused('AMQPLAIN response is not a valid field table');
    }
    const user = t['LOGIN'];
    const pass = t['PASSWORD'];
    if (typeof user !== 'string' || typeof pass !== 'string') {
      throw accessRefused('AMQPLAIN response must carry LOGIN and PASSWORD as strings');
    }
    return { user, pass };
  }
  throw commandInvalid(`unknown authentication mechanism '${mechanism}'`);
}

/**
 * Negotiation follows RabbitMQ: the client may lower our values; a value above ours or below the
 * minimum is refused with 530. Zero (spec: "no limit") takes our maximum.
 */
function tuneOk(c: Connection, a: ConnectionTuneOk): void {
  const cfg = c.ctx.config;
  const frameMax = a.frameMax === 0 ? cfg.frameMax : a.frameMax;
  if (frameMax < Constant.FRAME_MIN_SIZE) {
    throw notAllowed(
      `negotiated frame_max = ${frameMax} is lower than the minimum allowed value (${Constant.FRAME_MIN_SIZE})`,
    );
  }
  if (frameMax > cfg.frameMax) {
    throw notAllowed(
      `negotiated frame_max = ${frameMax} is higher than the maximum allowed value (${cfg.frameMax})`,
    );
  }
  const channelMax = a.channelMax === 0 ? cfg.channelMax : a.channelMax;
  if (channelMax > cfg.channelMax) {
    throw notAllowed(
      `negotiated channel_max = ${channelMax} is higher than the maximum allowed value (${cfg.channelMax})`,
    );
  }
  c.frameMax = frameMax;
  c.parser.frameMax = frameMax;
  c.channelMax = channelMax;
  c.heartbeat = a.heartbeat;
  c.state = ConnState.Opening;
}

function open(c: Connection, a: ConnectionOpen): void {
  const vhost = c.ctx.vhosts.get(a.virtualHost);
  if (!vhost) throw notAllowed(`vhost ${a.virtualHost} not found`);
  if (!c.user!.vhosts.has(vhost.name)) {
    throw notAllowed(`access to vhost '${vhost.name}' refused for user '${c.user!.name}'`);
  }
  c.vhost = vhost;
  encodeConnectionOpenOk(c.out, 0, {});
  c.markDirty();
  c.opened();
  const cp = c.clientProperties;
  c.log.info(
    {
      user: c.user?.name,
      vhost: vhost.name,
      client: typeof cp['product'] === 'string' ? cp['product'] : undefined,
      frameMax: c.frameMax,
      channelMax: c.channelMax,
      heartbeat: c.heartbeat,
    },
    'connection opened',
  );
}
