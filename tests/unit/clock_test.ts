import assert from "node:assert/strict";
import { systemClock } from "../../lib/clock.ts";

Deno.test("systemClock.now() does not follow a stepped wall clock", () => {
  const before = systemClock.now();
  assert.ok(Math.abs(before - Date.now()) < 5_000, "it starts at the wall time");
  const realNow = Date.now;
  // A wall clock stepped an hour back (NTP at boot, a resumed VM) must not stretch every
  // timeout, cooldown and rate limit window in flight by an hour.
  Date.now = () => realNow() - 3_600_000;
  try {
    const after = systemClock.now();
    assert.ok(after >= before && after - before < 5_000, `${after - before} ms later`);
  } finally {
    Date.now = realNow;
  }
});
