/**
 * What LmdbStore records between commits (the open batch) and the range deletions it carries
 * out a chunk per commit.
 */
import { ConfirmBatch, type StoredEntry, type StoredMessage } from './store.js';

export interface Batch {
  rangeQueue: number[];
  rangeFrom: number[];
  rangeTo: number[];
  enqQueue: number[];
  enqEntry: StoredEntry[];
  enqMsg: StoredMessage[];
  remQueue: number[];
  remSeq: number[];
  /** body to delete with the entry (last reference), else 0 */
  remBody: number[];
  /** the entry referenced a shared body (its refs record goes too) */
  remShared: boolean[];
  /** the entry has a delivery-count record to delete */
  remDeliv: boolean[];
  /** delivered entries whose count is written now (countDelivery) */
  delivQueue: number[];
  delivEntry: StoredEntry[];
  confirms: ConfirmBatch;
}

export function newBatch(): Batch {
  return {
    rangeQueue: [],
    rangeFrom: [],
    rangeTo: [],
    enqQueue: [],
    enqEntry: [],
    enqMsg: [],
    remQueue: [],
    remSeq: [],
    remBody: [],
    remShared: [],
    remDeliv: [],
    delivQueue: [],
    delivEntry: [],
    confirms: new ConfirmBatch(),
  };
}

/** A range of paged-out messages being deleted a chunk per commit (purge or delete of a deep queue). */
export interface Purge {
  queueId: number;
  next: number;
  to: number;
  /** its record in the purges db, deleted with the last chunk */
  recordKey: Buffer;
  /** the record is on disk (a failed first commit writes it again) */
  recorded: boolean;
  /** a chunk is being written: the next waits for its outcome */
  inFlight: boolean;
}
