// Metrics, access log, hot reload and the admin API.

import assert from "node:assert/strict";
import http2 from "node:http2";
import { rawExchange } from "../_helpers/raw.ts";
import { get, poolToml, startBackend, startStrom, waitFor } from "../_helpers/servers.ts";
import * as N from "../../lib/metrics/names.ts";
import { watchable, watchConfig } from "../../lib/config/watch.ts";
import { createLogger } from "../../lib/log.ts";
import { captureLog, ManualClock, nextTurn } from "../_helpers/clock.ts";

const TOKEN = "test-token-0123456789abcdef";

/** Value of one series in Prometheus text, or null. */
function sample(text: string, series: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : null;
}

Deno.test("a metric that fails when read costs a log line and a 500 on /metrics, not the process", async () => {
  await using backend = startBackend();
  const lines: string[] = [];
  await using lb = await startStrom(poolToml([backend.address]), {
    log: createLogger("warn", { sink: (r) => lines.push(r.message) }),
  });
  lb.strom.traffic.registry.add({
    name: "broken",
    snapshot: () => {
      throw new Error("cannot read it");
    },
  });
  const warned = () => lines.filter((l) => l === "Could not take the live sample: cannot read it");
  // The live sampler warns every second and keeps going.
  await waitFor(() => warned().length >= 2, "two warnings from the live sampler");
  const metrics = await fetch(`${lb.adminUrl}/metrics`);
  assert.equal(metrics.status, 500);
  assert.equal(await metrics.text(), "500 - Internal Server Error");
  assert.ok(lines.includes("Admin GET /metrics failed: cannot read it"), lines.join("\n"));
  assert.equal((await get(`${lb.url}/`)).status, 200, "the proxy serves on");
});

Deno.test("/metrics lists every family before traffic and counts what was sent", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const closed = startBackend();
  const dead = closed.address;
  await closed.close();
  await using lb = await startStrom(
    poolToml([a.address, b.address], { matcher: "PathPrefix('/ok')" }) +
      poolToml([dead], { matcher: "PathPrefix('/dead')", extra: "retries = 0" }),
  );
  const before = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  for (const name of Object.values(N).filter((v) => typeof v === "string") as string[]) {
    assert.match(before, new RegExp(`^# TYPE ${name} `, "m"), `${name} is listed before traffic`);
  }
  // Prometheus' rule: a name ending in _total is a counter (strom_backend_requests_total was not).
  for (const [, name, type] of before.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (name.endsWith("_total")) assert.equal(type, "counter", name);
  }
  assert.equal(sample(before, N.HTTP_REQUESTS_TOTAL), 0);
  assert.equal(sample(before, `${N.BACKEND_FAILURES_TOTAL}{backend="${a.address}"}`), 0);
  for (let i = 0; i < 20; i++) assert.equal((await get(`${lb.url}/ok`)).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await get(`${lb.url}/nothing`)).status, 404);
  for (let i = 0; i < 2; i++) assert.equal((await get(`${lb.url}/dead`)).status, 502);
  const after = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.equal(sample(after, N.HTTP_REQUESTS_TOTAL), 25);
  assert.equal(sample(after, `${N.HTTP_STATUS_CODES_TOTAL}{code="200"}`), 20);
  assert.equal(sample(after, `${N.HTTP_STATUS_CODES_TOTAL}{code="404"}`), 3);
  assert.equal(sample(after, `${N.HTTP_STATUS_CODES_TOTAL}{code="502"}`), 2);
  assert.equal(sample(after, N.HTTP_ERRORS_TOTAL), 2);
  assert.equal(
    sample(after, `${N.BACKEND_RESPONSE_TIME_SECONDS}_count{backend="${a.address}"}`),
    10,
  );
  assert.equal(
    sample(after, `${N.BACKEND_RESPONSE_TIME_SECONDS}_count{backend="${b.address}"}`),
    10,
  );
  assert.equal(
    sample(after, `${N.BACKEND_REQUESTS_TOTAL}{pool="pool-0",backend="${a.address}"}`),
    10,
  );
  assert.equal(sample(after, `${N.BACKEND_FAILURES_TOTAL}{backend="${dead}"}`), 2);
  assert.equal(sample(after, `${N.HTTP_REQUEST_DURATION_SECONDS}_count`), 22, "404s have no pool");
  assert.equal(sample(after, N.ACTIVE_HTTP_CONNECTIONS), 0);
  assert.ok((sample(after, `${N.BYTES_TRANSFERRED_TOTAL}{direction="out"}`) ?? 0) > 0);
});

Deno.test("the access log writes one JSON line per request with its fields", async () => {
  const dir = await Deno.makeTempDir();
  await using backend = startBackend(() => new Response("hello"));
  const lb = await startStrom(
    `[access_log]\nformat = "json"\npath = "${dir}/access.log"\n` + poolToml([backend.address]),
  );
  await get(`${lb.url}/a?b=1`, {
    headers: { "user-agent": "test-agent", authorization: `Basic ${btoa("alice:pw")}` },
  });
  await get(`${lb.url}/post`, { method: "POST", body: "12345" });
  // HTTP/2 (h2c), which sends :authority and no Host.
  const h2 = http2.connect(lb.url);
  await new Promise<void>((resolve, reject) => {
    const stream = h2.request({ ":path": "/h2", ":authority": "a.test" });
    stream.on("error", reject).on("end", resolve).resume();
  });
  h2.close();
  await lb.strom.shutdown(1000);
  const lines = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.equal(lines.length, 3);
  assert.deepEqual([lines[2].path, lines[2].protocol], ["/h2", "HTTP/2.0"]);
  assert.deepEqual(
    { ...lines[0], time: undefined, duration_ms: undefined },
    {
      time: undefined,
      duration_ms: undefined,
      client: "127.0.0.1",
      method: "GET",
      path: "/a?b=1",
      protocol: "HTTP/1.1",
      status: 200,
      bytes_in: 0,
      bytes_out: 5,
      pool: "pool-0",
      backend: backend.address,
      attempts: 1,
      referer: null,
      user_agent: "test-agent",
      request_id: null,
      user: "alice",
    },
  );
  assert.equal(lines[1].bytes_in, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Strom's own answers (404, 502) are one access-log line each, counted once", async () => {
  const dir = await Deno.makeTempDir();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${closed.addr.port}`; // refuses connections
  closed.close();
  const lb = await startStrom(
    `[access_log]\nformat = "json"\npath = "${dir}/access.log"\n` +
      poolToml([dead], { matcher: "PathPrefix('/down')", extra: "retries = 0" }),
  );
  const missing = await get(`${lb.url}/elsewhere`);
  const down = await get(`${lb.url}/down`);
  const head = await fetch(`${lb.url}/elsewhere`, { method: "HEAD" });
  assert.deepEqual([missing.status, down.status, head.status], [404, 502, 404]);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  await lb.strom.shutdown(1000);
  const lines = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.deepEqual(lines.map((l) => [l.method, l.path, l.status]), [
    ["GET", "/elsewhere", 404],
    ["GET", "/down", 502],
    ["HEAD", "/elsewhere", 404],
  ]);
  assert.equal(lines[2].bytes_out, 0, "a HEAD answer sends no body");
  // As nginx's $upstream_addr: the backend tried, though it never answered.
  assert.deepEqual(lines.map((l) => l.backend), [null, dead, null]);
  const out = sample(metrics, `${N.BYTES_TRANSFERRED_TOTAL}{direction="out"}`);
  assert.equal(out, lines[0].bytes_out + lines[1].bytes_out);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a client gone before the answer is logged as 499 with no bytes sent, and the backend tried", async () => {
  const dir = await Deno.makeTempDir();
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using backend = startBackend(async () => {
    arrived.resolve();
    await release.promise;
    return new Response("too late");
  });
  const lb = await startStrom(
    `[access_log]\nformat = "json"\npath = "${dir}/access.log"\n` + poolToml([backend.address]),
  );
  const abort = new AbortController();
  const request = fetch(`${lb.url}/slow`, { signal: abort.signal }).catch(() => null);
  await arrived.promise;
  abort.abort();
  await request;
  try {
    await waitFor(() => lb.strom.runtime.pools[0].backends[0].inFlight === 0, "the attempt to end");
  } finally {
    release.resolve();
  }
  await lb.strom.shutdown(1000);
  const [line] = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.deepEqual([line.status, line.bytes_out, line.backend, line.attempts], [
    499,
    0,
    backend.address,
    1,
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the access log's client is the one trusted_proxies identify, as with nginx's realip", async () => {
  const dir = await Deno.makeTempDir();
  await using backend = startBackend(() => new Response("ok"));
  for (const trusted of ["", `trusted_proxies = ["127.0.0.1"]\n`]) {
    const lb = await startStrom(
      `${trusted}[access_log]\nformat = "json"\npath = "${dir}/access.log"\n` +
        poolToml([backend.address]),
    );
    await get(`${lb.url}/`, { headers: { "x-forwarded-for": "10.0.1.7" } });
    // One Strom refuses itself before choosing a pool (a GET with a body: 400).
    await rawExchange(
      Number(new URL(lb.url).port),
      "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.1.7\r\nContent-Length: 2\r\n" +
        "Connection: close\r\n\r\nhi",
    );
    await lb.strom.shutdown(1000);
  }
  const lines = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.status), [200, 400, 200, 400]);
  assert.deepEqual(
    lines.map((l) => l.client),
    ["127.0.0.1", "127.0.0.1", "10.0.1.7", "10.0.1.7"],
    "an untrusted peer's claim is ignored",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("RequestId: backend, client and access log share one ID; only trusted peers set it", async () => {
  const dir = await Deno.makeTempDir();
  const seen: (string | null)[] = [];
  await using backend = startBackend((req) => {
    seen.push(req.headers.get("x-request-id"));
    return new Response("ok");
  });
  let n = 0;
  const toml = (trusted: string) =>
    `${trusted}[access_log]\nformat = "json"\npath = "${dir}/access.log"\n` +
    poolToml([backend.address]) + `[backend_pools.middlewares.RequestId]\n`;
  {
    const lb = await startStrom(toml(""), { deps: { newId: () => `gen-${++n}` } });
    const first = await get(`${lb.url}/`);
    const forged = await get(`${lb.url}/`, { headers: { "x-request-id": "forged" } });
    await lb.strom.shutdown(1000);
    assert.deepEqual(
      [first.headers.get("x-request-id"), forged.headers.get("x-request-id")],
      ["gen-1", "gen-2"],
      "the client sees the ID; an untrusted client's own is replaced",
    );
  }
  {
    const lb = await startStrom(toml(`trusted_proxies = ["127.0.0.1"]\n`), {
      deps: { newId: () => `gen-${++n}` },
    });
    const kept = await get(`${lb.url}/`, { headers: { "x-request-id": "edge-42" } });
    const insane = await get(`${lb.url}/`, { headers: { "x-request-id": "a b" } });
    await lb.strom.shutdown(1000);
    assert.equal(kept.headers.get("x-request-id"), "edge-42", "a trusted peer's ID is kept");
    assert.equal(insane.headers.get("x-request-id"), "gen-3");
  }
  assert.deepEqual(seen, ["gen-1", "gen-2", "edge-42", "gen-3"]);
  const logged = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n")
    .map((l) => JSON.parse(l).request_id);
  assert.deepEqual(logged, ["gen-1", "gen-2", "edge-42", "gen-3"]);
  await Deno.remove(dir, { recursive: true });
});

/** A Strom whose config lives in a file, as `strom --config` runs it. */
async function fileStrom(text: string, extra = "") {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  const full =
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nadmin_token = "${TOKEN}"\n${extra}\n${text}`;
  await Deno.writeTextFile(path, full);
  const lb = await startStrom(full, { source: { source: path, baseDir: dir } });
  return Object.assign(lb, { path, dir, text: full });
}

Deno.test("a request routed before a reload replaced its pool's client is still sent", async () => {
  await using backend = startBackend(async (r) => new Response(`got ${(await r.text()).length}`));
  await using lb = await fileStrom(poolToml([backend.address]));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  const utf8 = new TextEncoder();
  // A small body is read whole before the request is sent: half of it arrives first.
  await conn.write(utf8.encode(
    "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345",
  ));
  const active = async () => {
    const text = await (await fetch(`${lb.adminUrl}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    return sample(text, N.ACTIVE_HTTP_CONNECTIONS);
  };
  await waitFor(async () => await active() === 1, "the request under way");
  const client = "[backend_pools.client]\npool_idle_timeout = { secs = 30, nanos = 0 }\n";
  assert.ok((await lb.strom.reload(lb.text + client)).ok);
  await conn.write(utf8.encode("67890"));
  const answer = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  // The fetch transport's client was closed at the reload: 502 "Bad resource ID".
  assert.match(answer, /^HTTP\/1\.1 200 [^]*got 10$/);
});

Deno.test("reloads every 200 ms under load fail no request; a broken file keeps the old config", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const pool = poolToml([a.address, b.address]);
  await using lb = await fileStrom(pool);
  const seconds = Number(Deno.env.get("STROM_LOAD_SECONDS") ?? 10);
  const end = Date.now() + seconds * 1000;
  const failures: string[] = [];
  let total = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const r = await get(`${lb.url}/`);
      total++;
      if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
    }
  };
  const reloader = async () => {
    let n = 0;
    while (Date.now() < end) {
      const result = await lb.strom.reload(lb.text + `\n# reload ${n++}\nretries = ${n % 3}\n`);
      assert.ok(result.ok);
      await new Promise((r) => setTimeout(r, 200));
    }
    return n;
  };
  const [reloads] = await Promise.all([reloader(), ...Array.from({ length: 6 }, worker)]);
  assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed`);
  assert.ok(reloads >= seconds * 3, `only ${reloads} reloads`);
  assert.equal(lb.strom.runtime.generation, reloads + 1);

  const broken = await lb.strom.reload(lb.text.replace("PathPrefix('/')", "PathPrefix('/'"));
  assert.equal(broken.ok, false);
  assert.ok(!broken.ok);
  assert.equal(broken.problems[0].path, "backend_pools[0].matcher");
  assert.match(broken.problems[0].message, /^invalid matcher: /);
  assert.equal(lb.strom.runtime.generation, reloads + 1, "the old generation keeps serving");
  assert.equal((await get(`${lb.url}/`)).status, 200);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  })).text();
  assert.equal(sample(metrics, `${N.CONFIG_RELOADS_TOTAL}{result="failure"}`), 1);
  assert.equal(sample(metrics, `${N.CONFIG_RELOADS_TOTAL}{result="success"}`), reloads);
});

Deno.test("memory is trimmed every memory_trim_interval, as a reload sets it, until shutdown", async () => {
  const clock = new ManualClock();
  let trims = 0;
  let drops = 0;
  await using backend = startBackend();
  const config = (trim: string) =>
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n${trim}\n` +
    poolToml([backend.address]);
  await using lb = await startStrom(config(`memory_trim_interval = "2s"`), {
    deps: { clock },
    memoryTrim: () => Promise.resolve(void trims++),
    pageDrop: () => Promise.resolve(++drops),
  });
  assert.equal(drops, 1, "the binary's pages are dropped once Strom has started");
  await nextTurn();
  clock.advance(2000);
  await nextTurn();
  clock.advance(2000);
  await nextTurn();
  assert.equal(trims, 2);
  assert.equal(drops, 1, "and not again within a minute");
  assert.equal((await get(`${lb.url}/`)).status, 200);

  assert.ok((await lb.strom.reload(config("memory_trim_interval = 0"))).ok);
  clock.advance(2000); // the wait begun before the reload ends without a trim
  await nextTurn();
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    await nextTurn();
  }
  assert.equal(trims, 2);

  assert.ok((await lb.strom.reload(config(""))).ok); // the default: every second
  clock.advance(1000);
  await nextTurn();
  clock.advance(1000);
  await nextTurn();
  assert.equal(trims, 3);
  assert.equal((await get(`${lb.url}/`)).status, 200, "the listener kept its port");

  await lb.strom.shutdown(1000);
  clock.advance(10_000);
  await nextTurn();
  assert.equal(trims, 3);
});

Deno.test("a reload keeps health and connections of remaining backends and stops a removed one", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using lb = await fileStrom(poolToml([a.address, b.address]));
  await lb.strom.health.checkAll();
  const keptBackend = lb.strom.runtime.pools[0].backends[0];
  for (let i = 0; i < 4; i++) await get(`${lb.url}/`);
  const result = await lb.strom.reload(lb.text.replace(`,"${b.address}"`, ""));
  assert.ok(result.ok);
  assert.equal(
    lb.strom.runtime.pools[0].backends[0],
    keptBackend,
    "same backend object: state kept",
  );
  assert.ok(keptBackend.health.verified);
  const before = b.requests.length;
  for (let i = 0; i < 6; i++) assert.equal((await get(`${lb.url}/`)).text, `backend ${a.port}`);
  assert.equal(b.requests.length, before, "the removed backend gets no traffic");
});

Deno.test("a reload drops the metric series of the pools and backends it removed", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const gone = poolToml([b.address], { matcher: "PathPrefix('/b')", extra: 'name = "gone"' });
  await using lb = await fileStrom(
    poolToml([a.address], { matcher: "PathPrefix('/a')", extra: 'name = "kept"' }) + gone,
  );
  await lb.strom.health.checkAll();
  for (const path of ["/a", "/b"]) assert.equal((await get(`${lb.url}${path}`)).status, 200);
  const before = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.ok(before.includes(`pool="gone"`) && before.includes(`"${b.address}"`));
  assert.ok((await lb.strom.reload(lb.text.replace(gone, ""))).ok);
  const after = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  const stale = after.split("\n").filter((l) =>
    l.includes(`pool="gone"`) || l.includes(`"${b.address}"`)
  );
  assert.deepEqual(stale, [], "no series of the removed pool or backend");
  assert.equal(sample(after, `${N.BACKEND_FAILURES_TOTAL}{backend="${a.address}"}`), 0);
  assert.equal(
    sample(after, `${N.BACKEND_RESPONSE_TIME_SECONDS}_count{backend="${a.address}"}`),
    1,
    "the kept backend's series go on",
  );
  assert.equal((await get(`${lb.url}/a`)).status, 200);
  const later = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.equal(
    sample(later, `${N.BACKEND_RESPONSE_TIME_SECONDS}_count{backend="${a.address}"}`),
    2,
  );
});

Deno.test("requests waiting for a connection when a reload replaces the pool's client are served", async () => {
  const gate = Promise.withResolvers<void>();
  let arrived = 0;
  await using a = startBackend(async () => {
    arrived++;
    await gate.promise;
    return new Response("ok");
  });
  const client = (n: number) => `[backend_pools.client]\nmax_connections_per_host = ${n}\n`;
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
    poolToml([a.address]);
  await using lb = await startStrom(text + client(1));
  const answers = Array.from({ length: 4 }, () => get(`${lb.url}/`));
  await waitFor(() => arrived >= 1, "the first request to reach the backend");
  assert.equal((await lb.strom.reload(text + client(2))).ok, true);
  gate.resolve();
  const results = await Promise.all(answers);
  assert.deepEqual(results.map((r) => `${r.status} ${r.text}`), Array(4).fill("200 ok"));
  const [backend] = lb.strom.runtime.pools[0].backends;
  assert.equal(backend.failures, 0, "a reload is no backend failure");
  assert.equal(backend.outlier.ejected, false);
});

Deno.test("a reload whose access log cannot be opened changes nothing; a workers change is said to need a restart", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n`;
  await using lb = await startStrom(text + poolToml([a.address]), { log });
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/no/such/folder/access.log`;
    const result = await lb.strom.reload(
      text + `[access_log]\npath = "${missing}"\n` + poolToml([b.address]),
    );
    assert.equal(result.ok, false);
    assert.deepEqual(!result.ok && result.problems.map((p) => p.path), ["access_log.path"]);
    assert.equal(lb.strom.runtime.generation, 1, "nothing applied");
    assert.equal((await get(`${lb.url}/`)).text, "a", "the old pools still serve");

    const changed = await lb.strom.reload(`workers = 2\n` + text + poolToml([a.address]));
    assert.ok(changed.ok);
    // In the answer too (PUT /api/config, POST /api/reload, the dashboard), not only in the log.
    const message = "a restart is required for workers = 2 to take effect (running 1)";
    assert.deepEqual(changed.kept, [{ path: "workers", message }]);
    assert.ok(
      lines.includes(`warn Reloaded configuration (generation 2), except: workers: ${message}`),
      lines.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a reload back to the address still bound after a failed rebind changes nothing", async () => {
  await using a = startBackend();
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n${
    poolToml([a.address])
  }`;
  await using lb = await startStrom(text, { log });
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = text.replace(
    'http_address = "127.0.0.1:0"',
    `http_address = "${(taken.addr as Deno.NetAddr).hostname}:${
      (taken.addr as Deno.NetAddr).port
    }"`,
  );
  const partial = await lb.strom.reload(busy);
  assert.ok(partial.ok);
  // Applied, but not all of it: the result and a WARN line say which listener stayed.
  assert.deepEqual(partial.kept?.map((p) => p.path), ["http_address"]);
  assert.match(partial.kept![0].message, /still listening on 127\.0\.0\.1:\d+$/);
  assert.ok(
    lines.some((l) => l.startsWith("error Keeping the old http_address")),
    lines.join("\n"),
  );
  assert.ok(lines.some((l) => l.startsWith("warn Reloaded configuration (generation 2), except")));
  const errors = lines.length;
  const back = await lb.strom.reload(text);
  assert.deepEqual(back, { ok: true, generation: 3 });
  assert.deepEqual(lines.slice(errors).filter((l) => l.startsWith("error")), []);
  assert.equal((await get(`${lb.url}/`)).status, 200, "the first listener still serves");
});

Deno.test("a watched file saved again unchanged retries a listener kept after a failed rebind", async () => {
  await using a = startBackend();
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n${
    poolToml([a.address])
  }`;
  await using lb = await startStrom(text);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const moved = text.replace('http_address = "127.0.0.1:0"', `http_address = "127.0.0.1:${port}"`);
  const partial = await lb.strom.reloadIfChanged(moved);
  assert.ok(partial?.ok);
  assert.deepEqual(partial.kept?.map((p) => p.path), ["http_address"]);
  taken.close();
  // The same text again (a save the watcher hands on): not "already running", since it is not.
  const retried = await lb.strom.reloadIfChanged(moved);
  assert.ok(retried?.ok && retried.kept === undefined, JSON.stringify(retried));
  assert.equal(lb.strom.port("http_address"), port);
  assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  // Now it is running whole: the same text once more changes nothing.
  assert.equal(await lb.strom.reloadIfChanged(moved), null);
});

Deno.test("a reload logs and returns the new config's warnings, as a start does", async () => {
  await using a = startBackend();
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  const base = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n`;
  await using lb = await startStrom(base + poolToml([a.address]), { log });
  const result = await lb.strom.reload(base);
  assert.deepEqual(result, { ok: true, generation: 2, warnings: ["No backend pool found."] });
  assert.ok(lines.includes("warn No backend pool found."), lines.join("\n"));
  // Reloaded again with the same warning: returned, but logged once only, with a count.
  lines.length = 0;
  const again = await lb.strom.reload(base + "\n# a comment\n");
  assert.deepEqual(again, { ok: true, generation: 3, warnings: ["No backend pool found."] });
  assert.ok(!lines.some((l) => l.startsWith("warn")), lines.join("\n"));
  assert.ok(
    lines.includes("info 1 warning(s) of the configuration as before (logged when it loaded)"),
    lines.join("\n"),
  );
});

Deno.test("a shutdown waits for the requests of a listener a reload moved away", async () => {
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  await using a = startBackend(async () => {
    await held;
    return new Response("a");
  });
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n${
    poolToml([a.address])
  }`;
  await using lb = await startStrom(text);
  const inFlight = get(`${lb.url}/`);
  await waitFor(() => a.requests.length === 1, "the request to reach the backend");
  const moved = await lb.strom.reload(text.replace("127.0.0.1:0", "127.0.0.2:0"));
  assert.deepEqual(moved, { ok: true, generation: 2 });
  let stopped = false;
  const stopping = lb.strom.shutdown(10_000).then(() => stopped = true);
  try {
    for (let i = 0; i < 20; i++) await nextTurn();
    assert.equal(stopped, false, "the shutdown ended before the old listener's request");
  } finally {
    release();
  }
  assert.equal((await inFlight).text, "a");
  await stopping;
  // Once stopping, a reload is refused: it would bind listeners nobody drains.
  const late = await lb.strom.reload(text);
  assert.deepEqual(late, {
    ok: false,
    problems: [{ path: "", message: "Strom is shutting down" }],
  });
});

const UPLOADS = {
  buffered: ["Content-Length: 10\r\n\r\n01234", "56789"],
  streamed: ["Transfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n", "5\r\n56789\r\n0\r\n\r\n"],
};
for (const how of ["shutdown", "reload moving the listener"] as const) {
  for (const [kind, [first, rest]] of Object.entries(UPLOADS)) {
    Deno.test(`a ${kind} upload under way when a ${how} begins reaches the backend whole`, async () => {
      await using a = startBackend(async (request) =>
        new Response(`got ${(await request.text()).length}`)
      );
      const dir = await Deno.makeTempDir();
      const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
        `trusted_proxies = ["127.0.0.1"]\n[access_log]\nformat = "json"\npath = "${dir}/access.log"\n${
          poolToml([a.address])
        }`;
      await using lb = await startStrom(text);
      const port = Number(new URL(lb.url).port);
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const encoder = new TextEncoder();
      await conn.write(encoder.encode(`POST /up HTTP/1.1\r\nHost: x\r\n${first}`));
      await waitFor(async () => {
        const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
        return sample(metrics, N.ACTIVE_HTTP_CONNECTIONS) === 1;
      }, "Strom to take the upload");
      let stopped = false;
      const stopping = how === "shutdown"
        ? lb.strom.shutdown(10_000).then(() => stopped = true)
        : lb.strom.reload(text.replace("127.0.0.1:0", "127.0.0.2:0"));
      for (let i = 0; i < 20; i++) await nextTurn();
      assert.equal(stopped, false);
      // Meanwhile the listener still answers, and asks its clients to close the connection.
      using late = await Deno.connect({ hostname: "127.0.0.1", port });
      await late.write(encoder.encode("GET /late HTTP/1.1\r\nHost: x\r\n\r\n"));
      assert.match(await readAnswer(late), /^HTTP\/1\.1 200 [^]*\r\nconnection: close\r\n/i);
      // A new upload is refused at once: counted, a steady flow of them held the stop forever.
      using post = await Deno.connect({ hostname: "127.0.0.1", port });
      await post.write(
        encoder.encode(
          "POST /late HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n" +
            "Content-Length: 2\r\n\r\nhi",
        ),
      );
      assert.match(await readAnswer(post), /^HTTP\/1\.1 503 [^]*\r\nconnection: close\r\n/i);
      if (how !== "shutdown") {
        // Counted as any answer (it was not), and logged (below).
        const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
        assert.equal(sample(metrics, `${N.HTTP_STATUS_CODES_TOTAL}{code="503"}`), 1);
      }
      assert.equal(
        a.requests.filter((r) => r.method === "POST" && r.url.endsWith("/late")).length,
        0,
        "no late POST upstream",
      );
      await conn.write(encoder.encode(rest));
      const answer = await readAnswer(conn);
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.ok(answer.endsWith("got 10"), answer);
      await stopping;
      if (how !== "shutdown") await lb.strom.shutdown(1000);
      const logged = (await Deno.readTextFile(`${dir}/access.log`)).trim().split("\n")
        .map((line) => JSON.parse(line));
      assert.deepEqual(
        logged.filter((l) => l.path === "/late").map((l) => [
          l.method,
          l.status,
          l.bytes_out,
          l.client,
        ]),
        [["GET", 200, 5, "127.0.0.1"], ["POST", 503, 36, "203.0.113.7"]],
      );
      await Deno.remove(dir, { recursive: true });
    });
  }
}

/** Reads one HTTP/1.1 answer with a Content-Length body off `conn`. */
async function readAnswer(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const head = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text);
    if (head >= 0 && length && text.length >= head + 4 + Number(length[1])) return text;
    const n = await conn.read(buffer);
    if (n === null) return text;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
}

/** Watches `path` as Strom does (its text now `first`), recording every new text it reads. */
function watchTexts(path: string, first: string, timing = { debounceMs: 100, recheckMs: 1000 }) {
  let current = first;
  const seen: string[] = [];
  const stop = watchConfig(path, {
    ...timing,
    currentText: () => current,
    onChange: (text) => {
      seen.push(text);
      current = text;
    },
  });
  return { seen, stop };
}

Deno.test("watchConfig() reloads once per save, whether in place or by rename", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  await Deno.writeTextFile(path, "a = 1\n");
  const { seen, stop } = watchTexts(path, "a = 1\n");
  try {
    await Deno.writeTextFile(path, "a = 2\n");
    await waitFor(() => seen.length === 1, "the in-place write to be seen");
    await Deno.writeTextFile(`${dir}/.strom.toml.swp`, "a = 3\n");
    await Deno.rename(`${dir}/.strom.toml.swp`, path);
    await waitFor(() => seen.length === 2, "the rename to be seen");
    await Deno.writeTextFile(path, "a = 3\n"); // same text again: not a change
    await Deno.writeTextFile(path, "a = 4\n");
    await waitFor(() => seen.length === 3, "the last write to be seen");
    assert.deepEqual(seen, ["a = 2\n", "a = 3\n", "a = 4\n"]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchConfig() sees a config mounted as Kubernetes mounts a ConfigMap (a swapped link)", async () => {
  const dir = await Deno.makeTempDir();
  const version = async (n: number, text: string) => {
    await Deno.mkdir(`${dir}/..v${n}`);
    await Deno.writeTextFile(`${dir}/..v${n}/strom.toml`, text);
  };
  await version(1, "a = 1\n");
  await Deno.symlink("..v1", `${dir}/..data`);
  await Deno.symlink("..data/strom.toml", `${dir}/strom.toml`);
  const { seen, stop } = watchTexts(`${dir}/strom.toml`, "a = 1\n");
  try {
    // The kubelet's update: a new folder, a new link to it, renamed over ..data, the old folder gone.
    await version(2, "a = 2\n");
    await Deno.symlink("..v2", `${dir}/..data_tmp`);
    await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
    await Deno.remove(`${dir}/..v1`, { recursive: true });
    await waitFor(() => seen.length === 1, "the swapped link to be seen");
    assert.deepEqual(seen, ["a = 2\n"]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchConfig() watches a folder replaced under the config anew", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/conf`);
  await Deno.writeTextFile(`${dir}/conf/strom.toml`, "a = 1\n");
  const { seen, stop } = watchTexts(`${dir}/conf/strom.toml`, "a = 1\n", {
    debounceMs: 20,
    recheckMs: 20,
  });
  try {
    // A deploy renames a new folder into place: its file is read, and saves in it are seen.
    await Deno.mkdir(`${dir}/conf.new`);
    await Deno.writeTextFile(`${dir}/conf.new/strom.toml`, "a = 2\n");
    await Deno.rename(`${dir}/conf`, `${dir}/conf.old`);
    await Deno.rename(`${dir}/conf.new`, `${dir}/conf`);
    await waitFor(() => seen.length === 1, "the new folder's file to be read");
    await Deno.writeTextFile(`${dir}/conf/strom.toml`, "a = 3\n");
    await waitFor(() => seen.length === 2, "a save in the new folder to be seen");
    // Removed and made again.
    await Deno.remove(`${dir}/conf`, { recursive: true });
    await Deno.mkdir(`${dir}/conf`);
    await Deno.writeTextFile(`${dir}/conf/strom.toml`, "a = 4\n");
    await waitFor(() => seen.length === 3, "the remade folder's file to be read");
    await Deno.writeTextFile(`${dir}/conf/strom.toml`, "a = 5\n");
    await waitFor(() => seen.length === 4, "a save in the remade folder to be seen");
    assert.deepEqual(seen, ["a = 2\n", "a = 3\n", "a = 4\n", "a = 5\n"]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchConfig() follows a swapped link to the config's folder (a `current` release)", async () => {
  const dir = await Deno.makeTempDir();
  for (const n of [1, 2]) {
    await Deno.mkdir(`${dir}/releases/${n}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/releases/${n}/strom.toml`, `a = ${n}\n`);
  }
  await Deno.symlink(`${dir}/releases/1`, `${dir}/current`);
  const { seen, stop } = watchTexts(`${dir}/current/strom.toml`, "a = 1\n", {
    debounceMs: 20,
    recheckMs: 20,
  });
  try {
    await Deno.symlink(`${dir}/releases/2`, `${dir}/current.tmp`);
    await Deno.rename(`${dir}/current.tmp`, `${dir}/current`);
    await waitFor(() => seen.length === 1, "the new release's file to be read");
    await Deno.writeTextFile(`${dir}/releases/2/strom.toml`, "a = 3\n");
    await waitFor(() => seen.length === 2, "a save in the new release to be seen");
    assert.deepEqual(seen, ["a = 2\n", "a = 3\n"]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Watches a config file that says `text` while what runs stays "a = 1\n" (as while a slow
 * reload is still being built), recording each text offered and each report of bytes that are
 * not text; `take()` says whether an offered text is taken.
 */
async function watchOffers(text: string, take: () => boolean = () => true) {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  await Deno.writeTextFile(path, text);
  const seen: string[] = [];
  const stop = watchConfig(path, {
    debounceMs: 100,
    currentText: () => "a = 1\n",
    onChange: (offered) => {
      seen.push(offered);
      return Promise.resolve(take());
    },
    onInvalid: (problem) => void seen.push(`invalid: ${problem.message} (line ${problem.line})`),
  });
  return {
    path,
    seen,
    [Symbol.asyncDispose]: async () => {
      stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("watchConfig() reads the file at once, and an undone save is a change while the first is applied", async () => {
  // Saved while Strom started: the file no longer says what Strom was started from.
  await using watch = await watchOffers("a = 2\n");
  await waitFor(() => watch.seen.length === 1, "the save made during start-up to be seen");
  await Deno.writeTextFile(watch.path, "a = 1\n"); // undone: what still runs, but not what was read
  await waitFor(() => watch.seen.length === 2, "the undo to be seen");
  assert.deepEqual(watch.seen, ["a = 2\n", "a = 1\n"]);
});

Deno.test("watchConfig() says when the file is not UTF-8 text, and reads on after it", async () => {
  await using watch = await watchOffers("a = 1\n");
  const bytes = new Uint8Array([...new TextEncoder().encode("a = 1\n# "), 0xff]);
  await Deno.writeFile(watch.path, bytes);
  await waitFor(() => watch.seen.length === 1, "the bytes that are not text to be reported");
  await Deno.writeTextFile(watch.path, "a = 1\n");
  await waitFor(() => watch.seen.length === 2, "the text after them to be read again");
  assert.deepEqual(watch.seen, [
    "invalid: not UTF-8 text (a TOML file must be) (line 2)",
    "a = 1\n",
  ]);
});

Deno.test("watchConfig() offers a refused text again when the file is saved again, unchanged", async () => {
  let take = false;
  await using watch = await watchOffers("a = 1\n", () => take);
  await Deno.writeTextFile(watch.path, "a = 2\n"); // refused (say, its access log's folder is missing)
  await waitFor(() => watch.seen.length === 1, "the first save to be offered");
  take = true; // the folder now exists: the same text, saved again, is offered and taken
  await Deno.writeTextFile(watch.path, "a = 2\n");
  await waitFor(() => watch.seen.length === 2, "the same text saved again to be offered again");
  await Deno.writeTextFile(watch.path, "a = 2\n"); // taken already: nothing to do
  await Deno.writeTextFile(watch.path, "a = 3\n");
  await waitFor(() => watch.seen.length === 3, "the next change to be offered");
  assert.deepEqual(watch.seen, ["a = 2\n", "a = 2\n", "a = 3\n"]);
});

Deno.test("watchable(): a config given as a pipe is not watched (it cannot be read again)", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/strom.toml`, "a = 1\n");
  await Deno.symlink(`${dir}/strom.toml`, `${dir}/link.toml`);
  const fifo = await new Deno.Command("mkfifo", { args: [`${dir}/pipe.toml`] }).output();
  assert.ok(fifo.success);
  assert.equal(watchable(`${dir}/strom.toml`), true);
  assert.equal(watchable(`${dir}/link.toml`), true);
  assert.equal(watchable(`${dir}/missing.toml`), true, "created later, it is watched");
  assert.equal(watchable(`${dir}/pipe.toml`), false);
  // Watching it would open it for reading, which blocks until a writer comes.
  const stop = watchConfig(`${dir}/pipe.toml`, { currentText: () => "", onChange: () => {} });
  stop();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("watchConfig() follows a config link pointed at a file in another folder", async () => {
  const dir = await Deno.makeTempDir();
  for (const v of ["v1", "v2", "link"]) await Deno.mkdir(`${dir}/${v}`);
  await Deno.writeTextFile(`${dir}/v1/strom.toml`, "a = 1\n");
  await Deno.writeTextFile(`${dir}/v2/strom.toml`, "a = 2\n");
  await Deno.symlink(`${dir}/v1/strom.toml`, `${dir}/link/strom.toml`);
  const { seen, stop } = watchTexts(`${dir}/link/strom.toml`, "a = 1\n");
  try {
    await Deno.symlink(`${dir}/v2/strom.toml`, `${dir}/link/next.toml`);
    await Deno.rename(`${dir}/link/next.toml`, `${dir}/link/strom.toml`);
    await waitFor(() => seen.length === 1, "the link's new target to be seen");
    await Deno.writeTextFile(`${dir}/v2/strom.toml`, "a = 3\n");
    await waitFor(() => seen.length === 2, "an edit of the new target to be seen");
    assert.deepEqual(seen, ["a = 2\n", "a = 3\n"]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reloadIfChanged() skips a text that runs by its turn, and saves undone end on the last", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  assert.equal(await lb.strom.reloadIfChanged(lb.text), null);
  const edited = lb.text + "\n# edited\n";
  const results = await Promise.all([
    lb.strom.reloadIfChanged(edited),
    lb.strom.reloadIfChanged(lb.text),
    lb.strom.reloadIfChanged(lb.text),
  ]);
  assert.deepEqual(results, [{ ok: true, generation: 2 }, { ok: true, generation: 3 }, null]);
  assert.equal(lb.strom.configText, lb.text);
  await Deno.remove(lb.dir, { recursive: true });
});

Deno.test("PUT /api/config: a bad file is refused with 422, a good one is written and applied", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  const auth = { authorization: `Bearer ${TOKEN}` };
  const put = (body: string, headers: Record<string, string> = auth) =>
    fetch(`${lb.adminUrl}/api/config`, { method: "PUT", body, headers });

  const noToken = await put(lb.text, {});
  assert.equal(noToken.status, 401);
  await noToken.body?.cancel();
  // Without Content-Length (chunked), a body past 8 MiB is refused as it arrives.
  let chunks = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull: (controller) => {
      if (++chunks > 1024) return controller.close(); // 64 MiB at most
      controller.enqueue(new TextEncoder().encode("# x\n".repeat(16 * 1024)));
    },
  });
  const tooLarge = await fetch(`${lb.adminUrl}/api/config`, {
    method: "PUT",
    body: endless,
    headers: auth,
  }).catch((e) => e);
  if (tooLarge instanceof Response) {
    assert.equal(tooLarge.status, 413);
    await tooLarge.body?.cancel();
  }
  assert.ok(chunks < 256, `the client sent ${chunks} chunks of 64 KiB before Strom refused`);
  const crossSite = await put(lb.text, { ...auth, origin: "https://evil.example" });
  assert.equal(crossSite.status, 403);
  await crossSite.body?.cancel();

  const bad = await put(
    lb.text.replace("strategy = { RoundRobin = {} }", 'strategy = "Fastest"\ncolour = "blue"'),
  );
  assert.equal(bad.status, 422);
  const body = await bad.json();
  const line = lb.text.split("\n").findIndex((l) => l.startsWith("strategy")) + 1;
  assert.deepEqual(
    body.problems.map((p: { path: string; line: number }) => `${p.line}: ${p.path}`).sort(),
    [`${line}: backend_pools[0].strategy`, `${line + 1}: backend_pools[0].colour`],
    "each problem with its line",
  );
  assert.equal(await Deno.readTextFile(lb.path), lb.text, "the file is unchanged");
  // Valid, but it cannot be applied: not saved either (Strom would not start from it).
  const unusable = await put(lb.text + `\n[access_log]\npath = "${lb.dir}/missing/access.log"\n`);
  assert.equal(unusable.status, 422);
  assert.equal((await unusable.json()).problems[0].path, "access_log.path");
  assert.equal(await Deno.readTextFile(lb.path), lb.text, "the file is still unchanged");

  await Deno.chmod(lb.path, 0o600); // it holds the token
  const good = await put(lb.text + "\n# edited\n");
  assert.equal(good.status, 200);
  assert.equal((await Deno.stat(lb.path)).mode! & 0o777, 0o600, "the file keeps its permissions");
  assert.deepEqual(await good.json(), { ok: true, generation: 2 });
  assert.equal(await Deno.readTextFile(lb.path), lb.text + "\n# edited\n");
  assert.equal(await Deno.readTextFile(`${lb.path}.bak`), lb.text);
  // As large as a config file may be (8 MiB), not 1 MiB: a config that loads from its file can
  // be put back as it was read.
  const large = lb.text + "\n# edited\n" + "# a comment line to make it large\n".repeat(60_000);
  const put2mb = await put(large);
  assert.equal(put2mb.status, 200, `a ${large.length}-byte config`);
  await put2mb.body?.cancel();
  assert.equal(await Deno.readTextFile(lb.path), large);
  await put(lb.text + "\n# edited\n").then((r) => r.body?.cancel());
  const hidden = await fetch(`${lb.adminUrl}/api/config`);
  assert.equal(hidden.status, 401, "the config holds secrets: reading it needs the token");
  await hidden.body?.cancel();
  for (const spelling of ["/api/%63onfig", "/api/conf%69g", "/%61pi/config"]) {
    const encoded = await fetch(`${lb.adminUrl}${spelling}`);
    assert.equal(encoded.status, 401, `${spelling} is /api/config too`);
    await encoded.body?.cancel();
  }
  const text = await (await fetch(`${lb.adminUrl}/api/config`, { headers: auth })).text();
  assert.equal(text, lb.text + "\n# edited\n");

  const reload = await fetch(`${lb.adminUrl}/api/reload`, { method: "POST", headers: auth });
  assert.deepEqual(await reload.json(), { ok: true, generation: 5 });

  // A blank config is valid (every default, no pool), but never what a reload means:
  // an empty upload, or a file caught mid-write, is refused and nothing changes.
  const blankProblem = {
    path: "",
    message: "the new config is empty (only blank lines and comments): keeping the current one",
  };
  for (const blank of ["", "\n  \n# nothing yet\n", "# written on Windows\r\n\r\n"]) {
    const refused = await put(blank);
    assert.equal(refused.status, 422);
    assert.deepEqual(await refused.json(), { ok: false, problems: [blankProblem] });
  }
  assert.equal(await Deno.readTextFile(lb.path), lb.text + "\n# edited\n", "the file is unchanged");
  await Deno.writeTextFile(lb.path, "");
  const fromFile = await fetch(`${lb.adminUrl}/api/reload`, { method: "POST", headers: auth });
  assert.equal(fromFile.status, 422);
  assert.deepEqual(await fromFile.json(), { ok: false, problems: [blankProblem], text: "" });
  assert.equal((await get(`${lb.url}/`)).status, 200, "the pool still serves");
  // Saving a config without admin_token locks the API: saved as asked, and said.
  const locked = await put(lb.text.replace(`admin_token = "${TOKEN}"\n`, ""));
  assert.equal(locked.status, 200);
  assert.match((await locked.json()).warnings.join(), /no admin_token: the admin API now refuses/);
  await Deno.remove(lb.dir, { recursive: true });
});

Deno.test({
  name: "a reload of a config given as a pipe, which cannot be read again, says so",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using a = startBackend();
    const dir = await Deno.makeTempDir();
    const fifo = `${dir}/strom.toml`;
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    await using lb = await startStrom(poolToml([a.address]), {
      source: { source: fifo, baseDir: dir },
    });
    const reloading = lb.strom.reload();
    (await Deno.open(fifo, { write: true })).close(); // what a pipe gives once it is spent
    const result = await reloading;
    assert.equal(result.ok, false);
    assert.match(
      JSON.stringify(result),
      /the config is not a file \(a pipe\?\) and gave nothing when read again/,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("the admin API answers a method a path does not take with 405 and Allow", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  for (const token of [true, false]) {
    // Without the token too: which methods a path takes is no secret.
    const call = async (method: string, path: string) => {
      const r = await fetch(`${lb.adminUrl}${path}`, {
        method,
        headers: token ? { authorization: `Bearer ${TOKEN}` } : {},
      });
      await r.body?.cancel();
      return [r.status, r.headers.get("allow")];
    };
    assert.deepEqual(await call("DELETE", "/api/config"), [405, "GET, HEAD, PUT"]);
    assert.deepEqual(await call("GET", "/api/drain"), [405, "POST"]);
    assert.deepEqual(await call("POST", "/metrics"), [405, "GET, HEAD"]);
    assert.deepEqual(await call("HEAD", "/api/status"), [200, null]);
    if (token) assert.deepEqual(await call("DELETE", "/api/nothing"), [404, null]);
  }
});

Deno.test("the admin API answers HEAD with the length its GET has", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  for (const path of ["/", "/api/pools", "/api/config", "/metrics"]) {
    const headers = { authorization: `Bearer ${TOKEN}` };
    const got = await fetch(`${lb.adminUrl}${path}`, { headers });
    const body = await got.arrayBuffer();
    const head = await fetch(`${lb.adminUrl}${path}`, { method: "HEAD", headers });
    assert.equal(head.status, 200, path);
    const length = Number(head.headers.get("content-length"));
    // /metrics changes between two calls (its own requests count): only non-zero there.
    if (path === "/metrics") assert.ok(length > 0, path);
    else assert.equal(length, body.byteLength, path);
  }
  // An event stream asked with HEAD ends at once instead of streaming on unseen.
  const events = await fetch(`${lb.adminUrl}/api/events`, { method: "HEAD" });
  assert.equal(events.status, 200);
  // A path with a dot-segment is no route for GET, nor for HEAD (whose copy as a GET once
  // resolved it).
  const port = Number(new URL(lb.adminUrl).port);
  for (const path of ["/api/./config", "/api/x/../config", "/./api/config"]) {
    for (const method of ["GET", "HEAD"]) {
      const answer = await rawExchange(
        port,
        `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n` +
          "Connection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 404 /, `${method} ${path}`);
    }
  }
});

Deno.test("PUT /api/config with If-Match is refused with 412 once the config changed meanwhile", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  const auth = { authorization: `Bearer ${TOKEN}` };
  const read = await fetch(`${lb.adminUrl}/api/config`, { headers: auth });
  const etag = read.headers.get("etag")!;
  assert.match(etag, /^"[\w-]+"$/);
  assert.equal(await read.text(), lb.text);
  // Another operator saves first.
  const first = await fetch(`${lb.adminUrl}/api/config`, {
    method: "PUT",
    headers: { ...auth, "if-match": etag },
    body: lb.text + "# first\n",
  });
  assert.equal(first.status, 200);
  const newer = first.headers.get("etag")!;
  assert.notEqual(newer, etag);
  await first.body?.cancel();
  // The second edit was made on the old text: refused, nothing applied or written.
  const second = await fetch(`${lb.adminUrl}/api/config`, {
    method: "PUT",
    headers: { ...auth, "if-match": etag },
    body: lb.text + "# second\n",
  });
  assert.equal(second.status, 412);
  assert.deepEqual(await second.json(), {
    ok: false,
    problems: [{
      path: "",
      message: "the config changed since it was read (now generation 2): read it again, then edit",
    }],
  });
  assert.equal(await Deno.readTextFile(lb.path), lb.text + "# first\n");
  assert.equal(lb.strom.runtime.generation, 2);
  // With the current ETag, or without If-Match, a save goes through.
  const third = await fetch(`${lb.adminUrl}/api/config`, {
    method: "PUT",
    headers: { ...auth, "if-match": newer },
    body: lb.text + "# third\n",
  });
  assert.equal(third.status, 200);
  await third.body?.cancel();
  await Deno.remove(lb.dir, { recursive: true });
});

Deno.test("POST /api/reload refused: the answer carries the file's text, which the lines are about", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  const broken = "# a comment\n" + lb.text.replace("RoundRobin = {}", "Bogus = {}");
  await Deno.writeTextFile(lb.path, broken);
  const r = await fetch(`${lb.adminUrl}/api/reload`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(r.status, 422);
  const result = await r.json();
  assert.equal(result.ok, false);
  assert.equal(result.text, broken);
  const line = broken.split("\n").findIndex((l) => l.includes("Bogus")) + 1;
  assert.equal(result.problems[0].line, line);
  await Deno.remove(lb.dir, { recursive: true });
});

Deno.test("PUT /api/config: concurrent saves are applied and written in the same order", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  const results = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
    const text = `${lb.text}\n# variant ${i}\n`;
    const response = await fetch(`${lb.adminUrl}/api/config`, {
      method: "PUT",
      body: text,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(response.status, 200);
    return { text, generation: (await response.json()).generation as number };
  }));
  const last = results.reduce((a, b) => b.generation > a.generation ? b : a);
  assert.equal(await Deno.readTextFile(lb.path), last.text, "the file is not the last applied");
  assert.equal(lb.strom.configText, last.text);
});

Deno.test("PUT /api/config: a refusal is logged and counted as a reload's; a linked config stays a link", async () => {
  await using a = startBackend();
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/real`);
  const full =
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nadmin_token = "${TOKEN}"\n${
      poolToml([a.address])
    }`;
  await Deno.writeTextFile(`${dir}/real/strom.toml`, full);
  await Deno.symlink(`${dir}/real/strom.toml`, `${dir}/strom.toml`);
  const lines: string[] = [];
  await using lb = await startStrom(full, {
    source: { source: `${dir}/strom.toml`, baseDir: dir },
    log: createLogger("warn", { sink: (r) => lines.push(r.message) }),
  });
  const put = (body: string | Uint8Array<ArrayBuffer>) =>
    fetch(`${lb.adminUrl}/api/config`, {
      method: "PUT",
      body,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
  const latin1 = new Uint8Array([...new TextEncoder().encode("# caf"), 0xe9, 10]); // not UTF-8
  for (const refused of ["http_address = 5\n", "# nothing yet\n", latin1]) {
    const response = await put(refused);
    assert.equal(response.status, 422);
    assert.equal((await response.json()).ok, false);
  }
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.match(metrics, /^strom_config_reloads_total\{result="failure"\} 3$/m);
  assert.equal(lines.filter((l) => l.startsWith("Could not reload configuration")).length, 3);
  assert.ok(lines.includes("  not UTF-8 text (a TOML file must be) (line 1)"), lines.join("\n"));
  assert.ok(lines.some((l) => l.startsWith("  http_address: expected a string")), lines.join("\n"));

  const good = await put(full + "\n# edited\n");
  assert.equal(good.status, 200);
  await good.body?.cancel();
  assert.ok((await Deno.lstat(`${dir}/strom.toml`)).isSymlink, "the link is still a link");
  assert.equal(await Deno.readTextFile(`${dir}/real/strom.toml`), full + "\n# edited\n");
  assert.equal(await Deno.readTextFile(`${dir}/real/strom.toml.bak`), full);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("admin writes: the Bearer scheme in any case; a browser's Sec-Fetch-Site decides over Host", async () => {
  await using a = startBackend();
  await using lb = await fileStrom(poolToml([a.address]));
  const reload = async (headers: Record<string, string>) => {
    const response = await fetch(`${lb.adminUrl}/api/reload`, { method: "POST", headers });
    await response.body?.cancel();
    return response.status;
  };
  for (const scheme of ["Bearer", "bearer", "BEARER"]) {
    assert.equal(await reload({ authorization: `${scheme} ${TOKEN}` }), 200, scheme);
  }
  assert.equal(await reload({ authorization: `Bearer${TOKEN}` }), 401);
  const auth = { authorization: `Bearer ${TOKEN}` };
  const port = new URL(lb.adminUrl).port;
  // A TLS proxy in front rewrote Host: the page is Strom's own, as the browser says.
  const proxied = { ...auth, origin: "https://admin.example", host: `127.0.0.1:${port}` };
  assert.equal(await reload({ ...proxied, "sec-fetch-site": "same-origin" }), 200);
  assert.equal(await reload({ ...proxied, "sec-fetch-site": "cross-site" }), 403);
  assert.equal(await reload(proxied), 403, "without Sec-Fetch-Site, Origin and Host must agree");
  // Host names are case-insensitive (fetch cannot set Host: written by hand).
  const answer = await rawExchange(
    Number(port),
    `POST /api/reload HTTP/1.1\r\nHost: LOCALHOST:${port}\r\nOrigin: http://localhost:${port}\r\n` +
      `Authorization: Bearer ${TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
  );
  assert.match(answer, /^HTTP\/1\.1 200 /);
  await Deno.remove(lb.dir, { recursive: true });
});

Deno.test("the admin API serves status, logs and a live event stream", async () => {
  await using a = startBackend();
  await using lb = await startStrom(poolToml([a.address]));
  const status = await (await fetch(`${lb.adminUrl}/api/status`)).json();
  assert.equal(status.generation, 1);
  assert.deepEqual(status.listeners.map((l: { role: string }) => l.role), [
    "http_address",
    "admin_address",
  ]);
  const logs = await fetch(`${lb.adminUrl}/api/logs?level=INFO&q=listening`);
  assert.equal(logs.status, 200);
  assert.ok(Array.isArray(await logs.json()));
  const unset = await fetch(`${lb.adminUrl}/api/logs?level=&q=listening`);
  assert.equal(unset.status, 200, "an empty level is no filter");
  assert.ok(Array.isArray(await unset.json()));
  const bogus = await fetch(`${lb.adminUrl}/api/logs?level=bogus`);
  assert.equal(bogus.status, 400, "an unknown level is no filter at all");
  await bogus.body?.cancel();
  const events = await fetch(`${lb.adminUrl}/api/events`);
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n\n")) text += (await reader.read()).value ?? "";
  assert.match(text, /^event: history\ndata: \[/);
  await reader.cancel();
});

Deno.test("the admin API on loopback answers token-free reads only under a loopback Host (DNS rebinding)", async () => {
  await using a = startBackend();
  await using lb = await startStrom(poolToml([a.address]));
  const port = lb.strom.port("admin_address");
  const status = async (host: string) =>
    (await rawExchange(
      port,
      `GET /api/status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    ))
      .split("\r\n")[0];
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "LOCALHOST"]) {
    assert.equal(await status(host), "HTTP/1.1 200 OK", host);
  }
  // A page at attacker.example, its name rebound to 127.0.0.1, sends its own name.
  for (const host of [`attacker.example:${port}`, "127.0.0.1.attacker.example", "localhost.evil"]) {
    assert.equal(await status(host), "HTTP/1.1 403 Forbidden", host);
  }
});

Deno.test("the admin API's loopback rule follows the address bound, not the config's", async () => {
  await using a = startBackend();
  const token = "rebind-token-0123456789";
  const toml = (admin: string) =>
    `admin_address = "${admin}"\nadmin_token = "${token}"\n` + poolToml([a.address]);
  await using lb = await startStrom(toml("127.0.0.1:0"));
  const port = lb.strom.port("admin_address");
  // 0.0.0.0 on the same port cannot be bound next to the listener on 127.0.0.1: the old one stays.
  const result = await lb.strom.reload(toml(`0.0.0.0:${port}`));
  assert.ok(result.ok && result.kept?.length === 1, JSON.stringify(result));
  const status = await fetch(`http://127.0.0.1:${port}/api/status`);
  assert.equal(status.status, 200, "still on loopback: reads need no token");
  await status.body?.cancel();
});

Deno.test("an open event stream ends when Strom stops instead of holding up the shutdown", async () => {
  await using a = startBackend();
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  await using lb = await startStrom(poolToml([a.address]), { log });
  const events = await fetch(`${lb.adminUrl}/api/events`);
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n\n")) text += (await reader.read()).value ?? "";
  await lb.strom.shutdown(3000);
  assert.deepEqual(lines.filter((l) => l.includes("still in flight")), []);
  while (!(await reader.read()).done) { /* the rest of the stream, up to its end */ }
});

Deno.test("POST /api/drain takes a backend out of rotation and back; in-flight requests finish", async () => {
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  let hold = true;
  await using a = startBackend(async () => {
    if (hold) {
      hold = false;
      await held;
    }
    return new Response("a");
  });
  await using b = startBackend(() => new Response("b"));
  const toml = `admin_token = "${TOKEN}"\n` + poolToml([a.address, b.address]);
  await using lb = await startStrom(toml);
  const drain = (body: unknown, token: string | null = TOKEN) =>
    fetch(`${lb.adminUrl}/api/drain`, {
      method: "POST",
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: JSON.stringify(body),
    }).then(async (r) => `${r.status} ${await r.text()}`);

  const inFlight = get(`${lb.url}/`); // RoundRobin's first pick: a, which holds it
  await waitFor(() => a.requests.length === 1, "the request to reach a");
  assert.match(await drain({ pool: "pool-0", backend: a.address }, null), /^401 /);
  assert.equal(
    await drain({ pool: "pool-0", backend: a.address }),
    `200 {"pool":"pool-0","backend":"${a.address}","drained":true,"keep_sticky":false}`,
  );
  for (let i = 0; i < 6; i++) assert.equal((await get(`${lb.url}/`)).text, "b");
  release();
  assert.equal((await inFlight).text, "a", "the request in flight when drained finishes");
  const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
  assert.deepEqual(
    pools[0].backends.map((x: { drained: boolean; available: boolean }) => [
      x.drained,
      x.available,
    ]),
    [[true, false], [false, true]],
  );

  // A reload keeps the backend drained; undraining brings it back.
  assert.ok(
    (await lb.strom.reload(`http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n${toml}`))
      .ok,
  );
  for (let i = 0; i < 4; i++) assert.equal((await get(`${lb.url}/`)).text, "b");
  assert.match(await drain({ pool: "pool-0", backend: a.address, drained: false }), /^200 /);
  const after = new Set<string>();
  for (let i = 0; i < 4; i++) after.add((await get(`${lb.url}/`)).text);
  assert.deepEqual([...after].sort(), ["a", "b"]);

  assert.match(await drain({ pool: "pool-0", backend: "10.9.9.9:80" }), /^404 .* no backend /);
  assert.equal(
    await drain({ pool: "nope", backend: a.address }),
    '404 404 - no pool "nope"',
    "not a backend missing from it",
  );
  assert.match(await drain({ pool: "pool-0" }), /^400 /);
  assert.match(await drain({ pool: "pool-0", backend: a.address, keep_sticky: "yes" }), /^400 /);
  assert.match(
    await drain({ pool: "pool-0", backend: a.address, keepSticky: true }),
    /^400 .*\(unknown: keepSticky\)$/,
  );
  assert.match(
    await drain({ pool: "pool-0", backend: a.address, keep_sticky: true }),
    /^400 400 - keep_sticky needs a pool whose strategy is StickyCookie/,
  );
  assert.match(await drain("not json{", TOKEN), /^400 /);
});

Deno.test("a sticky client stays on its backend while it is Slow; new clients go to the Healthy", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using lb = await startStrom(poolToml([a.address, b.address], {
    strategy:
      '{ StickyCookie = { cookie_name = "lb", http_only = true, secure = false, same_site = "Lax", inner = "RoundRobin" } }',
  }));
  const first = await get(`${lb.url}/`);
  assert.equal(first.text, "a");
  const cookie = first.headers.get("set-cookie")!.split(";")[0];
  const pool = lb.strom.runtime.pools[0];
  const slow = pool.backends[0];
  slow.health = { ...slow.health, status: "Slow", verified: true }; // its probes answer slowly
  pool.invalidate();
  for (let i = 0; i < 3; i++) {
    const bound = await get(`${lb.url}/`, { headers: { cookie } });
    // Before, the session moved to b with a new cookie.
    assert.deepEqual([bound.text, bound.headers.get("set-cookie")], ["a", null]);
    assert.equal((await get(`${lb.url}/`)).text, "b", "a new client goes to the Healthy one");
  }
  slow.health = { ...slow.health, status: "Unresponsive" };
  pool.invalidate();
  assert.equal((await get(`${lb.url}/`, { headers: { cookie } })).text, "b", "down: it moves");
});

Deno.test("a drain with keep_sticky keeps the clients a sticky cookie binds to the backend, and only them", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const log = captureLog();
  await using lb = await startStrom(
    `admin_token = "${TOKEN}"
` + poolToml([a.address, b.address], {
        strategy:
          '{ StickyCookie = { cookie_name = "lb", http_only = true, secure = false, same_site = "Lax", inner = "RoundRobin" } }',
      }),
    { log: createLogger("info", { sink: log.sink }) },
  );
  const drain = (body: Record<string, unknown>) =>
    fetch(`${lb.adminUrl}/api/drain`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ pool: "pool-0", ...body }),
    }).then(async (r) => `${r.status} ${await r.text()}`);
  const first = await get(`${lb.url}/`);
  assert.equal(first.text, "a");
  const cookie = first.headers.get("set-cookie")!.split(";")[0];
  const asClient = () => get(`${lb.url}/`, { headers: { cookie } });

  assert.equal(
    await drain({ backend: a.address, keep_sticky: true }),
    `200 {"pool":"pool-0","backend":"${a.address}","drained":true,"keep_sticky":true}`,
  );
  for (let i = 0; i < 4; i++) {
    const bound = await asClient();
    assert.equal(bound.text, "a", "the bound client stays");
    assert.equal(bound.headers.get("set-cookie"), null, "and keeps its cookie");
    assert.equal((await get(`${lb.url}/`)).text, "b", "a new client goes elsewhere");
  }
  const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
  const view = pools[0].backends[0];
  assert.deepEqual([view.drained, view.keepSticky, view.available], [true, true, false]);
  assert.ok(
    log.lines.includes(
      `info backend ${a.address} in pool pool-0: drained, no new clients (sticky clients kept) ` +
        "(admin API)",
    ),
    log.lines.join("\n"),
  );

  // With every backend so drained, new clients get 503 and bound ones still get through.
  assert.match(await drain({ backend: b.address, keep_sticky: true }), /^200 /);
  assert.equal((await get(`${lb.url}/`)).status, 503);
  assert.equal((await asClient()).text, "a");

  // A plain drain moves the bound client too.
  assert.match(await drain({ backend: b.address, drained: false }), /^200 /);
  assert.match(await drain({ backend: a.address }), /"keep_sticky":false/);
  const moved = await asClient();
  assert.equal(moved.text, "b");
  assert.match(moved.headers.get("set-cookie") ?? "", /^lb=/);
});
