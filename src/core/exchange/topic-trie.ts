/**
 * A word trie for AMQP topic exchanges, with RabbitMQ's matching rules and a bounded result cache.
 *
 * Semantics (RabbitMQ `rabbit_db_topic_exchange`: `split_topic_key_binary/1` and `trie_match/5`):
 * - A routing key or binding pattern is split on every '.' into words; empty words are kept
 *   (`"a..b"` → `a`, `""`, `b`; `"."` → two empty words), but the empty string is **zero** words.
 * - In a pattern, a word that is exactly `*` matches exactly one word (which may be empty) and a
 *   word that is exactly `#` matches zero or more words. Anything else (`a*`, `#b`) is literal.
 * - So `"#"` matches every key including `""`; `"a.#"` matches `"a"`; `"#.a"` matches `"a"`;
 *   `"*"` does not match `""` (zero words) but `"*.*"` matches `"."` (two empty words); the
 *   pattern `""` matches only the key `""` (and `"#"` matches it too).
 *
 * Matching walks the trie level by level as an NFA: the set of live nodes after each word, kept in
 * two reused scratch arrays and de-duplicated with a per-node stamp. A node reached through a `#`
 * edge stays live while it swallows words, and every live node's `#` child is live too (zero
 * words). The work is O(words × live nodes), never exponential, whatever the patterns
 * (`#.#.#.#.#.a` against 128 words is trivial), and nothing recurses. No RegExp anywhere.
 *
 * Each distinct bound value has one {@link Slot}; a match de-duplicates values (one value bound
 * by two matching patterns appears once) by stamping slots with a per-match epoch, so no Set is
 * made per call.
 */

/** One distinct bound value, shared by every node it is bound at. */
interface Slot<T> {
  readonly value: T;
  /** How many patterns bind this value. */
  refs: number;
  /** The epoch of the last match that collected it. */
  mark: number;
}

/** Above this many values, a node keeps an index of its slots so add/remove stay O(1). */
const INDEX_AT = 16;

class TrieNode<T> {
  /** Literal children by word (never `*` or `#`). */
  children: Map<string, TrieNode<T>> | null = null;
  star: TrieNode<T> | null = null;
  hash: TrieNode<T> | null = null;
  /** Values bound by a pattern that ends here. */
  readonly slots: Slot<T>[] = [];
  /** `slots[i].value` at `i`: a lone matching node's result is one copy of this. */
  readonly values: T[] = [];
  /** slot → position in `slots`, once `slots` is large. */
  index: Map<Slot<T>, number> | null = null;
  /** The stamp of the last level this node was put in the live set at. */
  mark = 0;

  constructor(
    readonly parent: TrieNode<T> | null,
    /** The edge from the parent: a literal word, `*` or `#`. */
    readonly word: string,
    /** Reached through a `#` edge, so it can swallow words. */
    readonly isHash: boolean,
  ) {}

  isEmpty(): boolean {
    return this.slots.length === 0 && this.children === null && this.star === null && this.hash === null;
  }

  indexOf(slot: Slot<T>): number {
    if (this.index !== null) return this.index.get(slot) ?? -1;
    return this.slots.indexOf(slot);
  }
}

/** Splits a routing key or pattern into words: RabbitMQ's rule, `""` is zero words. */
export function splitTopicWords(key: string): string[] {
  return key === '' ? [] : key.split('.');
}

const EMPTY: readonly never[] = Object.freeze([]);
/** The cache's mark for a key seen once, whose result is not kept (see {@link TopicTrie.match}). */
const SEEN: readonly never[] = Object.freeze([]);

/** Default bound on cached routing keys. */
export const TOPIC_CACHE_MAX = 4096;

/**
 * Topic bindings: (pattern, value) pairs, matched against routing keys.
 *
 * Values are compared by identity (`===`); bind queue or exchange objects, not copies.
 */
export class TopicTrie<T> {
  private readonly root = new TrieNode<T>(null, '', false);
  private readonly slotByValue = new Map<T, Slot<T>>();
  /** The result cache, in two generations: see {@link match}. */
  private young = new Map<string, readonly T[]>();
  private old = new Map<string, readonly T[]>();
  private readonly generationMax: number;
  private pairs = 0;
  private nodeCount = 1;
  /** Level stamp for live-set de-duplication. */
  private level = 0;
  /** Match stamp for value de-duplication. */
  private epoch = 0;
  /** Scratch for {@link walk}: the live node sets of this level and the next one. */
  private live: TrieNode<T>[] = [];
  private next: TrieNode<T>[] = [];
  /** Scratch for {@link collectMany}. */
  private values: T[] = [];

  /** @param cacheMax the most routing keys whose results are kept (below 2 disables the cache). */
  constructor(cacheMax: number = TOPIC_CACHE_MAX) {
    this.generationMax = Math.floor(cacheMax / 2);
  }

  /** The number of (pattern, value) pairs. */
  get size(): number {
    return this.pairs;
  }

  /** The number of trie nodes, root included (for tests and metrics: pruning keeps it tight). */
  get nodes(): number {
    return this.nodeCount;
  }

  /** The number of routing keys in the cache, seen-once marks included (for tests and metrics). */
  get cachedKeys(): number {
    return this.young.size + this.old.size;
  }

  /** Binds `value` with `pattern`; false if that exact pair is already bound. */
  add(pattern: string, value: T): boolean {
    let node = this.root;
    for (const w of splitTopicWords(pattern)) node = this.child(node, w);
    let slot = this.slotByValue.get(value);
    if (slot !== undefined && node.indexOf(slot) !== -1) return false;
    if (slot === undefined) {
      slot = { value, refs: 0, mark: 0 };
      this.slotByValue.set(value, slot);
    }
    slot.refs++;
    node.slots.push(slot);
    node.values.push(value);
    if (node.index !== null) node.index.set(slot, node.slots.length - 1);
    else if (node.slots.length > INDEX_AT) {
      node.index = new Map();
      for (let i = 0; i < node.slots.length; i++) node.index.set(node.slots[i]!, i);
    }
    this.pairs++;
    this.invalidate();
    return true;
  }

  /** Unbinds the pair; false if it was not bound. Nodes left empty are pruned. */
  remove(pattern: string, value: T): boolean {
    const slot = this.slotByValue.get(value);
    if (slot === undefined) return false;
    let node: TrieNode<T> | null | undefined = this.root;
    for (const w of splitTopicWords(pattern)) {
      node = w === '*' ? node.star : w === '#' ? node.hash : node.children?.get(w);
      if (node === null || node === undefined) return false;
    }
    const at = node.indexOf(slot);
    if (at === -1) return false;
    // swap-remove: result order is unspecified
    const last = node.slots.pop()!;
    const lastValue = node.values.pop()!;
    if (last !== slot) {
      node.slots[at] = last;
      node.values[at] = lastValue;
      node.index?.set(last, at);
    }
    node.index?.delete(slot);
    if (node.index !== null && node.slots.length <= INDEX_AT / 2) node.index = null;
    if (--slot.refs === 0) this.slotByValue.delete(value);
    this.pairs--;
    this.invalidate();
    this.prune(node);
    // the scratch arrays may still point at the value or at pruned nodes
    this.live = [];
    this.next = [];
    this.values = [];
    return true;
  }

  /** True if `value` is bound with `pattern`. */
  has(pattern: string, value: T): boolean {
    const slot = this.slotByValue.get(value);
    if (slot === undefined) return false;
    let node: TrieNode<T> | null | undefined = this.root;
    for (const w of splitTopicWords(pattern)) {
      node = w === '*' ? node.star : w === '#' ? node.hash : node.children?.get(w);
      if (node === null || node === undefined) return false;
    }
    return node.indexOf(slot) !== -1;
  }

  /**
   * Every value bound with a pattern that matches `routingKey`, each once, in no particular order.
   *
   * The array may be shared with the cache and with other callers: it must not be mutated.
   *
   * The cache has two generations of at most `cacheMax / 2` keys each. Entries go to the young
   * one; when it is full it becomes the old one and the previous old one is dropped; a hit in the
   * old generation moves back to the young one. So keys in use survive, the bound holds, and no
   * eviction scans (a FIFO `Map` that deletes its first key on each insert is several times
   * slower: V8 steps over the deleted slots to find the first live one). A key's first sighting
   * is only marked as seen; its result is kept from the second. Keys that carry an id never
   * repeat, and keeping their results would only feed the garbage collector (measured: it cost
   * more than the walk).
   */
  match(routingKey: string): readonly T[] {
    const young = this.young.get(routingKey);
    if (young !== undefined && young !== SEEN) return young;
    const old = this.old.get(routingKey);
    if (old !== undefined && old !== SEEN) {
      this.remember(routingKey, old);
      return old;
    }
    const result = this.walk(routingKey);
    this.remember(routingKey, young === undefined && old === undefined ? SEEN : result);
    return result;
  }

  private remember(routingKey: string, entry: readonly T[]): void {
    if (this.generationMax === 0) return;
    if (this.young.size >= this.generationMax) {
      const dropped = this.old;
      dropped.clear();
      this.old = this.young;
      this.young = dropped;
    }
    this.young.set(routingKey, entry);
  }

  /** Drops every cached result: called on every add and remove. */
  private invalidate(): void {
    this.young.clear();
    this.old.clear();
  }

  /**
   * The uncached match: a level-by-level walk of the live node set. The scratch arrays are
   * filled by index with a separate count (shrinking `length` is a slow runtime call in V8).
   */
  private walk(routingKey: string): readonly T[] {
    let live = this.live;
    let next = this.next;
    let n = this.enter(this.root, live, 0, ++this.level);
    if (routingKey !== '') {
      let start = 0;
      for (;;) {
        const dot = routingKey.indexOf('.', start);
        const word = dot === -1 ? routingKey.slice(start) : routingKey.slice(start, dot);
        const stamp = ++this.level;
        let m = 0;
        for (let i = 0; i < n; i++) {
          const node = live[i]!;
          if (node.children !== null) {
            const c = node.children.get(word);
            if (c !== undefined) m = this.enter(c, next, m, stamp);
          }
          if (node.star !== null) m = this.enter(node.star, next, m, stamp);
          if (node.isHash) m = this.enter(node, next, m, stamp);
        }
        const t = live;
        live = next;
        next = t;
        n = m;
        if (n === 0 || dot === -1) break;
        start = dot + 1;
      }
    }
    this.live = live;
    this.next = next;
    return this.collect(live, n);
  }

  /**
   * Puts `node` and its chain of `#` children (which match zero words) in the live set
   * `into[0..n)`; returns the new count.
   */
  private enter(node: TrieNode<T> | null, into: TrieNode<T>[], n: number, stamp: number): number {
    // a node already in the set brought its `#` chain with it
    while (node !== null && node.mark !== stamp) {
      node.mark = stamp;
      into[n++] = node;
      node = node.hash;
    }
    return n;
  }

  /** The values bound at `nodes[0..n)`, each once, in a new array of exactly the right size. */
  private collect(nodes: readonly TrieNode<T>[], n: number): readonly T[] {
    // the common case, one node with bindings, needs no de-duplication
    let only: TrieNode<T> | null = null;
    for (let i = 0; i < n; i++) {
      const node = nodes[i]!;
      if (node.slots.length === 0) continue;
      if (only !== null) return this.collectMany(nodes, n);
      only = node;
    }
    return only === null ? EMPTY : only.values.slice();
  }

  /** Values from several nodes, de-duplicated by stamping each slot with this match's epoch. */
  private collectMany(nodes: readonly TrieNode<T>[], n: number): readonly T[] {
    const out = this.values;
    let k = 0;
    const epoch = ++this.epoch;
    for (let i = 0; i < n; i++) {
      const slots = nodes[i]!.slots;
      for (let j = 0; j < slots.length; j++) {
        const s = slots[j]!;
        if (s.mark === epoch) continue;
        s.mark = epoch;
        out[k++] = s.value;
      }
    }
    return k === 0 ? EMPTY : out.slice(0, k);
  }

  private child(node: TrieNode<T>, w: string): TrieNode<T> {
    if (w === '*') {
      if (node.star === null) node.star = this.newNode(node, w, false);
      return node.star;
    }
    if (w === '#') {
      if (node.hash === null) node.hash = this.newNode(node, w, true);
      return node.hash;
    }
    node.children ??= new Map();
    let c = node.children.get(w);
    if (c === undefined) {
      c = this.newNode(node, w, false);
      node.children.set(w, c);
    }
    return c;
  }

  private newNode(parent: TrieNode<T>, w: string, isHash: boolean): TrieNode<T> {
    this.nodeCount++;
    return new TrieNode<T>(parent, w, isHash);
  }

  /** Detaches empty nodes from `node` up towards the root. */
  private prune(node: TrieNode<T>): void {
    let n: TrieNode<T> = node;
    while (n.parent !== null && n.isEmpty()) {
      const p: TrieNode<T> = n.parent;
      if (n.word === '*') p.star = null;
      else if (n.word === '#') p.hash = null;
      else if (p.children !== null) {
        p.children.delete(n.word);
        if (p.children.size === 0) p.children = null;
      }
      this.nodeCount--;
      n = p;
    }
  }
}
