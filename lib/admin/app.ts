// The admin listener's Hono app: status and pool views for operators.

import { Hono } from "hono";
import { COMMIT, VERSION } from "../version.ts";
import type { Strom } from "../server.ts";

/** Builds the admin app for a running Strom. */
export function createAdminApp(strom: Strom): Hono {
  const app = new Hono();
  app.get("/api/status", (c) =>
    c.json({
      version: VERSION,
      commit: COMMIT,
      uptimeSeconds: Math.round((Date.now() - strom.startedAt) / 1000),
      config: strom.configPath ?? null,
      generation: strom.runtime.generation,
      listeners: strom.listeners(),
    }));
  app.get("/api/pools", (c) =>
    c.json(strom.runtime.pools.map((pool) => ({
      name: pool.config.name,
      matcher: pool.config.matcherSource,
      schemes: [...pool.config.schemes],
      strategy: pool.config.strategy.name,
      backends: pool.backends.map((b) => ({
        address: b.id,
        health: b.health.status,
        available: pool.available().includes(b),
        lastCheck: b.health.last && {
          ok: b.health.last.ok,
          status: b.health.last.status,
          reason: b.health.last.reason,
          latencyMs: b.health.last.latencyMs,
        },
        ejected: b.outlier.ejected,
        inFlight: b.inFlight,
        requests: b.requests,
        failures: b.failures,
      })),
    }))));
  app.notFound((c) => c.text("404 - page not found", 404));
  return app;
}
