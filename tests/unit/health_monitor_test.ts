// The health monitor against a real runtime, with an injected clock and probe.

import assert from "node:assert/strict";
import {
  HealthMonitor,
  MAX_PROBES_AT_ONCE,
  MAX_PROBES_PER_POOL,
  type MonitorOptions,
} from "../../lib/health/monitor.ts";
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

/** A runtime of CONFIG's pool (two backends), with `prefix` before it, on `clock`. */
function poolRuntime(prefix: string, clock: ManualClock, previous?: Runtime) {
  return Runtime.create(parseConfig(prefix + CONFIG, { source: "<test>", baseDir: "." }), 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, clock },
    previous,
  });
}

Deno.test("passive ejection never takes out the last backend still serving, nor one a probe left alone", async () => {
  const clock = new ManualClock();
  const runtime = await poolRuntime("", clock);
  const [pool] = runtime.pools;
  const [down, up] = pool.backends;
  down.health = { ...down.health, status: "Unresponsive" };
  pool.invalidate();
  // 50 % of two backends may be out: the Unresponsive one already is.
  pool.reportOutcome(up, true, "status 500");
  assert.equal(up.outlier.ejected, false);
  assert.deepEqual(pool.available(), [up]);
  // A drained backend counts as out too.
  down.health = { ...down.health, status: "Healthy" };
  down.drained = true;
  pool.invalidate();
  pool.reportOutcome(up, true, "status 500");
  assert.equal(up.outlier.ejected, false);
  down.drained = false;
  pool.invalidate();
  pool.reportOutcome(up, true, "status 500");
  assert.equal(up.outlier.ejected, true, "with its peer in rotation, it goes");
  runtime.close();
});

Deno.test("when every backend is out but some only by passive ejection, those take traffic", async () => {
  const clock = new ManualClock();
  const runtime = await poolRuntime("", clock);
  const [pool] = runtime.pools;
  const [first, second] = pool.backends;
  pool.reportOutcome(second, true, "status 500");
  assert.ok(second.outlier.ejected);
  assert.deepEqual(pool.available(), [first]);
  // Its peer then fails its probes: the ejected one serves rather than nobody.
  first.health = { ...first.health, status: "Unresponsive" };
  pool.invalidate();
  assert.deepEqual(pool.available(), [second]);
  // Not a drained one, nor an Unresponsive one.
  second.drained = true;
  pool.invalidate();
  assert.deepEqual(pool.available(), []);
  second.drained = false;
  second.health = { ...second.health, status: "Unresponsive" };
  pool.invalidate();
  assert.deepEqual(pool.available(), []);
  runtime.close();
});

Deno.test("a reload that turns health checks off brings an Unresponsive backend back as Healthy", async () => {
  const clock = new ManualClock();
  const checked = await poolRuntime("[health_interval]\ncheck_every = 1\n", clock);
  const [down] = checked.pools[0].backends;
  down.health = { ...down.health, status: "Unresponsive", verified: true };
  // Checks still on: the state is carried, for the probes to change.
  const still = await poolRuntime("[health_interval]\ncheck_every = 2\n", clock, checked);
  assert.equal(still.pools[0].backends[0], down);
  assert.equal(down.health.status, "Unresponsive");
  const off = await poolRuntime("[health_interval]\ncheck_every = 0\n", clock, still);
  assert.equal(off.pools[0].backends[0], down, "the same backend, counters and all");
  assert.equal(down.health.status, "Healthy");
  assert.ok(off.pools[0].available().includes(down));
  off.close();
});

Deno.test("a probe under way when a reload turns checks off changes nothing", async () => {
  const clock = new ManualClock();
  const checked = await poolRuntime("[health_interval]\ncheck_every = 1\n", clock);
  const answers: ((r: ProbeResult) => void)[] = [];
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    probe: () => new Promise((resolve) => answers.push(resolve)),
  });
  monitor.watch(checked);
  monitor.start(); // the first round starts at once: two probes under way
  assert.equal(answers.length, 2);
  const off = await poolRuntime("[health_interval]\ncheck_every = 0\n", clock, checked);
  monitor.watch(off);
  for (const answer of answers) answer(result(false));
  for (let i = 0; i < 5; i++) await nextTurn();
  for (const backend of off.pools[0].backends) assert.equal(backend.health.status, "Healthy");
  assert.equal(off.pools[0].available().length, 2);
  monitor.stop();
  off.close();
});

/** A runtime of one pool over `count` backends, checked every 10 s, on `clock`. */
function manyBackends(count: number, clock: ManualClock, previous?: Runtime, extra = "") {
  const addresses = Array.from({ length: count }, (_, i) => `"127.0.0.1:${i + 1}"`).join(", ");
  const config = `[health_interval]\ncheck_every = 10\n` +
    CONFIG.replace('["127.0.0.1:1", "127.0.0.1:2"]', `[${addresses}]`) + extra;
  return Runtime.create(parseConfig(config, { source: "<test>", baseDir: "." }), 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, clock },
    previous,
  });
}

Deno.test("at most MAX_PROBES_AT_ONCE probes run at once, MAX_PROBES_PER_POOL of one pool; the others wait for a turn", async () => {
  const clock = new ManualClock();
  // Five pools of 20 backends: 100 probes in a round.
  const pools = Array.from({ length: 5 }, (_, p) => {
    const addresses = Array.from({ length: 20 }, (_, i) => `"127.0.0.1:${p * 100 + i + 1}"`);
    return CONFIG.replace('["127.0.0.1:1", "127.0.0.1:2"]', `[${addresses.join(", ")}]`);
  });
  const runtime = await Runtime.create(
    parseConfig(`[health_interval]\ncheck_every = 10\n${pools.join("")}`, {
      source: "<test>",
      baseDir: ".",
    }),
    1,
    { log: silentLogger, deps: { ...defaultRuntimeDeps, clock } },
  );
  const answers: { pool: number; answer: (r: ProbeResult) => void }[] = [];
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    probe: (backend) =>
      new Promise((answer) => answers.push({ pool: Math.floor(backend.port / 100), answer })),
  });
  monitor.watch(runtime);
  monitor.start();
  const running = () => {
    const byPool = [0, 0, 0, 0, 0];
    for (const { pool } of answers.slice(done)) byPool[pool]++;
    return byPool;
  };
  let done = 0;
  assert.equal(answers.length, MAX_PROBES_AT_ONCE);
  assert.deepEqual(running(), [16, 16, 16, 16, 0]);
  // Pools waiting take turns: the fifth pool starts within five probes' ends.
  for (let i = 0; i < 5; i++) {
    answers[done++].answer(result(true));
    await waitTurns(() => answers.length === MAX_PROBES_AT_ONCE + done);
  }
  assert.ok(running()[4] > 0, String(running()));
  while (done < answers.length) {
    answers[done++].answer(result(true));
    for (let i = 0; i < 3; i++) await nextTurn();
    assert.ok(answers.length - done <= MAX_PROBES_AT_ONCE);
    assert.ok(running().every((n) => n <= MAX_PROBES_PER_POOL), String(running()));
  }
  assert.equal(answers.length, 100);
  await waitTurns(() => runtime.pools.every((p) => p.backends.every((b) => b.health.verified)));
  monitor.stop();
  runtime.close();
});

async function waitTurns(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 20 && !condition(); i++) await nextTurn();
  assert.ok(condition());
}

Deno.test("a reload keeps each pool's cadence of rounds, and probes new backends at once", async () => {
  const clock = new ManualClock();
  const first = await manyBackends(2, clock);
  let probes = 0;
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    probe: () => {
      probes++;
      return Promise.resolve(result(true));
    },
  });
  monitor.watch(first);
  monitor.start();
  await waitTurns(() => first.pools[0].backends.every((b) => b.health.verified));
  assert.equal(probes, 2);
  clock.advance(4000);
  // Reloads of the same pool: no round before the cadence says so.
  const second = await manyBackends(2, clock, first);
  monitor.watch(second);
  const third = await manyBackends(2, clock, second);
  monitor.watch(third);
  for (let i = 0; i < 5; i++) await nextTurn();
  assert.equal(probes, 2, "no probes for a reload");
  clock.advance(6000);
  await waitTurns(() => probes === 4);
  for (let i = 0; i < 5; i++) await nextTurn(); // that round is over
  // A backend added by a reload is probed at once (with its pool).
  const grown = await manyBackends(3, clock, third);
  monitor.watch(grown);
  await waitTurns(() => probes === 7);
  await waitTurns(() => grown.pools[0].backends.every((b) => b.health.verified));
  monitor.stop();
  grown.close();
});

/**
 * A started monitor over a pool of `count` backends probed by `probe`; `reload(extra)` reloads
 * the pool with `extra` lines and has the monitor watch it. Disposing stops it.
 */
async function reloadedMonitor(count: number, probe: MonitorOptions["probe"]) {
  const clock = new ManualClock();
  let runtime = await manyBackends(count, clock);
  const monitor = new HealthMonitor({ clock, log: silentLogger, probe });
  monitor.watch(runtime);
  monitor.start();
  return {
    clock,
    backend: runtime.pools[0].backends[0],
    reload: async (extra: string) => {
      runtime = await manyBackends(count, clock, runtime, extra);
      monitor.watch(runtime);
      return runtime;
    },
    [Symbol.dispose]: () => {
      monitor.stop();
      runtime.close();
    },
  };
}

Deno.test("a reload that changes a pool's checks (its path) probes the pool at once", async () => {
  const paths: string[] = [];
  using m = await reloadedMonitor(2, (_backend, health) => {
    paths.push(health.path);
    return Promise.resolve(result(true));
  });
  // Reloaded while the first probes are under way: they are followed by fresh ones.
  await waitTurns(() => paths.length === 2);
  m.clock.advance(1000);
  await m.reload('[backend_pools.health_config]\npath = "/ready"\n');
  await waitTurns(() => paths.length === 4);
  assert.deepEqual(paths, ["/", "/", "/ready", "/ready"]);
});

Deno.test("a pass by checks a reload changed brings a backend back at once", async () => {
  using m = await reloadedMonitor(
    1,
    (_backend, health) => Promise.resolve(result(health.path === "/ready")),
  );
  await waitTurns(() => m.backend.health.status === "Unresponsive"); // "/" fails
  const fixed = await m.reload('[backend_pools.health_config]\npath = "/ready"\n');
  assert.equal(fixed.pools[0].backends[0], m.backend, "carried over");
  // One passing probe by the new path, not healthy_after = 2 rounds (10 s apart) of them.
  await waitTurns(() => m.backend.health.status === "Healthy");
});

Deno.test("a fast pass by checks a reload changed brings a Slow backend back at once", async () => {
  // Slower than the default slow_threshold (300 ms), within a raised one.
  using m = await reloadedMonitor(
    1,
    (_backend, health) =>
      Promise.resolve({ ...result(true), latencyMs: 500, slow: 500 > health.slowThresholdMs }),
  );
  await waitTurns(() => m.backend.health.status === "Slow");
  await m.reload("[backend_pools.health_config]\nslow_threshold = 2000\n");
  await waitTurns(() => m.backend.health.status === "Healthy");
});

Deno.test("a reload that changes a threshold does not take a backend out on one failed probe", async () => {
  let ok = true;
  let probes = 0;
  using m = await reloadedMonitor(1, () => {
    probes++;
    return Promise.resolve(result(ok));
  });
  await waitTurns(() => m.backend.health.verified);
  ok = false; // one failed probe, the first after the reload
  await m.reload("[backend_pools.health_config]\nunhealthy_after = 5\n");
  await waitTurns(() => probes === 2 && m.backend.probing === null);
  assert.equal(m.backend.health.status, "Healthy", "one failure of five");
});

Deno.test("a probe by checks two reloads have replaced since (A, B, A) counts for nothing", async () => {
  const probes: { path: string; answer: (r: ProbeResult) => void }[] = [];
  using m = await reloadedMonitor(
    1,
    (_backend, health) => new Promise((answer) => probes.push({ path: health.path, answer })),
  );
  await waitTurns(() => probes.length === 1);
  probes[0].answer(result(true));
  await waitTurns(() => m.backend.health.verified && m.backend.probing === null);
  await m.reload('[backend_pools.health_config]\npath = "/b"\n'); // B: probed at once, fails later
  await waitTurns(() => probes.length === 2);
  await m.reload(""); // back to A before B's probe ends
  probes[1].answer(result(false));
  await waitTurns(() => probes.length === 3); // the probe by A's checks, after B's
  assert.deepEqual(probes.map((p) => p.path), ["/", "/b", "/"]);
  assert.equal(m.backend.health.status, "Healthy", "B's failure is not A's");
  assert.equal(m.backend.health.failures, 0);
  probes[2].answer(result(true));
});

Deno.test("a pool of slow probes does not hold another pool's probes back", async () => {
  const clock = new ManualClock();
  const dark = Array.from({ length: 100 }, (_, i) => `"127.0.0.1:${i + 1}"`);
  const config = `[health_interval]\ncheck_every = 10\n` +
    CONFIG.replace('["127.0.0.1:1", "127.0.0.1:2"]', `[${dark.join(", ")}]`) +
    CONFIG.replace('["127.0.0.1:1", "127.0.0.1:2"]', '["127.0.0.1:999"]');
  const runtime = await Runtime.create(parseConfig(config, { source: "<test>", baseDir: "." }), 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, clock },
  });
  const hanging: ((r: ProbeResult) => void)[] = [];
  let light = 0;
  const monitor = new HealthMonitor({
    clock,
    log: silentLogger,
    probe: (backend) => {
      if (backend.port === 999) {
        light++;
        return Promise.resolve(result(true));
      }
      return new Promise((resolve) => hanging.push(resolve));
    },
  });
  monitor.watch(runtime);
  monitor.start();
  // The slow pool holds its share of turns, no more: the other's probe runs at once.
  assert.equal(hanging.length, MAX_PROBES_PER_POOL);
  assert.equal(light, 1);
  for (let i = 0; i < 5; i++) await nextTurn();
  clock.advance(10_000); // the next round: the light pool is probed again, on time
  await waitTurns(() => light === 2);
  for (const answer of hanging.splice(0)) answer(result(false));
  monitor.stop();
  runtime.close();
});
