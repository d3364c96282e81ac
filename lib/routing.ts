// Request → pool: the first pool in file order whose matcher matches. The
// listener's scheme has already narrowed the list (Runtime.poolsFor).

import type { MatchRequest } from "./config/matcher.ts";
import type { Pool } from "./runtime.ts";

/** The first pool whose matcher accepts the request, or null (404). */
export function selectPool(pools: readonly Pool[], request: MatchRequest): Pool | null {
  for (const pool of pools) {
    if (pool.config.matcher(request)) return pool;
  }
  return null;
}
