import assert from "node:assert/strict";
import { Deadlines, TICK_MS } from "../../lib/proxy/deadlines.ts";
import { ManualClock } from "../_helpers/clock.ts";

Deno.test("Deadlines fire in order, within one tick of their time, unless cancelled", () => {
  const clock = new ManualClock(0);
  const deadlines = new Deadlines(clock);
  const fired: string[] = [];
  deadlines.set(100, () => fired.push("a"));
  const b = deadlines.set(100, () => fired.push("b"));
  clock.advance(5);
  deadlines.set(100, () => fired.push("c"));
  deadlines.set(30, () => fired.push("short"));
  b.cancel();
  b.cancel();
  clock.advance(40);
  assert.deepEqual(fired, ["short"]);
  clock.advance(60);
  assert.deepEqual(fired, ["short", "a"]);
  clock.advance(TICK_MS);
  assert.deepEqual(fired, ["short", "a", "c"]);
  assert.equal(clock.pending, 0, "the tick stops when nothing is armed");
  deadlines.set(10, () => fired.push("again"));
  clock.advance(10 + TICK_MS);
  assert.deepEqual(fired.at(-1), "again");
});
