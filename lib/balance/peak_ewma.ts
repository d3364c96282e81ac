import { parseDurationMs } from "../config/duration.ts";
import type { Candidate, Strategy } from "./strategy.ts";
import { chooseOfTwo } from "./power_of_two.ts";
import type { StrategyFactory } from "./registry.ts";

/** Default time constant of the moving average. */
export const DEFAULT_DECAY_MS = 10_000;

/**
 * Cost of a backend that has requests in flight but no answer on record yet:
 * it is not sent more until it answered once (it may be hanging).
 */
const UNANSWERED = 1e12;

/**
 * How long a 5xx makes a backend count as busy as the backend it is compared
 * with (see cost()): long enough to keep one failing fast from drawing the
 * load, short enough that one that recovered, or gave one 500 for one bad
 * request, is tried again within a second rather than after its estimate decays.
 */
export const FAILED_HOLD_MS = 1000;

/** One backend's response-time estimate. */
interface Estimate {
  /** Milliseconds, as of `at`. */
  ms: number;
  at: number;
  /** The last answer was a 5xx. */
  failed?: boolean;
}

/**
 * `PeakEWMA { decay = "10s" }`: latency-aware balancing (Finagle's and
 * Linkerd's peak EWMA). Each backend's response time (to the response
 * headers) is a moving average that jumps at once to a slower answer and
 * otherwise decays with the time constant `decay`, also while the backend
 * gets no traffic, so a backend that was slow once is tried again later
 * instead of starving (the trap of Traefik's `leasttime`, issue #12306). A
 * backend's cost is its estimate times (in-flight requests + 1); of two
 * different random candidates the cheaper wins. A backend with no answer on
 * record costs nothing while idle (it gets tried) and is avoided while it has
 * requests in flight. A failed attempt is observed as an answer that took
 * `connect_timeout` (lib/proxy/forward.ts), and a 5xx answer as one at least
 * twice as slow as the slowest other backend, and as busy as the other
 * candidate, so a backend that fails fast does not look fastest, idle or not;
 * health checks and passive ejection take it out.
 */
export const peakEwma: StrategyFactory = {
  name: "PeakEWMA",
  parse(reader) {
    let decayMs = DEFAULT_DECAY_MS;
    if (reader.has("decay")) {
      const ms = parseDurationMs(reader.raw("decay"), reader.at("decay"), reader.problems);
      if (ms !== undefined && ms < 100) reader.problem("decay", "must be at least 100 ms");
      else if (ms !== undefined) decayMs = ms;
    }
    return { decayMs };
  },
  create(options, deps): Strategy {
    const tau = options.decayMs as number;
    const now = deps.clock ? () => deps.clock!.now() : () => performance.now();
    const estimates = new Map<string, Estimate>();
    /** How much of an estimate is left at time `t`. */
    const weight = (e: Estimate, t: number) => Math.exp(-Math.max(0, t - e.at) / tau);
    /**
     * The cost of `c` next to `other`. One whose last answer, within FAILED_HOLD_MS, was a 5xx
     * counts as busy as the other at least: it has nothing in flight for long, since it fails
     * fast, and its doubled estimate alone lost to the others' estimates times their requests
     * in flight (a probe: 53 % of requests got its 503 at 8 clients, RoundRobin's share was
     * 33 %). Held for good, it kept a backend that had recovered out for seconds (a probe).
     */
    const cost = (c: Candidate, other: Candidate, t: number) => {
      const e = estimates.get(c.id);
      if (e === undefined) return c.inFlight === 0 ? 0 : UNANSWERED + c.inFlight;
      const held = e.failed && t - e.at < FAILED_HOLD_MS;
      const inFlight = held ? Math.max(c.inFlight, other.inFlight) : c.inFlight;
      return e.ms * weight(e, t) * (inFlight + 1);
    };
    return {
      pick(candidates) {
        const t = now();
        return chooseOfTwo(candidates, deps.random, (c, other) => cost(c, other, t));
      },
      observe(id, answered, failed) {
        const t = now();
        let ms = answered;
        if (failed) {
          // As slow as twice the slowest other backend that answers well: never preferred for
          // failing fast, and out of the way for about decay x ln 2 (7 s at 10 s), not for as
          // long as a full connect_timeout would take to decay (80 s next to 2 ms backends).
          // Backends failing too do not count: in an outage of all, estimates would double
          // each other without end.
          for (const [other, e] of estimates) {
            if (other !== id && !e.failed) ms = Math.max(ms, 2 * e.ms * weight(e, t));
          }
        }
        const e = estimates.get(id);
        if (e === undefined) {
          estimates.set(id, { ms, at: t, failed });
          return;
        }
        e.failed = failed;
        const w = weight(e, t);
        const decayed = e.ms * w;
        // The peak: a slower answer counts in full at once; faster ones blend in.
        e.ms = ms > decayed ? ms : decayed + ms * (1 - w);
        e.at = t;
      },
    };
  },
};
