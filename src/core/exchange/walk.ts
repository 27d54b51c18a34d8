/**
 * The walk a publish makes through a vhost's exchanges: each exchange's matches, recursively
 * through exchange-to-exchange bindings, and its alternate exchange when it matched nothing.
 * Destinations are visited once per walk, marked with the walk's epoch instead of kept in a Set.
 */
import type { Message } from '../message.js';
import type { Queue } from '../queue.js';
import type { Exchange } from './exchange.js';

export class RouteWalk {
  private epoch = 0;

  constructor(private readonly exchange: (name: string) => Exchange | undefined) {}

  /** The queues `msg` reaches from `ex` into `out` (cleared first), each once. */
  route(ex: Exchange, msg: Message, extraKeys: readonly string[] | undefined, out: Queue[]): Queue[] {
    out.length = 0;
    const epoch = ++this.epoch;
    if (extraKeys === undefined) this.routeInto(ex, msg, msg.routingKey, out, epoch);
    else this.routeKeys(ex, msg, [msg.routingKey, ...extraKeys], out, epoch);
    return out;
  }

  /**
   * Sender-selected distribution (CC/BCC), as RabbitMQ routes it: every exchange on the way
   * matches all the keys at once, so a key may take the message into an exchange where another
   * matches, and an exchange hands it to its alternate exchange only when no key matched.
   */
  private routeKeys(ex: Exchange, msg: Message, keys: readonly string[], out: Queue[], epoch: number): void {
    ex.routeEpoch = epoch;
    let matched = false;
    for (const k of keys) {
      const ds = ex.match(msg, k);
      if (ds.length > 0) matched = true;
      for (let i = 0; i < ds.length; i++) {
        const d = ds[i]!;
        if (d.routeEpoch === epoch) continue;
        d.routeEpoch = epoch;
        if (d.isQueue) out.push(d as Queue);
        else this.routeKeys(d as Exchange, msg, keys, out, epoch);
      }
    }
    if (matched || ex.alternateExchange === undefined) return;
    const ae = this.exchange(ex.alternateExchange);
    if (ae !== undefined && ae.routeEpoch !== epoch) this.routeKeys(ae, msg, keys, out, epoch);
  }

  /**
   * Walks one exchange: its matches, recursively through exchange-to-exchange bindings. An
   * exchange whose own bindings match nothing hands the message to its alternate exchange.
   */
  private routeInto(ex: Exchange, msg: Message, key: string, out: Queue[], epoch: number): void {
    ex.routeEpoch = epoch;
    const ds = ex.match(msg, key);
    const n = ds.length;
    if (n === 0) {
      const aeName = ex.alternateExchange;
      if (aeName === undefined) return;
      const ae = this.exchange(aeName);
      if (ae !== undefined && ae.routeEpoch !== epoch) this.routeInto(ae, msg, key, out, epoch);
      return;
    }
    for (let i = 0; i < n; i++) {
      const d = ds[i]!;
      if (d.routeEpoch === epoch) continue;
      d.routeEpoch = epoch;
      if (d.isQueue) out.push(d as Queue);
      else this.routeInto(d as Exchange, msg, key, out, epoch);
    }
  }
}
