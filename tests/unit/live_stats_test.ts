import assert from "node:assert/strict";
import { LiveStats } from "../../lib/metrics/live.ts";
import { TrafficMetrics } from "../../lib/metrics/metrics.ts";
import { merge } from "../../lib/metrics/registry.ts";

Deno.test("a live sample is the traffic between two snapshots: rate, quantiles, status mix, lag", () => {
  const live = new LiveStats();
  const worker = new TrafficMetrics();
  const primary = new TrafficMetrics();
  const snapshot = () => merge([primary.registry.snapshot(), worker.registry.snapshot()]);
  assert.equal(live.record(snapshot(), 0), null, "the first call only sets the baseline");
  const answer = (m: TrafficMetrics, status: number, seconds: number) => {
    m.requestStarted();
    m.requestAnswered(status, seconds);
  };
  // 100 requests in 2 s across both isolates: 98 fast ones, one 404, one slow 502.
  for (let i = 0; i < 49; i++) answer(worker, 200, 0.0007);
  for (let i = 0; i < 49; i++) answer(primary, 200, 0.0007);
  answer(worker, 404, 0.0007);
  answer(primary, 502, 0.3);
  primary.requestStarted(); // still in flight
  const sample = live.record(snapshot(), 2000)!;
  assert.equal(sample.requestsPerSecond, 50.5);
  assert.deepEqual(sample.status, { "2xx": 98, "3xx": 0, "4xx": 1, "5xx": 1 });
  assert.equal(sample.errorRate, 0.01);
  assert.equal(sample.inFlight, 1);
  assert.ok(sample.p50Ms! > 0.5 && sample.p50Ms! <= 1, `p50 ${sample.p50Ms}`);
  assert.ok(sample.p99Ms! > 0.5 && sample.p99Ms! <= 1, `p99 ${sample.p99Ms}`);
  assert.equal(sample.loopLagP99Ms, null, "no lag samples in that time");
  assert.deepEqual(live.samples, [sample]);
  // A second with nothing answered has no quantiles.
  const quiet = live.record(snapshot(), 3000)!;
  assert.equal(quiet.requestsPerSecond, 0);
  assert.equal(quiet.p99Ms, null);
});

Deno.test("live quantiles of a 120 ms backend stay within 150 ms (fine buckets)", () => {
  const live = new LiveStats();
  const m = new TrafficMetrics();
  live.record(m.registry.snapshot(), 0);
  for (let i = 0; i < 100; i++) {
    m.requestStarted();
    m.requestAnswered(200, 0.12);
  }
  const sample = live.record(m.registry.snapshot(), 1000)!;
  // Between 0.1 and 0.25 s it was shown at p50 175 ms and p99 248 ms.
  assert.ok(sample.p50Ms! > 100 && sample.p50Ms! <= 150, `p50 ${sample.p50Ms}`);
  assert.ok(sample.p99Ms! > 100 && sample.p99Ms! <= 150, `p99 ${sample.p99Ms}`);
});

Deno.test("the live event-loop lag p99 comes from every isolate's samples", async () => {
  const live = new LiveStats();
  const a = new TrafficMetrics();
  const b = new TrafficMetrics();
  const snapshot = () => merge([a.registry.snapshot(), b.registry.snapshot()]);
  live.record(snapshot(), 0);
  const samplers = [a.sampleEventLoop(), b.sampleEventLoop()];
  const alive = setTimeout(() => {}, 10_000); // the samplers' timers do not keep Deno running
  await new Promise((resolve) => setTimeout(resolve, 250));
  for (const s of samplers) s.stop();
  clearTimeout(alive);
  const sample = live.record(snapshot(), 1000)!;
  assert.ok(sample.loopLagP99Ms !== null && sample.loopLagP99Ms >= 0, `${sample.loopLagP99Ms}`);
});

Deno.test("live samples keep the last `capacity` seconds", () => {
  const live = new LiveStats(3);
  const m = new TrafficMetrics();
  for (let t = 0; t <= 5000; t += 1000) live.record(m.registry.snapshot(), t);
  assert.deepEqual(live.samples.map((s) => s.time), [3000, 4000, 5000]);
});
