import type { Candidate, Strategy } from "./strategy.ts";
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
        return chooseOfTwo(candidates, deps.random, (c) => c.inFlight);
      },
    };
  },
};

/**
 * Two different candidates drawn at random; the one with the lower `cost` (of
 * it next to the other; the first drawn on a tie). A single candidate is
 * returned as it is.
 */
export function chooseOfTwo<T extends Candidate>(
  candidates: readonly T[],
  random: () => number,
  cost: (candidate: T, other: T) => number,
): T {
  const n = candidates.length;
  if (n === 1) return candidates[0];
  const i = Math.floor(random() * n);
  // A second index among the other n - 1, so the two always differ.
  const j = (i + 1 + Math.floor(random() * (n - 1))) % n;
  const a = candidates[i], b = candidates[j];
  return cost(b, a) < cost(a, b) ? b : a;
}
