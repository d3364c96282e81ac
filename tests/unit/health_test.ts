import assert from "node:assert/strict";
import { INITIAL_HEALTH, nextHealth, type ProbeResult } from "../../lib/health/state.ts";
import {
  cooldownMs,
  eject,
  initialOutlierState,
  readmit,
  recordOutcome,
} from "../../lib/health/outlier.ts";
import { mayRetry, RetryBudget } from "../../lib/proxy/retry.ts";
import type { OutlierConfig } from "../../lib/config/types.ts";
import { ManualClock } from "../_helpers/clock.ts";

const pass: ProbeResult = {
  ok: true,
  slow: false,
  status: 200,
  latencyMs: 5,
  reason: "status 200",
};
const slow: ProbeResult = {
  ok: true,
  slow: true,
  status: 200,
  latencyMs: 900,
  reason: "status 200, slow",
};
const fail: ProbeResult = {
  ok: false,
  slow: false,
  status: 500,
  latencyMs: 5,
  reason: "status 500",
};
const t = { healthyAfter: 2, unhealthyAfter: 3 };

function run(results: ProbeResult[]): string[] {
  let state = INITIAL_HEALTH;
  return results.map((r) => (state = nextHealth(state, r, t)).status);
}

Deno.test("nextHealth() lets the first probe decide", () => {
  assert.deepEqual(run([fail]), ["Unresponsive"]);
  assert.deepEqual(run([pass]), ["Healthy"]);
  assert.deepEqual(run([slow]), ["Slow"]);
});

Deno.test("nextHealth() ejects only after unhealthy_after consecutive failures", () => {
  assert.deepEqual(run([pass, fail, fail, pass, fail, fail, fail]), [
    "Healthy",
    "Healthy",
    "Healthy",
    "Healthy",
    "Healthy",
    "Healthy",
    "Unresponsive",
  ]);
});

Deno.test("nextHealth() takes a backend out at once when live traffic corroborates a failed probe", () => {
  const healthy = nextHealth(INITIAL_HEALTH, pass, t);
  assert.equal(nextHealth(healthy, fail, t, true).status, "Unresponsive");
  assert.equal(nextHealth(healthy, fail, t, false).status, "Healthy");
  assert.equal(nextHealth(healthy, pass, t, true).status, "Healthy");
});

Deno.test("nextHealth(): a probe that timed out is not taken as corroborated; unhealthy_after still counts", () => {
  const timedOut: ProbeResult = { ...fail, status: null, reason: "timed out", timedOut: true };
  let state = nextHealth(INITIAL_HEALTH, pass, t);
  const seen = [];
  for (let i = 0; i < 3; i++) seen.push((state = nextHealth(state, timedOut, t, true)).status);
  assert.deepEqual(seen, ["Healthy", "Healthy", "Unresponsive"]);
});

Deno.test("nextHealth() brings a backend back after healthy_after consecutive passes", () => {
  assert.deepEqual(run([fail, pass, fail, pass, pass, pass]), [
    "Unresponsive",
    "Unresponsive",
    "Unresponsive",
    "Unresponsive",
    "Healthy",
    "Healthy",
  ]);
  assert.deepEqual(run([fail, slow, slow]).at(-1), "Slow");
});

Deno.test("nextHealth() turns Healthy and Slow by the same thresholds as failures", () => {
  // One slow probe (a pause, a queue) does not take a Healthy backend out of rotation.
  assert.deepEqual(run([pass, slow, pass, slow, slow, slow, pass, slow, pass, pass, fail]), [
    "Healthy",
    "Healthy",
    "Healthy",
    "Healthy",
    "Healthy",
    "Slow", // unhealthy_after (3) slow passes in a row
    "Slow",
    "Slow",
    "Slow",
    "Healthy", // healthy_after (2) fast passes in a row
    "Healthy",
  ]);
  // The first probe still decides at once, and a failure does not count as slow.
  assert.deepEqual(run([slow, pass, pass]), ["Slow", "Slow", "Healthy"]);
  assert.deepEqual(run([pass, slow, fail, slow, slow]).at(-1), "Healthy");
});

const outlier: OutlierConfig = {
  consecutiveFailures: 3,
  count5xx: false,
  baseEjectionMs: 1000,
  maxEjectionMs: 5000,
  maxEjectionPercent: 50,
};

Deno.test("recordOutcome() ejects after consecutive_failures, and a success resets the count", () => {
  const s = initialOutlierState();
  const pool = { outOfRotation: 0, poolSize: 4, now: 0 };
  assert.equal(recordOutcome(s, true, outlier, pool), null);
  assert.equal(recordOutcome(s, true, outlier, pool), null);
  assert.equal(recordOutcome(s, false, outlier, pool), null);
  assert.equal(recordOutcome(s, true, outlier, pool), null);
  assert.equal(recordOutcome(s, true, outlier, pool), null);
  assert.equal(recordOutcome(s, true, outlier, pool), 1000);
  assert.ok(s.ejected);
  assert.equal(s.ejectedUntil, 1000);
});

Deno.test("recordOutcome() never ejects more than max_ejection_percent of a pool", () => {
  const s = initialOutlierState();
  for (let i = 0; i < 10; i++) {
    assert.equal(recordOutcome(s, true, outlier, { outOfRotation: 2, poolSize: 4, now: 0 }), null);
  }
  assert.equal(recordOutcome(s, true, outlier, { outOfRotation: 1, poolSize: 4, now: 0 }), 1000);
  const alone = initialOutlierState();
  for (let i = 0; i < 10; i++) {
    assert.equal(
      recordOutcome(alone, true, outlier, { outOfRotation: 0, poolSize: 1, now: 0 }),
      null,
    );
  }
  const off = initialOutlierState();
  for (let i = 0; i < 10; i++) {
    assert.equal(
      recordOutcome(off, true, { ...outlier, consecutiveFailures: 0 }, {
        outOfRotation: 0,
        poolSize: 4,
        now: 0,
      }),
      null,
    );
  }
});

Deno.test("eject() doubles the cooldown on repeated ejections up to the cap, then forgets", () => {
  const s = initialOutlierState();
  const lengths = [];
  let now = 10_000;
  for (let i = 0; i < 5; i++) {
    lengths.push(eject(s, outlier, now));
    now = s.ejectedUntil;
    readmit(s, now);
  }
  assert.deepEqual(lengths, [1000, 2000, 4000, 5000, 5000]);
  assert.equal(
    eject(s, outlier, now + outlier.maxEjectionMs + 1),
    1000,
    "quiet for long: base again",
  );
  assert.equal(cooldownMs(outlier, 100), 5000);
});

Deno.test("mayRetry() retries connect failures always and others only for idempotent methods", () => {
  assert.ok(mayRetry("connect", "POST", true));
  assert.ok(!mayRetry("connect", "POST", false));
  assert.ok(mayRetry("reset", "GET", true));
  assert.ok(mayRetry("protocol", "PUT", true));
  assert.ok(!mayRetry("reset", "POST", true));
  assert.ok(!mayRetry("reset", "PATCH", true));
  assert.ok(!mayRetry("aborted", "GET", true));
});

Deno.test("RetryBudget allows retries up to its share of recent requests", () => {
  const clock = new ManualClock(0);
  const budget = new RetryBudget(20, clock, { windowSec: 10, minRetries: 3 });
  for (let i = 0; i < 3; i++) assert.ok(budget.tryRetry(), "the minimum is always there");
  assert.ok(!budget.tryRetry());
  for (let i = 0; i < 50; i++) budget.recordRequest();
  for (let i = 0; i < 7; i++) assert.ok(budget.tryRetry(), `retry ${i}`);
  assert.ok(!budget.tryRetry(), "20 % of 50 is 10");
  clock.advance(10_000);
  for (let i = 0; i < 3; i++) assert.ok(budget.tryRetry(), "a new window starts over");
  assert.ok(!budget.tryRetry());
});

Deno.test("RetryBudget's default floor is 10 retries a second over its window", () => {
  const budget = new RetryBudget(20, new ManualClock(0));
  for (let i = 0; i < 100; i++) assert.ok(budget.tryRetry(), `retry ${i}`);
  assert.ok(!budget.tryRetry());
});
