// Live figures for the dashboard, one sample per second, computed from the
// (aggregated) metrics: request rate, latency quantiles, error rate, status
// mix, in-flight, event-loop lag. The last 15 minutes are kept.

import type { Family } from "./registry.ts";
import * as N from "./names.ts";

/** One second of traffic. */
export interface LiveSample {
  readonly time: number;
  readonly requestsPerSecond: number;
  /** Milliseconds; null without traffic in that second. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Share of 5xx answers, 0..1. */
  readonly errorRate: number;
  readonly status: { readonly "2xx": number; "3xx": number; "4xx": number; "5xx": number };
  readonly inFlight: number;
  /** p99 of how late the isolates' timers ran (ms); null without samples in that second. */
  readonly loopLagP99Ms: number | null;
}

interface Totals {
  time: number;
  requests: number;
  byClass: number[];
  buckets: Map<number, number>;
  lag: Map<number, number>;
  inFlight: number;
}

/** Keeps the last `capacity` samples (default 900: 15 minutes). */
export class LiveStats {
  readonly #capacity: number;
  readonly samples: LiveSample[] = [];
  #last: Totals | null = null;

  constructor(capacity = 900) {
    this.#capacity = capacity;
  }

  /** Adds a sample from the metrics as of `now`; returns it (null for the first call). */
  record(metrics: readonly Family[], now: number): LiveSample | null {
    const totals = readTotals(metrics, now);
    const last = this.#last;
    this.#last = totals;
    if (!last) return null;
    const seconds = Math.max(0.001, (totals.time - last.time) / 1000);
    const requests = totals.requests - last.requests;
    const classes = totals.byClass.map((n, i) => n - last.byClass[i]);
    const answered = classes.reduce((a, b) => a + b, 0);
    const sample: LiveSample = {
      time: now,
      requestsPerSecond: Math.round((requests / seconds) * 10) / 10,
      p50Ms: quantileMs(0.5, totals.buckets, last.buckets),
      p99Ms: quantileMs(0.99, totals.buckets, last.buckets),
      errorRate: answered === 0 ? 0 : classes[3] / answered,
      status: { "2xx": classes[0], "3xx": classes[1], "4xx": classes[2], "5xx": classes[3] },
      inFlight: totals.inFlight,
      loopLagP99Ms: quantileMs(0.99, totals.lag, last.lag),
    };
    this.samples.push(sample);
    if (this.samples.length > this.#capacity) this.samples.shift();
    return sample;
  }
}

function readTotals(metrics: readonly Family[], time: number): Totals {
  const byName = new Map(metrics.map((m) => [m.name, m]));
  const sum = (name: string) => (byName.get(name)?.samples ?? []).reduce((n, v) => n + v.value, 0);
  const byClass = [0, 0, 0, 0];
  for (const v of byName.get(N.HTTP_STATUS_CODES_TOTAL)?.samples ?? []) {
    const cls = Math.floor(Number(v.labels.code) / 100) - 2;
    if (cls >= 0 && cls < 4) byClass[cls] += v.value;
  }
  return {
    time,
    requests: sum(N.HTTP_REQUESTS_TOTAL),
    byClass,
    buckets: cumulativeBuckets(byName.get(N.REQUEST_DURATION_SECONDS)),
    lag: cumulativeBuckets(byName.get(N.EVENT_LOOP_LAG_SECONDS)),
    inFlight: sum(N.ACTIVE_HTTP_CONNECTIONS),
  };
}

/** A histogram's cumulative bucket counts by upper bound, summed over its label sets. */
function cumulativeBuckets(family: Family | undefined): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const v of family?.samples ?? []) {
    if (!("le" in v.labels)) continue;
    const le = v.labels.le === "+Inf" ? Infinity : Number(v.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + v.value);
  }
  return buckets;
}

/** Quantile of the requests between two cumulative bucket snapshots, interpolated (ms). */
function quantileMs(
  q: number,
  now: Map<number, number>,
  before: Map<number, number>,
): number | null {
  const bounds = [...now.keys()].sort((a, b) => a - b);
  const total = (now.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = (now.get(le) ?? 0) - (before.get(le) ?? 0);
    if (count >= rank) {
      if (le === Infinity) return lower * 1000;
      const inBucket = count - below;
      const share = inBucket === 0 ? 1 : (rank - below) / inBucket;
      return Math.round((lower + (le - lower) * share) * 1000 * 100) / 100;
    }
    below = count;
    lower = le;
  }
  return null;
}
