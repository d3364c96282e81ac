// Property tests (fast-check, fixed seed; FC_RUNS=N for more) of the HTTP/1.1
// response parser, the header rules and path normalization.

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  latin1,
  parseChunkSize,
  parseResponseHead,
  ProtocolError,
} from "../../lib/transport/http1/parse.ts";
import { forwardedFields, identifyClient } from "../../lib/proxy/headers.ts";
import { removeDotSegments } from "../../lib/proxy/path.ts";
import { type Cidr, parseCidr } from "../../lib/net/address.ts";

const RUNS = Number(Deno.env.get("FC_RUNS") ?? 1000);
const options = { seed: 42, numRuns: RUNS };

const token = fc.stringMatching(/^[A-Za-z0-9-]{1,12}$/);
const headChar = fc.constantFrom(
  ..."HTTP/1.0 2345\r\n: -;,chunkedContent-LengthTransfer-Encoding\t\x00é".split(""),
);

Deno.test("parseResponseHead() throws nothing but ProtocolError on random heads", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: headChar, maxLength: 200 }),
      fc.constantFrom("GET", "HEAD"),
      (head, method) => {
        try {
          parseResponseHead(head, method);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
      },
    ),
    options,
  );
});

Deno.test("parseResponseHead() frames every well-formed head as announced", () => {
  const field = fc.tuple(token, fc.stringMatching(/^[ -~]{0,20}$/));
  fc.assert(
    fc.property(
      fc.integer({ min: 200, max: 599 }),
      fc.array(field, { maxLength: 8 }),
      fc.oneof(fc.constant(null), fc.nat({ max: 1e9 }), fc.constant("chunked")),
      (status, fields, framing) => {
        const safe = fields.filter(([n]) =>
          !/^(content-length|transfer-encoding|connection)$/i.test(n)
        );
        const extra = framing === null
          ? []
          : framing === "chunked"
          ? ["Transfer-Encoding: chunked"]
          : [`Content-Length: ${framing}`];
        const head = [`HTTP/1.1 ${status} X`, ...safe.map(([n, v]) => `${n}: ${v}`), ...extra].join(
          "\r\n",
        );
        const parsed = parseResponseHead(head, "GET");
        assert.equal(parsed.status, status);
        const expected = status === 204 || status === 304
          ? "none"
          : framing === null
          ? "close"
          : framing === "chunked"
          ? "chunked"
          : "length";
        assert.equal(parsed.framing.kind, expected);
        for (const [name] of parsed.fields) {
          assert.ok(!["transfer-encoding", "connection", "keep-alive"].includes(name));
        }
      },
    ),
    options,
  );
});

Deno.test("latin1() maps every byte to the character of that code, ASCII or not", () => {
  // Bytes biased towards ASCII, UTF-8 sequences (valid or cut), a BOM and U+FFFD's encoding.
  const piece = fc.oneof(
    fc.uint8Array({ maxLength: 40 }).map((b) => b.map((x) => x & 0x7f)),
    fc.uint8Array({ maxLength: 8 }),
    fc.constantFrom([0xef, 0xbb, 0xbf], [0xef, 0xbf, 0xbd], [0xc3, 0xa9], [0xf0, 0x9f, 0x98, 0x80]),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
      const bytes = new Uint8Array(pieces.flatMap((p) => [...p]));
      const text = latin1(bytes);
      assert.equal(text.length, bytes.length);
      for (let i = 0; i < bytes.length; i++) assert.equal(text.charCodeAt(i), bytes[i]);
    }),
    options,
  );
});

Deno.test("parseChunkSize() accepts hex sizes with extensions and nothing else", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), (line) => {
      try {
        const n = parseChunkSize(line);
        assert.ok(Number.isInteger(n) && n >= 0);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
      }
    }),
    options,
  );
  fc.assert(
    fc.property(fc.nat({ max: 2 ** 40 }), (n) => parseChunkSize(`${n.toString(16)};a=b`) === n),
    options,
  );
});

const trusted = ["10.0.0.0/8"].map((t) => parseCidr(t) as Cidr);
const ip = fc.oneof(
  fc.ipV4(),
  fc.constant("10.1.2.3"),
  fc.constant("::1"),
  fc.string({ maxLength: 10 }),
);

Deno.test("forwardedFields() never forwards hop-by-hop fields and always ends the chain with the peer", () => {
  const names = fc.constantFrom(
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-real-ip",
    "x-custom",
    "host",
    "proxy-authorization",
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(names, fc.stringMatching(/^[ -~]{0,15}$/)), { maxLength: 8 }),
      fc.constantFrom("203.0.113.9", "10.9.9.9"),
      ip,
      (pairs, peer, hop) => {
        const headers = new Headers();
        for (const [n, v] of pairs) headers.append(n, v);
        if (hop) headers.append("x-forwarded-for", hop);
        const client = identifyClient(peer, headers.get("x-forwarded-for"), trusted);
        const fields = forwardedFields(headers, client, {
          proto: "http",
          port: "80",
          serverName: "lb",
          host: "a.example",
        });
        for (const [name] of fields) {
          assert.ok(
            !["connection", "keep-alive", "te", "upgrade", "proxy-authorization"].includes(name),
            name,
          );
        }
        const xff = fields.filter(([n]) => n === "x-forwarded-for");
        assert.equal(xff.length, 1);
        assert.ok(xff[0][1].endsWith(peer));
        if (!client.peerTrusted) {
          assert.equal(xff[0][1], peer, "untrusted peers cannot extend the chain");
        }
      },
    ),
    options,
  );
});

Deno.test("removeDotSegments() leaves no dot-segment and is idempotent", () => {
  const segment = fc.constantFrom("a", "b", ".", "..", "%2e", "%2E%2e", "", "x%20y", "..a");
  fc.assert(
    fc.property(fc.array(segment, { maxLength: 10 }), (segments) => {
      const out = removeDotSegments("/" + segments.join("/"));
      assert.ok(out.startsWith("/"));
      for (const seg of out.split("/")) {
        assert.ok(![".", ".."].includes(seg.toLowerCase().replaceAll("%2e", ".")), out);
      }
      assert.equal(removeDotSegments(out), out);
    }),
    options,
  );
});

Deno.test("parseResponseHead() refuses transfer codings it cannot undo, and HTTP/1.0 chunked is not kept", () => {
  assert.throws(
    () => parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "GET"),
    /unsupported transfer coding "gzip"/,
  );
  assert.throws(
    () => parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "GET"),
    ProtocolError,
  );
  // RFC 9112 6.1: after an HTTP/1.0 answer with Transfer-Encoding the connection must close.
  const old = parseResponseHead(
    "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive",
    "GET",
  );
  assert.deepEqual([old.framing.kind, old.keepAlive], ["chunked", false]);
  const kept = parseResponseHead(
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive",
    "GET",
  );
  assert.equal(kept.keepAlive, true);
});
