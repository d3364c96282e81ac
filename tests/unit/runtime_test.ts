import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/load.ts";
import { defaultRuntimeDeps, Runtime } from "../../lib/runtime.ts";
import { silentLogger } from "../../lib/log.ts";
import { createCa, hasOpenssl } from "../_helpers/certs.ts";
import { fakeContext } from "../_helpers/middleware.ts";

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
[[backend_pools]]
name = "secure"
matcher = "PathPrefix('/s')"
addresses = ["127.0.0.1:9"]
schemes = ["HTTP"]
strategy = "RoundRobin"
[backend_pools.middlewares.HttpsRedirector]
[[backend_pools]]
name = "plain"
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:9"]
schemes = ["HTTP"]
strategy = "RoundRobin"
[backend_pools.middlewares.RateLimiter]
limit = 10
window_sec = 1
`,
        { source: "<test>", baseDir: ca.dir },
      );
    const options = { log: silentLogger, deps: defaultRuntimeDeps };
    const first = await Runtime.create(config(8443), 1, options);
    const second = await Runtime.create(config(9443), 2, { ...options, previous: first });
    const location = async (runtime: Runtime) => {
      const response = await runtime.pools[0].chain(
        fakeContext("http://a.test/s"),
        () => Promise.resolve(new Response("backend")),
      );
      return response.headers.get("location");
    };
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
      `http_address = "127.0.0.1:0"
[[backend_pools]]
name = "api"
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:9"]
schemes = ["HTTP"]
strategy = "RoundRobin"
${limiterFirst ? limiter + headers : headers + limiter}`,
      { source: "<test>", baseDir: "." },
    );
  };
  const options = { log: silentLogger, deps: defaultRuntimeDeps };
  const call = async (runtime: Runtime) => {
    const response = await runtime.pools[0].chain(
      fakeContext("http://a.test/"),
      () => Promise.resolve(new Response("backend")),
    );
    await response.body?.cancel();
    return `${response.status} ${response.headers.get("x-version")}`;
  };
  const first = await Runtime.create(config("1", true), 1, options);
  for (let i = 0; i < 3; i++) assert.equal(await call(first), "200 1");
  assert.equal(await call(first), "429 null", "the limiter, outermost, answered");
  // Another Headers value, and the two swapped: the limiter is the same one, its counts kept.
  const second = await Runtime.create(config("2", false), 2, { ...options, previous: first });
  assert.equal(await call(second), "429 2");
  assert.equal(second.pools[0].middlewares[1], first.pools[0].middlewares[0]);
  assert.notEqual(second.pools[0].middlewares[0], first.pools[0].middlewares[1]);
  first.retire(second);
  assert.equal(await call(second), "429 2", "retiring the old generation left the limiter open");
  second.close();
});
