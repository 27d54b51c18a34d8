/**
 * A growable ring-buffer deque: O(1) push/shift at both ends, never Array#shift on long arrays.
 */
export class Deque<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private count = 0;
  private mask: number;

  constructor(capacity = 16) {
    let c = 16;
    while (c < capacity) c <<= 1;
    this.buf = new Array<T | undefined>(c);
    this.mask = c - 1;
  }

  get length(): number {
    return this.count;
  }

  push(v: T): void {
    if (this.count === this.buf.length) this.grow();
    this.buf[(this.head + this.count) & this.mask] = v;
    this.count++;
  }

  unshift(v: T): void {
    if (this.count === this.buf.length) this.grow();
    this.head = (this.head - 1) & this.mask;
    this.buf[this.head] = v;
    this.count++;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.count--;
    return v;
  }

  pop(): T | undefined {
    if (this.count === 0) return undefined;
    const i = (this.head + this.count - 1) & this.mask;
    const v = this.buf[i];
    this.buf[i] = undefined;
    this.count--;
    return v;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.buf[this.head];
  }

  peekLast(): T | undefined {
    return this.count === 0 ? undefined : this.buf[(this.head + this.count - 1) & this.mask];
  }

  /** Element at logical index i (0 = front). */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.count) return undefined;
    return this.buf[(this.head + i) & this.mask];
  }

  /** Inserts at logical index i, shifting the shorter side. */
  insertAt(i: number, v: T): void {
    if (i <= 0) {
      this.unshift(v);
      return;
    }
    if (i >= this.count) {
      this.push(v);
      return;
    }
    if (this.count === this.buf.length) this.grow();
    const m = this.mask;
    if (i < this.count / 2) {
      // move the front part one slot left
      this.head = (this.head - 1) & m;
      for (let k = 0; k < i; k++) this.buf[(this.head + k) & m] = this.buf[(this.head + k + 1) & m];
    } else {
      for (let k = this.count; k > i; k--) this.buf[(this.head + k) & m] = this.buf[(this.head + k - 1) & m];
    }
    this.buf[(this.head + i) & m] = v;
    this.count++;
  }

  /** Removes everything; returns the removed elements in order. */
  drain(): T[] {
    const out: T[] = new Array<T>(this.count);
    for (let k = 0; k < this.count; k++) {
      out[k] = this.buf[(this.head + k) & this.mask] as T;
      this.buf[(this.head + k) & this.mask] = undefined;
    }
    this.head = 0;
    this.count = 0;
    return out;
  }

  clear(): void {
    this.buf.fill(undefined);
    this.head = 0;
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let k = 0; k < this.count; k++) yield this.buf[(this.head + k) & this.mask] as T;
  }

  private grow(): void {
    const old = this.buf;
    const n = old.length;
    const next = new Array<T | undefined>(n * 2);
    for (let k = 0; k < this.count; k++) next[k] = old[(this.head + k) & (n - 1)];
    this.buf = next;
    this.head = 0;
    this.mask = n * 2 - 1;
  }
}
