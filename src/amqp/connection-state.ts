/** The broker-facing context of a connection and the states of its lifecycle. */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { UserStore } from '../core/users.js';
import type { VHostRegistry } from '../core/vhost.js';
import type { FieldTable } from '../protocol/field-table.js';
import { turn } from '../util/coalesce.js';
import type { Connection } from './connection.js';
import type { FlowControl } from './publish-flow.js';

/** What a connection needs from the broker. */
export interface ConnectionContext {
  readonly config: Config;
  readonly users: UserStore;
  readonly vhosts: VHostRegistry;
  readonly log: Logger;
  readonly serverProperties: FieldTable;
  readonly flow: FlowControl;
  connectionClosed(c: Connection): void;
}

export const ConnState = {
  /** waiting for the 8-byte protocol header */
  Header: 0,
  /** sent connection.start, waiting for start-ok */
  Start: 1,
  /** sent connection.tune, waiting for tune-ok */
  Tune: 2,
  /** waiting for connection.open */
  Opening: 3,
  Open: 4,
  /** sent connection.close, waiting for close-ok; everything else is discarded */
  Closing: 5,
  Closed: 6,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

/** Channel numbers the client closed in the current turn of the event loop (util/coalesce turn). */
export class ClosedThisTurn {
  private list: number[] = [];
  private at = -1;

  add(n: number): void {
    if (this.at !== turn) {
      this.at = turn;
      this.list = [];
    }
    this.list.push(n);
  }

  has(n: number): boolean {
    return this.at === turn && this.list.includes(n);
  }
}
