import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/**
 * `PowerOfTwoChoices`: two different candidates chosen at random, and of those
 * the one with fewer in-flight requests (Envoy's least-request). It follows
 * load like `LeastConnection`, but a backend that just became free does not
 * draw every request at once, which matters when counts are per worker.
 */
export const powerOfTwoChoices: StrategyFactory = {
  name: "PowerOfTwoChoices",
  parse: () => ({}),
  create(_options, deps): Strategy {
    return {
      pick(candidates) {
        const n = candidates.length;
        if (n === 1) return candidates[0];
        const i = Math.floor(deps.random() * n);
        // A second index among the other n - 1, so the two always differ.
        const j = (i + 1 + Math.floor(deps.random() * (n - 1))) % n;
        const a = candidates[i], b = candidates[j];
        return b.inFlight < a.inFlight ? b : a;
      },
    };
  },
};
