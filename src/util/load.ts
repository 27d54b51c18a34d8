/**
 * How busy the broker's thread is: the share of recent time the event loop spent running rather
 * than waiting for sockets, less the time it napped on purpose (coalesce.ts). Sampled by the
 * broker's periodic timer and smoothed over about a second. A saturated thread has to choose
 * what to spend itself on; busy queues then pace their publishers to what their consumers take
 * (core/queue-congestion.ts), as RabbitMQ's credit flow holds the publishers of a queue process
 * that cannot keep up.
 */
import { performance } from 'node:perf_hooks';
import { napMs } from './coalesce.js';

/** Smoothed utilization at or above which the thread counts as saturated. */
export const BUSY_ON = 0.9;
/** ... or a single sample's (a flood saturates the thread at once). */
export const BUSY_NOW = 0.97;
/** ... and below which it no longer does. */
export const BUSY_OFF = 0.75;
/** Samples closer together than this are merged (several brokers in one process share it). */
const MIN_SAMPLE_MS = 50;
/** Weight of the newest sample in the average (the broker samples every 200 ms). */
const WEIGHT = 0.35;

let last = performance.eventLoopUtilization();
let lastNap = napMs();
let average = 0;
let saturated = false;

/** True while the broker's thread has been saturated lately. */
export function loadBusy(): boolean {
  return saturated;
}

/** The smoothed utilization, 0..1 (for logs and tests). */
export function loadAverage(): number {
  return average;
}

/** Takes a sample (the broker's periodic timer). */
export function updateLoad(): void {
  const d = performance.eventLoopUtilization(last);
  const total = d.idle + d.active;
  if (total < MIN_SAMPLE_MS) return;
  last = performance.eventLoopUtilization();
  const nap = napMs();
  const active = Math.max(0, d.active - (nap - lastNap));
  lastNap = nap;
  const u = Math.min(1, active / total);
  average += WEIGHT * (u - average);
  if (saturated) saturated = average >= BUSY_OFF;
  else saturated = average >= BUSY_ON || u >= BUSY_NOW;
}
