import assert from "node:assert/strict";
import { endToEnd, forwardedFields, identifyClient } from "../../lib/proxy/headers.ts";
import { type Cidr, parseCidr } from "../../lib/net/address.ts";
import { matchingPath, removeDotSegments } from "../../lib/proxy/path.ts";

const trusted = ["10.0.0.0/8", "::1"].map((t) => parseCidr(t) as Cidr);
const arrival = { proto: "http" as const, port: "8000", serverName: "lb1", host: "a.com" };

Deno.test("endToEnd() drops RFC 9110 hop-by-hop fields and those named in Connection", () => {
  const h = new Headers({
    connection: "keep-alive, X-Secret, bad name",
    "keep-alive": "timeout=5",
    "proxy-connection": "keep-alive",
    te: "trailers",
    trailer: "x",
    upgrade: "h2c",
    "proxy-authorization": "Basic x",
    "x-secret": "1",
    "x-kept": "2",
    host: "a.com",
  });
  assert.deepEqual(endToEnd(h), [["host", "a.com"], ["x-kept", "2"]]);
});

Deno.test("endToEnd() keeps Content-Length and Host whatever Connection lists", () => {
  const h = new Headers({ connection: "content-length, Host", "content-length": "3", host: "a" });
  assert.deepEqual(endToEnd(h), [["content-length", "3"], ["host", "a"]]);
});

Deno.test("identifyClient() ignores X-Forwarded-For from untrusted peers", () => {
  assert.deepEqual(identifyClient("203.0.113.5", "1.2.3.4", trusted), {
    peerIp: "203.0.113.5",
    peerTrusted: false,
    clientIp: "203.0.113.5",
  });
  assert.deepEqual(identifyClient("::ffff:203.0.113.5", null, []), {
    peerIp: "203.0.113.5",
    peerTrusted: false,
    clientIp: "203.0.113.5",
  });
});

Deno.test("identifyClient() writes one client one way: IPv6 canonical, ports and brackets dropped", () => {
  const client = (xff: string) => identifyClient("10.1.1.1", xff, trusted).clientIp;
  for (const spelling of ["2001:db8::1", "2001:DB8::1", "2001:db8:0::1", "2001:0db8:0:0:0:0:0:1"]) {
    assert.equal(client(spelling), "2001:db8::1", spelling);
  }
  assert.equal(client("[2001:db8::1]"), "2001:db8::1");
  assert.equal(client("[2001:db8::1]:443"), "2001:db8::1");
  assert.equal(client("198.51.100.7:5555"), "198.51.100.7");
  assert.equal(client("::ffff:198.51.100.7"), "198.51.100.7");
  assert.equal(client("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1", "the first longest zero run");
  assert.equal(client("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1", "one zero group stays");
  assert.equal(client("::"), "::");
  // Not an address: the hop before it (the trusted proxy) is the client.
  for (const bad of ["[2001:db8::1", "[::1]x", "1.2.3.4:99999", "1.2.3.4:"]) {
    assert.equal(client(bad), "10.1.1.1", bad);
  }
});

Deno.test("identifyClient() takes the right-most untrusted hop behind trusted proxies", () => {
  assert.equal(
    identifyClient("10.1.1.1", "198.51.100.7, 10.2.2.2", trusted).clientIp,
    "198.51.100.7",
  );
  assert.equal(
    identifyClient("10.1.1.1", "6.6.6.6, 198.51.100.7", trusted).clientIp,
    "198.51.100.7",
  );
  assert.equal(identifyClient("::1", "garbage", trusted).clientIp, "::1");
  assert.equal(identifyClient("10.1.1.1", null, trusted).clientIp, "10.1.1.1");
});

Deno.test("forwardedFields() replaces spoofed values from untrusted peers", () => {
  const h = new Headers({
    "x-forwarded-for": "6.6.6.6",
    "x-real-ip": "6.6.6.6",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "evil.com",
    "x-forwarded-port": "1",
    "x-forwarded-server": "evil",
    forwarded: "for=6.6.6.6;proto=https",
    "x-forwarded-prefix": "/evil",
    x_forwarded_for: "6.6.6.6",
    "x_real-ip": "6.6.6.6",
    x_forwarded_prefix: "/evil",
    x_other: "kept",
    host: "a.com",
    connection: "x-hop",
    "x-hop": "1",
    accept: "*/*",
  });
  const fields = forwardedFields(h, identifyClient("203.0.113.5", "6.6.6.6", trusted), arrival);
  assert.deepEqual(fields, [
    ["accept", "*/*"],
    ["host", "a.com"],
    ["x_other", "kept"],
    ["x-forwarded-for", "203.0.113.5"],
    ["x-real-ip", "203.0.113.5"],
    ["x-forwarded-proto", "http"],
    ["x-forwarded-host", "a.com"],
    ["x-forwarded-port", "8000"],
    ["x-forwarded-server", "lb1"],
  ]);
});

Deno.test("forwardedFields() extends the chain and keeps values from trusted peers", () => {
  const h = new Headers({
    "x-forwarded-for": "198.51.100.7",
    "x-forwarded-proto": "https",
    "x-forwarded-port": "443",
    forwarded: "for=198.51.100.7",
    "x-forwarded-prefix": "/app",
    x_forwarded_for: "6.6.6.6",
  });
  const fields = new Map(
    forwardedFields(h, identifyClient("10.1.1.1", "198.51.100.7", trusted), arrival),
  );
  assert.equal(fields.get("x-forwarded-for"), "198.51.100.7, 10.1.1.1");
  assert.equal(fields.get("x-real-ip"), "198.51.100.7");
  assert.equal(fields.get("x-forwarded-proto"), "https");
  assert.equal(fields.get("x-forwarded-port"), "443");
  assert.equal(fields.get("x-forwarded-host"), "a.com");
  assert.equal(fields.get("host"), "a.com", "HTTP/2 requests get Host from :authority");
  assert.equal(fields.get("forwarded"), "for=198.51.100.7");
  assert.equal(fields.get("x-forwarded-prefix"), "/app");
  assert.equal(fields.get("x_forwarded_for"), undefined);
});

Deno.test("matchingPath() decodes once, drops parameters, merges slashes; null when ambiguous", () => {
  const cases: [string, string][] = [
    ["/admin", "/admin"],
    ["/%61dmin", "/admin"],
    ["/ad%6Din/x", "/admin/x"],
    ["//admin", "/admin"],
    ["/a//b///c", "/a/b/c"],
    ["/%2Fadmin", "/admin"],
    ["/caf%C3%A9", "/café"],
    ["/bad%FF/%61", "/bad%FF/a"],
    ["/x%20y", "/x y"],
    // Decoded once: what is left of %252e is no dot.
    ["/admin/%252e%252e/x", "/admin/%2e%2e/x"],
    ["/admin/.%252e/x", "/admin/.%2e/x"],
    // Path parameters are dropped, as Tomcat and Jetty drop them.
    ["/admin;x/secret", "/admin/secret"],
    ["/a;x", "/a"],
    ["/;x/admin", "/admin"],
    ["/admin%3Bx/s", "/admin/s"],
    ["/a/.well-known/x", "/a/.well-known/x"],
    ["/a/..x/.b", "/a/..x/.b"],
  ];
  for (const [raw, want] of cases) assert.equal(matchingPath(removeDotSegments(raw)), want, raw);
  // Dot-segments only decoding or dropping a parameter makes: backends disagree on the path.
  for (
    const raw of [
      "/public%2F..%2Fadmin",
      "/admin/..%2Fsecret",
      "/admin/%2e%2e%2fsecret",
      "/a/b%2F.",
      "/x/..;/admin",
      "/x/.;y/admin",
      "/x/%2e%2e;/admin",
      "/x/..\\admin",
      "/x\\..\\admin",
      "/x/..%5Cadmin",
      "/x;a\\..\\b", // the parameter hid the backslashes' dot-segment
      "/a\\.;x\\b", // the parameter's going makes one
    ]
  ) assert.equal(matchingPath(removeDotSegments(raw)), null, raw);
});

Deno.test("removeDotSegments() resolves dot-segments and leaves everything else", () => {
  const cases: [string, string][] = [
    ["/", "/"],
    ["/a/b", "/a/b"],
    ["//a//b/", "//a//b/"],
    ["/a/./b", "/a/b"],
    ["/a/../b", "/b"],
    ["/a/b/..", "/a/"],
    ["/a/b/.", "/a/b/"],
    ["/../../x", "/x"],
    ["/a/%2e%2E/b", "/b"],
    ["/a/%2e/b%2F..", "/a/b%2F.."],
    ["/a/.hidden/..x", "/a/.hidden/..x"],
    ["/a%20b/c?d", "/a%20b/c?d"],
    ["/a//../b", "/a/b"],
  ];
  for (const [input, expected] of cases) assert.equal(removeDotSegments(input), expected, input);
});
