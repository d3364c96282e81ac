import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import http2 from "node:http2";
import {
  get,
  poolToml,
  startBackend,
  startRawBackend,
  startStrom,
  waitFor,
} from "../_helpers/servers.ts";
import { rawExchange } from "../_helpers/raw.ts";
import { ManualClock } from "../_helpers/clock.ts";
import { hasCurl } from "../_helpers/certs.ts";
import { freePort } from "../_helpers/programs.ts";

Deno.test("RoundRobin spreads requests exactly evenly over three backends", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using c = startBackend();
  await using lb = await startStrom(poolToml([a.address, b.address, c.address]));
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const { status, text } = await get(`${lb.url}/x`);
    assert.equal(status, 200);
    counts.set(text, (counts.get(text) ?? 0) + 1);
  }
  assert.deepEqual([...counts.values()], [100, 100, 100]);
});

Deno.test("WeightedRoundRobin sends each backend its weight's share, and backups only at need", async () => {
  const a = startBackend(() => new Response("a"));
  const b = startBackend(() => new Response("b"));
  await using spare = startBackend(() => new Response("spare"));
  const weights = `{ "${a.address}" = 3, "${spare.address}" = 0 }`;
  await using lb = await startStrom(
    poolToml([a.address, b.address, spare.address], {
      strategy: `{ WeightedRoundRobin = { weights = ${weights} } }`,
    }),
  );
  const texts = [];
  for (let i = 0; i < 40; i++) texts.push((await get(`${lb.url}/`)).text);
  assert.deepEqual(texts.slice(0, 4), ["a", "a", "b", "a"]);
  assert.equal(texts.filter((t) => t === "a").length, 30);
  assert.equal(texts.filter((t) => t === "b").length, 10);
  // a and b die; once health checks took them out, the backup serves.
  await a.close();
  await b.close();
  for (let i = 0; i < 3; i++) await lb.strom.health.checkAll();
  for (let i = 0; i < 5; i++) assert.equal((await get(`${lb.url}/`)).text, "spare");
});

Deno.test("an ACME challenge waiting for its answer is answered on the HTTP port; everything else is proxied", async () => {
  await using a = startBackend((r) =>
    new Response(`backend ${r.method} ${new URL(r.url).pathname}`)
  );
  await using lb = await startStrom(poolToml([a.address]));
  const path = "/.well-known/acme-challenge/token-9";
  assert.equal((await get(`${lb.url}${path}`)).text, `backend GET ${path}`);
  lb.strom.challenges.set("token-9", "token-9.key-authorization");
  assert.equal((await get(`${lb.url}${path}`)).text, "token-9.key-authorization");
  // Other tokens, other paths and other methods still reach the backend meanwhile.
  const other = "/.well-known/acme-challenge/token-8";
  assert.equal((await get(`${lb.url}${other}`)).text, `backend GET ${other}`);
  assert.equal((await get(`${lb.url}/app`)).text, "backend GET /app");
  assert.equal((await get(`${lb.url}/app`, { method: "DELETE" })).text, "backend DELETE /app");
  lb.strom.challenges.delete("token-9");
  assert.equal((await get(`${lb.url}${path}`)).text, `backend GET ${path}`);
});

Deno.test("a backend given by host name is resolved, probed and reached", async () => {
  await using a = startBackend(() => new Response("by name"));
  await using lb = await startStrom(poolToml([`localhost:${a.port}`]));
  await lb.strom.health.checkAll();
  assert.equal(lb.strom.runtime.pools[0].backends[0].health.status, "Healthy");
  assert.equal((await get(`${lb.url}/`)).text, "by name");
});

Deno.test("the first pool in file order whose matcher matches wins; none gives 404", async () => {
  await using api = startBackend(() => new Response("api"));
  await using web = startBackend(() => new Response("web"));
  await using lb = await startStrom(
    poolToml([api.address], { matcher: "Host('example.com') && PathPrefix('/api')" }) +
      poolToml([web.address], { matcher: "Host('EXAMPLE.com') || Header('x-web', '1')" }) +
      poolToml([api.address], { matcher: "Host('port.test:80')" }),
  );
  const at = (path: string, headers: Record<string, string>) =>
    get(`${lb.url}${path}`, { headers }).then((r) => `${r.status} ${r.text}`);
  assert.equal(await at("/api/v1", { host: "example.com" }), "200 api");
  assert.equal(await at("/api/v1", { host: "example.com:8443" }), "200 api");
  assert.equal(await at("/other", { host: "Example.COM" }), "200 web");
  assert.equal(await at("/api", { host: "b.com", "x-web": "1" }), "200 web");
  assert.equal(await at("/api", { host: "b.com" }), "404 404 - page not found");
  // A Host without a port means the scheme's (80 for http).
  assert.equal(await at("/", { host: "port.test" }), "200 api");
  assert.equal(await at("/", { host: "port.test:8080" }), "404 404 - page not found");
});

Deno.test("IPHash keeps each client on one backend", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using c = startBackend();
  await using lb = await startStrom(
    `trusted_proxies = ["127.0.0.1"]\n` +
      poolToml([a.address, b.address, c.address], { strategy: '"IPHash"' }),
  );
  const used = new Set<string>();
  for (let client = 1; client <= 30; client++) {
    const headers = { "x-forwarded-for": `198.51.100.${client}` };
    const first = (await get(`${lb.url}/`, { headers })).text;
    used.add(first);
    for (let i = 0; i < 5; i++) assert.equal((await get(`${lb.url}/`, { headers })).text, first);
  }
  assert.equal(used.size, 3, "thirty clients should reach all three backends");
});

Deno.test("StickyCookie sends a client back to the same backend", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using lb = await startStrom(poolToml([a.address, b.address], {
    strategy:
      '{ StickyCookie = { cookie_name = "srv", http_only = true, secure = false, same_site = "Strict", inner = "RoundRobin" } }',
  }));
  const first = await get(`${lb.url}/`);
  const setCookie = first.headers.get("set-cookie");
  assert.ok(setCookie, "the first answer sets the cookie");
  assert.match(setCookie, /^srv=[\w-]+; Path=\/; HttpOnly; SameSite=Strict$/);
  assert.ok(!setCookie.includes(String(a.port)) && !setCookie.includes(String(b.port)));
  const cookie = `theme=dark; ${setCookie.split(";")[0]}`;
  for (let i = 0; i < 10; i++) {
    const again = await get(`${lb.url}/`, { headers: { cookie } });
    assert.equal(again.text, first.text);
    assert.equal(again.headers.get("set-cookie"), null);
  }
  const fresh = await get(`${lb.url}/`);
  assert.notEqual(fresh.text, first.text, "a client without cookie gets the next backend");
});

Deno.test("a StickyCookie inside a StickyCookie sets both cookies", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const inner =
    '{ StickyCookie = { cookie_name = "in", http_only = false, secure = false, same_site = "Lax", inner = "RoundRobin" } }';
  await using lb = await startStrom(poolToml([a.address, b.address], {
    strategy:
      `{ StickyCookie = { cookie_name = "out", http_only = true, secure = false, same_site = "Lax", inner = ${inner} } }`,
  }));
  const first = await get(`${lb.url}/`);
  const cookies = first.headers.getSetCookie();
  assert.deepEqual(cookies.map((c) => c.split("=")[0]), ["in", "out"]);
  assert.match(cookies[0], /^in=[\w-]+; Path=\/; SameSite=Lax$/);
  // The inner cookie alone keeps the client too, and the outer one is set again.
  const again = await get(`${lb.url}/`, { headers: { cookie: cookies[0].split(";")[0] } });
  assert.equal(again.text, first.text);
  assert.deepEqual(again.headers.getSetCookie(), [cookies[1]]);
});

Deno.test("LeastConnection steers away from a backend still busy with a request", async () => {
  const gate = Promise.withResolvers<void>();
  let slowHits = 0;
  await using slow = startBackend(async () => {
    slowHits++;
    await gate.promise;
    return new Response("slow");
  });
  await using fast1 = startBackend(() => new Response("fast"));
  await using fast2 = startBackend(() => new Response("fast"));
  await using lb = await startStrom(
    poolToml([slow.address, fast1.address, fast2.address], { strategy: '"LeastConnection"' }),
  );
  const pending = get(`${lb.url}/`);
  await waitFor(() => slowHits === 1, "the first request to reach the slow backend");
  for (let i = 0; i < 20; i++) assert.equal((await get(`${lb.url}/`)).text, "fast");
  assert.equal(slowHits, 1);
  gate.resolve();
  assert.equal((await pending).text, "slow");
});

Deno.test("PeakEWMA learns which backend answers slowly and sends it almost nothing", async () => {
  let slowHits = 0;
  await using slow = startBackend(async () => {
    slowHits++;
    await new Promise((r) => setTimeout(r, 300)); // the backend under test is slow
    return new Response("slow");
  });
  await using fast = startBackend(() => new Response("fast"));
  await using lb = await startStrom(
    poolToml([slow.address, fast.address], { strategy: '"PeakEWMA"' }),
  );
  const answers: string[] = [];
  for (let i = 0; i < 30; i++) answers.push((await get(`${lb.url}/`)).text);
  // Each backend is tried once while it has no answer on record; then the slow
  // one's 300 ms keep it out (RoundRobin would have sent it 15 of the 30).
  assert.ok(slowHits >= 1 && slowHits <= 2, `the slow backend got ${slowHits} requests`);
  assert.equal(answers.filter((a) => a === "fast").length, 30 - slowHits);
});

Deno.test("a refused connection gives 502 and an empty pool gives 503", async () => {
  const closed = startBackend();
  const address = closed.address;
  await closed.close();
  await using lb = await startStrom(
    poolToml([address], { matcher: "Path('/refused')" }) +
      poolToml([], { matcher: "Path('/empty')" }),
  );
  const refused = await get(`${lb.url}/refused`);
  assert.deepEqual([refused.status, refused.text], [502, "502 - Bad Gateway"]);
  const empty = await get(`${lb.url}/empty`);
  assert.deepEqual([empty.status, empty.text], [503, "503 - Service Unavailable"]);
});

Deno.test("a backend that never answers gives 504 after request_timeout", async () => {
  await using silent = startRawBackend(() => new Promise(() => {}));
  await using lb = await startStrom(
    poolToml([silent.address], { extra: 'request_timeout = "300ms"' }),
  );
  const started = performance.now();
  const r = await get(`${lb.url}/`);
  const elapsed = performance.now() - started;
  assert.deepEqual([r.status, r.text], [504, "504 - Gateway Timeout"]);
  assert.ok(elapsed >= 290 && elapsed < 3000, `took ${elapsed} ms`);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.match(metrics, /^http_timeouts_total 1$/m);
});

Deno.test("a client that stalls inside a small request body gets 408 at request_timeout", async () => {
  let reached = 0;
  await using backend = startBackend(() => {
    reached++;
    return new Response("ok");
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: 'request_timeout = "300ms"' }),
  );
  const started = performance.now();
  // 3 of 1000 announced bytes, then nothing.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  await conn.write(
    new TextEncoder().encode("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"),
  );
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  const elapsed = performance.now() - started;
  conn.close();
  const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  assert.ok(answer.startsWith("HTTP/1.1 408"), answer);
  assert.ok(answer.endsWith("\r\n\r\n408 - Request Timeout"), answer);
  assert.ok(elapsed >= 290 && elapsed < 3000, `took ${elapsed} ms`);
  assert.equal(reached, 0);
});

Deno.test("a client that stalls inside a streamed upload gets 408, and the backend is not blamed", async () => {
  await using backend = startBackend(async (request) => {
    await request.arrayBuffer().catch(() => {}); // cut off when Strom gives up
    return new Response("ok");
  });
  await using lb = await startStrom(
    poolToml([backend.address], {
      extra:
        'request_timeout = "300ms"\n[backend_pools.outlier_detection]\nconsecutive_failures = 1',
    }),
  );
  // A chunked upload (so streamed, not read in first): one chunk, then nothing.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  await conn.write(
    new TextEncoder().encode(
      `POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n${
        "u".repeat(16)
      }\r\n`,
    ),
  );
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  conn.close();
  const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  assert.ok(answer.startsWith("HTTP/1.1 408"), answer);
  const backendState = lb.strom.runtime.pools[0].backends[0];
  assert.equal(backendState.failures, 0, "the slow client is not the backend's failure");
  assert.equal(backendState.outlier.ejected, false);
  assert.equal((await get(`${lb.url}/`)).status, 200);
});

Deno.test("an upload that keeps moving is not cut off at request_timeout, which bounds its stalls", async () => {
  const clock = new ManualClock();
  let received = 0;
  await using backend = startBackend(async (request) => {
    const reader = request.body!.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
    }
    return new Response(`got ${received}`);
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: 'request_timeout = "300ms"' }),
    { deps: { clock } },
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  const send = (text: string) => conn.write(new TextEncoder().encode(text));
  const chunk = `10\r\n${"u".repeat(16)}\r\n`;
  await send(`POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}`);
  // Six more chunks, 200 ms apart: 1.2 s in all, each pause within the 300 ms.
  for (let i = 1; i <= 6; i++) {
    await waitFor(() => received === 16 * i, `chunk ${i} at the backend`);
    clock.advance(200);
    await send(chunk);
  }
  await waitFor(() => received === 16 * 7, "the last chunk at the backend");
  await send("0\r\n\r\n");
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  conn.close();
  const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  assert.ok(answer.startsWith("HTTP/1.1 200") && answer.endsWith("got 112"), answer);
});

Deno.test("a request with a transfer coding other than chunked gets 501, never reaches a backend", async () => {
  await using backend = startBackend(() => new Response("ok"));
  await using lb = await startStrom(poolToml([backend.address]));
  const answer = await rawExchange(
    Number(new URL(lb.url).port),
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n" +
      "3\r\nabc\r\n0\r\n\r\n",
  );
  assert.match(answer, /^HTTP\/1\.1 501 /);
  assert.equal(backend.requests.length, 0);
});

Deno.test("a backend that goes silent in the middle of a body is cut off after read_timeout", async () => {
  const silence = Promise.withResolvers<void>();
  await using backend = startRawBackend(async (conn) => {
    await conn.write(new TextEncoder().encode(
      `HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${"s".repeat(20_000)}`,
    ));
    await silence.promise; // the other 80,000 bytes never come
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: 'request_timeout = "5s"\nread_timeout = "300ms"' }),
  );
  try {
    const started = performance.now();
    const response = await fetch(`${lb.url}/`);
    assert.equal(response.status, 200);
    await assert.rejects(response.arrayBuffer());
    const ms = performance.now() - started;
    assert.ok(ms >= 290 && ms < 4000, `cut off after ${ms.toFixed(0)} ms`);
  } finally {
    silence.resolve();
  }
});

Deno.test("http_timeouts_total counts Strom's timeouts only, not a backend's own 504", async () => {
  await using backend = startBackend(() => new Response("upstream timed out", { status: 504 }));
  await using lb = await startStrom(poolToml([backend.address]));
  for (let i = 0; i < 2; i++) assert.equal((await get(`${lb.url}/`)).status, 504);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.match(metrics, /^http_status_codes_total\{code="504"\} 2$/m);
  assert.match(metrics, /^http_timeouts_total 0$/m);
});

Deno.test("forwarding headers: spoofed values are replaced, Host passes through", async () => {
  await using backend = startBackend((req) => Response.json(Object.fromEntries(req.headers)));
  await using lb = await startStrom(poolToml([backend.address]));
  const port = new URL(lb.url).port;
  const r = await get(`${lb.url}/`, {
    headers: {
      host: "Shop.Example:1234",
      "x-forwarded-for": "6.6.6.6",
      "x-real-ip": "6.6.6.6",
      "x-forwarded-proto": "https",
    },
  });
  const seen = JSON.parse(r.text);
  assert.equal(seen.host, "Shop.Example:1234");
  assert.equal(seen["x-forwarded-for"], "127.0.0.1");
  assert.equal(seen["x-real-ip"], "127.0.0.1");
  assert.equal(seen["x-forwarded-proto"], "http");
  assert.equal(seen["x-forwarded-host"], "Shop.Example:1234");
  assert.equal(seen["x-forwarded-port"], port);
  assert.ok(seen["x-forwarded-server"]);
});

Deno.test("forwarding headers: a trusted proxy's chain is extended", async () => {
  await using backend = startBackend((req) => Response.json(Object.fromEntries(req.headers)));
  await using lb = await startStrom(
    `trusted_proxies = ["127.0.0.0/8"]\n` + poolToml([backend.address]),
  );
  const r = await fetch(`${lb.url}/`, {
    headers: { "x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https" },
  });
  const seen = await r.json();
  assert.equal(seen["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
  assert.equal(seen["x-real-ip"], "198.51.100.7");
  assert.equal(seen["x-forwarded-proto"], "https");
});

Deno.test("hop-by-hop headers are removed in both directions", async () => {
  let seen: Record<string, string> = {};
  await using backend = startRawBackend(async (conn, head) => {
    seen = Object.fromEntries(
      head.split("\r\n").slice(1).filter((l) => l.includes(":")).map((l) => {
        const i = l.indexOf(":");
        return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
      }),
    );
    await conn.write(new TextEncoder().encode(
      "HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: secret\r\n" +
        "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok",
    ));
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const response = await rawExchange(
    Number(new URL(lb.url).port),
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\n" +
      "TE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\nX-End: 2\r\n\r\n",
  );
  for (const name of ["x-hop", "keep-alive", "te", "upgrade", "proxy-authorization"]) {
    assert.equal(seen[name], undefined, `${name} reached the backend`);
  }
  assert.equal(seen["x-end"], "2");
  const head = response.split("\r\n\r\n")[0].toLowerCase();
  assert.ok(head.startsWith("http/1.1 200"));
  assert.ok(head.includes("x-public: yes"));
  for (const name of ["x-internal", "keep-alive", "proxy-authenticate"]) {
    assert.ok(!head.includes(`${name}:`), `${name} reached the client`);
  }
});

Deno.test("Connection cannot make a message's Content-Length or Host hop-by-hop", async () => {
  let head = "";
  await using backend = startRawBackend(async (conn, got) => {
    head = got;
    await conn.write(new TextEncoder().encode(
      "HTTP/1.1 200 OK\r\nConnection: content-length, host\r\nContent-Length: 2\r\n\r\nok",
    ));
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const response = await rawExchange(
    Number(new URL(lb.url).port),
    "POST / HTTP/1.1\r\nHost: a.example\r\nConnection: close, content-length, host\r\n" +
      "Content-Length: 3\r\n\r\nabc",
  );
  const lines = head.toLowerCase().split("\r\n");
  assert.ok(lines.includes("content-length: 3"), head);
  assert.ok(!lines.includes("transfer-encoding: chunked"), head);
  assert.ok(lines.includes("host: a.example"), head);
  const answer = response.toLowerCase();
  assert.ok(answer.startsWith("http/1.1 200"), response);
  assert.ok(answer.includes("content-length: 2\r\n"), response);
  assert.ok(!answer.includes("transfer-encoding"), response);
});

Deno.test("method, path and query reach the backend byte for byte, dot-segments resolved", async () => {
  await using backend = startBackend((req) =>
    new Response(`${req.method} ${req.url.replace(/^http:\/\/[^/]+/, "")}`)
  );
  await using lb = await startStrom(
    poolToml([backend.address], { matcher: "PathPrefix('/keep')" }),
  );
  const port = Number(new URL(lb.url).port);
  const send = async (line: string) => {
    const r = await rawExchange(port, `${line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    return r.split("\r\n\r\n")[1];
  };
  assert.equal(
    await send("PURGE /keep//a/%7E/b%2Fc?q=%20a+b&q=2&&x"),
    "PURGE /keep//a/%7E/b%2Fc?q=%20a+b&q=2&&x",
  );
  assert.equal(await send("GET /keep/./a/../b?"), "GET /keep/b?");
  // A backslash is no slash to the matchers, but it is to `new URL` and IIS, where `..\` climbs:
  // backends would disagree on the path, so no pool gets it.
  for (const target of ["/keep/..\\admin", "/keep/%2e%2e\\admin", "/keep/..%5Cadmin"]) {
    const seen = await send(`GET ${target}`);
    assert.match(
      seen,
      /^400 - Bad Request: the path is ambiguous/,
      `${target} reached the backend`,
    );
  }
  // A backslash alone passes (the fetch transport's URL parser escapes it).
  assert.match(await send("GET /keep/a\\b"), /^GET \/keep\/a(\\|%5C)b$/);
  assert.equal(await send("GET /x/../keep/z"), "GET /keep/z");
  assert.equal(await send("GET /keep/../x"), "404 - page not found");
});

Deno.test("a fragment in a request target is dropped, as nginx drops it, before routing", async () => {
  // A backend's URL parser takes `#...` as a fragment: `/keep#x` is `/keep` to it, so the
  // matchers must see that path too, and the backend need not guess.
  const echo = (pool: string) =>
    startRawBackend(async (conn, head) => {
      const text = `${pool} ${head.split("\r\n")[0]}`;
      await conn.write(
        new TextEncoder().encode(
          `HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`,
        ),
      );
    });
  await using exact = echo("exact");
  await using other = echo("other");
  await using lb = await startStrom(
    poolToml([exact.address], { matcher: "Path('/keep')" }) + poolToml([other.address]),
  );
  const port = Number(new URL(lb.url).port);
  const send = async (target: string) => {
    const r = await rawExchange(
      port,
      `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    return r.split("\r\n\r\n")[1];
  };
  assert.equal(await send("/keep#frag"), "exact GET /keep HTTP/1.1");
  assert.equal(await send("/keep?q=1#frag?x"), "exact GET /keep?q=1 HTTP/1.1");
  assert.equal(await send("/keep%23frag"), "other GET /keep%23frag HTTP/1.1");
});

Deno.test("a GET or HEAD with a body gets 400 and reaches no backend; the connection stays in step", async () => {
  const seen: string[] = [];
  await using backend = startBackend((req) => {
    seen.push(`${req.method} ${new URL(req.url).pathname} ${req.headers.get("content-length")}`);
    return new Response("ok");
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const port = Number(new URL(lb.url).port);
  // Deno hands over no body for these methods: forwarding the head would announce bytes
  // that never follow (a desynchronized backend connection), so they are refused. Deno
  // skips the unread body, so the next request on the connection is read correctly.
  const after = "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (
    const request of [
      "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\nGET /smuggled HTTP/1.1\r\n",
      "GET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "HEAD /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    ]
  ) {
    const answers = (await rawExchange(port, request + after)).split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 2, answers.join(""));
    assert.ok(answers[0].startsWith("HTTP/1.1 400"), answers[0]);
    if (!request.startsWith("HEAD")) {
      assert.ok(answers[0].endsWith(
        "\r\n\r\n400 - Bad Request: Strom cannot forward the body of a GET or HEAD request\n",
      ));
    }
    assert.ok(answers[1].startsWith("HTTP/1.1 200") && answers[1].endsWith("\r\n\r\nok"));
  }
  const empty = await rawExchange(
    port,
    "GET /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
  );
  assert.ok(empty.startsWith("HTTP/1.1 200"), empty);
  assert.deepEqual(seen.slice(0, 3), ["GET /after null", "GET /after null", "GET /after null"]);
  // An empty body is no body: sent as `content-length: 0` (fetch leaves it out for a GET).
  assert.match(seen[3], /^GET \/d (0|null)$/);
  assert.equal(seen.length, 4);
});

Deno.test("an invalid Host gets 400 (RFC 9112 3.2); IPv6 literals and ports pass", async () => {
  await using backend = startBackend((req) => new Response(`host=${req.headers.get("host")}`));
  await using lb = await startStrom(poolToml([backend.address]));
  const port = Number(new URL(lb.url).port);
  const send = (host: string) =>
    rawExchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  for (const bad of ["[::1", "a.com:80:80", "a.com]", "[::1]x"]) {
    const r = await send(bad);
    assert.ok(r.startsWith("HTTP/1.1 400"), `${bad}: ${r}`);
  }
  for (const good of ["[::1]:8080", "a.com:8080", "A.Example", "10.0.0.1"]) {
    const r = await send(good);
    assert.ok(r.startsWith("HTTP/1.1 200") && r.endsWith(`host=${good}`), `${good}: ${r}`);
  }
});

Deno.test("a 101 nobody asked for, Content-Length with Transfer-Encoding, or an oversized head gives 502", async () => {
  const fields = (n: number, size: number) =>
    Array.from({ length: n }, (_, i) => `x-${i}: ${"v".repeat(size)}\r\n`).join("");
  for (
    const answer of [
      "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      // Both transports keep the same limits: a head of 64 KiB and 256 fields.
      `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${fields(1, 200_000)}\r\nok`,
      `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${fields(300, 1)}\r\nok`,
    ]
  ) {
    await using bad = startRawBackend(async (conn) => {
      await conn.write(new TextEncoder().encode(answer));
    });
    await using lb = await startStrom(poolToml([bad.address], { extra: "retries = 0" }));
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text], [502, "502 - Bad Gateway"], answer.slice(0, 60));
  }
});

Deno.test("a HEAD answer keeps the backend's length, or has none when the backend gave none", async () => {
  await using backend = startRawBackend(async (conn, head) => {
    const chunked = head.includes(" /chunked ");
    await conn.write(new TextEncoder().encode(
      chunked
        ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        : "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
    ));
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const sized = await get(`${lb.url}/sized`, { method: "HEAD" });
  assert.deepEqual([sized.status, sized.headers.get("content-length")], [200, "1234"]);
  const chunked = await rawExchange(
    Number(new URL(lb.url).port),
    "HEAD /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  assert.match(chunked, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(
    chunked.toLowerCase(),
    /content-length/,
    "no made-up Content-Length: 0 for a resource of unknown length",
  );
});

Deno.test({
  name: "an HTTP/2 (h2c) upload without Content-Length reaches the backend whole",
  ignore: !hasCurl,
  async fn() {
    await using backend = startBackend(async (req) =>
      new Response(`${req.method} ${(await req.arrayBuffer()).byteLength}`)
    );
    await using lb = await startStrom(poolToml([backend.address]));
    const upload = new Deno.Command("curl", {
      args: ["-s", "--http2-prior-knowledge", "-X", "POST", "-T", "-", `${lb.url}/up`],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = upload.stdin.getWriter();
    await writer.write(new Uint8Array(5000).fill(97));
    await writer.close();
    const out = await upload.output();
    assert.equal(new TextDecoder().decode(out.stdout), "POST 5000");
  },
});

Deno.test({
  name: "an HTTP/2 (h2c) request without a body goes upstream without one, and stays retryable",
  ignore: !hasCurl,
  async fn() {
    const seen: string[] = [];
    let first = true;
    await using backend = startBackend((req) => {
      seen.push(`${req.method} te=${req.headers.get("transfer-encoding")}`);
      return new Response("deleted");
    });
    // The first attempt dies without an answer: a DELETE with no body may go elsewhere.
    await using dying = startRawBackend((conn) => {
      first = false;
      conn.close();
      return Promise.resolve();
    });
    await using lb = await startStrom(poolToml([dying.address, backend.address]));
    const out = await new Deno.Command("curl", {
      args: ["-s", "--http2-prior-knowledge", "-X", "DELETE", `${lb.url}/item`],
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout), "deleted");
    assert.equal(first, false, "the first attempt went to the dying backend");
    assert.deepEqual(seen, ["DELETE te=null"]);
  },
});

Deno.test("an HTTP/2 (h2c) upload whose :authority is localhost:<port> reaches the backend whole", async () => {
  await using backend = startBackend(async (req) =>
    new Response(`${req.method} ${(await req.arrayBuffer()).byteLength}`)
  );
  await using lb = await startStrom(poolToml([backend.address]));
  const port = new URL(lb.url).port;
  const client = http2.connect(lb.url);
  try {
    // Deno gives this request the URL it gives an HTTP/1.0 request without Host.
    const stream = client.request({
      ":method": "POST",
      ":path": "/up",
      ":authority": `localhost:${port}`,
    });
    stream.end(new Uint8Array(500).fill(97));
    const answer = await new Promise<string>((resolve, reject) => {
      let body = "";
      stream.on("data", (chunk) => body += chunk);
      stream.on("end", () => resolve(body));
      stream.on("error", reject);
    });
    assert.equal(answer, "POST 500");
  } finally {
    client.close();
  }
});

Deno.test("an HTTP/2 HEAD gets Strom's own answers (404, 502) without content, as its 200s", async () => {
  await using backend = startBackend(() => new Response("hello"));
  const dead = `127.0.0.1:${freePort()}`;
  await using lb = await startStrom(
    poolToml([backend.address], { matcher: "PathPrefix('/ok')" }) +
      poolToml([dead], { matcher: "PathPrefix('/dead')", extra: "retries = 0" }),
  );
  const client = http2.connect(lb.url);
  const head = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const stream = client.request({ ":method": "HEAD", ":path": path });
      let status: unknown;
      let length: unknown;
      let bytes = 0;
      stream.on("response", (h) => [status, length] = [h[":status"], h["content-length"]]);
      stream.on("data", (chunk) => bytes += chunk.length);
      stream.on("end", () => resolve(`${status} ${length} ${bytes}`));
      // Before: DATA on a HEAD answer, a protocol error (ERR_HTTP2_STREAM_ERROR).
      stream.on("error", reject);
    });
  try {
    assert.equal(await head("/ok"), "200 5 0");
    assert.equal(await head("/none"), "404 20 0");
    assert.equal(await head("/dead"), "502 17 0");
  } finally {
    client.close();
  }
  // Over HTTP/1.1 as before: the length announced, no body.
  const r = await get(`${lb.url}/none`, { method: "HEAD" });
  assert.deepEqual([r.status, r.headers.get("content-length"), r.text], [404, "20", ""]);
});

Deno.test("an HTTP/2 :authority is held to Host's rules: a malformed one gets 400", async () => {
  const seen: (string | null)[] = [];
  await using backend = startBackend((req) => {
    seen.push(req.headers.get("x-forwarded-host"));
    return new Response("ok");
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const client = http2.connect(lb.url);
  const status = (authority: string) =>
    new Promise<number>((resolve, reject) => {
      const stream = client.request({ ":path": "/", ":authority": authority });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", reject);
      stream.resume();
    });
  try {
    for (const bad of ["x@b.test", "a.test@b.test", "b.test:abc", "b.test:99999", "b.test*"]) {
      assert.equal(await status(bad), 400, bad);
    }
    assert.equal(await status("b.test:8080"), 200);
    assert.deepEqual(seen, ["b.test:8080"]);
  } finally {
    client.close();
  }
});

Deno.test("an absolute-form target names the Host's authority with or without the default port", async () => {
  const seen: string[] = [];
  await using backend = startBackend((req) => {
    seen.push(`${new URL(req.url).pathname} ${req.headers.get("x-forwarded-host")}`);
    return new Response("ok");
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const port = lb.strom.port("http_address");
  const status = async (target: string, host: string) =>
    (await rawExchange(
      port,
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    ))
      .split("\r\n")[0];
  assert.equal(await status("http://a.test:80/x", "a.test"), "HTTP/1.1 200 OK");
  assert.equal(await status("http://a.test/y", "A.test:80"), "HTTP/1.1 200 OK");
  assert.equal(await status("http://a.test:/z", "a.test"), "HTTP/1.1 200 OK");
  assert.equal(await status("http://a.test:8080/x", "a.test"), "HTTP/1.1 400 Bad Request");
  assert.equal(await status("http://b.test/x", "a.test"), "HTTP/1.1 400 Bad Request");
  // A query without a path: its authority is a.test, not `a.test?q=1` (400 before).
  assert.equal(await status("http://a.test?q=1", "a.test"), "HTTP/1.1 200 OK");
  assert.equal(await status("http://a.test#f", "a.test"), "HTTP/1.1 200 OK");
  assert.deepEqual(seen.map((s) => s.split(" ")[0]), ["/x", "/y", "/z", "/", "/"]);
});

Deno.test("a backend's 204 with a Content-Length reaches an HTTP/2 client without it", async () => {
  await using backend = startRawBackend(async (conn) => {
    await conn.write(
      new TextEncoder().encode("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
    );
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const client = http2.connect(lb.url);
  try {
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const stream = client.request({ ":path": "/" });
      stream.on("response", resolve);
      stream.on("error", reject);
      // A Content-Length on a 204 is a protocol error to the client: the stream closes unanswered.
      stream.on("close", () => reject(new Error(`closed with code ${stream.rstCode}`)));
      stream.resume();
    });
    assert.equal(headers[":status"], 204);
    assert.equal(headers["content-length"], undefined);
  } finally {
    client.close();
  }
});

Deno.test("an HTTP/2 (h2c) DELETE that announces no length and sends nothing gets 408 at request_timeout", async () => {
  let reached = 0;
  await using backend = startBackend(() => {
    reached++;
    return new Response("deleted");
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: 'request_timeout = "300ms"' }),
  );
  const started = performance.now();
  const client = http2.connect(lb.url);
  try {
    // Headers without END_STREAM, and then nothing: the stream stays open.
    const stream = client.request({ ":method": "DELETE", ":path": "/item" }, { endStream: false });
    // Only a safety net, should Strom wait for ever: the test fails instead of hanging.
    const giveUp = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5000);
    const { status, body } = await new Promise<{ status: number; body: string }>(
      (resolve, reject) => {
        let status = 0;
        let body = "";
        stream.on("response", (headers) => status = Number(headers[":status"]));
        stream.on("data", (chunk) => body += chunk);
        // "end" once the answer is complete; "close" only after the safety net cancelled.
        stream.on("end", () => resolve({ status, body }));
        stream.on("close", () => resolve({ status, body }));
        stream.on("error", reject);
      },
    );
    clearTimeout(giveUp);
    const elapsed = performance.now() - started;
    assert.deepEqual([status, body], [408, "408 - Request Timeout"]);
    assert.ok(elapsed >= 290 && elapsed < 3000, `took ${elapsed} ms`);
    assert.equal(reached, 0);
  } finally {
    client.close();
  }
});

Deno.test("a gzip response reaches the client intact", async () => {
  const original = "compress me ".repeat(500);
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode(original)));
  await using backend = startBackend(() =>
    new Response(gz, { headers: { "content-encoding": "gzip", "content-type": "text/plain" } })
  );
  await using lb = await startStrom(poolToml([backend.address]));
  // Deno's fetch decodes gzip by itself, except for a Range request or `Accept-Encoding: identity`.
  for (const field of ["Accept-Encoding: gzip", "Accept-Encoding: identity", "Range: bytes=0-"]) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
    await conn.write(new TextEncoder().encode(
      `GET / HTTP/1.1\r\nHost: a\r\n${field}\r\nConnection: close\r\n\r\n`,
    ));
    const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    const split = indexOfCrlf2(bytes);
    const head = new TextDecoder().decode(bytes.subarray(0, split)).toLowerCase();
    let body: Uint8Array = bytes.subarray(split + 4);
    if (head.includes("transfer-encoding: chunked")) body = dechunk(body);
    const length = /content-length: (\d+)/.exec(head);
    if (length) assert.equal(Number(length[1]), body.length, "Content-Length matches the body");
    const text = head.includes("content-encoding: gzip")
      ? new TextDecoder().decode(gunzipSync(body))
      : new TextDecoder().decode(body);
    assert.equal(text, original, `with ${field}: the body is what its fields say`);
  }
});

function indexOfCrlf2(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  throw new Error("no end of headers");
}

function dechunk(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  let i = 0;
  while (i < bytes.length) {
    let j = i;
    while (bytes[j] !== 13) j++;
    const size = parseInt(new TextDecoder().decode(bytes.subarray(i, j)), 16);
    if (size === 0) break;
    out.push(...bytes.subarray(j + 2, j + 2 + size));
    i = j + 2 + size + 2;
  }
  return new Uint8Array(out);
}

Deno.test("request and response bodies stream through", async () => {
  await using echo = startBackend((req) => new Response(req.body));
  await using lb = await startStrom(poolToml([echo.address]));
  const payload = crypto.getRandomValues(new Uint8Array(60_000));
  const r = await fetch(`${lb.url}/upload`, { method: "POST", body: payload });
  assert.equal(r.status, 200);
  assert.deepEqual(new Uint8Array(await r.arrayBuffer()), payload);
});

Deno.test("a client that disconnects cancels the upstream request", async () => {
  let upstreamAborted = false;
  let reached = false;
  await using backend = startBackend((req) => {
    reached = true;
    const { promise, resolve } = Promise.withResolvers<Response>();
    req.signal.addEventListener("abort", () => {
      upstreamAborted = true;
      resolve(new Response("too late"));
    });
    return promise;
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const abort = new AbortController();
  const pending = fetch(`${lb.url}/`, { signal: abort.signal }).catch(() => "aborted");
  await waitFor(() => reached, "the request to reach the backend");
  abort.abort();
  assert.equal(await pending, "aborted");
  await waitFor(() => upstreamAborted, "the backend to see the upstream request cancelled");
  await waitFor(async () => {
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    return pools[0].backends[0].inFlight === 0;
  }, "the in-flight count to drop back to zero");
});

Deno.test("IPv4 clients of a dual-stack listener appear as plain IPv4", async () => {
  await using backend = startBackend((req) => new Response(req.headers.get("x-forwarded-for")));
  await using lb = await startStrom(`http_address = "[::]:0"\n` + poolToml([backend.address]));
  const port = lb.strom.port("http_address");
  assert.equal((await get(`http://127.0.0.1:${port}/`)).text, "127.0.0.1");
});

Deno.test("a request without Host matches no Host matcher and reaches its backend with the backend's address as Host", async () => {
  const seen: (string | null)[] = [];
  await using named = startBackend(() => new Response("named"));
  await using other = startBackend((req) => {
    seen.push(req.headers.get("host"), req.headers.get("x-forwarded-host"));
    return new Response("other");
  });
  await using lb = await startStrom(
    poolToml([named.address], { matcher: "Host('localhost')" }) + poolToml([other.address]),
  );
  const port = Number(new URL(lb.url).port);
  // Deno makes up `localhost:<port>` as the URL's authority of such a request: it must not
  // count as a Host (RustStrom: a missing Host never matches), nor reach the backend.
  for (
    const request of ["GET /a HTTP/1.0\r\n\r\n", "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"]
  ) {
    const response = await rawExchange(port, request);
    assert.match(response, /^HTTP\/1\.[01] 200 /, request);
    assert.ok(response.endsWith("\r\n\r\nother"), response);
  }
  assert.deepEqual(seen, [other.address, null, other.address, null]);
  // Without a length it has no body: answered at once (not after request_timeout), none sent on.
  const started = performance.now();
  const post = await rawExchange(port, "POST /p HTTP/1.0\r\n\r\n");
  assert.ok(post.endsWith("\r\n\r\nother"), post);
  assert.ok(performance.now() - started < 5000);
  const named200 = await rawExchange(
    port,
    "GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
  );
  assert.ok(named200.endsWith("\r\n\r\nnamed"), named200);
  // A WebSocket handshake must name its host (RFC 6455 4.1).
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(
      "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf);
    assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 400 /);
  } finally {
    conn.close();
  }
});

Deno.test("a streamed upload an attempt has read from is never sent again, empty, to another backend", async () => {
  let halfSent: () => void = () => {};
  let broke = 0;
  // Takes the head, lets body bytes pile up unread, then closes: the kernel resets the connection.
  await using breaks = startRawBackend(async () => {
    broke++;
    await new Promise<void>((resolve) => halfSent = resolve);
  });
  const received: number[] = [];
  await using counts = startBackend(async (req) => {
    received.push((await req.arrayBuffer()).byteLength);
    return new Response("stored", { status: 201 });
  });
  await using lb = await startStrom(
    poolToml([breaks.address, counts.address], { extra: "retries = 2" }),
  );
  const chunk = new Uint8Array(16 * 1024).fill(120);
  for (let i = 0; i < 2; i++) {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 12) return controller.close();
        if (++sent === 6) halfSent();
        await new Promise((r) => setTimeout(r, 2));
        controller.enqueue(chunk);
      },
    });
    const response = await fetch(`${lb.url}/file`, { method: "PUT", body }).catch((e) => e);
    if (response instanceof Response) await response.body?.cancel();
  }
  assert.equal(broke, 1, "one upload went to the backend that breaks");
  assert.deepEqual(received, [12 * 16 * 1024], "the other was stored whole, and nothing else");
});

Deno.test("a client that abandons its upload is not counted against the backend", async () => {
  let arrived: () => void = () => {};
  const started = new Promise<void>((resolve) => arrived = resolve);
  await using backend = startBackend(async (req) => {
    arrived();
    await req.arrayBuffer().catch(() => {});
    return new Response("ok");
  });
  await using lb = await startStrom(
    poolToml([backend.address], {
      extra: "[backend_pools.outlier_detection]\nconsecutive_failures = 1",
    }),
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.strom.port("http_address") });
  await conn.write(
    new TextEncoder().encode("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc"),
  );
  await started; // the backend is reading the body
  conn.close();
  const [state] = lb.strom.runtime.pools[0].backends;
  await waitFor(() => state.inFlight === 0, "the exchange to end");
  assert.equal(state.failures, 0);
  assert.equal(state.outlier.ejected, false);
});

Deno.test("PeakEWMA does not favour a backend that fails fast", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${closed.addr.port}`; // refuses connections at once
  closed.close();
  await using lb = await startStrom(
    poolToml([dead, a.address, b.address], {
      strategy: "{ PeakEWMA = {} }",
      // Passive ejection off: the strategy alone must keep traffic away from it.
      extra: "retries = 2\n[backend_pools.outlier_detection]\nconsecutive_failures = 0",
    }),
  );
  for (let i = 0; i < 200; i++) assert.equal((await get(`${lb.url}/`)).status, 200);
  const attempts = lb.strom.runtime.pools[0].backends.find((x) => x.id === dead)!.requests;
  assert.ok(attempts < 20, `the failing backend got ${attempts} of 200 requests`);
});

Deno.test("PeakEWMA does not favour a backend that answers 500 at once", async () => {
  await using a = startBackend(async () => {
    await new Promise((r) => setTimeout(r, 5));
    return new Response("ok");
  });
  await using failing = startBackend(() => new Response("broken", { status: 500 }));
  // No health checks (they would take it out): the strategy alone must keep traffic away from it.
  await using lb = await startStrom(
    "[health_interval]\ncheck_every = 0\n" +
      poolToml([failing.address, a.address], { strategy: "{ PeakEWMA = {} }" }),
  );
  let errors = 0;
  for (let i = 0; i < 60; i++) if ((await get(`${lb.url}/`)).status === 500) errors++;
  assert.ok(errors < 15, `the backend answering 500 got ${errors} of 60 requests`);
});

Deno.test("a request a primary refuses is retried on a weight-0 backup", async () => {
  await using backup = startBackend(() => new Response("backup"));
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${closed.addr.port}`; // refuses connections at once
  closed.close();
  await using lb = await startStrom(
    "[health_interval]\ncheck_every = 0\n" +
      poolToml([dead, backup.address], {
        strategy: `{ WeightedRoundRobin = { weights = { "${backup.address}" = 0 } } }`,
      }),
  );
  // The primary is still in rotation (no check, no ejection yet): each request tries it first.
  for (let i = 0; i < 3; i++) {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text], [200, "backup"], `request ${i}`);
  }
});

Deno.test("an HTTP/2 (h2c) request reset at once lets its backend go, whatever the moment", async () => {
  let started = 0;
  const outcomes: string[] = [];
  await using backend = startBackend(async (req) => {
    started++;
    const aborted = new Promise<string>((resolve) =>
      req.signal.addEventListener("abort", () => resolve("aborted"))
    );
    const answered = new Promise<string>((resolve) => setTimeout(() => resolve("answered"), 3000));
    outcomes.push(await Promise.race([aborted, answered]));
    return new Response("late");
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const client = http2.connect(lb.url);
  try {
    // Deno never aborts the signal of a stream reset before it is first read: reset within
    // Strom's 20 ms before it watches the client, such a request held its backend to the end.
    const resets = Array.from({ length: 5 }, (_, i) => {
      const stream = client.request({ ":method": "GET", ":path": `/${i}`, ":authority": "a.test" });
      stream.on("error", () => {});
      return new Promise<void>((resolve) => {
        stream.on("close", resolve);
        setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5 + i * 3);
      });
    });
    await Promise.all(resets);
    await waitFor(() => started > 0, "a request to reach the backend");
    const [target] = lb.strom.runtime.pools[0].backends;
    await waitFor(
      () => outcomes.length === started && target.inFlight === 0,
      "the backend's requests to end",
      2000,
    );
    assert.deepEqual(outcomes, Array(started).fill("aborted"));
  } finally {
    client.close();
  }
});
