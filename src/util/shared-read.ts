/**
 * Reads every client socket into one shared buffer. By default Node gives each read a fresh
 * 64 KiB buffer: at a GB/s of large bodies that is thousands of ArrayBuffers a second for the
 * garbage collector, and reads no larger than 64 KiB. The frame parser hands out views valid
 * only during the call and everything kept is copied (frame-parser.ts, command-assembler.ts), so
 * one buffer can serve all connections: a read is parsed before the next one starts.
 *
 * Node's public `onread` option does this for sockets it connects, not for the ones a server
 * accepts; this turns the same machinery on for an accepted socket. Where that machinery is not
 * there (another Node version), the socket keeps its 'data' events.
 */
import type { Socket } from 'node:net';

/** Largest read; also the shared buffer's size. */
export const READ_SIZE = 256 * 1024;

let shared: Buffer | null = null;

interface StreamHandle {
  useUserBuffer?(buf: Buffer): void;
}

/**
 * Delivers the socket's input to `onChunk` as views of the shared buffer, valid only during the
 * call. Returns false (and does nothing) when the runtime does not support it; the caller then
 * listens to 'data'.
 */
export function readShared(socket: Socket, onChunk: (chunk: Buffer) => void): boolean {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle == null || typeof handle.useUserBuffer !== 'function') return false;
  let kBuffer: symbol | undefined;
  let kBufferCb: symbol | undefined;
  for (const s of Object.getOwnPropertySymbols(socket)) {
    if (s.description === 'kBuffer') kBuffer = s;
    else if (s.description === 'kBufferCb') kBufferCb = s;
  }
  if (kBuffer === undefined || kBufferCb === undefined) return false;
  shared ??= Buffer.allocUnsafe(READ_SIZE);
  const buf = shared;
  const s = socket as unknown as Record<symbol, unknown>;
  s[kBuffer] = buf;
  s[kBufferCb] = (n: number) => {
    onChunk(buf.subarray(0, n));
  };
  handle.useUserBuffer(buf);
  return true;
}
