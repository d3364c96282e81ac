import assert from "node:assert/strict";
import { ThrottledLine } from "../../lib/log.ts";
import { ManualClock } from "../_helpers/clock.ts";

Deno.test("ThrottledLine says a line at most once a second and counts the rest in one line", () => {
  const clock = new ManualClock();
  const said: string[] = [];
  const line = new ThrottledLine(clock);
  const say = (m: string) => said.push(m);
  line.say(say, "no backend for /a");
  for (let i = 0; i < 500; i++) line.say(say, `no backend for /b${i}`);
  assert.deepEqual(said, ["no backend for /a"]);
  clock.advance(1000);
  assert.deepEqual(said, [
    "no backend for /a",
    "500 more like this in the last second, the last: no backend for /b499",
  ]);
  clock.advance(1000);
  line.say(say, "no backend for /c"); // a quiet second: said at once again
  assert.equal(said.at(-1), "no backend for /c");
  line.say(say, "held");
  line.stop();
  clock.advance(5000);
  assert.equal(said.length, 3, "a stopped line says nothing more");
});
