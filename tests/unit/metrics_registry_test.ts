import assert from "node:assert/strict";
import { merge, Registry, render } from "../../lib/metrics/registry.ts";
import {
  eventLoopLag,
  heapMetrics,
  LAG_INTERVAL_MS,
  processMetrics,
  sampleLag,
} from "../../lib/metrics/process.ts";

Deno.test("the text format: help, type, escaped labels, zero before use, cumulative buckets", () => {
  const r = new Registry();
  r.counter({ name: "requests_total", help: "Requests\nreceived \\ counted" }).inc(2);
  r.counter({ name: "by_code_total", help: "By code", labelNames: ["code"] });
  const pages = r.counter({ name: "pages_total", help: "Pages", labelNames: ["path", "host"] });
  pages.labels('/a"b\\c\nd', "x").inc();
  r.gauge({ name: "idle", help: "Idle" });
  const h = r.histogram({ name: "latency_seconds", help: "Latency", buckets: [0.1, 1] });
  for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v);
  assert.equal(
    render(r.snapshot()),
    [
      "# HELP requests_total Requests\\nreceived \\\\ counted",
      "# TYPE requests_total counter",
      "requests_total 2",
      "# HELP by_code_total By code",
      "# TYPE by_code_total counter",
      "# HELP pages_total Pages",
      "# TYPE pages_total counter",
      'pages_total{path="/a\\"b\\\\c\\nd",host="x"} 1',
      "# HELP idle Idle",
      "# TYPE idle gauge",
      "idle 0",
      "# HELP latency_seconds Latency",
      "# TYPE latency_seconds histogram",
      'latency_seconds_bucket{le="0.1"} 2',
      'latency_seconds_bucket{le="1"} 3',
      'latency_seconds_bucket{le="+Inf"} 4',
      "latency_seconds_sum 3.65",
      "latency_seconds_count 4",
      "",
    ].join("\n"),
  );
});

Deno.test("label children are kept, counted once per value set, and checked", () => {
  const r = new Registry();
  const c = r.counter({ name: "c_total", help: "C", labelNames: ["a", "b"] });
  assert.equal(c.labels("1", "2"), c.labels("1", "2"));
  assert.notEqual(c.labels("1", "2"), c.labels("12", ""));
  c.labels("1", "2").inc(3);
  assert.deepEqual(r.snapshot()[0].samples.map((s) => [s.labels, s.value]), [
    [{ a: "1", b: "2" }, 3],
    [{ a: "12", b: "" }, 0],
  ]);
  assert.throws(() => c.labels("1"), TypeError);
  const plain = r.counter({ name: "plain_total", help: "P" });
  plain.labels().inc();
  plain.inc();
  assert.deepEqual(r.snapshot()[1].samples, [{ name: "plain_total", labels: {}, value: 2 }]);
  assert.throws(() => c.inc(), TypeError);
  assert.throws(() => c.labels("1", "2").inc(-1), RangeError);
  assert.throws(() => r.counter({ name: "c_total", help: "again" }), TypeError);
  assert.throws(() => r.histogram({ name: "h", help: "H", buckets: [1, 1] }), RangeError);
});

Deno.test("collect fills a metric in at each snapshot; a gauge goes both ways", () => {
  const r = new Registry();
  let n = 0;
  r.gauge({
    name: "per_pool",
    help: "Per pool",
    labelNames: ["pool"],
    collect: (g) => {
      g.reset();
      for (let i = 0; i < n; i++) g.labels(`p${i}`).set(i * 10);
    },
  });
  const g = r.gauge({ name: "active", help: "Active" });
  g.inc();
  g.inc(2);
  g.dec();
  n = 2;
  assert.deepEqual(r.snapshot().map((f) => f.samples.map((s) => s.value)), [[0, 10], [2]]);
  n = 1;
  assert.deepEqual(r.snapshot()[0].samples.map((s) => s.labels), [{ pool: "p0" }]);
});

Deno.test("merge adds up the same series across snapshots and keeps the others", () => {
  const part = (requests: number, backend: string, seconds: number) => {
    const r = new Registry();
    r.counter({ name: "requests_total", help: "R" }).inc(requests);
    r.histogram({ name: "t", help: "T", labelNames: ["backend"], buckets: [1] })
      .labels(backend).observe(seconds);
    return r.snapshot();
  };
  // A snapshot survives structured cloning (what crosses from a worker).
  const merged = merge([part(3, "a", 0.5), structuredClone(part(4, "a", 2)), part(1, "b", 0.1)]);
  assert.equal(
    render(merged),
    [
      "# HELP requests_total R",
      "# TYPE requests_total counter",
      "requests_total 8",
      "# HELP t T",
      "# TYPE t histogram",
      't_bucket{backend="a",le="1"} 1',
      't_bucket{backend="a",le="+Inf"} 2',
      't_sum{backend="a"} 2.5',
      't_count{backend="a"} 2',
      't_bucket{backend="b",le="1"} 1',
      't_bucket{backend="b",le="+Inf"} 1',
      't_sum{backend="b"} 0.1',
      't_count{backend="b"} 1',
      "",
    ].join("\n"),
  );
});

Deno.test("process metrics read the process at each snapshot", () => {
  const r = new Registry();
  processMetrics(r);
  heapMetrics(r);
  const text = render(r.snapshot());
  const value = (name: string) => {
    const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
    assert.ok(match, `${name} in\n${text}`);
    return Number(match[1]);
  };
  assert.ok(value("process_resident_memory_bytes") > 10e6);
  assert.ok(value("process_cpu_seconds_total") > 0);
  assert.ok(value("deno_heap_size_used_bytes") > 0);
  const started = value("process_start_time_seconds");
  assert.ok(Math.abs(Date.now() / 1000 - started) < 3600, `start ${started}`);
  if (Deno.build.os === "linux") {
    assert.ok(value("process_open_fds") > 2);
    assert.ok(value("process_max_fds") >= value("process_open_fds"));
  }
  assert.match(text, new RegExp(`^deno_version_info\\{version="${Deno.version.deno}",`, "m"));
});

Deno.test("the event-loop lag histogram counts samples once started, until stopped", async () => {
  const r = new Registry();
  const lag = eventLoopLag(r);
  const count = () => r.snapshot()[0].samples.find((s) => s.name.endsWith("_count"))!.value;
  assert.equal(count(), 0);
  const sampler = lag.start();
  const alive = setTimeout(() => {}, 10_000); // the sampler's timer does not keep Deno running
  await new Promise((resolve) => setTimeout(resolve, LAG_INTERVAL_MS * 3));
  sampler.stop();
  clearTimeout(alive);
  const counted = count();
  assert.ok(counted >= 1 && counted <= 3, `${counted} samples`);
});

Deno.test("the event-loop sampler reports how late its timer ran", async () => {
  // Clock readings: scheduled at 0 (due 100), ran at 135; scheduled at 200, ran at 300.
  const readings = [0, 135, 200, 300];
  const seen: number[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  const sampler = sampleLag((late) => {
    seen.push(late);
    if (seen.length === 2) resolve();
  }, () => readings.shift() ?? 1e9);
  const alive = setTimeout(() => {}, 10_000); // the sampler's timer does not keep Deno running
  await promise;
  clearTimeout(alive);
  sampler.stop();
  assert.deepEqual(seen, [35, 0]);
});
