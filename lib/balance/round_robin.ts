import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/**
 * `RoundRobin`: a per-pool counter modulo the number of candidates (RustStrom
 * semantics). A retry's pick does not move the counter: were it to, in a pool of
 * two with one failing, every request would start on the failing one.
 */
export const roundRobin: StrategyFactory = {
  name: "RoundRobin",
  parse: () => ({}),
  create(): Strategy {
    let next = 0;
    return {
      pick(candidates, context) {
        const chosen = candidates[next % candidates.length];
        if (!context.retry) next = (next + 1) % 0x40000000;
        return chosen;
      },
    };
  },
};
