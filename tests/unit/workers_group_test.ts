// What the primary keeps of dead workers' metrics across a reload.

import assert from "node:assert/strict";
import { seriesStillThere } from "../../lib/workers/group.ts";
import type { Family } from "../../lib/metrics/registry.ts";

Deno.test("seriesStillThere() drops a pool-and-backend series when the backend left that pool only", () => {
  const family = (labels: Record<string, string>[]): Family => ({
    name: "x_total",
    help: "",
    type: "counter",
    samples: labels.map((l) => ({ name: "x_total", labels: l, value: 1 })),
  });
  const families = [
    family([
      { pool: "a", backend: "X" }, // X left pool a, stays in b
      { pool: "b", backend: "X" },
      { pool: "a" },
      { pool: "gone" },
      { backend: "X" },
      { backend: "Y" }, // in no pool now
      {},
    ]),
  ];
  const pools = [
    { config: { name: "a" }, backends: [{ id: "Z" }] },
    { config: { name: "b" }, backends: [{ id: "X" }] },
  ];
  assert.deepEqual(seriesStillThere(families, pools)[0].samples.map((s) => s.labels), [
    { pool: "b", backend: "X" },
    { pool: "a" },
    { backend: "X" },
    {},
  ]);
});
