/**
 * Keeps garbage ArrayBuffers from piling up. Message bodies are views into socket chunks and
 * lmdb-js hands out copies; V8 frees the memory behind them only at a full collection, which it
 * schedules by JS heap growth and lets external memory run 64 MiB+ past the last collection. A
 * broker's JS heap is small and its external memory large, so a publishing burst left 100+ MiB
 * of dead buffers (and malloc keeps the peak). A full collection once dead external memory may
 * exceed the bound keeps the peak near what is live.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const FLOOR = 48 * 1024 * 1024;
/** Above this much JS heap in use, no forced collection (its pause would grow with the heap). */
const HEAP_CAP = 128 * 1024 * 1024;

let collect: (() => void) | null = null;

/**
 * Turns the policy on (the warren command does; an embedding application keeps its own V8
 * flags and GC). Exposes V8's gc function to a separate context only.
 */
export function enableExternalGc(): void {
  if (collect !== null) return;
  try {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  } catch {
    collect = null;
  }
}

/**
 * V8 lets the old generation grow to a few times what the last full collection kept before it
 * collects again. Filling or draining a backlog on disk promotes nearly every message (each
 * lives through two scavenges while its write or delivery is in flight), so the heap swung
 * between 10 MB live and 40-55 MB. While a queue pages, the broker holds a backlog and its
 * footprint matters more than its speed: the heap then grows by at most 20% (V8 reads the
 * flag at every collection, so it applies at once). Measured on 1M x 16 B: peak RSS
 * 152-159 -> 129-134 MiB. Not always on: with 4 KiB messages flowing it cost a quarter of the
 * throughput (9 -> 12.6 CPU-s per million).
 */
let tightHeap = false;

export function setTightHeap(on: boolean): void {
  if (on === tightHeap || collect === null) return;
  tightHeap = on;
  try {
    setFlagsFromString(on ? '--heap-growing-percent=20' : '--heap-growing-percent=0');
  } catch {
    // a runtime without the flag keeps V8's own policy
  }
}

let threshold = FLOOR;

/** Called a few times a second: collects when external memory grew well past its live size. */
export function checkExternalMemory(): void {
  if (collect === null) return;
  const m = memoryUsage();
  // a full collection of a big heap is a long pause; V8's own schedule copes there
  if (m === null || m.arrayBuffers < threshold || m.heapUsed > HEAP_CAP) return;
  collect();
  threshold = Math.max(FLOOR, (memoryUsage()?.arrayBuffers ?? 0) * 2);
}

/** process.memoryUsage() reads /proc for the RSS: null when the process is out of file descriptors. */
function memoryUsage(): NodeJS.MemoryUsage | null {
  try {
    return process.memoryUsage();
  } catch {
    return null;
  }
}
