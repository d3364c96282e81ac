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
