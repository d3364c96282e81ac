// The health monitor against a real runtime, with an injected clock and probe.

import assert from "node:assert/strict";
import { HealthMonitor } from "../../lib/health/monitor.ts";
import type { ProbeResult } from "../../lib/health/state.ts";
import { parseConfig } from "../../lib/config/load.ts";
import { defaultRuntimeDeps, Runtime } from "../../lib/runtime.ts";
import { silentLogger } from "../../lib/log.ts";
import type { TrafficMetrics } from "../../lib/metrics/metrics.ts";
import { ManualClock, nextTurn } from "../_helpers/clock.ts";

const CONFIG = `
[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:1", "127.0.0.1:2"]
schemes = ["HTTP"]
strategy = "RoundRobin"
[backend_pools.outlier_detection]
consecutive_failures = 1
base_ejection_time = "1s"
`;

const result = (ok: boolean): ProbeResult => ({
  ok,
  slow: false,
  status: ok ? 200 : null,
  latencyMs: 1,
  reason: ok ? "status 200" : "connect refused",
});

Deno.test("a probe-back-only monitor (a worker's) readmits an ejected backend and leaves its active health alone", async () => {
  const clock = new ManualClock();
  const ejections: string[] = [];
  const metrics = {
    ejected: (_pool: string, backend: string) => ejections.push(backend),
    backendFailed: () => {},
  };
  const runtime = await Runtime.create(parseConfig(CONFIG, { source: "<test>", baseDir: "." }), 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, clock, metrics: metrics as unknown as TrafficMetrics },
  });
  let probeOk = false;
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    probe: () => Promise.resolve(result(probeOk)),
    probeBackOnly: true,
  });
  monitor.watch(runtime);
  const [pool] = runtime.pools;
  const backend = pool.backends[1];
  pool.reportOutcome(backend, true, "connect refused");
  assert.ok(backend.outlier.ejected);
  const settle = async () => {
    for (let i = 0; i < 5; i++) await nextTurn();
  };
  clock.advance(1000); // the probe-back fails: ejected for longer
  await settle();
  assert.ok(backend.outlier.ejected);
  assert.equal(backend.outlier.ejections, 2, "the second ejection counts");
  assert.deepEqual(ejections, [backend.id, backend.id], "in strom_backend_ejections_total too");
  probeOk = true;
  clock.advance(2000); // it passes: back in rotation
  await settle();
  assert.equal(backend.outlier.ejected, false);
  assert.equal(backend.health.status, "Healthy", "active health is the primary's to change");
  assert.ok(pool.available().includes(backend), "back in the working set");
  monitor.stop();
  runtime.close();
});

Deno.test("with health checks off, an ejected backend is back after its cooldown, without a probe", async () => {
  const clock = new ManualClock();
  const config = `[health_interval]\ncheck_every = 0\n` + CONFIG;
  const runtime = await Runtime.create(parseConfig(config, { source: "<test>", baseDir: "." }), 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, clock },
  });
  let probes = 0;
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    // The probe path need not exist where nobody configured checks: a probe would fail.
    probe: () => (probes++, Promise.resolve(result(false))),
  });
  monitor.watch(runtime);
  monitor.start();
  const [pool] = runtime.pools;
  const backend = pool.backends[1];
  pool.reportOutcome(backend, true, "connect refused");
  assert.ok(backend.outlier.ejected);
  clock.advance(999);
  assert.ok(backend.outlier.ejected, "still cooling down");
  clock.advance(1);
  for (let i = 0; i < 5; i++) await nextTurn();
  assert.equal(backend.outlier.ejected, false);
  assert.equal(probes, 0);
  assert.equal(backend.health.status, "Healthy");
  assert.ok(pool.available().includes(backend), "back in the working set");
  monitor.stop();
  runtime.close();
});
