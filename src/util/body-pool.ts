/**
 * Recycles the buffers of large message bodies. Each body of 4 KiB or more used to be a fresh
 * ArrayBuffer, and V8 starts a full collection whenever external memory grows 64 MiB past the
 * last one: at 1.5 GB/s of 256 KiB bodies that was 15 full collections a second, a third of
 * the broker's CPU (`--trace-incremental-marking`: "external memory pressure"). A body whose
 * message has provably no other user (amqp/body-recycler.ts decides) comes back here and the
 * next body of its size class reuses it.
 *
 * Size classes: eight per power of two, so a body wastes at most 1/8 of its buffer. A buffer
 * handed out is a view of exactly the requested length over a class-sized ArrayBuffer of its
 * own; a body is always filled completely before it is used, so stale bytes never show.
 */

/** Smaller bodies come from Node's shared 8 KiB slabs and are not pooled. */
export const POOL_MIN = 4096;
/** Larger bodies are rare enough to leave to the garbage collector. */
const POOL_MAX = 4 * 1024 * 1024;
/** Free buffers kept at most, in bytes. */
const KEEP_BYTES = 32 * 1024 * 1024;

const free = new Map<number, ArrayBuffer[]>();
let kept = 0;
/** bodies taken since the last trim */
let taken = 0;
/** bodies served from a recycled buffer, ever */
let reused = 0;

/** The class a size falls in: rounded up to 1/8 of its power of two. */
export function classSize(size: number): number {
  const step = 2 ** (Math.floor(Math.log2(size)) - 3);
  return Math.ceil(size / step) * step;
}

/** A body buffer of `size` bytes, contents unspecified (the caller fills all of it). */
export function takeBody(size: number): Buffer {
  if (size < POOL_MIN || size > POOL_MAX) return Buffer.allocUnsafe(size);
  taken++;
  const cls = classSize(size);
  const ab = free.get(cls)?.pop();
  if (ab === undefined) return Buffer.allocUnsafeSlow(cls).subarray(0, size);
  kept -= cls;
  reused++;
  return Buffer.from(ab, 0, size);
}

/**
 * Takes back a body nothing uses any more. Only buffers takeBody made for the pool are kept
 * (a view at offset 0 over a class-sized ArrayBuffer); anything else is left to the collector.
 */
export function giveBody(body: Buffer): void {
  const size = body.length;
  if (size < POOL_MIN || size > POOL_MAX || body.byteOffset !== 0) return;
  const ab = body.buffer as ArrayBuffer;
  const cls = ab.byteLength;
  if (cls !== classSize(size) || kept + cls > KEEP_BYTES) return;
  const list = free.get(cls);
  if (list === undefined) free.set(cls, [ab]);
  else list.push(ab);
  kept += cls;
}

/**
 * Called a few times a second: a pool nobody took from since the last call is emptied, so an
 * idle broker does not hold on to the buffers of a past burst. `all` empties it regardless
 * (memory alarm).
 */
export function trimBodies(all = false): void {
  if ((all || taken === 0) && kept > 0) {
    free.clear();
    kept = 0;
  }
  taken = 0;
}

/** Bytes held in free buffers, and how many bodies reused one so far. */
export function bodyPoolStats(): { keptBytes: number; reused: number } {
  return { keptBytes: kept, reused };
}
