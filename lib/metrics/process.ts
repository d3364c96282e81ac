// Process metrics: the `process_*` families every Prometheus client exposes,
// which describe the whole process (worker isolates are threads of it); and,
// per isolate (their snapshots add up), the V8 heap as `deno_*` and how late
// the event loop runs, which is what a busy JavaScript proxy shows first.

import { cpuUsage } from "node:process";
import type { Gauge, Registry } from "./registry.ts";
import { EVENT_LOOP_LAG_SECONDS } from "./names.ts";

/** Upper bounds of the event-loop lag histogram, in seconds. */
export const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** How often the event loop's lag is sampled. */
export const LAG_INTERVAL_MS = 100;

/** Registers the process metrics on `registry`. */
export function processMetrics(registry: Registry): void {
  const seconds = (micros: number) => micros / 1e6;
  registry.counter({
    name: "process_cpu_user_seconds_total",
    help: "Total user CPU time spent in seconds.",
    collect: (c) => setCounter(c, seconds(cpuUsage().user)),
  });
  registry.counter({
    name: "process_cpu_system_seconds_total",
    help: "Total system CPU time spent in seconds.",
    collect: (c) => setCounter(c, seconds(cpuUsage().system)),
  });
  registry.counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    collect: (c) => {
      const used = cpuUsage();
      setCounter(c, seconds(used.user + used.system));
    },
  });
  registry.gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    collect: (g) => g.set(Math.round(performance.timeOrigin) / 1000),
  });
  registry.gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    collect: (g) => g.set(Deno.memoryUsage().rss),
  });
  // Left out where unknown (not Linux).
  const ifKnown = (read: () => number | null) => (g: Gauge) => {
    g.reset();
    const value = read();
    if (value !== null) g.set(value);
  };
  registry.gauge({
    name: "process_open_fds",
    help: "Number of open file descriptors (Linux).",
    collect: ifKnown(openFds),
  });
  registry.gauge({
    name: "process_max_fds",
    help: "Maximum number of open file descriptors (Linux).",
    collect: ifKnown(maxFds),
  });
  registry.gauge({
    name: "deno_version_info",
    help: "Deno, V8 and TypeScript versions.",
    labelNames: ["version", "v8", "typescript"],
  })
    .labels(Deno.version.deno, Deno.version.v8, Deno.version.typescript).set(1);
}

/**
 * Registers this isolate's V8 heap figures on `registry` (`Deno.memoryUsage()`
 * gives them per isolate; each isolate registers its own, and they add up).
 */
export function heapMetrics(registry: Registry): void {
  registry.gauge({
    name: "deno_heap_size_total_bytes",
    help: "V8 heap size of every isolate, added up, in bytes.",
    collect: (g) => g.set(Deno.memoryUsage().heapTotal),
  });
  registry.gauge({
    name: "deno_heap_size_used_bytes",
    help: "V8 heap used by every isolate, added up, in bytes.",
    collect: (g) => g.set(Deno.memoryUsage().heapUsed),
  });
  registry.gauge({
    name: "deno_external_memory_bytes",
    help: "Memory of the isolates' objects outside the V8 heap (buffers), added up, in bytes.",
    collect: (g) => g.set(Deno.memoryUsage().external),
  });
}

/**
 * Registers the event-loop lag histogram on `registry`. `start()` samples this
 * isolate's loop until `stop()`; every isolate samples its own, and their
 * snapshots add up, so the histogram holds the samples of all of them.
 */
export function eventLoopLag(registry: Registry): { start(): { stop(): void } } {
  const lag = registry.histogram({
    name: EVENT_LOOP_LAG_SECONDS,
    help:
      `How late a timer due every ${LAG_INTERVAL_MS} ms ran, in each isolate that serves requests.`,
    buckets: LAG_BUCKETS,
  });
  return { start: () => sampleLag((lateMs) => lag.observe(lateMs / 1000)) };
}

/** Calls `observe` with how many ms late a timer ran, every LAG_INTERVAL_MS, until stopped. */
export function sampleLag(
  observe: (lateMs: number) => void,
  now: () => number = () => performance.now(),
): { stop(): void } {
  let timer: ReturnType<typeof setTimeout>;
  const schedule = () => {
    const due = now() + LAG_INTERVAL_MS;
    timer = setTimeout(() => {
      observe(Math.max(0, now() - due));
      schedule();
    }, LAG_INTERVAL_MS);
    Deno.unrefTimer(timer);
  };
  schedule();
  return { stop: () => clearTimeout(timer) };
}

function setCounter(counter: { reset(): void; inc(n: number): void }, value: number): void {
  counter.reset();
  counter.inc(value);
}

function openFds(): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1; // the directory handle being read
  } catch {
    return null;
  }
}

function maxFds(): number | null {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const match = /^Max open files\s+(\d+)/m.exec(limits);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
