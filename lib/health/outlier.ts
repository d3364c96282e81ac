// Passive health (outlier detection): live traffic failures eject a backend for
// a cooldown that doubles on repeated ejections, within a cap on how much of a
// pool may be out at once. Pure functions over a backend's counters.

import type { OutlierConfig } from "../config/types.ts";

/** The passive-health counters a backend carries. */
export interface OutlierState {
  /** Consecutive failed requests on live traffic. */
  consecutiveFailures: number;
  /** Ejections in a row (the multiplier of the cooldown). */
  ejections: number;
  /** Whether the backend is out of rotation (until probed back after `ejectedUntil`). */
  ejected: boolean;
  /** When the cooldown ends, in clock milliseconds. */
  ejectedUntil: number;
  /** When the last ejection ended, for forgetting old ejections. */
  lastReadmittedAt: number;
}

/** A fresh, never-ejected state. */
export function initialOutlierState(): OutlierState {
  return {
    consecutiveFailures: 0,
    ejections: 0,
    ejected: false,
    ejectedUntil: 0,
    lastReadmittedAt: 0,
  };
}

/** The cooldown of the next ejection: base × 2^(ejections so far), at most max. */
export function cooldownMs(config: OutlierConfig, ejections: number): number {
  return Math.min(config.maxEjectionMs, config.baseEjectionMs * 2 ** Math.min(ejections, 30));
}

/**
 * Records one live request's outcome. Returns the cooldown when this failure
 * ejects the backend, else null. `outOfRotation` (the pool's other backends
 * out for any reason: ejected, Unresponsive or drained) and `poolSize` enforce
 * `max_ejection_percent` (a pool of one backend is never ejected passively).
 */
export function recordOutcome(
  state: OutlierState,
  failed: boolean,
  config: OutlierConfig,
  pool: { readonly outOfRotation: number; readonly poolSize: number; readonly now: number },
): number | null {
  if (!failed) {
    state.consecutiveFailures = 0;
    return null;
  }
  state.consecutiveFailures++;
  if (config.consecutiveFailures === 0 || state.ejected) return null;
  if (state.consecutiveFailures < config.consecutiveFailures) return null;
  const allowed = Math.floor(pool.poolSize * config.maxEjectionPercent / 100);
  if (pool.outOfRotation + 1 > allowed) return null;
  return eject(state, config, pool.now);
}

/** Ejects (or re-ejects after a failed probe) and returns the cooldown. */
export function eject(state: OutlierState, config: OutlierConfig, now: number): number {
  // Ejections long forgotten do not make the next cooldown longer.
  if (!state.ejected && now - state.lastReadmittedAt > config.maxEjectionMs) state.ejections = 0;
  const ms = cooldownMs(config, state.ejections);
  state.ejections++;
  state.ejected = true;
  state.ejectedUntil = now + ms;
  state.consecutiveFailures = 0;
  return ms;
}

/** Brings an ejected backend back after a passing probe. */
export function readmit(state: OutlierState, now: number): void {
  state.ejected = false;
  state.ejectedUntil = 0;
  state.consecutiveFailures = 0;
  state.lastReadmittedAt = now;
}
