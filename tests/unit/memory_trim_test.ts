// Memory trimming: the trimmer's schedule (with a manual clock and a counting
// trim), and glibc's malloc_trim through FFI where this machine has it.

import assert from "node:assert/strict";
import { MemoryTrimmer, processMallocTrim, type Trim } from "../../lib/memory_trim.ts";
import { createLogger } from "../../lib/log.ts";
import { captureLog, ManualClock, nextTurn } from "../_helpers/clock.ts";

/** A trim that counts its calls and stays pending until `finish()`, when `hold` is set. */
function countingTrim(options: { hold?: boolean; fail?: string } = {}) {
  let calls = 0;
  const pending: (() => void)[] = [];
  const trim: Trim = () => {
    calls++;
    if (options.fail) return Promise.reject(new Error(options.fail));
    if (!options.hold) return Promise.resolve();
    return new Promise<void>((resolve) => pending.push(resolve));
  };
  return {
    trim,
    get calls() {
      return calls;
    },
    finish: () => pending.splice(0).forEach((resolve) => resolve()),
  };
}

Deno.test("MemoryTrimmer trims once per interval, follows the live interval and stops", async () => {
  const clock = new ManualClock();
  const counter = countingTrim();
  let interval = 1000;
  const log = captureLog();
  const trimmer = new MemoryTrimmer({
    clock,
    log: createLogger("debug", { sink: log.sink }),
    trim: counter.trim,
    intervalMs: () => interval,
  });
  trimmer.start();
  clock.advance(999);
  assert.equal(counter.calls, 0);
  clock.advance(1);
  await nextTurn();
  assert.equal(counter.calls, 1);
  clock.advance(1000);
  await nextTurn();
  assert.equal(counter.calls, 2);

  // A reload turns it off: no trim, but the interval is looked at again.
  interval = 0;
  for (let i = 0; i < 5; i++) {
    clock.advance(1000);
    await nextTurn();
  }
  assert.equal(counter.calls, 2);
  assert.equal(clock.pending, 1);

  // And on again, with another interval.
  interval = 250;
  clock.advance(1000); // the off-recheck wait ends; the next wait is 250 ms
  await nextTurn();
  assert.equal(counter.calls, 2);
  clock.advance(250);
  await nextTurn();
  assert.equal(counter.calls, 3);

  await trimmer.stop();
  clock.advance(10_000);
  await nextTurn();
  assert.equal(counter.calls, 3);
  assert.equal(clock.pending, 0);
  assert.deepEqual(log.lines, []);
});

Deno.test("MemoryTrimmer runs one trim at a time and stop() waits for it", async () => {
  const clock = new ManualClock();
  const counter = countingTrim({ hold: true });
  const trimmer = new MemoryTrimmer({
    clock,
    log: createLogger("off"),
    trim: counter.trim,
    intervalMs: () => 100,
  });
  trimmer.start();
  clock.advance(100);
  assert.equal(counter.calls, 1);
  // While the trim is pending no timer runs, however long it takes.
  assert.equal(clock.pending, 0);
  clock.advance(1000);
  assert.equal(counter.calls, 1);

  let stopped = false;
  const stopping = trimmer.stop().then(() => stopped = true);
  await nextTurn();
  assert.equal(stopped, false);
  counter.finish();
  await stopping;
  assert.equal(stopped, true);
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryTrimmer stops with a warning when a trim fails", async () => {
  const clock = new ManualClock();
  const counter = countingTrim({ fail: "no libc" });
  const log = captureLog();
  const trimmer = new MemoryTrimmer({
    clock,
    log: createLogger("info", { sink: log.sink }),
    trim: counter.trim,
    intervalMs: () => 1000,
  });
  trimmer.start();
  clock.advance(1000);
  await nextTurn();
  clock.advance(5000);
  await nextTurn();
  assert.equal(counter.calls, 1);
  assert.equal(clock.pending, 0);
  assert.deepEqual(log.lines, ["warn Memory trimming stopped: no libc"]);
  await trimmer.stop();
});

const glibc = Deno.build.os === "linux" && Deno.build.env === "gnu";

Deno.test({
  name: "processMallocTrim() finds glibc's malloc_trim once, and a trim completes",
  ignore: !glibc,
  async fn() {
    const trim = processMallocTrim();
    assert.equal(processMallocTrim(), trim);
    assert.equal(typeof trim, "function", String(trim));
    await (trim as Trim)();
    await (trim as Trim)();
  },
});

Deno.test("MemoryTrimmer drops the binary's pages at start, then every PAGE_DROP_EVERY_MS", async () => {
  const clock = new ManualClock();
  const counter = countingTrim();
  let drops = 0;
  let interval = 1000;
  const trimmer = new MemoryTrimmer({
    clock,
    log: createLogger("off"),
    trim: counter.trim,
    dropPages: () => Promise.resolve(++drops),
    intervalMs: () => interval,
  });
  trimmer.start();
  assert.equal(drops, 1, "at once: start-up is over");
  await nextTurn();
  for (let i = 0; i < 59; i++) {
    clock.advance(1000);
    await nextTurn();
  }
  assert.deepEqual([counter.calls, drops], [59, 1]);
  clock.advance(1000); // 60 s after the first drop
  await nextTurn();
  assert.deepEqual([counter.calls, drops], [60, 2]);

  // Off (memory_trim_interval = 0): neither.
  interval = 0;
  for (let i = 0; i < 70; i++) {
    clock.advance(1000);
    await nextTurn();
  }
  assert.deepEqual([counter.calls, drops], [60, 2]);
  await trimmer.stop();

  // Started with trimming off: no drop either.
  const off = new MemoryTrimmer({
    clock,
    log: createLogger("off"),
    trim: counter.trim,
    dropPages: () => Promise.resolve(++drops),
    intervalMs: () => 0,
  });
  off.start();
  await nextTurn();
  assert.equal(drops, 2);
  await off.stop();
});

Deno.test("MemoryTrimmer stops dropping pages, not trimming, when a drop fails", async () => {
  const clock = new ManualClock();
  const counter = countingTrim();
  let drops = 0;
  const log = captureLog();
  const trimmer = new MemoryTrimmer({
    clock,
    log: createLogger("info", { sink: log.sink }),
    trim: counter.trim,
    dropPages: () => {
      drops++;
      return Promise.reject(new Error("no smaps"));
    },
    intervalMs: () => 1000,
  });
  trimmer.start();
  await nextTurn();
  for (let i = 0; i < 130; i++) {
    clock.advance(1000);
    await nextTurn();
  }
  assert.deepEqual([counter.calls, drops], [130, 1]);
  assert.deepEqual(log.lines, ["warn Dropping the binary's unused pages stopped: no smaps"]);
  await trimmer.stop();
});
