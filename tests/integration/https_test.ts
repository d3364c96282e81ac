// HTTPS: a certificate per name chosen by SNI, a default, ALPN h2, concurrent
// time-limited handshakes, certificate reload, https:// backends.

import assert from "node:assert/strict";
import { createCa, hasCurl, hasOpenssl, presentedCn, startTlsBackend } from "../_helpers/certs.ts";
import {
  get,
  poolToml,
  startBackend,
  startStrom,
  TEST_TRANSPORT,
  waitFor,
} from "../_helpers/servers.ts";
import { ClientFrames, HANDSHAKE } from "../_helpers/websockets.ts";
import tls from "node:tls";
import { createLogger } from "../../lib/log.ts";
import { resolvedLimitMessage } from "../../lib/tls/store.ts";
import { parseCertificate } from "../../lib/tls/pem.ts";
import { freePort } from "../_helpers/programs.ts";

async function curl(args: string[]): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

/** curl to `https://a.test:<port><path>` on 127.0.0.1, trusting `caPath`, with `flags` first. */
function curlATest(caPath: string, port: number, path = "/", flags: string[] = []) {
  return curl([
    ...flags,
    "--cacert",
    caPath,
    "--resolve",
    `a.test:${port}:127.0.0.1`,
    `https://a.test:${port}${path}`,
  ]);
}

const HTTPS = `https_address = "127.0.0.1:0"\n`;

function httpsConfig(certs: Record<string, { cert: string; key: string }>): string {
  return Object.entries(certs).map(([name, c]) =>
    `[certificates."${name}"]\ntype = "Local"\ncertificate_path = "${c.cert}"\nprivate_key_path = "${c.key}"\n`
  ).join("\n");
}

/**
 * A CA, a certificate from it for `names`, a backend with `handler`, and Strom
 * serving that backend over HTTPS with the certificate (named after the first name).
 */
async function httpsSetup(
  names: string[],
  handler: (request: Request) => Response | Promise<Response> = () => new Response("ok"),
  top = "",
) {
  const ca = await createCa();
  const cert = await ca.issue("lb", names);
  const backend = startBackend(handler);
  const lb = await startStrom(
    HTTPS + top + poolToml([backend.address], { schemes: '["HTTPS"]' }) +
      httpsConfig({ [names[0]]: cert }),
  );
  return {
    ca,
    lb,
    port: lb.strom.port("https_address"),
    async [Symbol.asyncDispose]() {
      await lb[Symbol.asyncDispose]();
      await backend[Symbol.asyncDispose]();
      await ca[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name: "an HTTPS port another process holds is refused, not shared (SO_REUSEPORT)",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const cert = await ca.issue("lb", ["a.test"]);
    await using backend = startBackend();
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort: true });
    const port = (taken.addr as Deno.NetAddr).port;
    await assert.rejects(
      () =>
        startStrom(
          `https_address = "127.0.0.1:${port}"\n` +
            poolToml([backend.address], { schemes: '["HTTPS"]' }) +
            httpsConfig({ "a.test": cert }),
        ),
      (e: Error) => e.name === "ListenError" && /address already in use/i.test(e.message),
    );
  },
});

Deno.test({
  name: "with one certificate, a ClientHello that arrives in two pieces still gets its handshake",
  ignore: !hasOpenssl || !hasCurl,
  async fn() {
    await using setup = await httpsSetup(["a.test"]);
    const { ca, port } = setup;
    // Between curl and Strom: the client's first write (its ClientHello) is passed on in two
    // pieces a moment apart, as a ClientHello larger than one segment arrives on a real link.
    using relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const relaying = (async () => {
      const client = await relay.accept();
      const server = await Deno.connect({ hostname: "127.0.0.1", port });
      server.setNoDelay(true);
      const buf = new Uint8Array(65536);
      const n = (await client.read(buf))!;
      await server.write(buf.subarray(0, 100));
      await new Promise((resolve) => setTimeout(resolve, 50));
      await server.write(buf.subarray(100, n));
      await Promise.all([
        client.readable.pipeTo(server.writable).catch(() => {}),
        server.readable.pipeTo(client.writable).catch(() => {}),
      ]);
    })();
    const relayPort = (relay.addr as Deno.NetAddr).port;
    const body = await curlATest(ca.caPath, relayPort);
    assert.equal(body, "ok");
    await relaying;
  },
});

Deno.test({
  name: "an HTTPS listener that resolved its limit of server names is replaced, and serves on",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const a = await ca.issue("a", ["a.test"]);
    const b = await ca.issue("b", ["b.test"]);
    await using backend = startBackend();
    const lines: string[] = [];
    const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
    await using lb = await startStrom(
      HTTPS + `default_certificate = "b.test"
` +
        poolToml([backend.address], { schemes: '["HTTPS"]' }) +
        httpsConfig({ "a.test": a, "b.test": b }),
      { log, resolvedNamesLimit: 3 },
    );
    const port = lb.strom.port("https_address");
    for (const name of ["n1.test", "n2.test", "n3.test"]) {
      assert.equal(await presentedCn(port, name), "b.test");
    }
    await waitFor(
      () => lines.includes(`warn ${resolvedLimitMessage(3)}`),
      "the listener to be replaced",
    );
    for (const name of ["a.test", "b.test", "n4.test"]) {
      assert.equal(await presentedCn(port, name), name === "a.test" ? "a.test" : "b.test");
    }
  },
});

Deno.test({
  name: "HTTPS picks each name's certificate by SNI, a default otherwise, and speaks h2",
  ignore: !hasOpenssl || !hasCurl,
  async fn() {
    await using ca = await createCa();
    const a = await ca.issue("a", ["a.test"]);
    const b = await ca.issue("b", ["b.test"], { rsa: true });
    const w = await ca.issue("w", ["*.wild.test"], { sec1: true });
    await using backend = startBackend((req) => new Response(`host ${req.headers.get("host")}`));
    await using lb = await startStrom(
      HTTPS + `default_certificate = "b.test"\n` +
        poolToml([backend.address], { schemes: '["HTTPS"]' }) +
        httpsConfig({ "a.test": a, "b.test": b, "*.wild.test": w }),
    );
    const port = lb.strom.port("https_address");
    assert.equal(await presentedCn(port, "a.test"), "a.test");
    assert.equal(await presentedCn(port, "b.test"), "b.test");
    assert.equal(await presentedCn(port, "x.wild.test"), "*.wild.test");
    assert.equal(
      await presentedCn(port, "unknown.test"),
      "b.test",
      "an unknown name gets the default",
    );
    assert.equal(await presentedCn(port, null), "b.test", "no SNI gets the default");
    // The body, then the HTTP version curl negotiated.
    const withVersion = (flag: string, path: string) =>
      curlATest(ca.caPath, port, path, [flag, "-w", " %{http_version}"]);
    assert.equal(await withVersion("--http2", "/"), `host a.test:${port} 2`);
    assert.equal(await withVersion("--http1.1", "/x"), `host a.test:${port} 1.1`);
    // curl writes "1" for HTTP/1.0.
    assert.equal(await withVersion("--http1.0", "/y"), `host a.test:${port} 1`);
    const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
    assert.match(metrics, /^strom_certificate_expiry_timestamp_seconds\{name="a\.test"\} \d+/m);
  },
});

Deno.test({
  name: "Strom's own answers to HTTP/2 uploads it did not read arrive whole, not as a stream reset",
  ignore: !hasOpenssl || !hasCurl,
  async fn() {
    await using ca = await createCa();
    const cert = await ca.issue("lb", ["a.test"]);
    await using backend = startBackend();
    await using lb = await startStrom(
      HTTPS + poolToml([backend.address], { schemes: '["HTTPS"]', matcher: "PathPrefix('/api')" }) +
        httpsConfig({ "a.test": cert }),
    );
    const port = lb.strom.port("https_address");
    // Answered 404 before the body was read: Deno reset the stream when the body came later
    // (curl: "(92) HTTP/2 stream 1 was not closed cleanly"), for about 1 in 6 such POSTs.
    const flags = ["--http2", "-X", "POST", "-d", "hello", "-o", "/dev/null", "-w", "%{http_code}"];
    const answers: string[] = [];
    for (let i = 0; i < 30; i++) answers.push(await curlATest(ca.caPath, port, "/nope", flags));
    assert.deepEqual(answers, Array(30).fill("404"));
    // Ten uploads of 200 KB at once on one connection: each is read and dropped up to 1 MiB
    // (with a 64 KiB cap, every one was a reset).
    const file = await Deno.makeTempFile();
    await Deno.writeFile(file, new Uint8Array(200_000));
    const parallel = ["--http2", "--parallel", "--parallel-immediate", "-X", "POST"];
    parallel.push("-w", "%{http_code} ", "--resolve", `a.test:${port}:127.0.0.1`);
    for (let i = 0; i < 10; i++) {
      // -T pairs one upload with each URL (--data-binary would join them all into each body).
      parallel.push("-T", file, "-o", "/dev/null", `https://a.test:${port}/nope${i}`);
    }
    const together = await curl(["--cacert", ca.caPath, ...parallel]);
    await Deno.remove(file);
    // (curl's parallel progress meter goes to stderr, which `curl()` appends, even with -s.)
    assert.deepEqual(together.trim().split(/\s+/).slice(0, 10), Array(10).fill("404"), together);
    assert.ok(!together.includes("curl: ("), together);
  },
});

Deno.test({
  name: "clients that connect and send nothing do not delay another client's handshake",
  ignore: !hasOpenssl || !hasCurl,
  async fn() {
    await using setup = await httpsSetup(["a.test"]);
    const { ca, port } = setup;
    const idle = await Promise.all(
      Array.from({ length: 10 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    try {
      const started = performance.now();
      const out = await curlATest(ca.caPath, port);
      assert.equal(out, "ok");
      assert.ok(performance.now() - started < 2000, "the handshake was not held up");
    } finally {
      for (const c of idle) c.close();
    }
  },
});

Deno.test({
  name: "a client silent in its TLS handshake is closed after client_header_timeout",
  ignore: !hasOpenssl || Deno.build.os !== "linux",
  async fn() {
    await using setup = await httpsSetup(
      ["a.test", "127.0.0.1"],
      undefined,
      `client_header_timeout = "1s"\n`,
    );
    const { ca, port } = setup;
    // A client served first keeps its connection (client_idle_timeout is 60 s).
    const served = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [await Deno.readTextFile(ca.caPath)],
    });
    const ask = async () => {
      await served.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
      const buf = new Uint8Array(4096);
      const n = await served.read(buf);
      return n === null
        ? "(closed)"
        : new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
    };
    assert.equal(await ask(), "HTTP/1.1 200 OK");
    const silent = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = performance.now();
    const guard = setTimeout(() => silent.close(), 10_000);
    const n = await silent.read(new Uint8Array(64)).catch(() => null);
    clearTimeout(guard);
    const ms = performance.now() - started;
    try {
      silent.close();
    } catch { /* closed */ }
    assert.equal(n, null, "the server sent nothing and closed");
    assert.ok(ms >= 900 && ms < 4000, `closed after ${ms} ms`);
    assert.equal(await ask(), "HTTP/1.1 200 OK", "the served client is still connected");
    served.close();
  },
});

Deno.test({
  name: "HTTPS requests reach the backend with the real client address and carry WebSockets",
  ignore: !hasOpenssl || Deno.build.os !== "linux",
  async fn() {
    await using setup = await httpsSetup(["a.test", "127.0.0.1"], (req) => {
      if (req.headers.get("upgrade") === "websocket") {
        const { socket, response } = Deno.upgradeWebSocket(req);
        socket.onmessage = (e) => socket.send(`echo ${e.data}`);
        return response;
      }
      return new Response(`for ${req.headers.get("x-forwarded-for")}`);
    });
    const { ca, port } = setup;
    // From 127.0.0.2 (any 127/8 address is loopback on Linux), so the address
    // seen cannot be a default or Strom's own.
    const text = await new Promise<string>((resolve, reject) => {
      const options = {
        host: "127.0.0.1",
        port,
        localAddress: "127.0.0.2", // Node's net option, passed through by tls.connect
        ca: ca.caPem,
        servername: "a.test",
      };
      const socket = tls.connect(options as tls.ConnectionOptions);
      let data = "";
      socket.on(
        "secureConnect",
        () => socket.write("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
      );
      socket.on("data", (chunk) => data += chunk.toString("latin1"));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(text.endsWith("for 127.0.0.2"), text);
    // A WebSocket over TLS: upgrade, one masked text frame out, its echo back.
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca.caPem] });
    await conn.write(
      new TextEncoder().encode(`GET /ws HTTP/1.1\r\nHost: a.test\r\n${HANDSHAKE}\r\n`),
    );
    const frames = new ClientFrames(conn);
    const head = await readHead(conn);
    assert.match(head, /^HTTP\/1\.1 101/);
    const payload = new TextEncoder().encode("hi");
    const mask = [1, 2, 3, 4];
    await conn.write(
      new Uint8Array([
        0x81,
        0x80 | payload.length,
        ...mask,
        ...payload.map((b, i) => b ^ mask[i & 3]),
      ]),
    );
    const echo = await frames.next();
    assert.equal(new TextDecoder().decode(echo!.payload), "echo hi");
    conn.close();
  },
});

/** Reads a response head byte by byte (so nothing after it is consumed). */
async function readHead(conn: Deno.Conn): Promise<string> {
  let head = "";
  const byte = new Uint8Array(1);
  while (!head.endsWith("\r\n\r\n")) {
    if ((await conn.read(byte)) === null) throw new Error(`closed after ${JSON.stringify(head)}`);
    head += String.fromCharCode(byte[0]);
  }
  return head;
}

Deno.test({
  name: "a reload with a new certificate applies to new handshakes",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const first = await ca.issue("first", ["first.test", "a.test", "localhost"]);
    const second = await ca.issue("second", ["second.test", "a.test", "localhost"]);
    const gate = Promise.withResolvers<void>();
    let reached = false;
    await using backend = startBackend(async (req) => {
      if (new URL(req.url).pathname === "/slow") {
        reached = true;
        await gate.promise;
      }
      return new Response("ok");
    });
    const pool = HTTPS + poolToml([backend.address], { schemes: '["HTTPS"]' });
    await using lb = await startStrom(pool + httpsConfig({ "a.test": first }));
    const port = lb.strom.port("https_address");
    // A request in flight on a connection made before the reload.
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.caPem] });
    await conn.write(new TextEncoder().encode("GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    await waitFor(() => reached, "the slow request to reach the backend");
    assert.equal(await presentedCn(port, "a.test"), "first.test");
    const result = await lb.strom.reload(
      `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` + pool +
        httpsConfig({ "a.test": second }),
    );
    assert.ok(result.ok);
    assert.equal(lb.strom.port("https_address"), port, "same port");
    assert.equal(
      await presentedCn(port, "a.test"),
      "second.test",
      "new handshakes get the new certificate",
    );
    gate.resolve();
    const buf = new Uint8Array(4096);
    const answer = new TextDecoder().decode(buf.subarray(0, (await conn.read(buf)) ?? 0));
    assert.match(answer, /^HTTP\/1\.1 200/, "the request in flight on the old listener completed");
    conn.close();
  },
});

Deno.test({
  name: "a reload whose new https_address cannot be bound still serves its new certificate",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const first = await ca.issue("first", ["first.test", "a.test"]);
    const second = await ca.issue("second", ["second.test", "a.test"]);
    await using backend = startBackend();
    const pool = poolToml([backend.address], { schemes: '["HTTPS"]' }) +
      poolToml([backend.address], { extra: "[backend_pools.middlewares.HttpsRedirector]\n" });
    await using lb = await startStrom(HTTPS + pool + httpsConfig({ "a.test": first }));
    const port = lb.strom.port("https_address")!;
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const result = await lb.strom.reload(
      `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
        `https_address = "127.0.0.1:${(taken.addr as Deno.NetAddr).port}"\n` + pool +
        httpsConfig({ "a.test": second }),
    );
    assert.ok(result.ok);
    assert.deepEqual(result.kept?.map((p) => p.path), ["https_address"]);
    assert.equal(lb.strom.port("https_address"), port, "the old listener stays");
    assert.equal(await presentedCn(port, "a.test"), "second.test", "with the new certificate");
    // HttpsRedirector sends clients there, not to the port of the config (someone else's).
    const redirect = await get(`${lb.url}/x`, { headers: { host: "a.test" }, redirect: "manual" });
    assert.equal(redirect.headers.get("location"), `https://a.test:${port}/x`);
  },
});

Deno.test({
  name: "a client silent in its TLS handshake does not hold a shutdown for the whole grace",
  ignore: !hasOpenssl || Deno.build.os !== "linux",
  async fn() {
    await using setup = await httpsSetup(["a.test"], undefined, `client_header_timeout = "1s"\n`);
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: setup.port });
    try {
      const started = performance.now();
      await setup.lb.strom.shutdown(20_000);
      const ms = performance.now() - started;
      // Deno's shutdown waits for handshakes under way: client_header_timeout must go on.
      assert.ok(ms < 5000, `the shutdown took ${ms.toFixed(0)} ms`);
    } finally {
      silent.close();
    }
  },
});

Deno.test({
  name: "https:// backends are reached over TLS with either transport, trusting the pool's ca_file",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    await using backend = await startTlsBackend(
      ca,
      (req) => new Response(`tls backend saw ${new URL(req.url).pathname}`),
    );
    await using lb = await startStrom(poolToml([backend.address], { extra: backend.poolExtra }));
    assert.equal(lb.config.pools[0].transport, TEST_TRANSPORT);
    const r = await fetch(`${lb.url}/x`);
    assert.equal(await r.text(), "tls backend saw /x");
    await lb.strom.health.checkAll();
    assert.equal(
      lb.strom.runtime.pools[0].backends[0].health.last?.ok,
      true,
      "the probe speaks TLS",
    );
  },
});

Deno.test({
  name: "TLS below 1.2 is refused",
  ignore: !hasOpenssl,
  async fn() {
    await using setup = await httpsSetup(["a.test"]);
    const { port } = setup;
    const attempt = async (version: string) => {
      const out = await new Deno.Command("openssl", {
        args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "a.test", version],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    };
    const old = await attempt("-tls1_1");
    assert.match(old, /no peer certificate available/, "no TLS 1.1 session");
    assert.match(old, /handshake failure|protocol version|no protocols available/i);
    const ok = await attempt("-tls1_2");
    assert.match(ok, /Protocol\s*:\s*TLSv1\.2/);
    assert.match(ok, /subject=.*a\.test/);
  },
});

Deno.test({
  name:
    "without default_certificate, a client naming no known host gets the first configured certificate, ACME or not",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const first = await ca.issue("first", ["first.test"]);
    const second = await ca.issue("second", ["second.test"]);
    const dir = await Deno.makeTempDir();
    // Removed after Strom stopped: its ACME order may still write there until then.
    await using _dir = { [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
    await using backend = startBackend();
    // first.test comes from a CA that is not there: its certificate is put in as an order would.
    await using lb = await startStrom(
      HTTPS + poolToml([backend.address], { schemes: '["HTTPS"]' }) +
        `[certificates."first.test"]\ntype = "ACME"\nstaging = false\nemail = "ops@example.com"\n` +
        `persist_dir = "${dir}"\ndirectory_url = "https://127.0.0.1:${freePort()}/dir"\n\n` +
        httpsConfig({ "second.test": second }),
    );
    const store = lb.strom.certificates;
    assert.equal(store.resolve(null).cert, await Deno.readTextFile(second.cert), "none yet");
    const obtained = parseCertificate(
      await Deno.readTextFile(first.cert),
      await Deno.readTextFile(first.key),
    );
    assert.ok(typeof obtained !== "string");
    store.put("first.test", obtained);
    // Before, the certificate that arrived first (second.test, read at start) stayed the default.
    assert.equal(store.resolve(null).cert, obtained.certPem);
    assert.equal(store.resolve("unknown.test").cert, obtained.certPem);
    assert.equal(store.resolve("second.test").cert, await Deno.readTextFile(second.cert));
  },
});
