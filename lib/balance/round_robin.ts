import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/** `RoundRobin`: a per-pool counter modulo the number of candidates (RustStrom semantics). */
export const roundRobin: StrategyFactory = {
  name: "RoundRobin",
  parse: () => ({}),
  create(): Strategy {
    let next = 0;
    return {
      pick(candidates) {
        const chosen = candidates[next % candidates.length];
        next = (next + 1) % 0x40000000;
        return chosen;
      },
    };
  },
};
