import assert from "node:assert/strict";
import { keyLines, locateLine, withLines } from "../../lib/config/locate.ts";
import { parseConfig } from "../../lib/config/load.ts";
import { ConfigError } from "../../lib/config/errors.ts";

const TEXT = `# Strom
http_address = "127.0.0.1:8000"
trusted_proxies = [
  "127.0.0.1",   # a comment with ] and "quotes"
  "10.0.0.0/8",
]

[health_interval]
check_every = 10

[[backend_pools]]
name = "api"
matcher = "Host('a.com') && PathPrefix('/x]')"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081"]
strategy = { StickyCookie = { cookie_name = "lb", inner = { LeastConnection = {} } } }

[backend_pools.health_config]
path = "/health"

[[backend_pools]]
addresses = ["127.0.0.1:8082"]
strategy = "Roundrobin"
description = """
a multi-line string
[not_a_table]
strategy = "not a key"
"""

[backend_pools.middlewares.RateLimiter]
limit = 5
window = "1s"

[backend_pools.middlewares."Custom.Name"]
key = 'value'

[certificates."a.com"]
type = { Local = { certificate_path = "a.pem", private_key_path = "a.key" } }

[certificates.'b.com']
client.pool_max_idle_per_host = 3
`;

Deno.test("locateLine() finds keys under [[...]] headers by counting their elements", () => {
  assert.equal(locateLine(TEXT, "backend_pools[0]"), 11);
  assert.equal(locateLine(TEXT, "backend_pools[0].name"), 12);
  assert.equal(locateLine(TEXT, "backend_pools[1].strategy"), 22);
  assert.equal(locateLine(TEXT, "backend_pools[1].description"), 23);
  assert.equal(locateLine(TEXT, "backend_pools[0].health_config.path"), 18);
  assert.equal(locateLine(TEXT, "backend_pools[1].middlewares.RateLimiter.limit"), 30);
  assert.equal(locateLine(TEXT, "backend_pools[1].middlewares.RateLimiter.window"), 31);
  assert.equal(locateLine(TEXT, 'backend_pools[1].middlewares."Custom.Name".key'), 34);
});

Deno.test("locateLine() finds keys in inline tables, arrays and dotted keys", () => {
  assert.equal(locateLine(TEXT, "http_address"), 2);
  assert.equal(locateLine(TEXT, "trusted_proxies"), 3);
  assert.equal(locateLine(TEXT, "trusted_proxies[0]"), 4);
  assert.equal(locateLine(TEXT, "trusted_proxies[1]"), 5);
  assert.equal(locateLine(TEXT, "health_interval.check_every"), 9);
  assert.equal(locateLine(TEXT, "backend_pools[0].addresses[1]"), 14);
  assert.equal(locateLine(TEXT, "backend_pools[0].strategy.StickyCookie.inner"), 15);
  assert.equal(
    locateLine(TEXT, "backend_pools[0].strategy.StickyCookie.inner.LeastConnection"),
    15,
  );
  assert.equal(locateLine(TEXT, 'certificates."a.com".type.Local.private_key_path'), 37);
  assert.equal(locateLine(TEXT, 'certificates."b.com".client.pool_max_idle_per_host'), 40);
});

Deno.test("locateLine() gives a missing key the line of its nearest written ancestor", () => {
  assert.equal(locateLine(TEXT, "backend_pools[1].matcher"), 20);
  assert.equal(locateLine(TEXT, "backend_pools[0].client.pool_idle_timeout"), 11);
  assert.equal(locateLine(TEXT, "backend_pools[1].middlewares.RateLimiter.burst"), 29);
  assert.equal(locateLine(TEXT, "admin_address"), undefined);
  assert.equal(locateLine(TEXT, ""), undefined);
});

Deno.test("locateLine() does not see keys inside strings and comments", () => {
  assert.equal(keyLines(TEXT).complete, true);
  assert.equal(keyLines(TEXT).lines.has("not_a_table"), false);
  assert.equal(locateLine(TEXT, "backend_pools[1].strategy"), 22, "not the string's line 26");
});

Deno.test("locateLine() answers only what it reached in text it cannot follow", () => {
  const text = `a = 1\n[b]\nc = @@@ nonsense\n[d]\ne = 2\n`;
  assert.equal(keyLines(text).complete, false);
  assert.equal(locateLine(text, "a"), 1);
  assert.equal(locateLine(text, "d.e"), undefined);
  assert.equal(locateLine(text, "b.x"), undefined, "no ancestor guess after the scan stopped");
});

Deno.test("locateLine() handles CRLF line ends and quoted keys with escapes", () => {
  const text = `a = 1\r\n\r\n["k\\u0065y.x"]\r\nv = true\r\n`;
  assert.equal(locateLine(text, '"key.x".v'), 4);
});

Deno.test("withLines() adds lines only where missing and leaves the root alone", () => {
  assert.deepEqual(
    withLines(TEXT, [
      { path: "backend_pools[1].strategy", message: "unknown strategy" },
      { path: "", message: "invalid TOML", line: 7 },
      { path: "", message: "cannot read file" },
      { path: "nowhere", message: "unknown key" },
    ]),
    [
      { path: "backend_pools[1].strategy", message: "unknown strategy", line: 22 },
      { path: "", message: "invalid TOML", line: 7 },
      { path: "", message: "cannot read file" },
      { path: "nowhere", message: "unknown key" },
    ],
  );
});

Deno.test("parseConfig() reports validation problems with their file lines", () => {
  const text = [
    `http_address = "127.0.0.1:0"`,
    ``,
    `[[backend_pools]]`,
    `matcher = "PathPrefix('/')"`,
    `addresses = ["127.0.0.1:8080"]`,
    `schemes = ["HTTP"]`,
    `strategy = { RoundRobin = {} }`,
    ``,
    `[[backend_pools]]`,
    `matcher = "PathPrefix('/b')"`,
    `addresses = ["127.0.0.1:8081", "http//10.0.0.2"]`,
    `schemes = ["HTTP"]`,
    `strategy = "Fastest"`,
    `colour = 1`,
    ``,
  ].join("\n");
  try {
    parseConfig(text, { source: "strom.toml", baseDir: "." });
    assert.fail("expected a ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(
      e.problems.map((p) => `${p.line}: ${p.path}`).sort(),
      [
        "11: backend_pools[1].addresses[1]",
        "13: backend_pools[1].strategy",
        "14: backend_pools[1].colour",
      ],
    );
    assert.match(
      e.message,
      /\n {2}backend_pools\[1\]\.strategy: unknown strategy .* \(line 13\)\n/,
    );
  }
});

Deno.test("a dotted key longer than any config needs stops the scan, in time linear in its length", () => {
  // Every prefix of a key is recorded: 100,000 parts (200 KB) would have taken memory in n².
  const key = Array.from({ length: 100_000 }, () => "a").join(".");
  const text = `http_address = "127.0.0.1:80"\n${key} = 1\n[[backend_pools]]\nx = 1\n`;
  const { lines, complete } = keyLines(text);
  assert.equal(complete, false);
  assert.equal(lines.get("a"), 2);
  assert.ok(lines.size < 600, `${lines.size} paths recorded`);
  assert.deepEqual(withLines(text, [{ path: "a", message: "unknown key" }]), [
    { path: "a", message: "unknown key", line: 2 },
  ]);
});
