// The health state machine: pure, one probe result at a time.

/** RustStrom's states: Healthy, Slow (passing but slower than slow_threshold), Unresponsive. */
export type HealthStatus = "Healthy" | "Slow" | "Unresponsive";

/** The outcome of one probe. A failing backend is an outcome, not an exception. */
export interface ProbeResult {
  /** Whether the answer passed (expected status and body). */
  readonly ok: boolean;
  /** Passed, but slower than slow_threshold. */
  readonly slow: boolean;
  /** Status received, or null when none arrived. */
  readonly status: number | null;
  /** Time to the answer's headers, in milliseconds. */
  readonly latencyMs: number;
  /** Short reason: "status 200", "connect refused", "timed out after 500 ms", ... */
  readonly reason: string;
  /** No answer within `timeout` (connect included). */
  readonly timedOut?: boolean;
}

/** What Strom believes about one backend. */
export interface HealthState {
  readonly status: HealthStatus;
  /** False until the first probe result arrived (a new backend starts Healthy). */
  readonly verified: boolean;
  /** Consecutive passing probes. */
  readonly successes: number;
  /** Consecutive failing probes. */
  readonly failures: number;
  /** Consecutive passing probes slower than slow_threshold. */
  readonly slows: number;
  /** Consecutive passing probes within slow_threshold. */
  readonly fasts: number;
  /** The last probe's result, or null before any. */
  readonly last: ProbeResult | null;
}

/** How many consecutive results flip a backend. */
export interface Thresholds {
  readonly healthyAfter: number;
  readonly unhealthyAfter: number;
}

/** The state of a backend nobody has probed yet: Healthy, unverified. */
export const INITIAL_HEALTH: HealthState = Object.freeze({
  status: "Healthy",
  verified: false,
  successes: 0,
  failures: 0,
  slows: 0,
  fasts: 0,
  last: null,
});

/**
 * The state after one more probe result. The first result decides at once (a
 * backend found dead at start-up gets no traffic); after that it takes
 * `unhealthyAfter` consecutive failures to take a backend out and
 * `healthyAfter` consecutive passes to bring it back (Healthy or Slow, as the
 * latest pass was). Between Healthy and Slow the same thresholds apply: a
 * Healthy backend turns Slow after `unhealthyAfter` slow passes in a row (a
 * Slow one gets no traffic while a Healthy one is left, so one slow probe, a
 * pause or a queue, would move its sticky clients and flap under load), and a
 * Slow one turns Healthy after `healthyAfter` fast passes in a row. A failed probe
 * that live traffic `corroborated` (requests to the backend failed since the
 * last probe) takes the backend out at once: two signals agree. Not a probe
 * that timed out: under a burst of thousands of clients, Deno completes some
 * of Strom's own connects seconds late, and probe and live requests then
 * "time out" together against a healthy backend (both backends of a pool
 * went out at once, and every request got 503 for 20 s). A backend that no
 * longer answers at all still leaves after `unhealthyAfter` probes, and
 * passive ejection takes it out of live traffic sooner.
 */
export function nextHealth(
  state: HealthState,
  result: ProbeResult,
  t: Thresholds,
  corroborated = false,
): HealthState {
  const successes = result.ok ? state.successes + 1 : 0;
  const failures = result.ok ? 0 : state.failures + 1;
  const slows = result.ok && result.slow ? state.slows + 1 : 0;
  const fasts = result.ok && !result.slow ? state.fasts + 1 : 0;
  const passing: HealthStatus = result.slow ? "Slow" : "Healthy";
  let status = state.status;
  if (!state.verified) status = result.ok ? passing : "Unresponsive";
  else if (state.status === "Unresponsive") {
    if (result.ok && successes >= t.healthyAfter) status = passing;
  } else if (result.ok) {
    if (state.status === "Healthy" && slows >= t.unhealthyAfter) status = "Slow";
    if (state.status === "Slow" && fasts >= t.healthyAfter) status = "Healthy";
  } else if (failures >= t.unhealthyAfter || (corroborated && !result.timedOut)) {
    status = "Unresponsive";
  }
  return { status, verified: true, successes, failures, slows, fasts, last: result };
}
