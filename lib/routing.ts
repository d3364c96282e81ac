// Request → pool: the first pool in file order whose matcher matches. The
// listener's scheme has already narrowed the list (Runtime.routerFor).
//
// A config with many virtual hosts (`Host('a.com')`, `Host('b.com')`, ...)
// would run every earlier pool's matcher for a request to the last one. The
// router indexes the pools by the host names their matchers require
// (`hostsOf`): a request only runs the matchers of its host's pools and of the
// pools that may match any host, still in file order, so the first match is
// the same pool a walk through the whole list finds.

import { hostKey, hostsOf, type MatchRequest } from "./config/matcher.ts";
import type { Pool } from "./runtime.ts";

/** The first pool whose matcher accepts the request, or null (404). */
export function selectPool(pools: readonly Pool[], request: MatchRequest): Pool | null {
  for (const pool of pools) {
    if (pool.config.matcher(request)) return pool;
  }
  return null;
}

/** Pool entries the index may hold in all (host names x pools); past it, pools are walked. */
const MAX_INDEX_ENTRIES = 1_000_000;

/** Picks a request's pool from one listener scheme's pools, built once per generation. */
export class PoolRouter {
  readonly pools: readonly Pool[];
  /** Host key → the pools a request with that host may match, in file order; null: no index. */
  readonly #byHost: Map<string, readonly Pool[]> | null;
  /** The pools whose matchers may match any host, in file order. */
  readonly #anyHost: readonly Pool[];

  constructor(pools: readonly Pool[]) {
    this.pools = pools;
    const hosts = pools.map((p) => hostsOf(p.config.matcher));
    this.#anyHost = pools.filter((_, i) => hosts[i] === null);
    const keys = new Set(hosts.flatMap((set) => set === null ? [] : [...set]));
    if (keys.size === 0 || keys.size * (this.#anyHost.length + 1) > MAX_INDEX_ENTRIES) {
      this.#byHost = null;
      return;
    }
    const byHost = new Map<string, Pool[]>();
    for (const key of keys) byHost.set(key, []);
    for (const [i, pool] of pools.entries()) {
      const set = hosts[i];
      if (set === null) { for (const list of byHost.values()) list.push(pool); }
      else for (const key of set) byHost.get(key)!.push(pool);
    }
    this.#byHost = byHost;
  }

  /** The first pool whose matcher accepts the request, or null (404). */
  select(request: MatchRequest): Pool | null {
    if (this.#byHost === null) return selectPool(this.pools, request);
    const candidates = this.#byHost.get(hostKey(request.host)) ?? this.#anyHost;
    return selectPool(candidates, request);
  }
}
