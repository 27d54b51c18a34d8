/** direct: routing key equality, a Map from key to destinations (no insertion on a miss). */
import type { Message } from '../message.js';
import { type Binding, type Destination, Exchange } from './exchange.js';

const NONE: readonly Destination[] = [];

export class DirectExchange extends Exchange {
  readonly type = 'direct';
  private readonly byKey = new Map<string, Destination[]>();

  addBinding(b: Binding): void {
    const list = this.byKey.get(b.routingKey);
    if (list) list.push(b.destination);
    else this.byKey.set(b.routingKey, [b.destination]);
  }

  removeBinding(b: Binding): void {
    const list = this.byKey.get(b.routingKey);
    if (!list) return;
    const i = list.indexOf(b.destination);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byKey.delete(b.routingKey);
  }

  match(_msg: Message, routingKey: string): readonly Destination[] {
    return this.byKey.get(routingKey) ?? NONE;
  }
}
