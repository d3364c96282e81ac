import assert from "node:assert/strict";
import {
  get,
  heldProbe,
  poolToml,
  startBackend,
  startRawBackend,
  startStrom,
  waitFor,
} from "../_helpers/servers.ts";
import { BackendProcess } from "../_helpers/process.ts";
import { freePort } from "../_helpers/programs.ts";
import { refusedPort, unansweredPort } from "../_helpers/raw.ts";
import { captureLog, ManualClock } from "../_helpers/clock.ts";
import { createLogger } from "../../lib/log.ts";
import { createHttpProbe, PROBE_USER_AGENT } from "../../lib/health/probe.ts";
import { writtenAuthority } from "../../lib/net/address.ts";
import { systemClock } from "../../lib/clock.ts";
import type { HealthConfig } from "../../lib/config/types.ts";

const HEALTH: HealthConfig = {
  slowThresholdMs: 300,
  timeoutMs: 300,
  path: "/health",
  healthyAfter: 2,
  unhealthyAfter: 3,
  expectedStatus: [{ from: 200, to: 299 }],
  expectedBody: null,
  intervalMs: null,
  host: null,
};

/** A backend whose health endpoint answers `status` (changeable) and counts live requests. */
/**
 * Probes of /health that a busy machine cannot turn Slow or time out: for tests
 * about thresholds and ejection, not about timing.
 */
const PATIENT = `path = "/health"\nslow_threshold = 10000\ntimeout = 10000`;

function switchable() {
  const state = { status: 200, live: 0, delayMs: 0, probes: 0, liveStatus: 200 };
  const backend = startBackend(async (req) => {
    if (new URL(req.url).pathname === "/health") {
      state.probes++;
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
      return new Response("ok", { status: state.status });
    }
    state.live++;
    return new Response(`backend ${backend.port}`, { status: state.liveStatus });
  });
  return Object.assign(backend, { state });
}

const addr = (port: number) => ({
  id: `127.0.0.1:${port}`,
  host: "127.0.0.1",
  port,
  authority: `127.0.0.1:${port}`,
  tls: false,
});

Deno.test("the HTTP probe reports status, slowness, refusal and hangs as results", async () => {
  const probe = createHttpProbe(systemClock);
  let seen: Headers | null = null;
  await using ok = startBackend((req) => {
    seen = req.headers;
    return new Response(new URL(req.url).pathname === "/health" ? "all good" : "nope", {
      status: new URL(req.url).pathname === "/health" ? 200 : 503,
    });
  });
  const good = await probe(addr(ok.port), {
    ...HEALTH,
    expectedBody: "good",
    host: "api.internal",
  });
  assert.deepEqual([good.ok, good.slow, good.status, good.reason], [
    true,
    false,
    200,
    "status 200",
  ]);
  assert.equal(seen!.get("user-agent"), PROBE_USER_AGENT);
  assert.equal(seen!.get("host"), "api.internal");
  const body = await probe(addr(ok.port), { ...HEALTH, expectedBody: "excellent" });
  assert.deepEqual([body.ok, body.reason], [false, 'body does not contain "excellent"']);
  const bad = await probe(addr(ok.port), { ...HEALTH, path: "/other" });
  assert.deepEqual([bad.ok, bad.status, bad.reason], [false, 503, "status 503"]);
  const ranges = await probe(addr(ok.port), {
    ...HEALTH,
    path: "/other",
    expectedStatus: [{ from: 500, to: 599 }],
  });
  assert.ok(ranges.ok);
  const slow = await probe(addr(ok.port), { ...HEALTH, slowThresholdMs: -1 });
  assert.deepEqual([slow.ok, slow.slow, slow.reason], [true, true, "status 200, slow"]);

  using closed = refusedPort();
  const refused = await probe(addr(closed.port), HEALTH);
  assert.deepEqual([refused.ok, refused.status, refused.reason, refused.timedOut], [
    false,
    null,
    "connect refused",
    undefined,
  ]);

  await using hang = startRawBackend(() => new Promise(() => {}));
  const started = Date.now();
  const hung = await probe(addr(hang.port), { ...HEALTH, timeoutMs: 200 });
  assert.deepEqual([hung.ok, hung.reason, hung.timedOut], [false, "timed out after 200 ms", true]);
  assert.ok(Date.now() - started < 2000, "a hung backend costs one timeout");
  // One whose host never answers the connect (SYNs dropped) costs one timeout too.
  await using unanswered = await unansweredPort();
  const connecting = Date.now();
  const dropped = await probe(addr(unanswered.port), { ...HEALTH, timeoutMs: 200 });
  assert.deepEqual([dropped.ok, dropped.reason, dropped.timedOut], [
    false,
    "timed out after 200 ms",
    true,
  ]);
  assert.ok(
    Date.now() - connecting < 2000,
    `an unanswered connect took ${Date.now() - connecting} ms`,
  );
});

Deno.test("the HTTP probe reads answers as the proxy does: bare LF heads, chunks, a length without a close", async () => {
  const probe = createHttpProbe(systemClock);
  const answers: Record<string, string> = {
    // Lines ending in a bare LF (the proxy takes them too).
    "/lf": "HTTP/1.1 200 OK\nContent-Length: 9\n\nstatus OK",
    // `expected_body` split over chunks, one ending in a bare LF.
    "/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "8\r\nstatus O\r\n1\nK\n0\r\n\r\n",
    // The whole body, and then the connection stays open, Connection: close or not.
    "/open": "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstatus OK",
  };
  await using raw = startRawBackend(async (conn, head) => {
    await conn.write(new TextEncoder().encode(answers[head.split(" ")[1]]));
    await new Promise(() => {}); // never closes
  });
  for (const path of Object.keys(answers)) {
    const result = await probe(addr(raw.port), {
      ...HEALTH,
      path,
      expectedBody: "status OK",
      timeoutMs: 5000,
      slowThresholdMs: 5000,
    });
    assert.deepEqual([result.ok, result.reason], [true, "status 200"], path);
  }
});

Deno.test("a probe's Host is the address as written: no default port added, no scheme", async () => {
  assert.equal(writtenAuthority("example.com"), "example.com");
  assert.equal(writtenAuthority("example.com:80"), "example.com:80");
  assert.equal(writtenAuthority("http://example.com/"), "example.com");
  assert.equal(writtenAuthority("HTTPS://example.com:8443"), "example.com:8443");
  assert.equal(writtenAuthority("[::1]:8080"), "[::1]:8080");
  const probe = createHttpProbe(systemClock);
  let host: string | null = null;
  await using backend = startBackend((req) => {
    host = req.headers.get("host");
    return new Response("ok");
  });
  // Written without a port: the probe connects to host and port as parsed (here the test
  // backend's) and names the host as written.
  const result = await probe({ ...addr(backend.port), id: "http://backend.test" }, {
    ...HEALTH,
    timeoutMs: 5000,
    slowThresholdMs: 5000,
  });
  assert.equal(result.ok, true, result.reason);
  assert.equal(host, "backend.test");
});

Deno.test("a backend failing its probes leaves after unhealthy_after rounds and returns after healthy_after", async () => {
  const a = switchable();
  const b = switchable();
  const log = captureLog();
  await using lb = await startStrom(
    poolToml([a.address, b.address], { extra: `[backend_pools.health_config]\n${PATIENT}` }),
    { log: createLogger("info", { sink: log.sink }) },
  );
  const spread = async () => {
    const before = a.state.live;
    for (let i = 0; i < 6; i++) assert.equal((await get(`${lb.url}/`)).status, 200);
    return a.state.live - before;
  };
  await lb.strom.health.checkAll();
  assert.equal(await spread(), 3);
  a.state.status = 500;
  await lb.strom.health.checkAll();
  assert.equal(await spread(), 3, "one failed probe does not eject");
  await lb.strom.health.checkAll();
  await lb.strom.health.checkAll();
  assert.equal(await spread(), 0, "out after unhealthy_after = 3 failed rounds");
  a.state.status = 200;
  await lb.strom.health.checkAll();
  assert.equal(await spread(), 0, "one good round is not enough");
  await lb.strom.health.checkAll();
  assert.equal(await spread(), 3, "back after healthy_after = 2 good rounds");
  assert.deepEqual(log.lines.filter((l) => l.includes(" -> ")), [
    `info backend ${a.address} in pool pool-0: Healthy -> Unresponsive (status 500)`,
    `info backend ${a.address} in pool pool-0: Unresponsive -> Healthy (status 200)`,
  ]);
  await a.close();
  await b.close();
});

Deno.test("a failed probe takes a backend out at once after any live failure since the last probe", async () => {
  const a = switchable();
  const b = switchable();
  await using lb = await startStrom(
    poolToml([a.address, b.address], {
      extra: `[backend_pools.health_config]\n${PATIENT}
[backend_pools.outlier_detection]\ncount_5xx = true`,
    }),
  );
  await lb.strom.health.checkAll();
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) await get(`${lb.url}/`);
  };
  a.state.liveStatus = 500;
  await send(2); // one reaches a and fails there
  const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.equal(
    pools[0].backends.find((x: { address: string }) => x.address === a.address).failures,
    1,
  );
  assert.ok(
    metrics.includes(`backend_failures_total{backend="${a.address}"} 1\n`),
    "the metric counts the 5xx as /api/pools does",
  );
  a.state.liveStatus = 200;
  await send(2); // a later request at a ends well: the failure still happened since the probe
  a.state.status = 500;
  await lb.strom.health.checkAll();
  const before = a.state.live;
  await send(4);
  assert.equal(
    a.state.live - before,
    0,
    "out after one failed probe that live traffic corroborated",
  );
  await a.close();
  await b.close();
});

Deno.test("checkAll() waits for a probe already running and then probes again", async () => {
  const a = switchable();
  await using lb = await startStrom(
    poolToml([a.address], { extra: `[backend_pools.health_config]\n${PATIENT}` }),
  );
  a.state.delayMs = 50;
  await Promise.all([lb.strom.health.checkAll(), lb.strom.health.checkAll()]);
  assert.equal(a.state.probes, 2, "the second call did not settle for the probe already running");
  await a.close();
});

Deno.test("a probe still running when a reload comes takes effect in the new generation", async () => {
  await using a = startBackend(() => new Response("a"));
  await using d = startBackend(() => new Response("d"));
  const held = heldProbe(d.address);
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
    poolToml([a.address, d.address]);
  await using lb = await startStrom(text, { probe: held.probe });
  const round = lb.strom.health.checkAll();
  const result = await lb.strom.reload(text + "\n# edited\n");
  assert.equal(result.ok, true);
  const [pool] = lb.strom.runtime.pools;
  assert.equal(pool.available().length, 2, "both in the new generation's working set");
  held.answer(false);
  await round;
  assert.deepEqual(
    pool.available().map((b) => b.id),
    [a.address],
    "d is out in the new generation",
  );
  for (let i = 0; i < 4; i++) assert.equal((await get(`${lb.url}/`)).text, "a");
});

Deno.test("a Slow backend is avoided while a Healthy one exists and used when it is the last", async () => {
  const fast = switchable();
  const slow = switchable();
  slow.state.delayMs = 120;
  await using lb = await startStrom(poolToml([fast.address, slow.address], {
    extra: `[backend_pools.health_config]\npath = "/health"\nslow_threshold = 50\ntimeout = 2000`,
  }));
  await lb.strom.health.checkAll();
  for (let i = 0; i < 6; i++) assert.equal((await get(`${lb.url}/`)).text, `backend ${fast.port}`);
  fast.state.status = 503;
  for (let i = 0; i < 3; i++) await lb.strom.health.checkAll();
  for (let i = 0; i < 6; i++) assert.equal((await get(`${lb.url}/`)).text, `backend ${slow.port}`);
  await fast.close();
  await slow.close();
});

Deno.test("all backends down gives 503 at once; recovery is picked up by the next round", async () => {
  const a = switchable();
  const b = switchable();
  await using lb = await startStrom(poolToml([a.address, b.address], {
    extra: `[backend_pools.health_config]\n${PATIENT}\nhealthy_after = 1`,
  }));
  a.state.status = b.state.status = 500;
  await lb.strom.health.checkAll();
  const started = Date.now();
  const down = await get(`${lb.url}/`);
  assert.deepEqual([down.status, down.text], [503, "503 - Service Unavailable"]);
  assert.ok(Date.now() - started < 3000, "at once: no connect or request timeout is waited for");
  b.state.status = 200;
  await lb.strom.health.checkAll();
  assert.equal((await get(`${lb.url}/`)).text, `backend ${b.port}`);
  await a.close();
  await b.close();
});

Deno.test("a backend that accepts and never answers gives 504, is ejected, and others keep serving", async () => {
  await using hang = startRawBackend(() => new Promise(() => {}));
  await using ok = startBackend(() => new Response("ok"));
  await using lb = await startStrom(poolToml([hang.address, ok.address], {
    extra: `request_timeout = "300ms"\n[backend_pools.outlier_detection]\nconsecutive_failures = 1`,
  }));
  const stuck = get(`${lb.url}/`);
  for (let i = 0; i < 3; i++) {
    // While the first request hangs, the other backend answers.
    const r = await get(`${lb.url}/`);
    if (r.text === "ok") break;
  }
  const timedOut = await stuck;
  assert.deepEqual([timedOut.status, timedOut.text], [504, "504 - Gateway Timeout"]);
  const [pool] = lb.strom.runtime.pools;
  assert.ok(pool.backends[0].outlier.ejected, "the hung backend is ejected");
  for (let i = 0; i < 5; i++) assert.equal((await get(`${lb.url}/`)).text, "ok");
});

Deno.test("a backend ejected by a request begun before a reload comes back after its cooldown", async () => {
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  // Takes the request, then closes without an answer once released.
  const failing = () =>
    startRawBackend(async () => {
      arrived.resolve();
      await release.promise;
    });
  await using a = failing();
  await using b = failing();
  await using lb = await startStrom(
    `[health_interval]\ncheck_every = 0\n` + poolToml([a.address, b.address], {
      extra: `retries = 0\n[backend_pools.outlier_detection]\nconsecutive_failures = 1\n` +
        `base_ejection_time = "1s"`,
    }),
  );
  const failed = get(`${lb.url}/`);
  await arrived.promise;
  assert.ok((await lb.strom.reload(lb.strom.configText + "\n# reloaded\n")).ok);
  release.resolve();
  assert.equal((await failed).status, 502);
  const [pool] = lb.strom.runtime.pools;
  const ejected = pool.backends.find((x) => x.outlier.ejected);
  assert.ok(ejected, "the backend that failed is ejected");
  assert.ok(!pool.available().includes(ejected), "the live generation's pool leaves it out");
  await waitFor(() => !ejected.outlier.ejected, "its cooldown to end (health checks off)");
  assert.ok(pool.available().includes(ejected));
});

Deno.test("an ejected backend is probed back after its cooldown (injected clock)", async () => {
  const clock = new ManualClock();
  let probeOk = false;
  const a = switchable();
  const closed = startBackend();
  const deadAddress = closed.address;
  await closed.close();
  await using lb = await startStrom(
    poolToml([deadAddress, a.address, a.address], {
      extra: `retries = 0
[backend_pools.health_config]\n${PATIENT}
[backend_pools.outlier_detection]\nconsecutive_failures = 2\nbase_ejection_time = "10s"`,
    }),
    {
      deps: { clock },
      probe: (b) =>
        Promise.resolve({
          ok: probeOk || b.id !== deadAddress,
          slow: false,
          status: null,
          latencyMs: 1,
          reason: probeOk || b.id !== deadAddress ? "status 200" : "connect refused",
        }),
    },
  );
  const [pool] = lb.strom.runtime.pools;
  const dead = pool.backends[0];
  for (let i = 0; i < 6 && !dead.outlier.ejected; i++) await get(`${lb.url}/`);
  assert.ok(dead.outlier.ejected);
  assert.equal(dead.outlier.ejectedUntil, clock.now() + 10_000);
  clock.advance(10_000);
  await waitFor(
    () => !dead.probing && dead.outlier.ejectedUntil > clock.now(),
    "the probe-back to fail",
  );
  assert.equal(
    dead.outlier.ejectedUntil - clock.now(),
    20_000,
    "a failed probe doubles the cooldown",
  );
  probeOk = true;
  clock.advance(20_000);
  await waitFor(() => !dead.outlier.ejected, "the probe-back to pass and readmit the backend");
  // Its failed probe-back also counted as an active failure: one more pass makes healthy_after.
  await lb.strom.health.checkAll();
  assert.ok(pool.available().includes(dead));
  await a.close();
});

Deno.test("killing a backend under load loses no request, and it gets no traffic after one round", async () => {
  // Ports below the ephemeral range: once the victim is killed, no port-0 listener of a test
  // running in parallel can take its port and answer in its place.
  const procs = [0, 0, 0].map(() => new BackendProcess(freePort()));
  const ports = await Promise.all(procs.map((p) => p.port));
  const log = captureLog();
  await using lb = await startStrom(
    poolToml(ports.map((p) => `127.0.0.1:${p}`), {
      extra: `[backend_pools.health_config]\ntimeout = 500`,
    }),
    { log: createLogger("info", { sink: log.sink }) },
  );
  await lb.strom.health.checkAll();
  const seconds = Number(Deno.env.get("STROM_LOAD_SECONDS") ?? 10);
  const end = Date.now() + seconds * 1000;
  const killAt = Date.now() + seconds * 300;
  let killed = false;
  const failures: string[] = [];
  let total = 0;
  const victim = lb.strom.runtime.pools[0].backends[1];
  let attemptsAfterRound = -1;
  const worker = async () => {
    while (Date.now() < end) {
      const r = await get(`${lb.url}/`);
      total++;
      if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
      if (!killed && Date.now() >= killAt) {
        killed = true;
        await procs[1].kill();
        // The next round comes after live traffic has met the dead backend.
        await waitFor(() => victim.failures > 0, "live traffic to meet the dead backend");
        await lb.strom.health.checkAll();
        attemptsAfterRound = victim.requests;
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.deepEqual(
    failures,
    [],
    `${failures.length} of ${total} requests failed; Strom logged:\n` +
      log.lines.filter((l) => !l.startsWith("info Started")).join("\n"),
  );
  assert.ok(total > 100, `only ${total} requests`);
  assert.ok(attemptsAfterRound >= 0, "the backend was killed during the run");
  assert.equal(
    victim.requests,
    attemptsAfterRound,
    "no attempt reached the dead backend after the round",
  );
  for (const p of procs) await p[Symbol.asyncDispose]();
});

Deno.test("with RoundRobin, a retry does not send the next request to the failing backend first", async () => {
  let attempts = 0;
  await using failing = startRawBackend((conn) => {
    attempts++;
    conn.close(); // read the head, answer nothing
    return Promise.resolve();
  });
  await using ok = startBackend();
  await using lb = await startStrom(
    poolToml([failing.address, ok.address], {
      extra:
        "retry_budget_percent = 100\n[backend_pools.outlier_detection]\nconsecutive_failures = 0",
    }),
  );
  for (let i = 0; i < 10; i++) assert.equal((await get(`${lb.url}/r${i}`)).status, 200);
  assert.equal(attempts, 5, "every other request starts on the failing backend");
});

Deno.test("a quiet pool retries every request its resetting backend fails until it is ejected", async () => {
  let attempts = 0;
  await using failing = startRawBackend((conn) => {
    attempts++;
    conn.close(); // read the head, answer nothing
    return Promise.resolve();
  });
  await using a = startBackend();
  await using b = startBackend();
  await using lb = await startStrom(poolToml([a.address, failing.address, b.address]));
  // Every third request starts on the failing backend; the default budget's 20 % of the requests
  // seen would refuse its fourth retry (at the 11th request), before 5 failures eject it.
  for (let i = 0; i < 20; i++) assert.equal((await get(`${lb.url}/r${i}`)).status, 200, `${i}`);
  assert.equal(attempts, 5, "ejected after consecutive_failures = 5");
});

Deno.test("POST is retried when the connection was refused, not when the backend died mid-request", async () => {
  const closed = startBackend();
  const refusedAddress = closed.address;
  await closed.close();
  await using ok = startBackend(async (req) => new Response(`got ${await req.text()}`));
  await using refusing = await startStrom(poolToml([refusedAddress, ok.address]));
  const r = await get(`${refusing.url}/`, { method: "POST", body: "payload" });
  assert.deepEqual([r.status, r.text], [200, "got payload"]);

  let dyingHits = 0;
  await using dying = startRawBackend(() => {
    dyingHits++;
    return Promise.resolve(); // read the request, then close without answering
  });
  await using ok2 = startBackend(() => new Response("second backend"));
  await using lb = await startStrom(poolToml([dying.address, ok2.address]));
  const post = await get(`${lb.url}/`, { method: "POST", body: "payload" });
  assert.deepEqual([post.status, post.text], [502, "502 - Bad Gateway"]);
  assert.equal(dyingHits, 1);
  assert.equal(ok2.requests.length, 0, "the POST was not sent twice");
  const getR = await get(`${lb.url}/`);
  assert.equal(getR.status, 200, "a GET that hits the dying backend is retried elsewhere");
});

Deno.test("keep-alive connections the backend closed are retried transparently", async () => {
  let served = 0;
  await using flaky = startRawBackend(async (conn) => {
    served++;
    // Answers as if keeping the connection alive, then closes it anyway.
    await conn.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  });
  await using lb = await startStrom(poolToml([flaky.address]));
  for (let i = 0; i < 20; i++) {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text], [200, "ok"], `request ${i}`);
  }
  assert.ok(served >= 20);
});

Deno.test("with no backend left, 'No backend available' is said once a second per pool, with a count", async () => {
  await using a = startBackend();
  const log = captureLog();
  const clock = new ManualClock();
  await using lb = await startStrom(poolToml([a.address], { extra: 'name = "api"' }), {
    log: createLogger("warn", { sink: log.sink }),
    deps: { clock },
  });
  lb.strom.runtime.setDrained("api", a.address, true);
  for (let i = 0; i < 5; i++) assert.equal((await get(`${lb.url}/x${i}`)).status, 503);
  assert.deepEqual(log.lines, ["warn No backend available in pool api for GET /x0"]);
  clock.advance(1000);
  assert.deepEqual(log.lines, [
    "warn No backend available in pool api for GET /x0",
    "warn 4 more like this in the last second, the last: No backend available in pool api for GET /x4",
  ]);
});

Deno.test("strom_backend_available says which backends get new requests, as /api/pools does", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using standby = startBackend(() => new Response("standby"));
  const slow = new Set<string>();
  await using lb = await startStrom(
    poolToml([a.address, b.address, standby.address], {
      strategy: `{ WeightedRoundRobin = { weights = { "${standby.address}" = 0 } } }`,
      extra: `[backend_pools.health_config]\nunhealthy_after = 1`,
    }),
    {
      probe: (backend) =>
        Promise.resolve({
          ok: true,
          slow: slow.has(backend.id),
          status: 200,
          latencyMs: 1,
          reason: "status 200",
        }),
    },
  );
  slow.add(b.address);
  await lb.strom.health.checkAll();
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  const gauge = (name: string, address: string) =>
    metrics.match(new RegExp(`^${name}\\{pool="pool-0",backend="${address}"\\} (\\d)$`, "m"))?.[1];
  const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
  for (
    const [address, up, available] of [[a.address, "1", "1"], [b.address, "1", "0"], [
      standby.address,
      "1",
      "0",
    ]]
  ) {
    assert.equal(gauge("strom_backend_up", address), up, `${address} up`);
    assert.equal(gauge("strom_backend_available", address), available, `${address} available`);
    const view = pools[0].backends.find((x: { address: string }) => x.address === address);
    assert.equal(view.available, available === "1", `${address} in /api/pools`);
  }
});

Deno.test("answers whose bodies break off count as the backend's failures and eject it", async () => {
  await using cut = startRawBackend(async (conn) => {
    // Announces 100,000 bytes, sends 10 and closes.
    await conn.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"));
    await conn.write(new Uint8Array(10));
  });
  await using fine = startBackend(() => new Response("fine"));
  await using lb = await startStrom(
    poolToml([cut.address, fine.address], {
      extra:
        `[backend_pools.outlier_detection]\nconsecutive_failures = 3\nbase_ejection_time = "60s"`,
    }),
  );
  // Round-robin: three of the first six requests reach the cutting backend, and are cut.
  const cutBackend = lb.strom.runtime.pools[0].backends[0];
  const texts = [];
  for (let i = 0; i < 6; i++) {
    texts.push(await get(`${lb.url}/`).then((r) => r.text, () => null));
    await waitFor(() => cutBackend.inFlight === 0, "the answer's end");
  }
  assert.deepEqual(texts.filter((t) => t === "fine").length, 3, texts.join(","));
  assert.ok(cutBackend.outlier.ejected, "out after three cut answers in a row");
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.ok(metrics.includes(`backend_failures_total{backend="${cut.address}"} 3\n`), metrics);
  for (let i = 0; i < 4; i++) assert.equal((await get(`${lb.url}/`)).text, "fine");
});

Deno.test("a client that leaves in the middle of a body is no failure of the backend", async () => {
  await using endless = startBackend(() =>
    new Response(
      new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(1024)) }, { highWaterMark: 0 }),
    )
  );
  await using lb = await startStrom(
    poolToml([endless.address], {
      extra: `[backend_pools.outlier_detection]\nconsecutive_failures = 1`,
    }),
  );
  for (let i = 0; i < 3; i++) {
    const abort = new AbortController();
    const response = await fetch(`${lb.url}/`, { signal: abort.signal });
    await response.body!.getReader().read();
    abort.abort();
  }
  const [backend] = lb.strom.runtime.pools[0].backends;
  await waitFor(() => backend.inFlight === 0, "the three answers to end");
  assert.deepEqual([backend.failures, backend.outlier.ejected], [0, false]);
});
