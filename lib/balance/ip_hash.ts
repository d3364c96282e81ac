import { fnv1a, mix } from "./hash.ts";
import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/**
 * `IPHash`: the same client IP goes to the same backend. Uses rendezvous
 * (highest-random-weight) hashing rather than RustStrom's `hash mod n`, so a
 * backend leaving or coming back only moves the clients that were on it.
 */
export const ipHash: StrategyFactory = {
  name: "IPHash",
  parse: () => ({}),
  create(): Strategy {
    const idHashes = new Map<string, number>();
    return {
      pick(candidates, context) {
        const ipHash = fnv1a(context.clientIp);
        let best = candidates[0];
        let bestScore = -1;
        for (const c of candidates) {
          let idHash = idHashes.get(c.id);
          if (idHash === undefined) idHashes.set(c.id, idHash = fnv1a(c.id));
          const score = mix(ipHash, idHash);
          if (score > bestScore) [best, bestScore] = [c, score];
        }
        return best;
      },
    };
  },
};
