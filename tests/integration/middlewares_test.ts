import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import bcrypt from "bcryptjs";
import { get, poolToml, startBackend, startStrom } from "../_helpers/servers.ts";
import { rawExchange } from "../_helpers/raw.ts";
import { freePort } from "../_helpers/programs.ts";
import { hasSlapd, LDAP_USERS, startSlapd } from "../_helpers/ldap.ts";
import { hasRedis, startRedis } from "../_helpers/redis.ts";

const basic = (credentials: string) => ({ authorization: "Basic " + btoa(credentials) });

/** A temp folder with an htpasswd file (alice:secret) and error pages; removed on dispose. */
async function fixtures(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "strom-mw-" });
  await Deno.writeTextFile(`${dir}/users`, `alice:${bcrypt.hashSync("secret", 4)}\n`);
  await Deno.mkdir(`${dir}/pages`);
  await Deno.writeTextFile(`${dir}/pages/502.html`, "<h1>We are fixing it</h1>\n".repeat(100));
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** A pool over `address` with the given middleware tables, in file order. */
function withMiddlewares(address: string, tables: string): string {
  return poolToml([address]) + tables;
}

Deno.test("RateLimiter before BasicAuth counts unauthenticated attempts; after it, it does not", async () => {
  await using files = await fixtures();
  await using backend = startBackend(() => new Response("in"));
  const limiter = `[backend_pools.middlewares.RateLimiter]\nlimit = 3\nwindow_sec = 60\n`;
  const auth = `[backend_pools.middlewares.BasicAuth]\nhtpasswd = "${files.dir}/users"\n`;
  const statuses = async (url: string) => {
    const out = [];
    for (const credentials of ["alice:guess1", "alice:guess2", "alice:guess3", "alice:secret"]) {
      out.push((await get(`${url}/`, { headers: basic(credentials) })).status);
    }
    return out;
  };
  {
    await using lb = await startStrom(withMiddlewares(backend.address, limiter + auth));
    assert.deepEqual(await statuses(lb.url), [401, 401, 401, 429]);
  }
  {
    await using lb = await startStrom(withMiddlewares(backend.address, auth + limiter));
    assert.deepEqual(await statuses(lb.url), [401, 401, 401, 200]);
  }
});

Deno.test("Compression applies to a custom error page for Strom's own 502", async () => {
  await using files = await fixtures();
  const closed = `127.0.0.1:${freePort()}`; // nothing listens: connect refused, 502
  await using lb = await startStrom(withMiddlewares(
    closed,
    `[backend_pools.middlewares.Compression]
[backend_pools.middlewares.CustomErrorPages]
location = "${files.dir}/pages"
errors = [502]
`,
  ));
  const port = new URL(lb.url).port;
  const raw = await rawExchange(
    Number(port),
    `GET / HTTP/1.1\r\nHost: a.com\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
  );
  const [head] = raw.split("\r\n\r\n");
  assert.match(head, /^HTTP\/1\.1 502 /);
  assert.match(head, /\r\ncontent-encoding: gzip\r\n/i);
  assert.match(head, /\r\ncontent-type: text\/html; charset=utf-8\r\n/i);
  assert.match(head, /\r\nvary: Accept-Encoding\r\n/i);
  // Without compression the same page comes as is, with its exact length.
  const plain = await get(`${lb.url}/`, { headers: { "accept-encoding": "identity" } });
  assert.equal(plain.status, 502);
  assert.equal(plain.text, "<h1>We are fixing it</h1>\n".repeat(100));
  assert.equal(plain.headers.get("content-length"), String(plain.text.length));
});

/** Sends a gzip-accepting GET to `lb` and splits the raw answer into head text and body bytes. */
async function rawGzipGet(
  lb: { url: string },
  path = "/",
): Promise<{ head: string; body: Uint8Array }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  await conn.write(
    new TextEncoder().encode(
      `GET ${path} HTTP/1.1\r\nHost: a.com\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
    ),
  );
  const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const split = bytes.findIndex((_, i) =>
    bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10
  );
  return {
    head: new TextDecoder().decode(bytes.subarray(0, split)),
    body: bytes.subarray(split + 4),
  };
}

Deno.test("Compression gzips a backend answer on the wire, with its new length", async () => {
  const page = "<p>compress me</p>".repeat(500);
  await using backend = startBackend(() =>
    new Response(page, { headers: { "content-type": "text/html" } })
  );
  await using lb = await startStrom(
    withMiddlewares(backend.address, "[backend_pools.middlewares.Compression]\n"),
  );
  const { head, body } = await rawGzipGet(lb);
  assert.match(head, /\r\ncontent-encoding: gzip\r\n/i);
  // A body of known length is compressed whole and sent with its new length.
  assert.match(head, new RegExp(`\r\ncontent-length: ${body.length}\r\n`, "i"));
  assert.doesNotMatch(head, /transfer-encoding/i);
  assert.equal(new TextDecoder().decode(gunzipSync(body)), page);
});

Deno.test("Compression streams a backend answer of unknown length, chunked", async () => {
  const part = "<p>compress me</p>".repeat(500);
  await using backend = startBackend(() => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ === 3) return controller.close();
        controller.enqueue(new TextEncoder().encode(part));
      },
    });
    return new Response(body, { headers: { "content-type": "text/html" } });
  });
  await using lb = await startStrom(
    withMiddlewares(backend.address, "[backend_pools.middlewares.Compression]\n"),
  );
  const { head, body } = await rawGzipGet(lb);
  assert.match(head, /\r\ncontent-encoding: gzip\r\n/i);
  assert.match(head, /\r\ntransfer-encoding: chunked\r\n/i);
  assert.equal(new TextDecoder().decode(gunzipSync(dechunk(body))), part.repeat(3));
});

Deno.test("bytes_out counts what the client got: a compressed answer, a custom error page", async () => {
  await using files = await fixtures();
  await Deno.writeTextFile(`${files.dir}/pages/404.html`, "gone\n");
  const big = "<p>compress me</p>".repeat(8000); // 144 KB: compressed as a stream
  await using backend = startBackend((request) => {
    const path = new URL(request.url).pathname;
    if (path === "/missing") return new Response("x".repeat(1900), { status: 404 });
    return new Response(path === "/big" ? big : big.slice(0, 9000), {
      headers: { "content-type": "text/html" },
    });
  });
  const log = `${files.dir}/access.log`;
  await using lb = await startStrom(
    `[access_log]\nformat = "json"\npath = "${log}"\n` +
      withMiddlewares(
        backend.address,
        `[backend_pools.middlewares.Compression]
[backend_pools.middlewares.CustomErrorPages]
location = "${files.dir}/pages"
errors = [404]
`,
      ),
  );
  const received: number[] = [];
  for (const path of ["/big", "/small", "/missing"]) {
    const { head, body } = await rawGzipGet(lb, path);
    received.push(
      /\r\ntransfer-encoding: chunked/i.test(head) ? dechunk(body).length : body.length,
    );
  }
  assert.ok(received[0] < big.length / 10 && received[1] < 9000 / 10, received.join(" "));
  assert.equal(received[2], 5);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  await lb.strom.shutdown(1000);
  const lines = (await Deno.readTextFile(log)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.bytes_out), received);
  const out = /bytes_transferred_total\{direction="out"\} (\d+)/.exec(metrics)?.[1];
  assert.equal(Number(out), received[0] + received[1] + received[2]);
});

/** Decodes a chunked body. */
function dechunk(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  let i = 0;
  while (true) {
    const lineEnd = bytes.indexOf(13, i);
    const size = parseInt(new TextDecoder().decode(bytes.subarray(i, lineEnd)), 16);
    if (size === 0) return new Uint8Array(out);
    out.push(...bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    i = lineEnd + 2 + size + 2;
  }
}

Deno.test("MaxBodySize refuses a large Content-Length before the backend, and cuts off a chunked body", async () => {
  await using backend = startBackend(async (request) => {
    const body = await request.arrayBuffer().catch(() => null); // cut off: the upload failed
    return new Response(body === null ? "cut off" : `got ${body.byteLength}`);
  });
  await using lb = await startStrom(
    withMiddlewares(backend.address, "[backend_pools.middlewares.MaxBodySize]\nlimit = 1000\n"),
  );
  const declared = await get(`${lb.url}/`, { method: "POST", body: "x".repeat(1001) });
  assert.equal(declared.status, 413);
  assert.equal(backend.requests.length, 0, "the backend must not be contacted");
  const fits = await get(`${lb.url}/`, { method: "POST", body: "x".repeat(1000) });
  assert.deepEqual([fits.status, fits.text], [200, "got 1000"]);
  // A chunked upload: RustStrom passed any size through.
  const port = Number(new URL(lb.url).port);
  const chunk = `200\r\n${"y".repeat(0x200)}\r\n`;
  const raw = await rawExchange(
    port,
    `POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
      chunk.repeat(4) + "0\r\n\r\n",
  );
  assert.match(raw, /^HTTP\/1\.1 413 /);
  const pool = lb.strom.runtime.pools[0];
  assert.equal(
    pool.backends[0].failures,
    0,
    "the client's oversized body is not the backend's failure",
  );
  const small = await rawExchange(
    port,
    `POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
      chunk + "0\r\n\r\n",
  );
  assert.match(small, /^HTTP\/1\.1 200 [^]*got 512$/);
});

Deno.test("HttpsRedirector and Headers work through Strom", async () => {
  await using backend = startBackend((request) =>
    new Response(request.headers.get("x-env") ?? "none", { headers: { server: "leaky/1.0" } })
  );
  await using lb = await startStrom(
    poolToml([backend.address], {
      matcher: "PathPrefix('/secure')",
      extra: "[backend_pools.middlewares.HttpsRedirector]",
    }) + poolToml([backend.address], {
      extra: `[backend_pools.middlewares.Headers]
request = { set = { "X-Env" = "prod" } }
response = { remove = ["Server"], set = { "X-Frame-Options" = "DENY" } }
`,
    }),
  );
  const redirect = await get(`${lb.url}/secure/page?a=1`, {
    headers: { host: "shop.example" },
    redirect: "manual",
  });
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get("location"), "https://shop.example/secure/page?a=1");
  const edited = await get(`${lb.url}/other`, { headers: { "x-env": "dev" } });
  assert.equal(edited.text, "prod");
  assert.equal(edited.headers.get("server"), null);
  assert.equal(edited.headers.get("x-frame-options"), "DENY");
});

Deno.test({
  name: "Authentication checks Basic credentials against a real slapd through Strom",
  ignore: !hasSlapd,
  async fn() {
    await using ldap = await startSlapd();
    await using backend = startBackend((request) =>
      new Response(request.headers.get("authorization") ?? "no authorization")
    );
    await using lb = await startStrom(withMiddlewares(
      backend.address,
      `[backend_pools.middlewares.Authentication]
ldap_address = "${ldap.url}"
user_directory = "ou=people,dc=example,dc=com"
rdn_identifier = "uid"
recursive = true
realm = "Example staff"
`,
    ));
    const ok = await get(`${lb.url}/`, { headers: basic(`carol:${LDAP_USERS.carol.password}`) });
    assert.deepEqual([ok.status, ok.text], [200, "no authorization"]);
    const refused = await get(`${lb.url}/`, { headers: basic("carol:nope") });
    assert.equal(refused.status, 401);
    assert.equal(
      refused.headers.get("www-authenticate"),
      'Basic realm="Example staff", charset="UTF-8"',
    );
  },
});

Deno.test({
  name:
    "two Strom instances sharing a Redis-backed limit of 100 per 10 s let exactly 100 requests through",
  ignore: !hasRedis,
  async fn() {
    await using redis = await startRedis();
    await using backend = startBackend(() => new Response("ok"));
    const config = withMiddlewares(
      backend.address,
      `[backend_pools.middlewares.RateLimiter]
limit = 100
window_sec = 10
store = "${redis.url}"
on_store_error = "deny"
`,
    );
    await using one = await startStrom(config);
    await using two = await startStrom(config);
    const counts = new Map<number, number>();
    // 150 requests, ten at a time, alternating between the two instances.
    for (let batch = 0; batch < 15; batch++) {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => get(`${(i % 2 ? one : two).url}/`)),
      );
      for (const { status } of results) counts.set(status, (counts.get(status) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { 200: 100, 429: 50 });
  },
});

Deno.test("StripPrefix: the backend gets the path without the prefix, the prefix in a header", async () => {
  const seen: string[] = [];
  await using backend = startBackend((req) => {
    const url = new URL(req.url);
    seen.push(`${url.pathname}${url.search} ${req.headers.get("x-forwarded-prefix")}`);
    return new Response("ok");
  });
  await using lb = await startStrom(
    poolToml([backend.address], { matcher: "PathPrefix('/api')" }) +
      `[backend_pools.middlewares.StripPrefix]\nprefixes = ["/api"]\n`,
  );
  assert.equal((await get(`${lb.url}/api/users?id=7`)).status, 200);
  assert.equal((await get(`${lb.url}/api`)).status, 200);
  assert.equal((await get(`${lb.url}/apis`)).status, 200);
  assert.deepEqual(seen, ["/users?id=7 /api", "/ /api", "/apis null"]);
});

Deno.test("a path spelled another way reaches no other pool than its plain spelling", async () => {
  await using backend = startBackend((req) => new Response(new URL(req.url).pathname));
  await using lb = await startStrom(
    poolToml([backend.address], {
      matcher: "PathPrefix('/admin')",
      extra: `[backend_pools.middlewares.IpFilter]\nallow = ["192.0.2.0/24"]\n`,
    }) + poolToml([backend.address]),
  );
  const port = Number(new URL(lb.url).port);
  const send = async (target: string) =>
    (await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`))
      .split("\r\n")[0];
  for (const target of ["/admin", "/%61dmin", "/ad%6Din/x", "//admin", "/.//admin", "/%2Fadmin"]) {
    assert.equal(await send(target), "HTTP/1.1 403 Forbidden", target);
  }
  // Decoded once (a backend gets `%2e%2e` and stays under /admin); path parameters dropped, as
  // Tomcat and Jetty drop them.
  for (const target of ["/admin/%252e%252e/x", "/admin;x/secret", "/;x/admin/a", "/admin%3Bx"]) {
    assert.equal(await send(target), "HTTP/1.1 403 Forbidden", target);
  }
  // Backends disagree on these (is `..%2F` a dot-segment?): no pool is safe to pick.
  for (const target of ["/admin/..%2Fsecret", "/admin/%2e%2e%2fsecret", "/x/..;/admin"]) {
    assert.equal(await send(target), "HTTP/1.1 400 Bad Request", target);
  }
  assert.equal(await send("/public"), "HTTP/1.1 200 OK");
  assert.equal(backend.requests.length, 1, "only /public reached the backend");
});

Deno.test("IpFilter refuses clients outside its networks with 403, using trusted_proxies", async () => {
  await using backend = startBackend(() => new Response("in"));
  const filter = `[backend_pools.middlewares.IpFilter]\nallow = ["192.0.2.0/24"]\n`;
  {
    await using lb = await startStrom(withMiddlewares(backend.address, filter));
    const r = await get(`${lb.url}/`, { headers: { "x-forwarded-for": "192.0.2.5" } });
    assert.equal(r.status, 403, "an untrusted peer cannot claim an allowed address");
    assert.equal(backend.requests.length, 0);
  }
  {
    await using lb = await startStrom(
      `trusted_proxies = ["127.0.0.1"]\n` + withMiddlewares(backend.address, filter),
    );
    const allowed = await get(`${lb.url}/`, { headers: { "x-forwarded-for": "192.0.2.5" } });
    const refused = await get(`${lb.url}/`, { headers: { "x-forwarded-for": "203.0.113.5" } });
    assert.deepEqual([allowed.status, allowed.text, refused.status], [200, "in", 403]);
  }
});
