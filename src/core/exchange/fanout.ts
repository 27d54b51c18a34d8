/** fanout: every bound destination, ignoring the routing key. */
import type { Message } from '../message.js';
import { type Binding, type Destination, Exchange } from './exchange.js';

export class FanoutExchange extends Exchange {
  readonly type = 'fanout';
  private readonly all: Destination[] = [];

  addBinding(b: Binding): void {
    this.all.push(b.destination);
  }

  removeBinding(b: Binding): void {
    const i = this.all.indexOf(b.destination);
    if (i >= 0) this.all.splice(i, 1);
  }

  match(_msg: Message, _routingKey: string): readonly Destination[] {
    return this.all;
  }
}
