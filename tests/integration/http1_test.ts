// The HTTP/1.1 transport against raw backends: framing, byte-identical
// pass-through, strict parsing of bad answers, and connection reuse.

import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { get, poolToml, startRawBackend, startStrom, waitFor } from "../_helpers/servers.ts";
import { rawExchange } from "../_helpers/raw.ts";
import { nextTurn } from "../_helpers/clock.ts";
import { SMALL_BODY_BYTES } from "../../lib/transport/http1/connection.ts";

const enc = new TextEncoder();
const HTTP1 = 'transport = "http1"';

/** A raw backend that answers every request on a connection with `answer(head)`, keep-alive. */
function scripted(answer: (head: string) => string | Uint8Array) {
  const heads: string[] = [];
  let connections = 0;
  const backend = startRawBackend(async (conn, first) => {
    connections++;
    let pending = first;
    const buf = new Uint8Array(65536);
    while (true) {
      const end = pending.indexOf("\r\n\r\n");
      if (end < 0) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        continue;
      }
      const head = pending.slice(0, end);
      heads.push(head);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      while (pending.length < end + 4 + length) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
      }
      pending = pending.slice(end + 4 + length);
      const out = answer(head);
      await conn.write(typeof out === "string" ? enc.encode(out) : out);
    }
  });
  return Object.assign(backend, { heads, connections: () => connections });
}

Deno.test("http1: reads Content-Length, chunked and close-delimited bodies", async () => {
  await using length = scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  await using chunked = scripted(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
  );
  await using closing = startRawBackend(async (conn) => {
    await conn.write(enc.encode("HTTP/1.1 200 OK\r\n\r\nuntil the end"));
  });
  await using lb = await startStrom(
    poolToml([length.address], { matcher: "Path('/length')", extra: HTTP1 }) +
      poolToml([chunked.address], { matcher: "Path('/chunked')", extra: HTTP1 }) +
      poolToml([closing.address], { matcher: "Path('/close')", extra: HTTP1 }),
  );
  for (let i = 0; i < 3; i++) {
    assert.equal((await get(`${lb.url}/length`)).text, "hello");
    assert.equal((await get(`${lb.url}/chunked`)).text, "hello world");
    assert.equal((await get(`${lb.url}/close`)).text, "until the end");
  }
  assert.equal(length.connections(), 1, "Content-Length answers keep the connection");
  assert.equal(chunked.connections(), 1, "chunked answers keep the connection");
});

Deno.test("http1: heads whose lines end in a bare LF are read (RFC 9112 2.2), and the connection kept", async () => {
  const answers = [
    "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nhi",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\nX-A: 2\r\n\nabc",
    "HTTP/1.1 200 OK\nContent-Length: 4\r\nX-A: 3\n\r\nwxyz",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 4\r\n\r\nok",
  ];
  let n = 0;
  await using backend = scripted(() => answers[n++ % answers.length]);
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  for (const [text, a] of [["hi", "1"], ["abc", "2"], ["wxyz", "3"], ["ok", "4"]]) {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text, r.headers.get("x-a")], [200, text, a]);
  }
  assert.equal(backend.connections(), 1);
});

Deno.test("http1: HEAD, 204 and 304 have no body; 1xx answers are skipped", async () => {
  await using backend = scripted((head) => {
    if (head.startsWith("HEAD")) return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    if (head.includes("/204")) return "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    if (head.includes("/304")) return "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n";
    return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  });
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  const head = await get(`${lb.url}/`, { method: "HEAD" });
  assert.deepEqual([head.status, head.headers.get("content-length"), head.text], [200, "1234", ""]);
  assert.equal((await get(`${lb.url}/204`)).status, 204);
  const notModified = await get(`${lb.url}/304`);
  assert.deepEqual([notModified.status, notModified.headers.get("etag")], [304, "x"]);
  const created = await get(`${lb.url}/1xx`);
  assert.deepEqual([created.status, created.text], [201, "ok"]);
  assert.equal(backend.connections(), 1, "all four answers on one connection");
});

Deno.test("http1: a 205 answer is passed on and its connection kept (empty) or closed, never leaked", async () => {
  await using backend = scripted((head) => {
    if (head.includes("/205-empty")) {
      return "HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n";
    }
    if (head.includes("/205-body")) {
      return "HTTP/1.1 205 Reset Content\r\nContent-Length: 5\r\n\r\nhello";
    }
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  });
  await using lb = await startStrom(
    poolToml([backend.address], {
      extra: `${HTTP1}\n[backend_pools.client]\nmax_connections_per_host = 1`,
    }),
  );
  for (const path of ["/205-empty", "/205-empty", "/205-body", "/205-empty"]) {
    assert.equal((await get(`${lb.url}${path}`)).status, 205, path);
  }
  assert.deepEqual([(await get(`${lb.url}/`)).text], ["ok"], "the one connection allowed is free");
  assert.equal(
    backend.connections(),
    2,
    "kept after the empty 205s, closed after the one with a body",
  );
});

Deno.test("http1: a parked connection the backend closed, or sent unasked bytes on, carries no request", async () => {
  const closed = new Map<string, number>();
  await using backend = startRawBackend(async (conn, head) => {
    const path = head.split(" ")[1];
    const answer = (text: string) =>
      conn.write(enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`));
    if (path === "/extra") {
      await answer("ok");
      // What some servers send on an idle connection before closing it.
      await conn.write(
        enc.encode(
          "HTTP/1.1 408 Request Timeout\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntimeout",
        ),
      );
    } else await answer(`${head.split(" ")[0]} ${path}`);
    conn.close(); // as a backend whose keep-alive timeout is over: the connection looked reusable
    closed.set(path, (closed.get(path) ?? 0) + 1);
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: `${HTTP1}\nretries = 0` }),
  );
  const settled = async (path: string, n: number) => {
    await waitFor(() => closed.get(path) === n, "the backend to close its connection");
    for (let i = 0; i < 3; i++) await nextTurn(); // its FIN reaches Strom's parked read
  };
  for (let round = 0; round < 3; round++) {
    assert.equal((await get(`${lb.url}/first`)).text, "GET /first");
    await settled("/first", round + 1);
    const post = await get(`${lb.url}/form`, { method: "POST", body: "x" });
    assert.deepEqual(
      [post.status, post.text],
      [200, "POST /form"],
      "a POST gets a fresh connection",
    );
    await settled("/form", round + 1);
    assert.equal((await get(`${lb.url}/extra`)).text, "ok");
    await settled("/extra", round + 1);
    const next = await get(`${lb.url}/next`);
    assert.deepEqual([next.status, next.text], [200, "GET /next"], "not the 408 sent unasked");
  }
});

Deno.test("http1: a gzip answer reaches the client byte for byte with its Content-Encoding", async () => {
  const gz = new Uint8Array(gzipSync(enc.encode("zipped ".repeat(300))));
  await using backend = scripted(() => {
    const head = enc.encode(
      `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${gz.length}\r\n\r\n`,
    );
    const out = new Uint8Array(head.length + gz.length);
    out.set(head);
    out.set(gz, head.length);
    return out;
  });
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.strom.port("http_address") });
  await conn.write(
    enc.encode("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"),
  );
  const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const split = bytes.findIndex((_, i) =>
    bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10
  );
  const head = new TextDecoder().decode(bytes.subarray(0, split)).toLowerCase();
  assert.ok(head.includes("content-encoding: gzip"));
  assert.ok(head.includes(`content-length: ${gz.length}`));
  assert.deepEqual(bytes.subarray(split + 4), gz);
});

Deno.test("http1: the request reaches the backend as sent, with nothing added", async () => {
  await using backend = scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  await rawExchange(
    lb.strom.port("http_address"),
    "GET /a\\b/%2F?x=\u00e9 HTTP/1.1\r\nHost: Example.com\r\nX-Odd: caf\u00e9\r\nConnection: close\r\n\r\n",
  );
  const [head] = backend.heads;
  const lines = head.split("\r\n");
  assert.equal(lines[0], "GET /a\\b/%2F?x=\u00e9 HTTP/1.1");
  assert.ok(lines.includes("x-odd: caf\u00e9"), "field bytes pass unchanged");
  const names = lines.slice(1).map((l) => l.split(":")[0]);
  for (const added of ["accept", "accept-encoding", "accept-language", "user-agent"]) {
    assert.ok(!names.includes(added), `${added} was added`);
  }
  assert.ok(lines.includes("host: Example.com"));
});

Deno.test("http1: heads of any length on one connection arrive whole, none with bytes of another", async () => {
  await using backend = scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  const url = `http://127.0.0.1:${lb.strom.port("http_address")}`;
  // Short, long, short, longer than the connection's read buffer (another
  // encoding path), non-ASCII, short again.
  const values = ["a", "b".repeat(3000), "c", "d".repeat(20_000), "caf\u00e9", "e"];
  for (const [i, value] of values.entries()) {
    const headers = new Headers();
    headers.set("x-value", value);
    assert.equal((await get(`${url}/${i}`, { headers })).status, 200);
  }
  assert.equal(backend.connections(), 1, "one kept-alive backend connection");
  const sent = backend.heads.map((head) => {
    const lines = head.split("\r\n");
    return [lines[0], lines.find((l) => l.startsWith("x-value: "))?.slice(9)];
  });
  // The scripted backend decodes as UTF-8: the latin1 byte of "é" arrives as U+FFFD.
  const expected = values.map((v, i) => [`GET /${i} HTTP/1.1`, v.replace("\u00e9", "\ufffd")]);
  assert.deepEqual(sent, expected);
});

Deno.test("http1: a request body of unknown length is forwarded chunked", async () => {
  let received = "";
  await using backend = startRawBackend(async (conn, head) => {
    received = head;
    const buf = new Uint8Array(65536);
    while (!received.includes("0\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      received += new TextDecoder().decode(buf.subarray(0, n));
    }
    await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  });
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  const body = new ReadableStream({
    start(c) {
      c.enqueue(enc.encode("part one,"));
      c.enqueue(enc.encode("part two"));
      c.close();
    },
  });
  const r = await get(`${lb.url}/`, { method: "POST", body });
  assert.equal(r.text, "ok");
  assert.match(received, /transfer-encoding: chunked/i);
  const payload = received.slice(received.indexOf("\r\n\r\n") + 4).replace(
    /[0-9a-f]+\r\n|\r\n/g,
    "",
  );
  assert.equal(payload, "part one,part two");
});

const BAD_ANSWERS: [string, string][] = [
  ["invalid status line", "HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"],
  ["status out of range", "HTTP/1.1 700 Odd\r\nContent-Length: 2\r\n\r\nok"],
  [
    "conflicting Content-Length",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
  ],
  ["invalid Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"],
  [
    "Content-Length with Transfer-Encoding",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  ],
  ["chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"],
  ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok"],
  ["bare CR as a line end", "HTTP/1.1 200 OK\rContent-Length: 2\r\n\r\nok"],
  ["invalid header name", "HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok"],
  [
    "oversized head",
    `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70_000)}\r\nContent-Length: 2\r\n\r\nok`,
  ],
  ["closed before answering", ""],
];

Deno.test("http1: ambiguous or broken answers give 502 and never poison the pool", async () => {
  for (const [name, answer] of BAD_ANSWERS) {
    await using bad = startRawBackend(async (conn) => {
      if (answer) await conn.write(enc.encode(answer));
    });
    await using good = scripted(() => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood");
    await using lb = await startStrom(
      poolToml([bad.address], { matcher: "Path('/bad')", extra: `${HTTP1}\nretries = 0` }) +
        poolToml([good.address], { matcher: "Path('/good')", extra: HTTP1 }),
    );
    const r = await get(`${lb.url}/bad`);
    assert.deepEqual([r.status, r.text], [502, "502 - Bad Gateway"], name);
    assert.equal((await get(`${lb.url}/good`)).text, "good", name);
  }
});

Deno.test("http1: a body shorter than announced gives 502 (small) or cuts the client off (large); longer is not reused", async () => {
  // A small body is read whole with the head, so its end is known before the
  // client gets anything: a clean 502. A large one streams, so the client is cut off.
  await using short = startRawBackend(async (conn) => {
    await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"));
  });
  await using shortLarge = startRawBackend(async (conn) => {
    await conn.write(
      enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${SMALL_BODY_BYTES + 1}\r\n\r\nonly this`),
    );
  });
  let longConnections = 0;
  await using long = startRawBackend(async (conn) => {
    longConnections++;
    await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"));
    await new Promise((r) => setTimeout(r, 50));
  });
  await using lb = await startStrom(
    poolToml([short.address], { matcher: "Path('/short')", extra: `${HTTP1}\nretries = 0` }) +
      poolToml([shortLarge.address], { matcher: "Path('/short-large')", extra: HTTP1 }) +
      poolToml([long.address], { matcher: "Path('/long')", extra: HTTP1 }),
  );
  const r = await get(`${lb.url}/short`);
  assert.deepEqual([r.status, r.text], [502, "502 - Bad Gateway"]);
  await assert.rejects(async () => {
    const r = await fetch(`${lb.url}/short-large`);
    assert.equal(r.status, 200);
    await r.text();
  });
  assert.equal((await get(`${lb.url}/long`)).text, "ok");
  assert.equal((await get(`${lb.url}/long`)).text, "ok");
  assert.equal(longConnections, 2, "a connection with extra bytes is not reused");
});

Deno.test("http1: a small body sent after the head, in pieces, arrives whole", async () => {
  const body = "x".repeat(SMALL_BODY_BYTES);
  let connections = 0;
  await using backend = startRawBackend(async (conn) => {
    connections++;
    await conn.write(enc.encode(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`));
    for (let i = 0; i < body.length; i += 4096) {
      await new Promise((r) => setTimeout(r, 5));
      await conn.write(enc.encode(body.slice(i, i + 4096)));
    }
  });
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  for (let i = 0; i < 2; i++) {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text.length, r.text === body], [200, body.length, true]);
  }
  assert.equal(connections, 2, "an HTTP/1.0 answer closes its connection");
});

Deno.test("an answer with a transfer coding other than chunked gives 502 on either transport, not undone bytes", async () => {
  const answers: Record<string, string> = {
    "/gzip": "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "/identity": "Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "/alone": "Transfer-Encoding: identity\r\n\r\nabc",
  };
  await using backend = startRawBackend(async (conn, head) => {
    // Each answer ends at the close, as a body that is not chunked last does (RFC 9112 6.3).
    await conn.write(enc.encode(`HTTP/1.1 200 OK\r\n${answers[head.split(" ")[1]]}`));
  });
  for (const transport of ["http1", "fetch"]) {
    await using lb = await startStrom(
      poolToml([backend.address], { extra: `transport = "${transport}"\nretries = 0` }),
    );
    for (const path of Object.keys(answers)) {
      const r = await get(`${lb.url}${path}`);
      assert.deepEqual([r.status, transport, path], [502, transport, path], r.text);
    }
  }
});

Deno.test("http1: an answer without a status line gives 502 at once, not at request_timeout", async () => {
  const silence = Promise.withResolvers<void>();
  await using backend = startRawBackend(async (conn) => {
    await conn.write(enc.encode("<html>an HTTP/0.9 answer")); // no status line, no head end
    await silence.promise; // and the connection stays open
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: `${HTTP1}\nretries = 0\nrequest_timeout = "20s"` }),
  );
  try {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text], [502, "502 - Bad Gateway"]);
  } finally {
    silence.resolve();
  }
});

Deno.test("http1: a request that a backend drops its connection on goes once more at most", async () => {
  let crashes = 0;
  await using backend = startRawBackend(async (conn, first) => {
    let pending = first;
    const buf = new Uint8Array(4096);
    while (true) {
      const end = pending.indexOf("\r\n\r\n");
      if (end < 0) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        continue;
      }
      const head = pending.slice(0, end);
      pending = pending.slice(end + 4);
      if (head.startsWith("GET /crash ")) {
        crashes++;
        return conn.close(); // as a worker that crashed on it
      }
      await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    }
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: `${HTTP1}\nretries = 0` }),
  );
  // Four idle pooled connections, each of which the transport could try.
  const warm = await Promise.all(Array.from({ length: 4 }, () => get(`${lb.url}/ok`)));
  assert.deepEqual(warm.map((r) => r.status), [200, 200, 200, 200]);
  const r = await get(`${lb.url}/crash`);
  assert.equal(r.status, 502);
  assert.equal(crashes, 2, "the keep-alive race gets one more try, not one per idle connection");
  // Both went to the backend and count as attempts (the resend was not counted before: 5).
  assert.equal(lb.strom.runtime.pools[0].backends[0].requests, 6);
});

Deno.test("http1: chunk lines ending in a bare LF are read, as nginx reads them", async () => {
  await using backend = scripted(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n6;x=1\n world\n0\n\n"
  );
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  for (let i = 0; i < 2; i++) {
    const r = await get(`${lb.url}/`);
    assert.deepEqual([r.status, r.text], [200, "hello world"]);
  }
  assert.equal(backend.connections(), 1, "and the connection is kept");
});

Deno.test("http1: a chunk line longer than 4 KiB breaks the body and its connection, not the next answer", async () => {
  let answers = 0;
  await using backend = scripted(() =>
    answers++ === 0
      ? `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;${
        "x".repeat(5000)
      }\r\nhello\r\n0\r\n\r\n`
      : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n0\r\n\r\n"
  );
  await using lb = await startStrom(poolToml([backend.address], { extra: HTTP1 }));
  const broken = await fetch(`${lb.url}/`);
  assert.equal(broken.status, 200, "headers went out before the body broke");
  await assert.rejects(broken.text());
  const r = await get(`${lb.url}/`);
  assert.deepEqual([r.status, r.text], [200, "ok"]);
  assert.equal(backend.connections(), 2, "the broken connection was not reused");
});

Deno.test("http1: a small body is part of request_timeout: one that comes too late gives 504", async () => {
  const late = Promise.withResolvers<void>();
  await using backend = startRawBackend(async (conn) => {
    await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"));
    await late.promise; // the body never comes while the request waits
  });
  await using lb = await startStrom(
    poolToml([backend.address], { extra: `${HTTP1}\nrequest_timeout = "200ms"\nretries = 0` }),
  );
  const r = await get(`${lb.url}/`);
  late.resolve();
  assert.equal(r.status, 504);
});

Deno.test("http1: bodies answered over one connection stay whole while the next request reuses it", async () => {
  // Each answer's body is read from the connection's buffer, which the next
  // request on the connection overwrites at once (its head is encoded there):
  // every client must still get its own body, byte for byte.
  const body = (path: string) => `${path}:`.padEnd(300, path.slice(-1));
  await using backend = scripted((head) => {
    const text = body(head.split(" ")[1]);
    return `HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`;
  });
  await using lb = await startStrom(poolToml([backend.address], {
    extra: `${HTTP1}\n[backend_pools.client]\nmax_connections_per_host = 1`,
  }));
  const paths = Array.from({ length: 30 }, (_, i) => `/r${i % 10}x${i}`);
  const answers = await Promise.all(paths.map((p) => get(`${lb.url}${p}`)));
  assert.deepEqual(answers.map((a) => a.text), paths.map(body));
  assert.equal(backend.connections(), 1, "all of them over one backend connection");
});

Deno.test("http1: an answer longer than its Content-Length is not handed to a waiting request", async () => {
  // The stray bytes arrive with the body's last bytes, beyond a body too large to be read
  // with the head: the connection must not carry the request waiting for it.
  const gate = Promise.withResolvers<void>();
  await using backend = startRawBackend(async (conn, head) => {
    const path = head.split(" ")[1];
    if (path !== "/long") {
      const text = `GET ${path}`;
      await conn.write(
        enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`),
      );
      return;
    }
    await gate.promise;
    const body = "x".repeat(SMALL_BODY_BYTES + 4000);
    const stray = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSTRAYED";
    await conn.write(enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`));
    await conn.write(enc.encode(body + stray));
    // Keep the connection open, reading what comes: as a backend that goes on serving it.
    const buf = new Uint8Array(4096);
    while ((await conn.read(buf)) !== null) { /* requests sent on it get no answer */ }
  });
  await using lb = await startStrom(poolToml([backend.address], {
    extra: `${HTTP1}\nretries = 0\n[backend_pools.client]\nmax_connections_per_host = 1`,
  }));
  const long = get(`${lb.url}/long`);
  const waiting = get(`${lb.url}/b`);
  await waitFor(
    () => lb.strom.runtime.pools[0].backends[0].inFlight === 2,
    "the second request waiting for the pool's one connection",
  );
  gate.resolve();
  assert.equal((await long).text.length, SMALL_BODY_BYTES + 4000);
  const next = await waiting;
  assert.deepEqual([next.status, next.text], [200, "GET /b"], "the backend's stray answer");
});

Deno.test("http1: connections are reused up to the cap and requests queue beyond it", async () => {
  const gate = Promise.withResolvers<void>();
  let open = 0;
  let maxOpen = 0;
  await using backend = startRawBackend(async (conn) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    await gate.promise;
    await conn.write(
      enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
    );
    open--;
  });
  await using lb = await startStrom(poolToml([backend.address], {
    extra: `${HTTP1}\n[backend_pools.client]\nmax_connections_per_host = 2`,
  }));
  const pending = Array.from({ length: 5 }, () => get(`${lb.url}/`));
  // All five reached the backend's transport; two hold connections, three wait.
  await waitFor(
    () => open === 2 && lb.strom.runtime.pools[0].backends[0].inFlight === 5,
    "two connections open and five requests in flight",
  );
  assert.equal(maxOpen, 2);
  gate.resolve();
  const results = await Promise.all(pending);
  assert.deepEqual(results.map((r) => r.text), ["ok", "ok", "ok", "ok", "ok"]);
  assert.equal(maxOpen, 2);
});

/** Uploads `size` bytes to `port` as one raw request and returns the answer's head (or ""). */
async function uploadHead(port: number, size: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(`POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`));
  const chunk = new Uint8Array(256 * 1024);
  const writing = (async () => {
    for (let sent = 0; sent < size; sent += chunk.length) await conn.write(chunk);
  })().catch(() => {});
  let answer = "";
  const buf = new Uint8Array(65536);
  while (!answer.includes("\r\n\r\n")) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    answer += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  await writing;
  return answer.slice(0, answer.indexOf("\r\n\r\n") + 4);
}

Deno.test("http1: a backend that answers an upload early and closes has its answer passed on, not 502", async () => {
  // It closes without reading the body, so Strom's writes of the rest fail (reset):
  // the 413 it already received still reaches the client, as HAProxy passes it on.
  await using tooBig = startRawBackend(async (conn) => {
    await conn.write(enc.encode(
      "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
    ));
  });
  // One that closes without an answer still gives 502.
  await using gone = startRawBackend(async () => {});
  await using lb = await startStrom(
    poolToml([tooBig.address], { matcher: "Path('/up')", extra: HTTP1 }) +
      poolToml([gone.address], { matcher: "Path('/gone')", extra: `${HTTP1}\nretries = 0` }),
  );
  const port = Number(new URL(lb.url).port);
  for (let i = 0; i < 3; i++) {
    assert.match(await uploadHead(port, 32 * 1024 * 1024), /^HTTP\/1\.1 413 /, `upload ${i}`);
  }
  const r = await get(`${lb.url}/gone`, { method: "POST", body: new Uint8Array(1024 * 1024) });
  assert.equal(r.status, 502);
});
