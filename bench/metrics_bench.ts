// The cost of the per-request metric calls (TrafficMetrics):
//   deno bench bench/metrics_bench.ts
// One iteration is what one proxied request records.

import { TrafficMetrics } from "../lib/metrics/metrics.ts";

const metrics = new TrafficMetrics();
const backends = ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"];
let i = 0;

Deno.bench("metric calls of one proxied request", () => {
  metrics.requestStarted();
  metrics.backendAnswered(backends[i++ % 3], 0.0012);
  metrics.requestAnswered(200, 0.0015);
  metrics.bytesIn(0);
  metrics.bytesOut(17);
});
