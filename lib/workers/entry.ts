// A proxy worker: its own config generation and HTTP listener on the shared
// port (SO_REUSEPORT). Health comes from the primary; passive health, retry
// budgets and LeastConnection counts are this worker's own.

/// <reference lib="deno.worker" />

import { parseConfig } from "../config/load.ts";
import { createLogger } from "../log.ts";
import { Runtime } from "../runtime.ts";
import { listenProxy } from "../listen.ts";
import { type FromWorker, STATS_INTERVAL_MS, type ToWorker } from "./protocol.ts";

let runtime: Runtime | null = null;
let server: Deno.HttpServer<Deno.NetAddr> | null = null;
let statsTimer: ReturnType<typeof setInterval> | undefined;

function post(message: FromWorker): void {
  self.postMessage(message);
}

function counters(): number[][] {
  return runtime!.pools.map((pool) =>
    pool.backends.flatMap((b) => [b.requests, b.failures, b.inFlight])
  );
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "start": {
      const log = createLogger(message.logLevel, { prefix: `worker ${message.id}: ` });
      try {
        const config = parseConfig(message.configText, message);
        runtime = await Runtime.create(config, 1, { log });
        server = listenProxy("HTTP", "http_address", config.httpAddress, () => runtime!, {
          log,
          reusePort: true,
        });
        statsTimer = setInterval(
          () => post({ type: "stats", counters: counters() }),
          STATS_INTERVAL_MS,
        );
        post({ type: "listening", port: server.addr.port });
      } catch (e) {
        post({ type: "error", message: e instanceof Error ? e.message : String(e) });
      }
      break;
    }
    case "health": {
      const pool = runtime?.pools[message.pool];
      const backend = pool?.backends[message.backend];
      if (pool && backend) {
        backend.health = message.state;
        pool.invalidate();
      }
      break;
    }
    case "shutdown": {
      clearInterval(statsTimer);
      const timer = setTimeout(() => post({ type: "stopped" }), message.graceMs);
      await server?.shutdown();
      clearTimeout(timer);
      runtime?.close();
      post({ type: "stats", counters: runtime ? counters() : [] });
      post({ type: "stopped" });
      break;
    }
  }
};
