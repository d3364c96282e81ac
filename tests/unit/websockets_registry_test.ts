// The registry of open WebSockets that shutdown closes.

import assert from "node:assert/strict";
import { WebSocketRegistry } from "../../lib/proxy/websockets.ts";

Deno.test("closeAll() closes every WebSocket with 1001 and resolves once all have ended", async () => {
  const registry = new WebSocketRegistry();
  const calls: string[] = [];
  const ends: (() => void)[] = [];
  for (const name of ["a", "b"]) {
    const end = registry.add((code, reason) => calls.push(`${name} ${code} ${reason}`));
    ends.push(end);
  }
  assert.equal(registry.count, 2);
  let done = false;
  const closing = registry.closeAll().then(() => done = true);
  assert.deepEqual(calls, ["a 1001 Strom is shutting down", "b 1001 Strom is shutting down"]);
  ends[0]();
  await Promise.resolve();
  assert.equal(done, false, "one WebSocket is still open");
  ends[1]();
  await closing;
  assert.equal(registry.count, 0);
  assert.equal(await registry.closeAll(1000, "nothing open").then(() => "resolved"), "resolved");
});
