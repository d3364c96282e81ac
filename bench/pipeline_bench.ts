// Strom's per-request cost without the network: the proxy listener's handler
// (Hono, routing, middlewares, header rules, metrics) in front of a transport
// that answers at once with what nginx answers in scenario 2. What this
// measures is JavaScript only, so it holds still on a noisy machine where the
// wrk runs of `bench/run.ts` do not; it does not replace them.
//
// Usage: deno bench --allow-all bench/pipeline_bench.ts
//        (or `deno run --allow-all --cpu-prof bench/pipeline_bench.ts 200000`
//        for a profile of that many requests)

import { parseConfig } from "../lib/config/load.ts";
import { defaultRuntimeDeps, Runtime } from "../lib/runtime.ts";
import { proxyHandler } from "../lib/listen.ts";
import { TrafficMetrics } from "../lib/metrics/metrics.ts";
import { WebSocketRegistry } from "../lib/proxy/websockets.ts";
import { silentLogger } from "../lib/log.ts";
import type { Transport } from "../lib/transport/transport.ts";

const CONFIG = `
http_address = "127.0.0.1:8080"
admin_address = "127.0.0.1:8081"
[health_interval]
check_every = 10
[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
schemes = ["HTTP"]
strategy = "RoundRobin"
`;

const BODY = new TextEncoder().encode('{"backend":"b1"}');

const FIELDS: [string, string][] = [
  ["server", "nginx/1.22.1"],
  ["date", "Fri, 27 Nov 2026 23:00:00 GMT"],
  ["content-type", "application/json"],
  ["content-length", String(BODY.length)],
  ["connection", "keep-alive"],
];

/**
 * Answers every request at once with what an nginx backend sends, built as the
 * HTTP/1.1 transport builds it (lib/transport/http1/connection.ts): a Response
 * over the buffered body (which the constructor copies), then the backend's
 * fields appended.
 */
const instant: Transport = {
  send(_backend, request) {
    const response = new Response(BODY, { status: 200 });
    const headers = response.headers;
    for (let i = 0; i < FIELDS.length; i++) headers.append(FIELDS[i][0], FIELDS[i][1]);
    request.onEnd(BODY.length);
    return Promise.resolve(response);
  },
  close() {},
};

const metrics = new TrafficMetrics();
const runtime = await Runtime.create(parseConfig(CONFIG, { source: "bench", baseDir: "." }), 1, {
  log: silentLogger,
  deps: { ...defaultRuntimeDeps, metrics, createTransport: () => instant },
});
metrics.prime(runtime);
const handler = proxyHandler("HTTP", { hostname: "127.0.0.1", port: 8080 }, () => runtime, {
  log: silentLogger,
  observers: { metrics, accessLog: () => null },
  websockets: new WebSocketRegistry(),
});
const env = { remote: { transport: "tcp" as const, hostname: "127.0.0.1", port: 50000 } };

/** One request as wrk sends it, through the handler, its body read. */
async function once(): Promise<void> {
  const request = new Request("http://127.0.0.1:8080/", { headers: { host: "127.0.0.1:8080" } });
  const response = await handler(request, env);
  await response.arrayBuffer();
}

if (import.meta.main && Deno.args[0]) {
  const n = Number(Deno.args[0]);
  const started = performance.now();
  for (let i = 0; i < n; i++) await once();
  const us = (performance.now() - started) * 1000 / n;
  console.log(`${n} requests, ${us.toFixed(2)} us each`);
  runtime.close();
} else {
  Deno.bench("one request through the proxy handler (instant transport)", once);
  Deno.bench("the request and body read alone (baseline)", async () => {
    const request = new Request("http://127.0.0.1:8080/", { headers: { host: "127.0.0.1:8080" } });
    await new Response(BODY).arrayBuffer();
    request.headers.get("host");
  });
}
