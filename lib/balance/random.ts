import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/** `Random`: a uniform choice using the injected `random()`. */
export const random: StrategyFactory = {
  name: "Random",
  parse: () => ({}),
  create(_options, deps): Strategy {
    return {
      pick: (candidates) => candidates[Math.floor(deps.random() * candidates.length)],
    };
  },
};
