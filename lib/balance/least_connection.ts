import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/**
 * `LeastConnection`: the candidate with the fewest in-flight requests. Ties are
 * broken by starting the scan at a rotating offset, so idle backends share load
 * evenly instead of the first one taking every request (RustStrom's behaviour).
 * A retry's pick does not move the offset, as RoundRobin's turn (see
 * round_robin.ts): with a dead backend among idle ones, the retry after it took
 * the next turn too, and the backend after the dead one got every other request.
 */
export const leastConnection: StrategyFactory = {
  name: "LeastConnection",
  parse: () => ({}),
  create(): Strategy {
    let offset = 0;
    return {
      pick(candidates, context) {
        const n = candidates.length;
        const start = offset % n;
        if (!context.retry) offset = (offset + 1) % 0x40000000;
        let best = candidates[start];
        for (let i = 1; i < n; i++) {
          const c = candidates[(start + i) % n];
          if (c.inFlight < best.inFlight) best = c;
        }
        return best;
      },
    };
  },
};
