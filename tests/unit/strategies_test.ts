import assert from "node:assert/strict";
import { createStrategy, parseStrategy, STRATEGY_NAMES } from "../../lib/balance/registry.ts";
import type { Candidate, PickContext } from "../../lib/balance/strategy.ts";
import { findCookie } from "../../lib/balance/sticky_cookie.ts";
import type { StrategyConfig } from "../../lib/config/types.ts";
import { ManualClock } from "../_helpers/clock.ts";

const STICKY = {
  StickyCookie: {
    cookie_name: "lb",
    http_only: true,
    secure: true,
    same_site: "Lax",
    inner: { RoundRobin: {} },
  },
};

/** Seeded PRNG (mulberry32) so "random" choices are reproducible. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function config(value: unknown): StrategyConfig {
  const problems: { path: string; message: string }[] = [];
  const parsed = parseStrategy(value, "strategy", problems);
  assert.deepEqual(problems, []);
  return parsed!;
}

function make(value: unknown, random = seeded(1)) {
  return createStrategy(config(value), { random });
}

function candidates(n: number): (Candidate & { inFlight: number })[] {
  return Array.from({ length: n }, (_, i) => ({ id: `10.0.0.${i + 1}:80`, inFlight: 0 }));
}

function context(clientIp = "192.0.2.1", cookie: string | null = null): PickContext {
  return { clientIp, cookie, setCookie: null };
}

const ALL: Record<string, unknown> = {
  RoundRobin: "RoundRobin",
  Random: { Random: {} },
  IPHash: "IPHash",
  LeastConnection: "LeastConnection",
  StickyCookie: STICKY,
  WeightedRoundRobin: { WeightedRoundRobin: { weights: { "10.0.0.1:80": 2 } } },
  PowerOfTwoChoices: "PowerOfTwoChoices",
  PeakEWMA: "PeakEWMA",
};

Deno.test("every registered strategy has a contract case", () => {
  assert.deepEqual(Object.keys(ALL).sort(), [...STRATEGY_NAMES].sort());
});

for (const name of STRATEGY_NAMES) {
  Deno.test(`${name}: picks only among the candidates it is given`, () => {
    const s = make(ALL[name]);
    const all = candidates(5);
    for (let i = 0; i < 200; i++) {
      const subset = all.filter((_, j) => (i + j) % 3 !== 0);
      const chosen = s.pick(subset, context(`198.51.100.${i % 250}`));
      assert.ok(subset.includes(chosen), `${chosen.id} is not a candidate`);
    }
  });

  Deno.test(`${name}: a single candidate is always chosen`, () => {
    const s = make(ALL[name]);
    const [only] = candidates(1);
    for (let i = 0; i < 20; i++) assert.equal(s.pick([only], context(`203.0.113.${i}`)), only);
  });

  Deno.test(`${name}: spreads many distinct clients over every candidate`, () => {
    const s = make(ALL[name]);
    const all = candidates(3);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const c = s.pick(all, context(`10.${i >> 8}.${i & 255}.7`));
      counts.set(c.id, (counts.get(c.id) ?? 0) + 1);
    }
    assert.equal(counts.size, 3);
    for (const n of counts.values()) assert.ok(n > 700, `uneven spread ${[...counts.values()]}`);
  });
}

Deno.test("roundRobin() cycles through candidates in order", () => {
  const s = make("RoundRobin");
  const all = candidates(3);
  const ids = Array.from({ length: 7 }, () => s.pick(all, context()).id.slice(7, 8));
  assert.deepEqual(ids, ["1", "2", "3", "1", "2", "3", "1"]);
});

Deno.test("roundRobin() does not move on for a retry's pick", () => {
  const s = make("RoundRobin");
  const [a, b] = candidates(2);
  const retry = { ...context(), retry: true };
  // A fails each time and the retry goes to B: the next request still starts on B, not A again.
  const firsts = Array.from({ length: 4 }, () => {
    const first = s.pick([a, b], context());
    if (first === a) assert.equal(s.pick([b], retry), b);
    return first.id.slice(7, 8);
  });
  assert.deepEqual(firsts, ["1", "2", "1", "2"]);
});

Deno.test("leastConnection() does not move its tie-breaking offset for a retry's pick", () => {
  const s = make("LeastConnection");
  const [a, b, dead] = candidates(3);
  const retry = { ...context(), retry: true };
  const served = { a: 0, b: 0 };
  for (let i = 0; i < 300; i++) {
    let pick = s.pick([a, b, dead], context());
    if (pick === dead) pick = s.pick([a, b], retry); // refused: retried on the others
    pick === a ? served.a++ : served.b++;
  }
  // Before, the retries took turns too: 75 and 225.
  assert.deepEqual(served, { a: 150, b: 150 });
});

Deno.test("random() follows the injected random()", () => {
  const values = [0, 0.5, 0.99];
  const s = make("Random", () => values.shift()!);
  const all = candidates(3);
  assert.deepEqual([1, 2, 3].map(() => s.pick(all, context()).id), [
    all[0].id,
    all[1].id,
    all[2].id,
  ]);
});

Deno.test("ipHash() keeps a client on its backend and only moves clients of a removed one", () => {
  const s = make("IPHash");
  const all = candidates(4);
  const before = new Map<string, string>();
  for (let i = 0; i < 400; i++) {
    const ip = `172.16.${i >> 4}.${i & 15}`;
    const chosen = s.pick(all, context(ip)).id;
    assert.equal(s.pick(all, context(ip)).id, chosen, "same client, same backend");
    before.set(ip, chosen);
  }
  const removed = all[2].id;
  const remaining = all.filter((c) => c.id !== removed);
  for (const [ip, old] of before) {
    const now = s.pick(remaining, context(ip)).id;
    if (old !== removed) assert.equal(now, old, `${ip} moved although its backend stayed`);
  }
});

Deno.test("leastConnection() picks the candidate with the fewest in-flight requests", () => {
  const s = make("LeastConnection");
  const all = candidates(3);
  all[0].inFlight = 5;
  all[1].inFlight = 1;
  all[2].inFlight = 3;
  for (let i = 0; i < 10; i++) assert.equal(s.pick(all, context()), all[1]);
});

Deno.test("leastConnection() shares ties evenly instead of favouring the first", () => {
  const s = make("LeastConnection");
  const all = candidates(3);
  const seen = [0, 1, 2].map(() => s.pick(all, context()).id);
  assert.deepEqual(new Set(seen).size, 3);
});

Deno.test("stickyCookie() sets a cookie that hides the address and keeps the client there", () => {
  const s = make(STICKY);
  const all = candidates(3);
  const first = context();
  const chosen = s.pick(all, first);
  assert.ok(first.setCookie);
  assert.match(first.setCookie, /^lb=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
  assert.ok(!first.setCookie.includes("10.0.0"), "cookie must not expose the address");
  const value = first.setCookie.slice(3, 25);
  for (
    const cookie of [`lb=${value}`, `a=1; lb=${value}`, `lb=${value}; a=1`, `x=2, lb="${value}"`]
  ) {
    const again = context("198.51.100.9", cookie);
    assert.equal(s.pick(all, again), chosen, cookie);
    assert.equal(again.setCookie, null, "no new cookie while the backend is there");
  }
});

Deno.test("stickyCookie() values mean the same backend in every instance with the same config", () => {
  const first = context();
  const chosen = make(STICKY).pick(candidates(3), first);
  const value = first.setCookie!.split(";")[0];
  const other = make(STICKY);
  for (let i = 0; i < 5; i++) {
    assert.equal(other.pick(candidates(3), context("1.1.1.1", value)).id, chosen.id);
  }
  const secret = { StickyCookie: { ...STICKY.StickyCookie, secret: "s3cret" } };
  const keyed = context();
  make(secret).pick(candidates(3), keyed);
  assert.notEqual(keyed.setCookie!.split(";")[0], value, "the secret changes the token");
});

Deno.test("stickyCookie() honours a RustStrom cookie holding the address, unless a secret is set", () => {
  const s = make(STICKY);
  const all = candidates(3);
  const c = context("1.1.1.1", `session=abc; lb=${all[2].id}`);
  assert.equal(s.pick(all, c), all[2]);
  assert.equal(c.setCookie, null);
  // With a secret, values must be unguessable: a client writing an address picks nothing.
  const keyed = make({ StickyCookie: { ...STICKY.StickyCookie, secret: "s3cret" } }, () => 0);
  const picks = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const ci = context("1.1.1.1", `lb=${all[2].id}`);
    picks.add(keyed.pick(all, ci).id);
    assert.notEqual(ci.setCookie, null, "a fresh, keyed cookie");
  }
  assert.ok(picks.size > 1 || !picks.has(all[2].id), [...picks].join(","));
});

Deno.test("WeightedRoundRobin names its weight-0 backends as backups, and StickyCookie passes it on", () => {
  const weights = { weights: { [candidates(3)[2].id]: 0, [candidates(3)[0].id]: 3 } };
  const wrr = make({ WeightedRoundRobin: weights });
  assert.deepEqual(candidates(3).map((c) => wrr.isBackup?.(c.id)), [false, false, true]);
  const sticky = make({
    StickyCookie: { ...STICKY.StickyCookie, inner: { WeightedRoundRobin: weights } },
  });
  assert.deepEqual(candidates(3).map((c) => sticky.isBackup?.(c.id)), [false, false, true]);
  assert.equal(make("RoundRobin").isBackup, undefined);
});

Deno.test("stickyCookie() re-picks with a fresh cookie when the remembered backend is gone", () => {
  const s = make(STICKY);
  const all = candidates(3);
  const first = context();
  const chosen = s.pick(all, first);
  const rest = all.filter((c) => c !== chosen);
  const again = context("1.1.1.1", first.setCookie!.split(";")[0]);
  const next = s.pick(rest, again);
  assert.ok(rest.includes(next));
  assert.ok(again.setCookie && again.setCookie !== first.setCookie);
});

Deno.test("stickyCookie() inside a stickyCookie: both cookies, replaced on a retry's pick", () => {
  const inner = { StickyCookie: { ...STICKY.StickyCookie, cookie_name: "in" } };
  const s = make({ StickyCookie: { ...STICKY.StickyCookie, inner } });
  const all = candidates(3);
  const c = context();
  const first = s.pick(all, c);
  const names = () => c.setCookie!.split("\n").map((v) => v.split("=")[0]);
  assert.deepEqual(names(), ["in", "lb"]);
  const before = c.setCookie;
  c.retry = true;
  s.pick(all.filter((b) => b !== first), c);
  assert.deepEqual(names(), ["in", "lb"], "a retry's cookies replace the first attempt's");
  assert.notEqual(c.setCookie, before);
});

Deno.test("stickyCookie() ignores cookies whose name only contains the configured name", () => {
  const s = make(STICKY);
  const all = candidates(3);
  const c = context("1.1.1.1", `xlb=${all[1].id}; lbx=${all[1].id}`);
  s.pick(all, c);
  assert.ok(c.setCookie, "a look-alike cookie must not count");
});

Deno.test("findCookie() parses cookie headers per RFC 6265", () => {
  assert.equal(findCookie("lb=1", "lb"), "1");
  assert.equal(findCookie("a=1;lb=2", "lb"), "2");
  assert.equal(findCookie(" a = 1 ;  lb = 3 ", "lb"), "3");
  assert.equal(findCookie("lb=", "lb"), "");
  assert.equal(findCookie('lb="q"', "lb"), "q");
  assert.equal(findCookie("a=1", "lb"), null);
  assert.equal(findCookie("lb", "lb"), null);
  assert.equal(findCookie("", "lb"), null);
  assert.equal(findCookie(";;;=;lb=4", "lb"), "4");
});

Deno.test("weightedRoundRobin() gives each backend its share, interleaved", () => {
  const s = make({ WeightedRoundRobin: { weights: { "10.0.0.1:80": 3 } } });
  const [a, b] = candidates(2);
  const picks = Array.from({ length: 8 }, () => s.pick([a, b], context()).id);
  assert.deepEqual(picks, [a.id, a.id, b.id, a.id, a.id, a.id, b.id, a.id]);
  // Over a long run with three backends (5:2:1), the shares are exact.
  const three = candidates(3);
  const weighted = make({
    WeightedRoundRobin: { weights: { "10.0.0.1:80": 5, "10.0.0.2:80": 2 } },
  });
  const counts = new Map<string, number>();
  for (let i = 0; i < 800; i++) {
    const c = weighted.pick(three, context());
    counts.set(c.id, (counts.get(c.id) ?? 0) + 1);
  }
  assert.deepEqual([...counts.values()], [500, 200, 100]);
});

Deno.test("weightedRoundRobin() keeps shares among the candidates that are left", () => {
  const s = make({ WeightedRoundRobin: { weights: { "10.0.0.2:80": 2, "10.0.0.3:80": 1 } } });
  const [, b, c] = candidates(3);
  const counts = { b: 0, c: 0 };
  for (let i = 0; i < 300; i++) s.pick([b, c], context()) === b ? counts.b++ : counts.c++;
  assert.deepEqual(counts, { b: 200, c: 100 });
});

Deno.test("weightedRoundRobin() sends to weight-0 backups only when nothing else is left", () => {
  const s = make({
    WeightedRoundRobin: { weights: { "10.0.0.2:80": 0, "10.0.0.3:80": 0 } },
  });
  const [a, b, c] = candidates(3);
  for (let i = 0; i < 20; i++) assert.equal(s.pick([a, b, c], context()), a);
  const backups = new Set(Array.from({ length: 10 }, () => s.pick([b, c], context()).id));
  assert.deepEqual([...backups].sort(), [b.id, c.id], "the backups take turns");
});

Deno.test("powerOfTwoChoices() takes the less loaded of two different random candidates", () => {
  const all = candidates(4);
  all[0].inFlight = 9;
  all[1].inFlight = 3;
  const s = make("PowerOfTwoChoices", seeded(7));
  const counts = new Map<string, number>();
  for (let i = 0; i < 4000; i++) {
    const c = s.pick(all, context());
    counts.set(c.id, (counts.get(c.id) ?? 0) + 1);
  }
  assert.equal(counts.get(all[0].id), undefined, "the busiest is never chosen over another");
  // The two idle ones win every pair they are in; the one with 3 only its pair with the busiest.
  assert.ok(counts.get(all[1].id)! > 400 && counts.get(all[1].id)! < 1000);
  assert.ok(counts.get(all[2].id)! > 1200 && counts.get(all[3].id)! > 1200);
  // Two candidates with equal load: both are used.
  const pair = candidates(2);
  const seen = new Set(Array.from({ length: 50 }, () => s.pick(pair, context()).id));
  assert.equal(seen.size, 2);
});

/** Picks `n` times; how often each candidate was chosen. */
function tally(s: ReturnType<typeof make>, all: readonly Candidate[], n: number) {
  const counts = new Map<string, number>(all.map((c) => [c.id, 0]));
  for (let i = 0; i < n; i++) {
    const c = s.pick(all, context());
    counts.set(c.id, counts.get(c.id)! + 1);
  }
  return counts;
}

function peakEwma(decay: unknown = "10s") {
  const clock = new ManualClock();
  const s = createStrategy(config({ PeakEWMA: { decay } }), { random: seeded(3), clock });
  return { s, clock };
}

Deno.test("peakEwma() takes a 5xx as twice the slowest other backend: never the fastest", () => {
  const { s } = peakEwma();
  const [a, b, c] = candidates(3);
  s.observe!(a.id, 2);
  s.observe!(b.id, 2);
  s.observe!(c.id, 0.5, true); // a 500 at once
  assert.equal(tally(s, [a, b, c], 300).get(c.id), 0, "failing fast does not look fastest");
});

Deno.test("peakEwma(): a backend that fails fast stays out for a second while the others are busy", () => {
  const { s, clock } = peakEwma();
  const [a, b, c] = candidates(3);
  s.observe!(a.id, 20);
  s.observe!(b.id, 20);
  s.observe!(c.id, 0.5, true); // a 503 at once: nothing of it stays in flight
  a.inFlight = 3;
  b.inFlight = 3;
  assert.equal(tally(s, [a, b, c], 300).get(c.id), 0, "40 ms x 1 was cheaper than 20 ms x 4");
  // For a second: then it is tried again (it may have recovered, or failed one bad request).
  clock.advance(1000);
  assert.ok(tally(s, [a, b, c], 300).get(c.id)! > 0);
});

Deno.test("peakEwma(): one 5xx from a backend as fast as the others keeps it out for seconds, not a minute", () => {
  const { s, clock } = peakEwma();
  const [a, b, c] = candidates(3);
  for (const x of [a, b, c]) s.observe!(x.id, 2);
  s.observe!(a.id, 2, true);
  assert.equal(tally(s, [a, b, c], 300).get(a.id), 0);
  clock.advance(8_000); // 4 ms decayed over 8 s of a 10 s decay: 1.8 ms
  s.observe!(b.id, 2);
  s.observe!(c.id, 2);
  assert.ok(tally(s, [a, b, c], 300).get(a.id)! > 100, "back after about decay x ln 2");
});

Deno.test("peakEwma(): in an outage of every backend, 5xx answers do not inflate each other", () => {
  const { s, clock } = peakEwma();
  const [a, b] = candidates(2);
  s.observe!(a.id, 2);
  s.observe!(b.id, 2);
  // Every backend answers 503, ten times a second, for 100 s.
  for (let i = 0; i < 1000; i++) {
    clock.advance(100);
    s.observe!((i % 2 === 0 ? a : b).id, 1, true);
  }
  // Then both answer well again: within a few seconds both are picked.
  for (let i = 0; i < 30; i++) {
    clock.advance(100);
    s.observe!(a.id, 2);
    s.observe!(b.id, 2);
  }
  const counts = tally(s, [a, b], 200);
  assert.ok(counts.get(a.id)! > 20 && counts.get(b.id)! > 20, JSON.stringify([...counts]));
});

Deno.test("peakEwma() avoids the slower backend and weighs requests in flight", () => {
  const { s } = peakEwma();
  const [a, b, c] = candidates(3);
  s.observe!(a.id, 10);
  s.observe!(b.id, 100);
  s.observe!(c.id, 10);
  const counts = tally(s, [a, b, c], 3000);
  assert.equal(counts.get(b.id), 0, "the slow one loses every pair it is in");
  assert.ok(counts.get(a.id)! > 1200 && counts.get(c.id)! > 1200, "the fast ones share");
  // Cost is the estimate times (in flight + 1): 10 ms with 10 in flight costs more than 100 ms idle.
  a.inFlight = 10;
  assert.equal(tally(s, [a, b], 50).get(b.id), 50);
  a.inFlight = 8; // 90 ms
  assert.equal(tally(s, [a, b], 50).get(a.id), 50);
});

Deno.test("peakEwma() counts a slower answer at once and blends faster ones in", () => {
  const { s, clock } = peakEwma("10s");
  const [a, b] = candidates(2);
  s.observe!(a.id, 10);
  s.observe!(b.id, 20);
  assert.equal(s.pick([a, b], context()), a);
  s.observe!(a.id, 500); // one slow answer: a is avoided right away
  assert.equal(tally(s, [a, b], 50).get(a.id), 0);
  // Fast answers pull the estimate down by the weight of the time since the last one:
  // after 10 s (one time constant) a 10 ms answer leaves 500 * e^-1 + 10 * (1 - e^-1) ≈ 190 ms.
  clock.advance(10_000);
  s.observe!(a.id, 10);
  s.observe!(b.id, 150);
  assert.equal(tally(s, [a, b], 50).get(a.id), 0, "190 ms still costs more than 150 ms");
  s.observe!(b.id, 200);
  assert.equal(tally(s, [a, b], 50).get(a.id), 50, "and less than 200 ms");
});

Deno.test("peakEwma() tries a backend again after a slow spell (no starvation)", () => {
  const { s, clock } = peakEwma("10s");
  const [a, b] = candidates(2);
  s.observe!(a.id, 1000); // a was very slow once
  s.observe!(b.id, 10);
  let seconds = 0;
  // b keeps answering in 10 ms; a gets nothing, so its estimate only decays.
  while (s.pick([a, b], context()) === b && seconds < 120) {
    clock.advance(1000);
    seconds++;
    s.observe!(b.id, 10);
  }
  // 1000 * e^(-t/10) < 10 once t > 10 * ln(100) ≈ 46 s.
  assert.ok(seconds >= 45 && seconds <= 48, `a was tried again after ${seconds} s`);
});

Deno.test("peakEwma() tries a backend without answers while idle, not while it has requests", () => {
  const { s } = peakEwma();
  const [a, b] = candidates(2);
  s.observe!(a.id, 5);
  assert.equal(s.pick([a, b], context()), b, "an idle newcomer is tried");
  b.inFlight = 1; // its first request has not answered yet (it may hang)
  assert.equal(tally(s, [a, b], 50).get(b.id), 0);
  a.inFlight = 1000;
  assert.equal(tally(s, [a, b], 50).get(b.id), 0, "not even against a busy backend");
});

Deno.test("PeakEWMA's decay is a duration of at least 100 ms", () => {
  for (
    const [decay, message] of [
      ["50ms", "strategy.PeakEWMA.decay: must be at least 100 ms"],
      [
        "soon",
        'strategy.PeakEWMA.decay: expected a duration such as 30, "30s", "500ms" or ' +
        '{ secs = 30, nanos = 0 }, found a string ("soon")',
      ],
    ]
  ) {
    const problems: { path: string; message: string }[] = [];
    assert.equal(parseStrategy({ PeakEWMA: { decay } }, "strategy", problems), undefined);
    assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), [message]);
  }
  assert.deepEqual(config({ PeakEWMA: { decay: 2 } }).options, { decayMs: 2000 });
  assert.deepEqual(config("PeakEWMA").options, { decayMs: 10_000 });
});

Deno.test("StickyCookie passes response times on to its inner strategy", () => {
  const s = make({ StickyCookie: { ...STICKY.StickyCookie, inner: "PeakEWMA" } });
  const [a, b] = candidates(2);
  s.observe!(a.id, 100);
  s.observe!(b.id, 10);
  assert.equal(tally(s, [a, b], 30).get(a.id), 0);
  assert.equal(make(STICKY).observe, undefined, "nothing to pass to RoundRobin");
});

Deno.test("WeightedRoundRobin's weights must name the pool's addresses, from 0 to 1000", () => {
  const problems: { path: string; message: string }[] = [];
  const value = {
    WeightedRoundRobin: { weights: { "10.0.0.1:80": 1001, "10.0.0.9:80": 1, "10.0.0.2:80": 1.5 } },
  };
  const addresses = ["10.0.0.1:80", "10.0.0.2:80"];
  assert.equal(parseStrategy(value, "strategy", problems, { addresses }), undefined);
  assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), [
    'strategy.WeightedRoundRobin.weights."10.0.0.1:80": expected an integer from 0 to 1000, found 1001',
    'strategy.WeightedRoundRobin.weights."10.0.0.9:80": not one of the pool\'s addresses',
    'strategy.WeightedRoundRobin.weights."10.0.0.2:80": expected an integer, found a float (1.5)',
  ]);
});

Deno.test("parseStrategy() rejects malformed strategy values", () => {
  const cases: [unknown, string][] = [
    [42, "strategy: expected a strategy name or table, found an integer (42)"],
    [{}, "strategy: expected exactly one strategy name as key, found 0 keys"],
    [
      { RoundRobin: {}, Random: {} },
      "strategy: expected exactly one strategy name as key, found 2 keys",
    ],
    [{ RoundRobin: { x: 1 } }, "strategy.RoundRobin.x: unknown key"],
    [{ RoundRobin: 1 }, "strategy.RoundRobin: expected a table, found an integer (1)"],
    [
      { StickyCookie: { ...STICKY.StickyCookie, cookie_name: "a b" } },
      'strategy.StickyCookie.cookie_name: invalid cookie name "a b"',
    ],
  ];
  for (const [value, message] of cases) {
    const problems: { path: string; message: string }[] = [];
    assert.equal(parseStrategy(value, "strategy", problems), undefined);
    assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), [message]);
  }
});
