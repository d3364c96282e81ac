import assert from "node:assert/strict";
import { httpsRedirector } from "../../lib/middleware/https_redirector.ts";
import { build, fakeContext, run, testDeps } from "../_helpers/middleware.ts";
import { matchingPath } from "../../lib/proxy/path.ts";

Deno.test("httpsRedirector() sends plain HTTP to https:// with host, path and query, 301 for GET", async () => {
  const mw = await build(httpsRedirector, {});
  const r = await run(mw, fakeContext("http://Example.com:8080/a/b?x=1&y"));
  assert.equal(r.status, 301);
  // The client's port belongs to the HTTP listener; there is no HTTPS one yet, so 443.
  assert.equal(r.headers.get("location"), "https://example.com/a/b?x=1&y");
  assert.equal(await r.text(), "");
});

Deno.test("httpsRedirector() uses the HTTPS listener's port unless it is 443", async () => {
  const on8443 = await build(httpsRedirector, {}, testDeps({ httpsPort: () => 8443 }));
  const r = await run(on8443, fakeContext("http://a.com:8080/p"));
  assert.equal(r.headers.get("location"), "https://a.com:8443/p");
  const on443 = await build(httpsRedirector, {}, testDeps({ httpsPort: () => 443 }));
  const r2 = await run(on443, fakeContext("http://[2001:db8::1]:80/"));
  assert.equal(r2.headers.get("location"), "https://[2001:db8::1]/");
});

Deno.test("httpsRedirector() keeps the method with 308 for other methods, or always when configured", async () => {
  const mw = await build(httpsRedirector, {});
  const post = await run(mw, fakeContext("http://a.com/form", { method: "POST", body: "x" }));
  assert.deepEqual([post.status, post.headers.get("location")], [308, "https://a.com/form"]);
  const head = await run(mw, fakeContext("http://a.com/", { method: "HEAD" }));
  assert.equal(head.status, 301);
  const always = await build(httpsRedirector, { status: 308 });
  assert.equal((await run(always, fakeContext("http://a.com/"))).status, 308);
});

Deno.test("httpsRedirector() passes HTTPS requests and ACME challenges through", async () => {
  const mw = await build(httpsRedirector, {});
  const https = await run(mw, fakeContext("https://a.com/", { scheme: "HTTPS" }));
  assert.deepEqual([https.status, await https.text()], [200, "backend"]);
  const acme = await run(mw, fakeContext("http://a.com/.well-known/acme-challenge/tok3n"));
  assert.deepEqual([acme.status, await acme.text()], [200, "backend"]);
  const near = await run(mw, fakeContext("http://a.com/.well-known/acme-challenge"));
  assert.equal(near.status, 301);
});

Deno.test("httpsRedirector() redirects a path that is an ACME challenge's only before decoding", async () => {
  const mw = await build(httpsRedirector, {});
  // Routed as /app/secret (%2F decoded first) or kept under the challenge's folder: the proxy
  // refuses the path with 400 before any middleware, so it cannot pass over plain HTTP.
  const raw = "/.well-known/acme-challenge/..%2f..%2fapp/secret";
  assert.equal(matchingPath(raw), null);
  assert.throws(() => fakeContext(`http://a.com${raw}`), /no middleware sees/);
  // Escaped only: the challenge's folder once decoded, where the redirector lets it pass.
  const r = await run(mw, fakeContext("http://a.com/.well-known/acme-challenge/%61bc"));
  assert.equal(r.status, 200);
  const lookalike = await run(mw, fakeContext("http://a.com/.well-known/acme-challengex/abc"));
  assert.equal(lookalike.status, 301);
});

Deno.test("httpsRedirector() believes X-Forwarded-Proto: https from trusted proxies only", async () => {
  const mw = await build(httpsRedirector, {});
  const status = async (proto: string, peerTrusted: boolean) => {
    const context = fakeContext("http://a.com/p", {
      headers: { "x-forwarded-proto": proto },
      peerTrusted,
    });
    const response = await run(mw, context);
    await response.body?.cancel();
    return response.status;
  };
  // Behind a TLS terminator every request arrives as http: redirecting it would loop.
  assert.equal(await status("https", true), 200);
  assert.equal(await status(" HTTPS ", true), 200);
  assert.equal(await status("http, https", true), 200, "the nearest proxy's word counts");
  assert.equal(await status("https", false), 301, "a client cannot say it for itself");
  assert.equal(await status("http", true), 301);
  assert.equal(await status("https, http", true), 301);
});

Deno.test("httpsRedirector() answers 400 for a missing or invalid Host", async () => {
  const mw = await build(httpsRedirector, {});
  const cases: [string | null, string][] = [
    [null, "Missing Host header"],
    ["", "Missing Host header"],
    ["a.com:99999", "Invalid Host header"],
    ["a b.com", "Invalid Host header"],
    ["evil.com/x", "Invalid Host header"],
    ["a.com:80:80", "Invalid Host header"],
  ];
  for (const [host, text] of cases) {
    // The proxy's context.host: the Host field, "" when there is none.
    const r = await run(mw, { ...fakeContext("http://a.com/"), host: host ?? "" });
    assert.deepEqual([r.status, await r.text()], [400, text], `Host ${host}`);
  }
});

Deno.test("httpsRedirector() redirects an HTTP/2 request, whose host is its :authority", async () => {
  const mw = await build(httpsRedirector, {});
  // h2c: no Host field; the proxy takes the host from :authority.
  const request = new Request("http://a.com/p?q=1");
  request.headers.delete("host");
  const r = await run(mw, { ...fakeContext("http://a.com/p?q=1"), request, host: "a.com" });
  assert.deepEqual([r.status, r.headers.get("location")], [301, "https://a.com/p?q=1"]);
});
