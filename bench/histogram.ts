/**
 * A small log-linear latency histogram in microseconds (HdrHistogram's layout with 64 sub-buckets
 * per power of two, so every recorded value is kept to within 1/64 ≈ 1.6%). Fixed size, no
 * allocation per record, and mergeable across worker processes (counts travel as sparse pairs).
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64
/** Values are clamped to 2^31 µs (about 36 minutes). */
const MAX_VALUE = 0x7fffffff;
const BUCKETS = (31 - SUB_BITS + 1) * SUB + SUB;

/** Bucket index of a non-negative integer value. */
function indexOf(v: number): number {
  if (v < 2 * SUB) return v;
  const e = 31 - Math.clz32(v) - SUB_BITS;
  return (e + 1) * SUB + ((v >>> e) - SUB);
}

/** Lowest value that lands in bucket i, and the bucket's width. */
function bucketLow(i: number): number {
  if (i < 2 * SUB) return i;
  const e = (i >> SUB_BITS) - 1;
  return ((i & (SUB - 1)) + SUB) * 2 ** e;
}

function bucketWidth(i: number): number {
  if (i < 2 * SUB) return 1;
  return 2 ** ((i >> SUB_BITS) - 1);
}

/** Sparse form for IPC and JSON: [bucket index, count] pairs. */
export type HistogramData = Array<[number, number]>;

export interface HistogramExport {
  data: HistogramData;
  min: number;
  max: number;
  sum: number;
}

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;
  sum = 0;

  /** Records one value in microseconds (negative values count as 0). */
  record(us: number): void {
    let v = us > 0 ? Math.round(us) : 0;
    if (v > MAX_VALUE) v = MAX_VALUE;
    this.counts[indexOf(v)]!++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
    if (v < this.min) this.min = v;
  }

  /** The value at quantile q (0..1), in microseconds: the midpoint of the bucket that holds it. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const mid = bucketLow(i) + (bucketWidth(i) - 1) / 2;
        return Math.min(Math.max(mid, this.min), this.max);
      }
    }
    return this.max;
  }

  export(): HistogramExport {
    const data: HistogramData = [];
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c > 0) data.push([i, c]);
    }
    return { data, min: this.count > 0 ? this.min : 0, max: this.max, sum: this.sum };
  }

  /** Adds another histogram's exported counts. */
  merge(h: HistogramExport): void {
    let n = 0;
    for (const [i, c] of h.data) {
      if (i < 0 || i >= BUCKETS) continue;
      this.counts[i]! += c;
      n += c;
    }
    if (n === 0) return;
    this.count += n;
    this.sum += h.sum;
    if (h.min < this.min) this.min = h.min;
    if (h.max > this.max) this.max = h.max;
  }

  clear(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.sum = 0;
  }
}

/** Latency summary in milliseconds, as it appears in results. */
export interface LatencySummary {
  samples: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

const ms = (us: number): number => Math.round(us) / 1000;

export function summarize(h: Histogram): LatencySummary | null {
  if (h.count === 0) return null;
  return {
    samples: h.count,
    minMs: ms(h.min),
    meanMs: ms(h.sum / h.count),
    p50Ms: ms(h.quantile(0.5)),
    p95Ms: ms(h.quantile(0.95)),
    p99Ms: ms(h.quantile(0.99)),
    p999Ms: ms(h.quantile(0.999)),
    maxMs: ms(h.max),
  };
}
