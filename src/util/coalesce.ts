/**
 * Interrupt moderation for the event loop. Most clients (the Java client, pika, amqplib) write
 * every publish on its own, so a streaming publisher hands us a few dozen bytes per socket read.
 * While the loop keeps finding such crumbs waiting, every turn pays a read, a write per consumer
 * and an epoll call for a handful of messages, and the kernel's share of that becomes most of
 * the broker's CPU. After such a turn the loop naps about 0.13 ms, so the next turn finds a
 * batch: fewer syscalls here, and the consumers' clients wake once per batch instead of once
 * per few messages.
 *
 * A turn naps only when a connection without consumers published several messages in it
 * outside tx mode, unconfirmed or with ROUND_TRIP_WINDOW or more awaiting confirms (an open-loop
 * stream: it does not wait on us message by message), little was read in all, no work is left
 * for the next tick, and no client waited on a reply in the last few turns (a synchronous
 * method, a consumer at a small prefetch limit): round trips are never stretched by a nap. A
 * nap pays off only if the turn after it takes in clearly more than a turn without one; where
 * it does not (bursty low-rate publishers, and closed loops the rules above miss, such as a
 * publisher waiting for its own messages to reach a consumer on another connection), naps
 * back off.
 */
import { performance } from 'node:perf_hooks';
import { Phase, setPhase, tickPending } from './tick.js';

/** What the connections took in since the last tick ended. */
export const inflow = {
  /** connections that published STREAMING open-loop messages or more in this turn */
  streams: 0,
  /** open-loop publishes */
  publishes: 0,
  /** bytes read */
  bytes: 0,
  /**
   * a client waits on us to go on: a synchronous method was answered, or a consumer with a
   * prefetch below ROUND_TRIP_WINDOW reached it (its next delivery waits on an ack)
   */
  roundTrip: false,
};

/** Counts turns (ends of ticks): connections count their publishes per turn. */
export let turn = 0;

/** Publishes in one turn that make a connection a stream (a request/reply client sends one). */
export const STREAMING = 3;
/**
 * A client with fewer messages than this in flight (a consumer's prefetch, a publisher's
 * unconfirmed messages) is bound by round trips: a nap would slow it.
 */
export const ROUND_TRIP_WINDOW = 128;

/** The nap, ms (Atomics.wait; the kernel's timer slack makes it about 0.13 ms). */
const NAP_MS = 0.05;
/** A turn that read this much already batches enough. */
const SMALL_READ = 16 * 1024;
/** Turns without naps after one that answered a round trip. */
const QUIET_TURNS = 8;
/** A nap pays off when the next turn takes in this many times the publishes of a turn without one. */
const PAYOFF = 2;
/** One eligible turn in this many goes without a nap, so the baseline stays current. */
const REFRESH = 64;
/** Most eligible turns skipped after naps that did not pay off (doubling from 1). */
const MAX_BACKOFF = 64;

/** Naps taken since the start (read by tests). */
export let naps = 0;
/** Time spent napping since the start, ms (util/load.ts does not count it as busy). */
let napTotal = 0;

export function napMs(): number {
  return napTotal;
}

const cell = new Int32Array(new SharedArrayBuffer(4));
/** the last turn ended in a nap */
let napped = false;
/** open-loop publishes of the last eligible turn that did not follow a nap */
let baseline = 0;
let eligible = 0;
let backoff = 0;
let skip = 0;
let quiet = 0;

setPhase(Phase.Nap, () => {
  const { streams, publishes, bytes, roundTrip } = inflow;
  inflow.streams = 0;
  inflow.publishes = 0;
  inflow.bytes = 0;
  inflow.roundTrip = false;
  turn++;
  const afterNap = napped;
  napped = false;
  if (afterNap) {
    if (publishes >= PAYOFF * baseline) backoff = 0;
    else {
      backoff = backoff === 0 ? 1 : Math.min(backoff * 2, MAX_BACKOFF);
      skip = backoff;
    }
  }
  if (roundTrip) quiet = QUIET_TURNS;
  else if (quiet > 0) quiet--;
  if (streams === 0 || bytes >= SMALL_READ || quiet > 0 || tickPending()) return;
  if (!afterNap) baseline = publishes;
  if (skip > 0) {
    skip--;
    return;
  }
  // now and then a turn without a nap, to measure what one takes in
  if (++eligible % REFRESH === 0 && afterNap) return;
  naps++;
  napped = true;
  const t0 = performance.now();
  Atomics.wait(cell, 0, 0, NAP_MS);
  napTotal += performance.now() - t0;
});
