import assert from "node:assert/strict";
import fc from "fast-check";
import {
  compileMatcher,
  hostKey,
  hostsOf,
  type Matcher,
  type MatchRequest,
} from "../../lib/config/matcher.ts";
import { PoolRouter, selectPool } from "../../lib/routing.ts";
import type { Pool } from "../../lib/runtime.ts";

function request(host: string, path = "/"): MatchRequest {
  return { method: "GET", host, defaultPort: "80", path, query: "", headers: new Headers() };
}

/** A stand-in pool: the router only reads its name and matcher. */
function pool(name: string, matcher: Matcher): Pool {
  return { config: { name, matcher } } as unknown as Pool;
}

function hosts(source: string): string[] | null {
  const set = hostsOf(compileMatcher(source));
  return set === null ? null : [...set].sort();
}

Deno.test("hostsOf() gives the host names a matcher needs, or null when any host may match", () => {
  assert.deepEqual(hosts("Host('A.Example.com')"), ["a.example.com"]);
  assert.deepEqual(hosts("Host('a.com:8080') && PathPrefix('/api')"), ["a.com"]);
  assert.deepEqual(hosts("PathPrefix('/api') && (Host('a.com') || Host('b.com'))"), [
    "a.com",
    "b.com",
  ]);
  assert.deepEqual(hosts("Host('a.com') || Host('[::1]')"), ["[::1]", "a.com"]);
  assert.deepEqual(hosts("Host('a.com') && Host('b.com')"), [], "can never match");
  assert.deepEqual(hosts("!!Host('a.com')"), ["a.com"]);
  assert.deepEqual(hosts("Host('A.com.')"), ["a.com"], "a final dot names the same host");
  assert.equal(hosts("Host('a.com') || PathPrefix('/')"), null);
  assert.equal(hosts("!Host('a.com')"), null);
  assert.equal(hosts("HostRegexp('^a\\.com$')"), null);
  assert.equal(hosts("PathPrefix('/')"), null);
});

Deno.test("Host('a.test.') with a final dot matches a.test with or without one", () => {
  const m = compileMatcher("Host('a.test.')");
  for (const host of ["a.test", "a.test.", "A.TEST.:8080"]) assert.ok(m(request(host)), host);
  assert.ok(!m(request("a.test..")));
});

Deno.test("hostKey() is the name a Host term compares: no port, no final dot, lower case", () => {
  assert.equal(hostKey("Example.COM.:8080"), "example.com");
  assert.equal(hostKey("example.com"), "example.com");
  assert.equal(hostKey("[::1]:8443"), "[::1]");
  assert.equal(hostKey(""), "");
});

Deno.test("the router does not run the matchers of other hosts' pools", () => {
  // Every Host term reads the request's host: count the reads.
  let reads = 0;
  const vhosts = Array.from(
    { length: 500 },
    (_, i) => pool(`h${i}`, compileMatcher(`Host('h${i}.test')`)),
  );
  vhosts.splice(250, 0, pool("api", compileMatcher("PathPrefix('/api')")));
  const indexed = new PoolRouter(vhosts);
  const counting = (host: string, path = "/"): MatchRequest => {
    const base = request(host, path);
    return {
      ...base,
      get host() {
        reads++;
        return host;
      },
    };
  };
  assert.equal(indexed.select(counting("H499.test.:80"))?.config.name, "h499");
  assert.ok(reads <= 3, `host read ${reads} times: the other vhosts' matchers ran`);
  reads = 0;
  assert.equal(indexed.select(counting("h499.test", "/api/x"))?.config.name, "api");
  assert.equal(indexed.select(counting("other.test"))?.config.name, undefined);
  assert.ok(reads <= 6, `host read ${reads} times`);
  // The same list walked from the start reads it for every vhost before the one that matches.
  reads = 0;
  assert.equal(selectPool(vhosts, counting("h499.test"))?.config.name, "h499");
  assert.ok(reads > 400, `${reads}`);
});

Deno.test("the router picks the same pool as a walk through every pool, in file order", () => {
  const names = ["a.test", "b.test", "[::1]"];
  const term = fc.oneof(
    fc.constantFrom(...names).map((h) => `Host('${h}')`),
    fc.tuple(fc.constantFrom(...names), fc.constantFrom("80", "8080")).map(([h, p]) =>
      `Host('${h}:${p}')`
    ),
    fc.constantFrom("PathPrefix('/api')", "Path('/')", "HostRegexp('b')"),
  );
  const matcher: fc.Arbitrary<string> = fc.letrec<{ m: string }>((tie) => ({
    m: fc.oneof(
      { depthSize: "small" },
      term,
      fc.tuple(tie("m"), tie("m")).map(([a, b]) => `(${a} && ${b})`),
      fc.tuple(tie("m"), tie("m")).map(([a, b]) => `(${a} || ${b})`),
      tie("m").map((a) => `!${a}`),
    ),
  })).m;
  const host = fc.oneof(
    fc.constantFrom(...names),
    fc.constantFrom("A.TEST", "b.test.", "b.test:8080", "a.test.:80", "[::1]:80", "c.test", ""),
  );
  fc.assert(
    fc.property(
      fc.array(matcher, { minLength: 1, maxLength: 8 }),
      fc.array(fc.tuple(host, fc.constantFrom("/", "/api/x", "/z")), { maxLength: 20 }),
      (sources, requests) => {
        const pools = sources.map((s, i) => pool(`p${i}`, compileMatcher(s)));
        const router = new PoolRouter(pools);
        for (const [h, path] of requests) {
          const r = request(h, path);
          assert.equal(router.select(r), selectPool(pools, r), `${h}${path} over ${sources}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});
