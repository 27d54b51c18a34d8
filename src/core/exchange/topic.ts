/** topic: dot-separated words with * and #, matched by a word trie with a bounded cache. */
import type { Message } from '../message.js';
import { type Binding, type Destination, Exchange } from './exchange.js';
import { TopicTrie } from './topic-trie.js';

export class TopicExchange extends Exchange {
  readonly type = 'topic';
  private readonly trie = new TopicTrie<Destination>();
  /** bindings per (destination, pattern): arguments may differ, the trie holds the pair once */
  private readonly refs = new Map<string, number>();

  addBinding(b: Binding): void {
    const k = pairKey(b);
    const n = this.refs.get(k) ?? 0;
    this.refs.set(k, n + 1);
    if (n === 0) this.trie.add(b.routingKey, b.destination);
  }

  removeBinding(b: Binding): void {
    const k = pairKey(b);
    const n = this.refs.get(k) ?? 0;
    if (n <= 1) {
      this.refs.delete(k);
      this.trie.remove(b.routingKey, b.destination);
    } else {
      this.refs.set(k, n - 1);
    }
  }

  match(_msg: Message, routingKey: string): readonly Destination[] {
    return this.trie.match(routingKey);
  }
}

function pairKey(b: Binding): string {
  return `${b.destination.isQueue ? 'q' : 'e'}:${b.destination.name}\u0000${b.routingKey}`;
}
