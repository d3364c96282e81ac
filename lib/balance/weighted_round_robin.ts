import type { Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";

/** The largest weight a backend may have. */
export const MAX_WEIGHT = 1000;

/**
 * `WeightedRoundRobin { weights = { "10.0.0.1:8080" = 3 } }`: smooth weighted
 * round robin (nginx's algorithm): over any run of picks each candidate gets
 * its share of the total weight, interleaved rather than in bursts (3:1 gives
 * a a b a). Backends not listed weigh 1. Weight 0 makes a backup: it gets
 * traffic only when no backend with a weight is available.
 */
export const weightedRoundRobin: StrategyFactory = {
  name: "WeightedRoundRobin",
  parse(reader, _parseInner, context) {
    const weights: Record<string, number> = {};
    const table = reader.subtable("weights");
    if (table) {
      for (const address of Object.keys(table.table)) {
        const weight = table.int(address, { min: 0, max: MAX_WEIGHT });
        if (context.addresses && !context.addresses.includes(address)) {
          table.problem(address, "not one of the pool's addresses");
        } else if (weight !== undefined) weights[address] = weight;
      }
    }
    return { weights };
  },
  create(options): Strategy {
    const weights = new Map(Object.entries(options.weights as Record<string, number>));
    const weightOf = (id: string) => weights.get(id) ?? 1;
    /** Each backend's running score; the highest is picked and pays the round's total. */
    const current = new Map<string, number>();
    let backup = 0;
    return {
      pick(candidates) {
        let total = 0;
        let best: (typeof candidates)[number] | undefined;
        let bestScore = -Infinity;
        for (const c of candidates) {
          const weight = weightOf(c.id);
          if (weight === 0) continue;
          total += weight;
          const score = (current.get(c.id) ?? 0) + weight;
          current.set(c.id, score);
          if (score > bestScore) {
            best = c;
            bestScore = score;
          }
        }
        if (best === undefined) {
          // Only backups are left: they take turns.
          backup = (backup + 1) % 0x40000000;
          return candidates[backup % candidates.length];
        }
        current.set(best.id, bestScore - total);
        return best;
      },
      isBackup: (id) => weightOf(id) === 0,
    };
  },
};
