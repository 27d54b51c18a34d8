/** headers: matches the message's headers table against each binding's arguments (x-match). */
import type { Message } from '../message.js';
import { type Binding, type Destination, Exchange } from './exchange.js';
import { headersMatch } from './headers-match.js';

export class HeadersExchange extends Exchange {
  readonly type = 'headers';
  private readonly list: Binding[] = [];
  private readonly out: Destination[] = [];

  addBinding(b: Binding): void {
    this.list.push(b);
  }

  removeBinding(b: Binding): void {
    const i = this.list.indexOf(b);
    if (i >= 0) this.list.splice(i, 1);
    this.out.length = 0; // the last match may name it: a deleted queue is not kept alive
  }

  /** The returned array is reused by the next call. */
  match(msg: Message, _routingKey: string): readonly Destination[] {
    const out = this.out;
    out.length = 0;
    if (this.list.length === 0) return out;
    const headers = msg.headers() ?? undefined;
    for (const b of this.list) if (headersMatch(b.args, headers)) out.push(b.destination);
    return out;
  }
}
