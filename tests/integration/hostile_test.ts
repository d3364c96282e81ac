// Hostile clients and backends: every bad request gets a 4xx or a closed
// connection within a bounded time, no backend sees an ambiguous request, and
// normal clients keep being served.

import assert from "node:assert/strict";
import {
  get,
  poolToml,
  startBackend,
  startRawBackend,
  startStrom,
  waitFor,
} from "../_helpers/servers.ts";
import { StromProcess } from "../_helpers/process.ts";
import { createCa, hasOpenssl } from "../_helpers/certs.ts";
import { createSocketTable } from "../../lib/net/sockets.ts";
import { createLogger } from "../../lib/log.ts";
import { captureLog } from "../_helpers/clock.ts";
import { rawExchange } from "../_helpers/raw.ts";

const enc = new TextEncoder();

/** Sends raw bytes; returns the status line (or "(closed)") and how long it took. */
async function exchange(
  port: number,
  raw: string,
  limitMs = 3000,
): Promise<{ answer: string; ms: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  const timer = setTimeout(() => conn.close(), limitMs);
  let answer: string;
  try {
    await conn.write(enc.encode(raw)).catch(() => 0);
    const buf = new Uint8Array(512);
    const n = await conn.read(buf);
    answer = n === null
      ? "(closed)"
      : new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
  } catch {
    answer = "(closed)";
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return { answer, ms: performance.now() - started };
}

const HOSTILE: [string, string][] = [
  ["invalid header name", "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"],
  ["control character in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n"],
  ["absolute-form naming another host", "GET http://evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n"],
  ["CONNECT (authority-form)", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"],
  ["CONNECT to another host", "CONNECT b.example:443 HTTP/1.1\r\nHost: a\r\n\r\n"],
  ["a 64 KiB header line", `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(65536)}\r\n\r\n`],
  [
    "1,000 headers",
    "GET / HTTP/1.1\r\nHost: a\r\n" +
    Array.from({ length: 1000 }, (_, i) => `X-H${i}: v\r\n`).join("") +
    "\r\n",
  ],
  [
    "conflicting Content-Length",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  ],
  [
    "doubled Content-Length",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
  ],
  [
    "Content-Length with chunked",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  ],
  [
    "bad chunk size",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
  ],
  ["bare LF line ends with a space before the colon", "GET / HTTP/1.1\nHost : a\n\n"],
  // Read as a list by backends that take X-Forwarded-Host's first entry, while no Host('a') matched.
  ["a list of hosts", "GET / HTTP/1.1\r\nHost: a,evil.example\r\n\r\n"],
  ["a host with a parameter", "GET / HTTP/1.1\r\nHost: a;x\r\n\r\n"],
  // A backend that takes `head` for HEAD would send no body where Strom waits for one (nginx: 400).
  ["a method in lower case", "head / HTTP/1.1\r\nHost: a\r\n\r\n"],
  // Backends resolve these to different paths (`..%2F` decoded first or not; Tomcat's `..;`).
  ["a dot-segment made by an escaped slash", "GET /a/..%2Fb HTTP/1.1\r\nHost: a\r\n\r\n"],
  ["a dot-segment with a path parameter", "GET /a/..;/b HTTP/1.1\r\nHost: a\r\n\r\n"],
];

Deno.test("hostile requests get a 4xx or a closed connection and never reach a backend", async () => {
  const seen: string[] = [];
  await using backend = startBackend((req) => {
    seen.push(`${req.method} ${req.url}`);
    return new Response("ok");
  });
  await using lb = await startStrom(poolToml([backend.address]));
  const port = lb.strom.port("http_address");
  for (const [name, raw] of HOSTILE) {
    const { answer, ms } = await exchange(port, raw);
    const refused = name.startsWith("CONNECT") ? /^HTTP\/1\.1 501 / : /^HTTP\/1\.[01] 4\d\d/;
    assert.ok(refused.test(answer) || answer === "(closed)", `${name}: ${answer}`);
    assert.ok(ms < 3000, `${name} took ${ms} ms`);
    assert.equal((await get(`${lb.url}/normal`)).status, 200, `a normal client after: ${name}`);
  }
  assert.deepEqual(seen, Array(HOSTILE.length).fill(`GET http://127.0.0.1:${port}/normal`));
});

Deno.test("each of Strom's own 400s says why, in the body and in the debug log", async () => {
  await using backend = startBackend(() => new Response("ok"));
  const log = captureLog();
  await using lb = await startStrom(poolToml([backend.address]), {
    log: createLogger("debug", { sink: log.sink }),
  });
  const port = lb.strom.port("http_address");
  const upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
  const cases: [string, string, string][] = [
    ["GET http://b/ HTTP/1.1\r\nHost: a", "another host than the Host field", "conflicting-host"],
    ["GET / HTTP/1.1\r\nHost: a;x", "not a host name", "invalid-host"],
    ["GET / HTTP/1.1\r\nHost: a/b", "not a host name", "invalid-host"],
    ["GET / HTTP/1.1\r\nHost: ", "not a host name", "invalid-host"],
    ["head / HTTP/1.1\r\nHost: a", "methods are case-sensitive", "lower-case-method"],
    ["GET /a/..%2Fb HTTP/1.1\r\nHost: a", "the path is ambiguous", "ambiguous-path"],
    [
      `GET / HTTP/1.0\r\n${upgrade}Sec-WebSocket-Version: 13\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "a WebSocket handshake needs a Host",
      "websocket-without-host",
    ],
    [
      `GET / HTTP/1.1\r\nHost: a\r\n${upgrade}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x`,
      "malformed WebSocket handshake",
      "websocket-handshake",
    ],
  ];
  for (const [head, text, why] of cases) {
    const answer = await rawExchange(port, `${head}\r\nConnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.[01] 400 /, head);
    const body = answer.slice(answer.indexOf("\r\n\r\n") + 4);
    assert.ok(body.startsWith("400 - Bad Request: ") && body.includes(text), `${head}: ${answer}`);
    assert.ok(log.lines.some((l) => l.includes(`with 400: ${why}`)), `${why}: ${log.lines}`);
  }
});

Deno.test("many connections trickling their headers do not stop normal clients and are closed in bounded time", async () => {
  const seen: string[] = [];
  await using backend = startBackend((req) => {
    seen.push(new URL(req.url).pathname);
    return new Response("ok");
  });
  await using lb = await startStrom(`client_header_timeout = "2s"\n` + poolToml([backend.address]));
  const port = lb.strom.port("http_address");
  // 200 slowloris clients: a request line and part of the head, then a field
  // now and then, never the blank line that ends the head.
  const opened = performance.now();
  const slow = await Promise.all(
    Array.from({ length: 200 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  try {
    for (const conn of slow) await conn.write(enc.encode("GET /slow HTTP/1.1\r\nHost: a\r\n"));
    for (let round = 0; round < 3; round++) {
      for (const conn of slow) await conn.write(enc.encode(`X-Trickle-${round}: x\r\n`));
      const started = performance.now();
      assert.equal((await get(`${lb.url}/normal`)).status, 200);
      assert.ok(performance.now() - started < 2000, "a normal request is answered promptly");
    }
    if (Deno.build.os === "linux") {
      // Still trickling, each is closed by client_header_timeout (lib/net/client_timeouts.ts).
      const trickle = setInterval(() => {
        for (const conn of slow) conn.write(enc.encode("X-More: x\r\n")).catch(() => {});
      }, 300);
      const times = await Promise.all(slow.map((conn) => closedAfter(conn, opened)));
      clearInterval(trickle);
      const [first, last] = [Math.min(...times), Math.max(...times)];
      // The limit (2 s) plus up to two rounds; rounds come every second, further apart when a
      // loaded machine makes them slow (lib/net/client_timeouts.ts), as in a parallel test run.
      assert.ok(first >= 1900 && last < 8000, `closed between ${first} and ${last} ms`);
    }
  } finally {
    for (const conn of slow) {
      try {
        conn.close();
      } catch { /* closed above */ }
    }
  }
  assert.deepEqual(seen, ["/normal", "/normal", "/normal"], "no partial head reaches a backend");
});

/** Reads until the peer closes; how long that took from `since` (the guard closes it after 10 s). */
async function closedAfter(conn: Deno.Conn, since: number): Promise<number> {
  const guard = setTimeout(() => conn.close(), 10_000);
  const buf = new Uint8Array(4096);
  try {
    while ((await conn.read(buf)) !== null) { /* the answer to a request, if any */ }
  } catch { /* reset, or the guard */ }
  clearTimeout(guard);
  try {
    conn.close();
  } catch { /* closed */ }
  return performance.now() - since;
}

Deno.test({
  name:
    "silent, slowloris and idle clients are closed after their timeouts; a long request and a quiet WebSocket are not",
  ignore: Deno.build.os !== "linux",
  async fn() {
    let release!: () => void;
    const released = new Promise<void>((r) => release = r);
    await using backend = startBackend(async (req) => {
      if (req.headers.get("upgrade") === "websocket") {
        const { socket, response } = Deno.upgradeWebSocket(req);
        socket.onmessage = (e) => socket.send(`echo ${e.data}`);
        return response;
      }
      if (new URL(req.url).pathname === "/long") await released;
      return new Response("ok");
    });
    await using lb = await startStrom(
      `client_header_timeout = "1s"\nclient_idle_timeout = "2s"\n` + poolToml([backend.address]),
    );
    const port = lb.strom.port("http_address");
    const connect = () => Deno.connect({ hostname: "127.0.0.1", port });
    // Served once, then idle.
    const idle = await connect();
    await idle.write(enc.encode("GET /once HTTP/1.1\r\nHost: a\r\n\r\n"));
    await idle.read(new Uint8Array(4096));
    const idleSince = performance.now();
    // A request the backend holds longer than both limits, and a WebSocket that stays quiet.
    const long = get(`${lb.url}/long`);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const messages: string[] = [];
    ws.onmessage = (e) => messages.push(e.data);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    // Never a complete head: one says nothing, one trickles fields.
    const silent = await connect();
    const slow = await connect();
    const started = performance.now();
    await slow.write(enc.encode("GET /slow HTTP/1.1\r\nHost: a\r\n"));
    const trickle = setInterval(() => slow.write(enc.encode("X-More: x\r\n")).catch(() => {}), 200);
    const [silentMs, slowMs, idleMs] = await Promise.all([
      closedAfter(silent, started),
      closedAfter(slow, started).finally(() => clearInterval(trickle)),
      closedAfter(idle, idleSince),
    ]);
    for (
      const [what, ms, limit] of [
        ["silent", silentMs, 1000],
        ["slowloris", slowMs, 1000],
        ["idle", idleMs, 2000],
      ] as const
    ) {
      assert.ok(ms >= limit - 100 && ms < limit + 3000, `${what} closed after ${ms} ms`);
    }
    // Both outlived the idle limit untouched.
    ws.send("still there");
    await waitFor(() => messages.length === 1, "the WebSocket echo");
    assert.equal(messages[0], "echo still there");
    release();
    assert.equal((await long).text, "ok");
    ws.close();
    const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
    assert.match(metrics, /^strom_client_timeouts_total\{reason="header"\} [2-9]/m);
    assert.match(metrics, /^strom_client_timeouts_total\{reason="idle"\} [1-9]/m);
    assert.equal(backend.requests.filter((r) => r.url.endsWith("/slow")).length, 0);
  },
});

Deno.test({
  name: "the strom command, with the permissions it ships with, closes a silent client",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using backend = startBackend();
    const path = await Deno.makeTempFile({ suffix: ".toml" });
    await Deno.writeTextFile(
      path,
      `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nclient_header_timeout = "1s"\n` +
        poolToml([backend.address]),
    );
    try {
      // DENO_FLAGS are the compiled binaries' and `make start`'s permissions, not --allow-all.
      await using strom = new StromProcess(["-c", path]);
      const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
      const ms = await closedAfter(conn, performance.now());
      assert.ok(ms >= 900 && ms < 4000, `closed after ${ms} ms`);
      assert.ok(!strom.lines.some((l) => /not enforced/.test(l)), strom.lines.join("\n"));
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test("a client that never reads its response is cut off and the backend released", async () => {
  let backendCancelled = false;
  await using backend = startBackend((req) => {
    if (new URL(req.url).pathname === "/small") return new Response("ok");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 64 * 1024 * 1024) return c.close();
        sent += 65536;
        c.enqueue(new Uint8Array(65536));
      },
      cancel() {
        backendCancelled = true;
      },
    });
    return new Response(body, { headers: { "content-length": String(64 * 1024 * 1024) } });
  });
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  await using lb = await startStrom(`send_timeout = "500ms"\n` + poolToml([backend.address]), {
    log,
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.strom.port("http_address") });
  await conn.write(enc.encode("GET /big HTTP/1.1\r\nHost: a\r\n\r\n"));
  await conn.read(new Uint8Array(1024)); // the head, then nothing more is read
  await waitFor(() => backendCancelled, "the backend's body to be cancelled", 10_000);
  await waitFor(
    () => lb.strom.runtime.pools[0].backends[0].inFlight === 0,
    "in-flight to drop to zero",
  );
  // The client's connection is reset, not kept while the runtime waits to flush to it.
  const table = createSocketTable();
  if (typeof table !== "string") {
    const mine = new Set([conn.localAddr.port]);
    await waitFor(async () => (await table.list(mine)).length === 0, "the connection to end");
    await assert.rejects(async () => {
      while (await conn.read(new Uint8Array(1 << 20)) !== null) { /* what was in flight */ }
    }, Deno.errors.ConnectionReset);
  }
  conn.close();
  assert.equal((await get(`${lb.url}/small`)).status, 200, "others are still served");
  // The client's doing, not Strom's: an INFO line, as nginx's "client timed out".
  await waitFor(() => lines.some((l) => l.startsWith("info Cut off a client")), "the log line");
  assert.deepEqual(lines.filter((l) => /^(warn|error)/.test(l)), []);
});

Deno.test("backends that misbehave give 502 or a cut connection, and the pool stays in sync", async () => {
  const scripts: Record<string, (conn: Deno.Conn) => Promise<void>> = {
    "/split": async (conn) => {
      for (const piece of ["HTTP/1.1 2", "00 OK\r\nCont", "ent-Length: 2\r", "\n\r\nok"]) {
        await conn.write(enc.encode(piece));
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    "/reset": async (conn) => {
      await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial"));
    },
    "/endless": async (conn) => {
      await conn.write(enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
      for (let i = 0; i < 10_000; i++) await conn.write(enc.encode("4\r\nmore\r\n"));
    },
  };
  await using bad = startRawBackend(async (conn, head) => {
    const path = head.split(" ")[1];
    await scripts[path]?.(conn);
  });
  const lines: string[] = [];
  await using lb = await startStrom(poolToml([bad.address], { extra: "retries = 0" }), {
    log: createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) }),
  });
  assert.equal((await get(`${lb.url}/split`)).text, "ok", "a head split across packets is fine");
  await assert.rejects(
    async () => await (await fetch(`${lb.url}/reset`)).text(),
    "a reset mid-body cuts the client",
  );
  // Logged as the backend's failure, naming it, on either transport; not as Strom's error.
  const cut =
    `warn Cut off a response on http_address: the body from backend ${bad.address} broke off: `;
  await waitFor(() => lines.some((l) => l.startsWith(cut)), "the cut to be logged");
  assert.deepEqual(lines.filter((l) => l.startsWith("error")), []);
  const endless = await fetch(`${lb.url}/endless`);
  const reader = endless.body!.getReader();
  await reader.read();
  await reader.cancel(); // the client gives up on an endless body
  await waitFor(
    () => lb.strom.runtime.pools[0].backends[0].inFlight === 0,
    "the endless exchange to end",
  );
  for (let i = 0; i < 3; i++) {
    assert.equal((await get(`${lb.url}/split`)).text, "ok", "still in sync");
  }
});

/**
 * Runs Strom with few file descriptors and holds connections (made by `open`)
 * until new ones are refused; then checks that an open connection is still
 * served, and that new connections are accepted again once descriptors are free.
 */
/**
 * These tests are about the listeners; they pin the http1 transport, whose
 * pooled backend connection serves the open client without a new descriptor.
 * (fetch's client may open a new one at any request, which fails while none
 * are left: a 502, not a listener failure.)
 */
const LISTENER_ONLY = 'transport = "http1"';

async function exhaustDescriptors(
  config: string,
  role: "http_address" | "https_address",
  open: (port: number) => Promise<Deno.Conn>,
): Promise<void> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(path, config);
  // prlimit caps Strom's descriptors; the test holds connections until the cap is hit.
  await using strom = new StromProcess(["-c", path], {}, ["prlimit", "--nofile=160"]);
  // A start with a tight descriptor limit on a loaded machine (a parallel test run) can be slow.
  const [, text] = await strom.waitForLine(new RegExp(`\\(${role}, port (\\d+)\\)`), 30_000);
  const port = Number(text);
  const ask = async (conn: Deno.Conn) => {
    const timer = setTimeout(() => conn.close(), 2000);
    try {
      await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
      const buf = new Uint8Array(512);
      const n = await conn.read(buf);
      return n === null ? "(closed)" : new TextDecoder().decode(buf.subarray(0, n));
    } finally {
      clearTimeout(timer);
    }
  };
  const askNew = async () => {
    const conn = await open(port);
    try {
      return await ask(conn);
    } finally {
      conn.close();
    }
  };
  const held: Deno.Conn[] = [];
  const keeper = await open(port);
  assert.match(await ask(keeper), /^HTTP\/1\.1 200/);
  // Open connections until Strom has no descriptor left for a new one.
  let refused = false;
  for (let i = 0; i < 400 && !refused; i++) {
    try {
      const conn = await open(port);
      held.push(conn);
      if (!/^HTTP\/1\.1 200/.test(await ask(conn))) refused = true;
    } catch {
      refused = true; // reset or refused: no descriptor for it
    }
  }
  assert.ok(refused, "new connections are refused once descriptors run out");
  // Deno's accept loop gives up on EMFILE; Strom survives it, keeps serving the
  // connections it has, and binds again once descriptors are free.
  assert.equal(strom.exited, false, "Strom is still running");
  assert.match(await ask(keeper), /^HTTP\/1\.1 200/, "an open connection is still served");
  for (const c of held) c.close();
  await waitFor(
    async () => /^HTTP\/1\.1 200/.test(await askNew().catch(() => "")),
    `Strom to accept again on ${role} after descriptors were freed`,
    10_000,
  );
  // Every new connection is accepted: no listener is left that accepts nothing.
  for (let i = 0; i < 20; i++) assert.match(await askNew(), /^HTTP\/1\.1 200/, `connection ${i}`);
  assert.match(await ask(keeper), /^HTTP\/1\.1 200/, "and still after the listener came back");
  keeper.close();
  await Deno.remove(path);
}

Deno.test({
  name:
    "with file descriptors exhausted new connections are refused, open ones served, and Strom recovers",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using backend = startBackend(() => new Response("ok"));
    await exhaustDescriptors(
      `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
        poolToml([backend.address], { extra: LISTENER_ONLY }),
      "http_address",
      (port) => Deno.connect({ hostname: "127.0.0.1", port }),
    );
  },
});

Deno.test({
  name: "the HTTPS listener also survives running out of file descriptors",
  ignore: Deno.build.os !== "linux" || !hasOpenssl,
  async fn() {
    await using backend = startBackend(() => new Response("ok"));
    await using ca = await createCa();
    const cert = await ca.issue("lb", ["127.0.0.1"]);
    await exhaustDescriptors(
      `http_address = "127.0.0.1:0"\nhttps_address = "127.0.0.1:0"\n` +
        `admin_address = "127.0.0.1:0"\n` +
        poolToml([backend.address], { schemes: '["HTTPS"]', extra: LISTENER_ONLY }) +
        `[certificates."127.0.0.1"]\ntype = "Local"\n` +
        `certificate_path = "${cert.cert}"\nprivate_key_path = "${cert.key}"\n`,
      "https_address",
      (port) => Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca.caPem] }),
    );
  },
});

Deno.test("a 60 KB request target is quoted in log lines cut to 256 characters (the reason too)", async () => {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(r.message) });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${closed.addr.port}`;
  closed.close();
  await using lb = await startStrom(poolToml([dead], { extra: "retries = 0" }), { log });
  const long = "/dead/" + "a".repeat(60_000);
  assert.equal((await get(`${lb.url}${long}`)).status, 502);
  const failed = lines.find((l) => l.startsWith("Failed GET /dead/"));
  assert.ok(failed, lines.join("\n"));
  assert.ok(failed.length < 1000, `a log line of ${failed.length} characters`);
  assert.match(failed, /… \(60006 characters\) to backend/);
});
