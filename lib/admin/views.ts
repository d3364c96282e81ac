// JSON views of the runtime for the admin API and the event stream.

import { type Runtime, takesTraffic } from "../runtime.ts";

/** Pools, matchers, strategies and backends with their live state (`workers`: isolates). */
export function poolsView(runtime: Runtime, workers = 1) {
  return runtime.pools.map((pool) => {
    const available = pool.available();
    return {
      name: pool.config.name,
      matcher: pool.config.matcherSource,
      schemes: [...pool.config.schemes],
      strategy: pool.config.strategy.name,
      transport: pool.config.transport,
      backends: pool.backends.map((b) => ({
        address: b.id,
        health: b.health.status,
        /** False until the first probe answered (a new backend starts Healthy). */
        verified: b.health.verified,
        available: takesTraffic(b, available, workers),
        lastCheck: b.health.last && {
          ok: b.health.last.ok,
          status: b.health.last.status,
          reason: b.health.last.reason,
          latencyMs: Math.round(b.health.last.latencyMs * 1000) / 1000,
        },
        ejected: b.outlier.ejected,
        /** With `workers`: in how many workers live traffic has it ejected (each has its own). */
        ejectedInWorkers: b.ejectedInWorkers,
        /** Taken out of rotation through POST /api/drain. */
        drained: b.drained,
        /** With `drained`: clients a sticky cookie binds to it still reach it. */
        keepSticky: b.keepSticky,
        /** Passive ejections in a row (the cooldown's multiplier). */
        ejections: b.outlier.ejections,
        inFlight: b.inFlight,
        requests: b.requests,
        failures: b.failures,
      })),
    };
  });
}
