import assert from "node:assert/strict";
import zlib from "node:zlib";
import { compression, FLUSH_IDLE_MS } from "../../lib/middleware/compression.ts";
import { CODINGS, negotiate } from "../../lib/middleware/accept_encoding.ts";
import { build, fakeContext, optionProblems, run, testDeps } from "../_helpers/middleware.ts";
import { concatBytes } from "../../lib/bytes.ts";

const HTML = "<p>hello, compressible world</p>\n".repeat(200);

function asking(acceptEncoding: string | null, method = "GET") {
  const headers: Record<string, string> = {};
  if (acceptEncoding !== null) headers["accept-encoding"] = acceptEncoding;
  return fakeContext("http://a.com/", { method, headers });
}

function answer(body: string | null, headers: Record<string, string> = {}, status = 200) {
  return () =>
    new Response(body, {
      status,
      headers: { "content-type": "text/html; charset=utf-8", ...headers },
    });
}

Deno.test("negotiate() follows RFC 9110 q-values, `*`, `identity` and x-gzip", () => {
  const all = CODINGS;
  const cases: [string | null, string | null][] = [
    [null, null], // no header: send as is
    ["", null], // only identity is acceptable
    ["gzip", "gzip"],
    ["GZIP", "gzip"],
    ["x-gzip", "gzip"],
    ["gzip, br", "br"], // equal q: Strom's preference
    ["gzip;q=1.0, br;q=0.5", "gzip"], // RustStrom ignored q=1.0
    ["br;q=0.5, gzip ; Q=0.8", "gzip"],
    ["gzip;q=0, *", "br"],
    ["*;q=0.1", "br"],
    ["*;q=0", null],
    ["gzip;q=0.5, identity;q=0.9", null],
    ["deflate", "deflate"],
    ["zstd, gzip;q=0.9", "zstd"],
    ["gzip;q=2", null], // an invalid weight is not a yes
    ["gzip;q=0.0001", null],
    ["identity", null],
    ["compress, lzma", null],
  ];
  for (const [header, expected] of cases) {
    assert.equal(negotiate(header, all), expected, `Accept-Encoding: ${header}`);
  }
  assert.equal(negotiate("br, gzip", ["gzip", "deflate"]), "gzip");
});

Deno.test("compression() compresses with every coding, deflate zlib-wrapped, and adds Vary", async () => {
  const mw = await build(compression, {});
  const decode: Record<string, (b: Uint8Array) => Uint8Array> = {
    gzip: zlib.gunzipSync,
    br: zlib.brotliDecompressSync,
    zstd: zlib.zstdDecompressSync,
    deflate: zlib.inflateSync, // zlib format: fails on the raw deflate RustStrom sent
  };
  for (const coding of ["gzip", "br", "zstd", "deflate"]) {
    const r = await run(
      mw,
      asking(coding),
      answer(HTML, { "content-length": String(HTML.length), etag: '"v1"' }),
    );
    assert.equal(r.headers.get("content-encoding"), coding);
    assert.equal(r.headers.get("vary"), "Accept-Encoding");
    assert.equal(r.headers.get("etag"), 'W/"v1"');
    const bytes = new Uint8Array(await r.arrayBuffer());
    assert.equal(r.headers.get("content-length"), String(bytes.length), "the new length");
    assert.ok(bytes.length < HTML.length / 5, `${coding} compressed to ${bytes.length}`);
    assert.equal(new TextDecoder().decode(decode[coding](bytes)), HTML);
  }
});

Deno.test("compression() leaves alone what must not or need not be compressed", async () => {
  const mw = await build(compression, { min_size: 100, skip_types: ["text/csv"] });
  const cases: [string, ReturnType<typeof asking>, () => Response][] = [
    ["already encoded", asking("gzip"), answer(HTML, { "content-encoding": "br" })],
    ["small", asking("gzip"), answer("tiny", { "content-length": "4" })],
    ["an image", asking("gzip"), answer(HTML, { "content-type": "image/png" })],
    ["a video", asking("gzip"), answer(HTML, { "content-type": "video/mp4" })],
    ["an archive", asking("gzip"), answer(HTML, { "content-type": "application/zip" })],
    ["a font", asking("gzip"), answer(HTML, { "content-type": "font/woff2" })],
    ["a stream", asking("gzip"), answer(HTML, { "content-type": "text/event-stream" })],
    ["a configured type", asking("gzip"), answer(HTML, { "content-type": "text/csv" })],
    ["no-transform", asking("gzip"), answer(HTML, { "cache-control": "public, no-transform" })],
    ["a range", asking("gzip"), answer(HTML, { "content-range": "bytes 0-9/10" }, 206)],
    ["HEAD", asking("gzip", "HEAD"), answer(null, { "content-length": "5000" })],
    ["204", asking("gzip"), answer(null, {}, 204)],
    ["304", asking("gzip"), answer(null, {}, 304)],
    ["not accepted", asking("identity"), answer(HTML)],
    ["no Accept-Encoding", asking(null), answer(HTML)],
  ];
  for (const [what, context, backend] of cases) {
    const r = await run(mw, context, backend);
    assert.equal(
      r.headers.get("content-encoding") ?? "none",
      what === "already encoded" ? "br" : "none",
      what,
    );
    await r.body?.cancel();
  }
});

Deno.test("compression() compresses an answer without Content-Type, as RustStrom did", async () => {
  const mw = await build(compression, { min_size: 100 });
  const r = await run(mw, asking("gzip"), () => new Response(new TextEncoder().encode(HTML)));
  assert.equal(r.headers.get("content-type"), null);
  assert.equal(r.headers.get("content-encoding"), "gzip");
  assert.equal(zlib.gunzipSync(new Uint8Array(await r.arrayBuffer())).toString(), HTML);
});

Deno.test("compression() adds Vary once, keeps other Vary names, and compresses error answers", async () => {
  const mw = await build(compression, { min_size: 0 });
  const r = await run(mw, asking("gzip"), answer(HTML, { vary: "Cookie" }, 503));
  assert.equal(r.headers.get("vary"), "Cookie, Accept-Encoding");
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("content-encoding"), "gzip");
  await r.body?.cancel();
  const again = await run(mw, asking("gzip"), answer(HTML, { vary: "accept-encoding" }));
  assert.equal(again.headers.get("vary"), "accept-encoding");
  await again.body?.cancel();
  // Not compressed for this client, but the answer still varies on Accept-Encoding.
  const plain = await run(mw, asking(null), answer(HTML));
  assert.equal(plain.headers.get("vary"), "Accept-Encoding");
  await plain.body?.cancel();
});

Deno.test("compression() sends a body that does not shrink as it came, still varying", async () => {
  const mw = await build(compression, { min_size: 0 });
  const json = '{"backend":"b1"}';
  const r = await run(
    mw,
    asking("gzip"),
    answer(json, { "content-type": "application/json", "content-length": "16", etag: '"e"' }),
  );
  assert.equal(r.headers.get("content-encoding"), null);
  assert.equal(r.headers.get("content-length"), "16");
  assert.equal(r.headers.get("etag"), '"e"', "a strong validator stays on unchanged bytes");
  assert.equal(r.headers.get("vary"), "Accept-Encoding");
  assert.equal(await r.text(), json);
});

Deno.test("compression() compresses small bodies of every size class that decode back", async () => {
  const mw = await build(compression, { min_size: 0 });
  const decode: Record<string, (b: Uint8Array) => Uint8Array> = {
    gzip: zlib.gunzipSync,
    deflate: zlib.inflateSync,
    br: zlib.brotliDecompressSync,
    zstd: zlib.zstdDecompressSync,
  };
  // Sizes around the zlib window steps (512 B to 32 KB) and the one-shot limit (64 KB).
  for (const size of [200, 600, 3000, 40_000, 65_536, 70_000]) {
    const text = Array.from({ length: size }, (_, i) => "abc def ghi, jkl"[(i * 7) % 16]).join("");
    for (const coding of ["gzip", "deflate", "br", "zstd"]) {
      const r = await run(
        mw,
        asking(coding),
        answer(text, { "content-type": "text/plain", "content-length": String(size) }),
      );
      assert.equal(r.headers.get("content-encoding"), coding, `${coding} ${size}`);
      const bytes = new Uint8Array(await r.arrayBuffer());
      assert.ok(bytes.length < size / 2, `${coding} ${size}: ${bytes.length} bytes`);
      assert.equal(new TextDecoder().decode(decode[coding](bytes)), text, `${coding} ${size}`);
    }
  }
});

Deno.test("compression() answers 502 when a backend's body breaks off before it is compressed", async () => {
  const mw = await build(compression, { min_size: 0 });
  const broken = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("a".repeat(500)));
      controller.error(new Error("connection closed before the end of the body"));
    },
  });
  const r = await run(
    mw,
    asking("gzip"),
    () =>
      new Response(broken, { headers: { "content-type": "text/plain", "content-length": "1000" } }),
  );
  assert.equal(r.status, 502);
  assert.equal(r.headers.get("content-encoding"), null);
  await r.body?.cancel();
});

Deno.test("compression() compresses a streamed body of unknown length", async () => {
  const mw = await build(compression, { min_size: 0 });
  const chunks = ["a".repeat(5000), "b".repeat(5000)];
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(new TextEncoder().encode(next));
    },
  });
  const r = await run(
    mw,
    asking("gzip"),
    () => new Response(body, { headers: { "content-type": "text/plain" } }),
  );
  const text = new TextDecoder().decode(zlib.gunzipSync(new Uint8Array(await r.arrayBuffer())));
  assert.equal(text, "a".repeat(5000) + "b".repeat(5000));
});

/** `n` bytes from a fixed xorshift sequence: incompressible, the same on every run. */
function noise(n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function decodeWhole(coding: string, bytes: Uint8Array): Uint8Array {
  return coding === "gzip"
    ? zlib.gunzipSync(bytes)
    : coding === "deflate"
    ? zlib.inflateSync(bytes)
    : coding === "br"
    ? zlib.brotliDecompressSync(bytes)
    : zlib.zstdDecompressSync(bytes);
}

Deno.test("compression() streams large bodies that barely compress, in every coding", async () => {
  // Each 64 KiB chunk compresses to more than node:zlib's 16 KiB output buffer: the write's
  // callback waits until its output is read, which a pull awaiting the write alone never did.
  const random = noise(1_000_000);
  const base64 = new TextEncoder().encode(
    btoa(Array.from(noise(300_000, 7), (b) => String.fromCharCode(b)).join("")),
  );
  const mw = await build(compression, { min_size: 0 });
  for (const coding of CODINGS) {
    for (const [name, bytes] of [["random", random], ["base64", base64]] as const) {
      let offset = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (offset >= bytes.length) return controller.close();
          controller.enqueue(bytes.slice(offset, offset += 65536));
        },
      });
      const r = await run(mw, asking(coding), () =>
        new Response(body, {
          headers: { "content-type": "text/plain", "content-length": String(bytes.length) },
        }));
      assert.equal(r.headers.get("content-encoding"), coding);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${coding} ${name}: stuck`)), 10_000);
      });
      try {
        const sent = new Uint8Array(await Promise.race([r.arrayBuffer(), stuck]));
        assert.deepEqual(new Uint8Array(decodeWhole(coding, sent)), bytes, `${coding} ${name}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
});

/** What the compressed bytes so far decode to (a flushed prefix decodes whole). */
function decodeSoFar(coding: string, bytes: Uint8Array): string {
  const sync = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  const out = coding === "gzip"
    ? zlib.gunzipSync(bytes, sync)
    : coding === "deflate"
    ? zlib.inflateSync(bytes, sync)
    : coding === "br"
    ? zlib.brotliDecompressSync(bytes, { finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH })
    : zlib.zstdDecompressSync(bytes);
  return new TextDecoder().decode(out);
}

Deno.test("compression() flushes a streamed answer when the backend goes quiet", async () => {
  for (const coding of CODINGS) {
    const deps = testDeps();
    const mw = await build(compression, { min_size: 0 }, deps);
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode("event 1\n"));
        await released; // the backend has nothing more for now
        controller.enqueue(new TextEncoder().encode("event 2\n"));
        controller.close();
      },
    });
    const r = await run(
      mw,
      asking(coding),
      () => new Response(body, { headers: { "content-type": "application/x-ndjson" } }),
    );
    assert.equal(r.headers.get("content-encoding"), coding);
    const reader = r.body!.getReader();
    const chunks: Uint8Array[] = [];
    // The first event reaches the client while the backend still holds the second.
    for (let turns = 0; !decodeSoFar(coding, concatBytes(chunks)).includes("event 1\n");) {
      const read = reader.read();
      let settled = false;
      read.then(() => settled = true, () => settled = true);
      while (!settled) {
        assert.ok(++turns < 1000, `${coding}: nothing decodable came before the backend ended`);
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (deps.clock.pending > 0) deps.clock.advance(FLUSH_IDLE_MS);
      }
      const { value, done } = await read;
      assert.ok(!done && value !== undefined);
      chunks.push(value);
    }
    release();
    for (let part = await reader.read(); !part.done; part = await reader.read()) {
      chunks.push(part.value);
    }
    assert.equal(decodeSoFar(coding, concatBytes(chunks)), "event 1\nevent 2\n", coding);
  }
});

Deno.test("compression() reads a streamed body only as fast as its reader takes the output", async () => {
  const mw = await build(compression, { min_size: 0 });
  // 64 KB of noise again and again: gzip's 32 KB window finds nothing to shrink.
  const block = crypto.getRandomValues(new Uint8Array(64 * 1024));
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= 64 * 1024 * 1024) return controller.close();
      pulled += block.length;
      controller.enqueue(block.slice());
    },
  }, { highWaterMark: 0 });
  const r = await run(
    mw,
    asking("gzip"),
    () => new Response(body, { headers: { "content-type": "text/plain" } }),
  );
  const reader = r.body!.getReader();
  assert.ok(!(await reader.read()).done);
  // A reader that takes nothing more: the backend's body is not read on regardless.
  let before = -1;
  for (let quiet = 0; quiet < 5;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    quiet = pulled === before ? quiet + 1 : 0;
    before = pulled;
  }
  assert.ok(pulled <= 512 * 1024, `read ${pulled} bytes ahead of a reader that took one chunk`);
  await reader.cancel();
});

Deno.test("compression() drops the fields that describe the uncompressed bytes", async () => {
  const mw = await build(compression, { min_size: 0 });
  const text = "compress me ".repeat(1000);
  const stale = {
    "accept-ranges": "bytes",
    "content-digest": "sha-256=:AAAA:",
    "repr-digest": "sha-256=:AAAA:",
    digest: "SHA-256=AAAA",
    "content-md5": "AAAA",
  };
  const r = await run(
    mw,
    asking("gzip"),
    () => new Response(text, { headers: { "content-type": "text/plain", ...stale } }),
  );
  assert.equal(r.headers.get("content-encoding"), "gzip");
  for (const name of Object.keys(stale)) assert.equal(r.headers.get(name), null, name);
});

Deno.test("compression() options: an empty encodings list is refused", () => {
  assert.deepEqual(optionProblems(compression, { encodings: [] }), [
    "Compression.encodings: is empty: nothing would ever be compressed",
  ]);
  assert.deepEqual(optionProblems(compression, { encodings: ["gzip"] }), []);
});
