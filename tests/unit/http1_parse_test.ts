// The response head parser's rules where it takes short cuts: known field
// names skip the token check, the usual Connection values skip the token
// lists, and a single Content-Length skips the repeat check. Each case here
// must come out as the full rules say.

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseResponseHead,
  parseResponseHeadCached,
  ProtocolError,
} from "../../lib/transport/http1/parse.ts";

const RUNS = Number(Deno.env.get("FC_RUNS") ?? 1000);

function refused(head: string, message: RegExp): void {
  assert.throws(() => parseResponseHead(head, "GET"), (e) => {
    assert.ok(e instanceof ProtocolError, String(e));
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("parseResponseHead() refuses a control character, DEL or a lone CR in a value, naming the field", () => {
  for (const bad of ["\x00", "\x01", "\x0b", "\x1f", "\x7f", "\r"]) {
    refused(
      `HTTP/1.1 200 OK\r\nServer: a${bad}b\r\nContent-Length: 0`,
      /invalid value of header "Server"/,
    );
    // The same with bare LF line ends (the other path through the parser).
    refused(
      `HTTP/1.1 200 OK\nServer: a${bad}b\nContent-Length: 0`,
      /invalid value of header "Server"/,
    );
  }
  // Tabs, spaces and obs-text are allowed inside a value.
  const ok = parseResponseHead(
    "HTTP/1.1 200 OK\r\nX-A: a\tb c\xe9\xff\r\nContent-Length: 0",
    "GET",
  );
  assert.deepEqual(ok.fields, [["x-a", "a\tb c\xe9\xff"], ["content-length", "0"]]);
});

Deno.test("parseResponseHead() takes only spaces and tabs off a value's ends", () => {
  const head = parseResponseHead(
    "HTTP/1.1 200 OK\r\nX-A: \t a b \t \r\nX-B:\xa0c\xa0\r\nX-C:\r\nContent-Length: 0",
    "GET",
  );
  assert.deepEqual(head.fields, [
    ["x-a", "a b"],
    ["x-b", "\xa0c\xa0"], // obs-text, part of the value
    ["x-c", ""],
    ["content-length", "0"],
  ]);
  // A vertical tab or a form feed is no whitespace there: the value is invalid.
  for (const bad of ["\x0b", "\x0c"]) {
    refused(
      `HTTP/1.1 200 OK\r\nX-A: a${bad}\r\nContent-Length: 0`,
      /invalid value of header "X-A"/,
    );
    refused(
      `HTTP/1.1 200 OK\r\nX-A: ${bad}a\r\nContent-Length: 0`,
      /invalid value of header "X-A"/,
    );
  }
});

Deno.test("parseResponseHead() keeps Content-Length whatever Connection lists", () => {
  const parsed = parseResponseHead(
    "HTTP/1.1 200 OK\r\nConnection: content-length, x-a\r\nX-A: 1\r\nContent-Length: 1",
    "GET",
  );
  assert.deepEqual(parsed.fields, [["content-length", "1"]]);
});

Deno.test("parseResponseHead() checks every name, also ones it has seen in another spelling", () => {
  const good = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 1", "GET");
  assert.deepEqual(good.fields, [["content-type", "a"], ["content-length", "1"]]);
  refused("HTTP/1.1 200 OK\r\nContent Type: a\r\nContent-Length: 1", /invalid header name/);
  refused("HTTP/1.1 200 OK\r\nContent-Type\x01: a\r\nContent-Length: 1", /invalid header name/);
  // Long names are not remembered, and checked every time.
  const long = "X-" + "a".repeat(100);
  for (let i = 0; i < 2; i++) {
    const parsed = parseResponseHead(`HTTP/1.1 200 OK\r\n${long}: v\r\nContent-Length: 1`, "GET");
    assert.deepEqual(parsed.fields[0], [long.toLowerCase(), "v"]);
    refused(`HTTP/1.1 200 OK\r\n${long}(: v\r\nContent-Length: 1`, /invalid header name/);
  }
  // Many distinct names (past what is remembered) are all read and lower-cased.
  for (let i = 0; i < 600; i++) {
    const parsed = parseResponseHead(
      `HTTP/1.1 200 OK\r\nX-Name-${i}: v\r\nContent-Length: 1`,
      "GET",
    );
    assert.deepEqual(parsed.fields[0], [`x-name-${i}`, "v"]);
  }
  refused("HTTP/1.1 200 OK\r\nX-Name-599 : v\r\nContent-Length: 1", /invalid header name/);
});

Deno.test("parseResponseHead() decides keep-alive from the version and Connection", () => {
  const keep = (head: string) => parseResponseHead(head, "GET").keepAlive;
  assert.equal(keep("HTTP/1.1 200 OK\r\nContent-Length: 1"), true);
  assert.equal(keep("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1"), true);
  assert.equal(keep("HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1"), true);
  assert.equal(keep("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1"), false);
  assert.equal(
    keep("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1"),
    false,
  );
  assert.equal(
    keep("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 1"),
    false,
  );
  assert.equal(keep("HTTP/1.1 200 OK\r\nConnection: keep-alive"), false, "a body up to close");
  assert.equal(keep("HTTP/1.0 200 OK\r\nContent-Length: 1"), false);
  assert.equal(keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1"), true);
  assert.equal(
    keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked"),
    false,
  );
  // Names Connection lists are hop-by-hop: dropped, keep-alive or not.
  const listed = parseResponseHead(
    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-End: 2\r\nContent-Length: 1",
    "GET",
  );
  assert.deepEqual(listed.fields, [["x-end", "2"], ["content-length", "1"]]);
  assert.equal(listed.keepAlive, true);
});

Deno.test("parseResponseHead() reads Content-Length: one value, equal repeats, nothing else", () => {
  const length = (value: string) => {
    const framing = parseResponseHead(`HTTP/1.1 200 OK\r\nContent-Length: ${value}`, "GET").framing;
    return framing.kind === "length" ? framing.length : framing.kind;
  };
  assert.equal(length("16"), 16);
  assert.equal(length("0"), 0);
  assert.equal(length("16, 16"), 16);
  assert.equal(length("999999999999999"), 999999999999999);
  refused("HTTP/1.1 200 OK\r\nContent-Length: 16, 17", /conflicting Content-Length/);
  refused("HTTP/1.1 200 OK\r\nContent-Length: 16\r\nContent-Length: 17", /conflicting/);
  for (const bad of ["+16", "-1", "1e3", "0x10", "1 6", "", "1000000000000000"]) {
    refused(`HTTP/1.1 200 OK\r\nContent-Length: ${bad}`, /invalid Content-Length/);
  }
});

Deno.test("parseResponseHead() reads a head with bare LF line ends as the same head with CR LF", () => {
  const name = fc.stringMatching(/^[A-Za-z0-9-]{1,12}$/);
  const value = fc.stringMatching(/^[\t -~\x80-\xff]{0,20}$/);
  const connection = fc.constantFrom(null, "keep-alive", "close", "Keep-Alive, X-A", "x-a");
  fc.assert(
    fc.property(
      fc.constantFrom("0", "1"),
      fc.array(fc.tuple(name, value), { maxLength: 8 }),
      connection,
      fc.oneof(fc.constant(null), fc.nat({ max: 1e6 }), fc.constant("chunked")),
      (minor, fields, conn, framing) => {
        const lines = [`HTTP/1.${minor} 200 OK`, ...fields.map(([n, v]) => `${n}: ${v}`)];
        if (conn !== null) lines.push(`Connection: ${conn}`);
        if (framing === "chunked") lines.push("Transfer-Encoding: chunked");
        else if (framing !== null) lines.push(`Content-Length: ${framing}`);
        const outcome = (head: string) => {
          try {
            return parseResponseHead(head, "GET");
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            return e.message;
          }
        };
        assert.deepEqual(outcome(lines.join("\n")), outcome(lines.join("\r\n")));
      },
    ),
    { seed: 7, numRuns: RUNS },
  );
});

Deno.test("parseResponseHeadCached() answers a head seen before as parsed, frozen, and not for HEAD", () => {
  const head =
    "HTTP/1.1 200 OK\r\nServer: cached-test\r\nContent-Length: 5\r\nConnection: keep-alive";
  const first = parseResponseHeadCached(head, "GET");
  assert.deepEqual(first, parseResponseHead(head, "GET"));
  // The same text again (a string of its own, as each read decodes one) gives the same parse.
  const again = parseResponseHeadCached(head.split("").join(""), "POST");
  assert.equal(again, first);
  assert.ok(
    Object.isFrozen(again) && Object.isFrozen(again.fields) && Object.isFrozen(again.fields[0]),
  );
  assert.throws(() => (again.fields as [string, string][]).push(["x", "y"]), TypeError);
  // The same head answering HEAD has no body; a GET after it still has its five bytes.
  assert.deepEqual(parseResponseHeadCached(head, "HEAD").framing, { kind: "none" });
  assert.deepEqual(parseResponseHeadCached(head, "GET").framing, { kind: "length", length: 5 });
  // A head refused once is refused again (nothing cached for it).
  const bad = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6";
  for (let i = 0; i < 2; i++) {
    assert.throws(() => parseResponseHeadCached(bad, "GET"), /conflicting Content-Length/);
  }
});

Deno.test("parseResponseHeadCached() gives what parseResponseHead gives, for heads repeated or not", () => {
  const heads = fc.tuple(
    fc.constantFrom(
      "HTTP/1.1 200 OK",
      "HTTP/1.0 200 OK",
      "HTTP/1.1 204 No Content",
      "HTTP/1.1 101 x",
    ),
    fc.array(
      fc.tuple(
        fc.constantFrom("Content-Length", "Connection", "X-A", "Transfer-Encoding", "Keep-Alive"),
        fc.constantFrom("0", "7", "close", "keep-alive", "chunked", "x-a", "7, 7"),
      ),
      { maxLength: 4 },
    ),
    fc.constantFrom("GET", "HEAD", "POST"),
  );
  fc.assert(
    fc.property(fc.array(heads, { minLength: 1, maxLength: 6 }), (cases) => {
      for (const [line, fields, method] of [...cases, ...cases]) {
        const head = [line, ...fields.map(([n, v]) => `${n}: ${v}`)].join("\r\n");
        let expected: unknown;
        try {
          expected = parseResponseHead(head, method);
        } catch (e) {
          expected = e instanceof Error ? e.message : e;
        }
        let got: unknown;
        try {
          got = parseResponseHeadCached(head, method);
        } catch (e) {
          got = e instanceof Error ? e.message : e;
        }
        assert.deepEqual(got, expected);
      }
    }),
    { numRuns: RUNS },
  );
});
