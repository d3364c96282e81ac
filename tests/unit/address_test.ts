import assert from "node:assert/strict";
import {
  cidrContains,
  parseBackendAuthority,
  parseCidr,
  parseIp,
  parseSocketAddress,
  plainIp,
} from "../../lib/net/address.ts";

Deno.test("parseSocketAddress() accepts IP:port and bracketed IPv6 only", () => {
  assert.deepEqual(parseSocketAddress("0.0.0.0:80"), {
    hostname: "0.0.0.0",
    port: 80,
    text: "0.0.0.0:80",
  });
  assert.deepEqual(parseSocketAddress("[::]:443"), { hostname: "::", port: 443, text: "[::]:443" });
  assert.equal(parseSocketAddress("localhost:80"), "expected an IP address, not a host name");
  assert.equal(
    parseSocketAddress("1.2.3.4"),
    'expected IP:port, e.g. "127.0.0.1:8000" or "[::]:80"',
  );
  assert.equal(
    parseSocketAddress("::1:80"),
    'IPv6 addresses must be written in brackets, e.g. "[::1]:8080"',
  );
  assert.equal(parseSocketAddress("1.2.3.4:x"), 'invalid port "x"');
  assert.equal(parseSocketAddress("[::1"), 'missing "]" after IPv6 address');
  assert.equal(parseSocketAddress("256.1.1.1:80"), "expected an IP address, not a host name");
});

Deno.test("parseBackendAuthority() accepts host[:port] with port 80 by default", () => {
  assert.deepEqual(parseBackendAuthority("api.internal"), {
    host: "api.internal",
    port: 80,
    tls: false,
  });
  assert.deepEqual(parseBackendAuthority("10.0.0.1:8080"), {
    host: "10.0.0.1",
    port: 8080,
    tls: false,
  });
  assert.deepEqual(parseBackendAuthority("[fd00::1]:9000"), {
    host: "fd00::1",
    port: 9000,
    tls: false,
  });
  assert.deepEqual(parseBackendAuthority("http://a:81"), { host: "a", port: 81, tls: false });
  assert.deepEqual(parseBackendAuthority("https://a"), { host: "a", port: 443, tls: true });
  assert.deepEqual(parseBackendAuthority("https://a:8443/"), { host: "a", port: 8443, tls: true });
  assert.equal(
    parseBackendAuthority("ftp://a:80"),
    'unsupported scheme "ftp" (expected host:port, http:// or https://)',
  );
  assert.deepEqual(parseBackendAuthority("example.com.:80"), {
    host: "example.com.",
    port: 80,
    tls: false,
  });
  assert.equal(parseBackendAuthority("example..com:80"), "expected host:port");
  assert.equal(parseBackendAuthority("127.0.0.1:0"), "port 0 cannot be connected to");
  assert.equal(parseBackendAuthority("http://a:0"), "port 0 cannot be connected to");
  assert.equal(parseBackendAuthority(".:80"), "expected host:port");
  assert.equal(parseBackendAuthority("a b:80"), "expected host:port");
  assert.equal(parseBackendAuthority("http//10.0.0.2"), "expected host:port");
  assert.equal(parseBackendAuthority(""), "expected host:port, found an empty string");
});

Deno.test("parseIp() parses IPv4, IPv6 and mapped forms to the same bytes", () => {
  assert.deepEqual(parseIp("1.2.3.4"), parseIp("::ffff:1.2.3.4"));
  assert.deepEqual(parseIp("::ffff:1.2.3.4"), parseIp("::ffff:102:304"));
  assert.deepEqual(parseIp("::1")?.[15], 1);
  assert.deepEqual(parseIp("2001:db8::1")?.slice(0, 4), new Uint8Array([0x20, 0x01, 0x0d, 0xb8]));
  for (
    const bad of [
      "1.2.3",
      "01.2.3.4",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "g::1",
      ":::",
      "",
      "1.2.3.4.5",
    ]
  ) {
    assert.equal(parseIp(bad), null, bad);
  }
});

Deno.test("cidrContains() matches IPv4 and IPv6 networks", () => {
  const net = parseCidr("10.0.0.0/8");
  const v6 = parseCidr("fd00::/8");
  const host = parseCidr("192.168.1.1");
  assert.ok(typeof net !== "string" && typeof v6 !== "string" && typeof host !== "string");
  assert.ok(cidrContains(net, parseIp("10.255.0.1")!));
  assert.ok(cidrContains(net, parseIp("::ffff:10.1.2.3")!));
  assert.ok(!cidrContains(net, parseIp("11.0.0.1")!));
  assert.ok(cidrContains(v6, parseIp("fd12::1")!));
  assert.ok(!cidrContains(v6, parseIp("fe00::1")!));
  assert.ok(cidrContains(host, parseIp("192.168.1.1")!));
  assert.ok(!cidrContains(host, parseIp("192.168.1.2")!));
  assert.equal(parseCidr("10.0.0.0/33"), 'invalid prefix length "33"');
  // IPv6 networks hold IPv6 clients; IPv4 clients only in the IPv4-mapped range (as nginx).
  const any6 = parseCidr("::/0");
  const mapped = parseCidr("::ffff:0:0/96");
  assert.ok(typeof any6 !== "string" && typeof mapped !== "string");
  assert.ok(cidrContains(any6, parseIp("2001:db8::1")!));
  assert.ok(!cidrContains(any6, parseIp("127.0.0.1")!));
  assert.ok(!cidrContains(any6, parseIp("::ffff:10.1.2.3")!));
  assert.ok(cidrContains(mapped, parseIp("10.1.2.3")!));
  assert.ok(!cidrContains(net, parseIp("::1")!));
});

Deno.test("plainIp() unwraps IPv4-mapped IPv6 addresses only", () => {
  assert.equal(plainIp("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(plainIp("::FFFF:10.0.0.1"), "10.0.0.1");
  assert.equal(plainIp("::1"), "::1");
  assert.equal(plainIp("10.0.0.1"), "10.0.0.1");
});
