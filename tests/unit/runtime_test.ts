import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/load.ts";
import { defaultRuntimeDeps, Runtime } from "../../lib/runtime.ts";
import { silentLogger } from "../../lib/log.ts";
import type { HealthStatus } from "../../lib/health/state.ts";
import { createCa, hasOpenssl } from "../_helpers/certs.ts";
import { fakeContext } from "../_helpers/middleware.ts";

/** A pool on a closed port (nothing is forwarded in these tests), then `middlewares`' TOML. */
function pool(name: string, prefix: string, middlewares: string): string {
  return `[[backend_pools]]
name = "${name}"
matcher = "PathPrefix('${prefix}')"
addresses = ["127.0.0.1:9"]
schemes = ["HTTP"]
strategy = "RoundRobin"
${middlewares}`;
}

/** Runs `runtime`'s first pool's chain for a GET of `url` over a backend answering "backend". */
async function call(runtime: Runtime, url: string): Promise<Response> {
  return await runtime.pools[0].chain(
    fakeContext(url),
    () => Promise.resolve(new Response("backend")),
  );
}

Deno.test({
  name:
    "a reload that moves the HTTPS listener rebuilds the chains that redirect to it, only those",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    await ca.issue("a", ["a.test"]);
    const config = (httpsPort: number) =>
      parseConfig(
        `http_address = "127.0.0.1:0"
https_address = "127.0.0.1:${httpsPort}"
[certificates."a.test"]
type = "Local"
certificate_path = "a.crt"
private_key_path = "a.key"
${pool("secure", "/s", "[backend_pools.middlewares.HttpsRedirector]\n")}
${pool("plain", "/", "[backend_pools.middlewares.RateLimiter]\nlimit = 10\nwindow_sec = 1\n")}`,
        { source: "<test>", baseDir: ca.dir },
      );
    const options = { log: silentLogger, deps: defaultRuntimeDeps };
    const first = await Runtime.create(config(8443), 1, options);
    const second = await Runtime.create(config(9443), 2, { ...options, previous: first });
    const location = async (runtime: Runtime) =>
      (await call(runtime, "http://a.test/s")).headers.get("location");
    assert.equal(await location(first), "https://a.test:8443/s");
    assert.equal(await location(second), "https://a.test:9443/s");
    assert.equal(second.pools[1].chain, first.pools[1].chain, "the rate limiter keeps its counts");
    first.retire(second);
    second.close();
  },
});

Deno.test("a reload keeps each unchanged middleware, and its state, whatever changed around it", async () => {
  const config = (version: string, limiterFirst: boolean) => {
    const limiter = `[backend_pools.middlewares.RateLimiter]\nlimit = 3\nwindow_sec = 60\n`;
    const headers = `[backend_pools.middlewares.Headers]\n` +
      `response = { set = { "X-Version" = "${version}" } }\n`;
    return parseConfig(
      `http_address = "127.0.0.1:0"\n` +
        pool("api", "/", limiterFirst ? limiter + headers : headers + limiter),
      { source: "<test>", baseDir: "." },
    );
  };
  const options = { log: silentLogger, deps: defaultRuntimeDeps };
  const answer = async (runtime: Runtime) => {
    const response = await call(runtime, "http://a.test/");
    await response.body?.cancel();
    return `${response.status} ${response.headers.get("x-version")}`;
  };
  const first = await Runtime.create(config("1", true), 1, options);
  for (let i = 0; i < 3; i++) assert.equal(await answer(first), "200 1");
  assert.equal(await answer(first), "429 null", "the limiter, outermost, answered");
  // Another Headers value, and the two swapped: the limiter is the same one, its counts kept.
  const second = await Runtime.create(config("2", false), 2, { ...options, previous: first });
  assert.equal(await answer(second), "429 2");
  assert.equal(second.pools[0].middlewares[1], first.pools[0].middlewares[0]);
  assert.notEqual(second.pools[0].middlewares[0], first.pools[0].middlewares[1]);
  first.retire(second);
  assert.equal(await answer(second), "429 2", "retiring the old generation left the limiter open");
  second.close();
});

Deno.test("a weight-0 backup takes traffic only when no primary is usable, Healthy or Slow", async () => {
  const runtime = await Runtime.create(
    parseConfig(
      `http_address = "127.0.0.1:0"\n` +
        pool("wrr", "/", "").replace(
          'addresses = ["127.0.0.1:9"]',
          'addresses = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]',
        ).replace(
          'strategy = "RoundRobin"',
          'strategy = { WeightedRoundRobin = { weights = { "127.0.0.1:3" = 0 } } }',
        ),
      { source: "<test>", baseDir: "." },
    ),
    1,
    { log: silentLogger, deps: defaultRuntimeDeps },
  );
  const [p] = runtime.pools;
  const set = (statuses: HealthStatus[]) => {
    p.backends.forEach((b, i) => b.health = { ...b.health, status: statuses[i], verified: true });
    p.invalidate();
    return p.available().map((b) => b.id);
  };
  assert.deepEqual(set(["Healthy", "Slow", "Healthy"]), ["127.0.0.1:1"]);
  assert.deepEqual(set(["Slow", "Slow", "Healthy"]), ["127.0.0.1:1", "127.0.0.1:2"]);
  assert.deepEqual(set(["Unresponsive", "Slow", "Healthy"]), ["127.0.0.1:2"]);
  assert.deepEqual(set(["Unresponsive", "Unresponsive", "Slow"]), ["127.0.0.1:3"]);
  assert.deepEqual(set(["Unresponsive", "Unresponsive", "Unresponsive"]), []);
  // A retry goes to the other primary, then, with every primary tried, to the backup.
  set(["Healthy", "Healthy", "Healthy"]);
  const ids = (tried: number[]) =>
    p.retryCandidates(tried.map((i) => p.backends[i])).map((b) => b.id);
  assert.deepEqual(ids([0]), ["127.0.0.1:2"]);
  assert.deepEqual(ids([0, 1]), ["127.0.0.1:3"]);
  assert.deepEqual(ids([0, 1, 2]), []);
  runtime.close();
});

Deno.test("draining an address listed twice in a pool drains both listings", async () => {
  const runtime = await Runtime.create(
    parseConfig(
      `http_address = "127.0.0.1:0"\n` +
        pool("twice", "/", "").replace(
          'addresses = ["127.0.0.1:9"]',
          'addresses = ["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"]',
        ),
      { source: "<test>", baseDir: "." },
    ),
    1,
    { log: silentLogger, deps: defaultRuntimeDeps },
  );
  const [p] = runtime.pools;
  for (const b of p.backends) b.health = { ...b.health, status: "Healthy", verified: true };
  p.invalidate();
  assert.equal(runtime.setDrained("twice", "127.0.0.1:1", true), true);
  assert.deepEqual(p.available().map((b) => b.id), ["127.0.0.1:2"]);
  assert.equal(runtime.setDrained("twice", "127.0.0.1:1", true), false, "nothing changed");
  assert.equal(runtime.setDrained("twice", "127.0.0.1:1", false), true);
  assert.equal(p.available().length, 3);
  runtime.close();
});
