/** The exchange of a type. */
import type { FieldTable } from '../../protocol/field-table.js';
import { DirectExchange } from './direct.js';
import type { Exchange, ExchangeType } from './exchange.js';
import { FanoutExchange } from './fanout.js';
import { HeadersExchange } from './headers.js';
import { TopicExchange } from './topic.js';

export function makeExchange(
  name: string,
  type: ExchangeType,
  durable: boolean,
  autoDelete: boolean,
  internal: boolean,
  args: FieldTable,
): Exchange {
  switch (type) {
    case 'direct':
      return new DirectExchange(name, durable, autoDelete, internal, args);
    case 'fanout':
      return new FanoutExchange(name, durable, autoDelete, internal, args);
    case 'topic':
      return new TopicExchange(name, durable, autoDelete, internal, args);
    case 'headers':
      return new HeadersExchange(name, durable, autoDelete, internal, args);
  }
}
