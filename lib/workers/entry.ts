// A proxy worker: its own config generation and HTTP listener on the shared
// port (SO_REUSEPORT), and an HTTPS listener next to the primary's when
// certificates are configured. Health comes from the primary; passive health, retry
// budgets and LeastConnection counts are this worker's own. Log lines go to
// the primary, which prints them and keeps them for the admin API.

/// <reference lib="deno.worker" />

import { parseConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { createLogger, type Logger } from "../log.ts";
import { defaultRuntimeDeps, Runtime, type RuntimeDeps } from "../runtime.ts";
import { listenHttpsProxy, listenProxy } from "../listen.ts";
import { CertificateStore, resolvedLimitMessage } from "../tls/store.ts";
import type { HttpListener } from "../net/http_listener.ts";
import { TrafficMetrics } from "../metrics/metrics.ts";
import { HealthMonitor } from "../health/monitor.ts";
import { createHttpProbe } from "../health/probe.ts";
import { AccessLog } from "../access_log.ts";
import { WebSocketRegistry } from "../proxy/websockets.ts";
import { ChallengeStore } from "../tls/challenges.ts";
import { type ActivityReader, isolateActivity } from "../net/activity.ts";
import {
  type DrainNews,
  type FromWorker,
  type HealthNews,
  STATS_INTERVAL_MS,
  type ToWorker,
} from "./protocol.ts";

const metrics = new TrafficMetrics();
metrics.sampleEventLoop(); // until the worker ends
const websockets = new WebSocketRegistry();
const challenges = new ChallengeStore();
/** Tells the primary's client timeouts which peers this worker serves (when it runs them). */
let activity: ActivityReader | null = null;
const deps: RuntimeDeps = {
  ...defaultRuntimeDeps,
  metrics,
  // The primary's HTTPS port, where this worker listens too (it sends the address bound).
  httpsPort: () => httpsWanted?.address.port ?? null,
};
let log: Logger;
let runtime: Runtime | null = null;
let accessLog: AccessLog | null = null;
let server: HttpListener | null = null;
let https: HttpListener | null = null;
/** Shutdowns of HTTPS listeners replaced in this worker, still finishing their requests. */
const retired = new Set<Promise<void>>();
/** What the primary last asked this worker's HTTPS listener to serve. */
let httpsWanted: Extract<ToWorker, { type: "https" }>["https"] = null;
let monitor: HealthMonitor | null = null;
let statsTimer: ReturnType<typeof setInterval> | undefined;

function post(message: FromWorker): void {
  self.postMessage(message);
}

function counters(): number[][] {
  return runtime!.pools.map((pool) =>
    pool.backends.flatMap((b) => [b.requests, b.failures, b.inFlight, b.outlier.ejected ? 1 : 0])
  );
}

/** Swaps in a new generation (the first one too) and its access log. */
async function adopt(config: Config, generation: number): Promise<void> {
  const next = await Runtime.create(config, generation, {
    log,
    deps,
    previous: runtime ?? undefined,
  });
  const nextLog = same(config.accessLog, runtime?.config.accessLog)
    ? accessLog
    : config.accessLog && await AccessLog.open(config.accessLog, (m) => log.warn(m));
  const old = runtime;
  const oldLog = accessLog;
  runtime = next;
  accessLog = nextLog ?? null;
  metrics.prime(next);
  monitor!.watch(next);
  if (old) old.retire(next);
  if (oldLog && oldLog !== accessLog) await oldLog.close();
}

/**
 * Listens for HTTPS next to the primary (SO_REUSEPORT) with its certificates; the
 * previous listener finishes its requests. Keeps the previous one when binding fails.
 */
function serveHttps(next: Extract<ToWorker, { type: "https" }>["https"]): void {
  const old = https;
  httpsWanted = next;
  if (next !== null) {
    const store = CertificateStore.from(next.certificates);
    // As the primary does: a listener that resolved too many names is replaced by a fresh one.
    store.onResolvedLimit = () => {
      if (httpsWanted !== next) return;
      log.warn(resolvedLimitMessage(store.resolvedLimit));
      serveHttps(next);
    };
    try {
      https = listenHttpsProxy(
        next.address,
        store,
        () => runtime!,
        { log, observers: { metrics, accessLog: () => accessLog }, websockets },
      );
    } catch (e) {
      log.error(`Cannot serve HTTPS: ${(e as Error).message}`);
      return;
    }
  } else https = null;
  if (old) {
    // The replaced listener finishes its requests; a shutdown waits for them too.
    const done = old.shutdown();
    retired.add(done);
    void done.finally(() => retired.delete(done));
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

// Never die of a stray rejected promise: log it and keep serving (as the primary does).
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  log?.error(`An unexpected error was not handled: ${event.reason}`);
});

/** A backend's health or drain, as the primary knows it, applied to this worker's runtime. */
function applyNews(news: HealthNews | DrainNews): void {
  if (news.type === "drain") {
    runtime?.setDrained(news.pool, news.backend, news.drained, news.keepSticky);
    return;
  }
  const pool = runtime?.pools.find((p) => p.config.name === news.pool);
  if (!pool) return;
  // Every listing of the address: one listed twice is one backend, probed as such.
  for (const backend of pool.backends) {
    if (backend.id === news.backend) backend.health = news.state;
  }
  pool.invalidate();
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "start": {
      if (message.watchPeers) activity = isolateActivity.reader();
      log = createLogger(message.logLevel, {
        sink: (r) => post({ type: "log", level: r.level, message: r.message }),
        prefix: `worker ${message.id}: `,
      });
      // Probes here only bring ejected backends back; rounds run in the primary.
      monitor = new HealthMonitor({
        clock: deps.clock,
        log,
        probe: createHttpProbe(deps.clock),
        probeBackOnly: true,
      });
      try {
        const config = parseConfig(message.configText, message);
        await adopt(config, message.generation);
        for (const news of message.states ?? []) applyNews(news);
        const address = message.http
          ? { ...config.httpAddress, ...message.http }
          : config.httpAddress;
        server = listenProxy("HTTP", "http_address", address, () => runtime!, {
          log,
          reusePort: true,
          observers: { metrics, accessLog: () => accessLog },
          websockets,
          challenges,
        });
        statsTimer = setInterval(
          () => post({ type: "stats", generation: runtime!.generation, counters: counters() }),
          STATS_INTERVAL_MS,
        );
        post({ type: "listening", hostname: server.addr.hostname, port: server.addr.port });
      } catch (e) {
        post({ type: "error", message: e instanceof Error ? e.message : String(e) });
      }
      break;
    }
    case "reload": {
      try {
        await adopt(parseConfig(message.configText, message), message.generation);
        post({ type: "reloaded", generation: message.generation, error: null });
      } catch (e) {
        post({ type: "reloaded", generation: message.generation, error: String(e) });
      }
      break;
    }
    case "fail": {
      setTimeout(() => {
        throw new Error("failing on request");
      });
      break;
    }
    case "reopen-logs": {
      await accessLog?.reopen().catch((e: Error) => log.error(e.message));
      break;
    }
    case "health":
    case "drain": {
      applyNews(message);
      break;
    }
    case "https": {
      serveHttps(message.https);
      break;
    }
    case "challenge": {
      if (message.keyAuthorization === null) challenges.delete(message.token);
      else challenges.set(message.token, message.keyAuthorization);
      break;
    }
    case "peers": {
      post({ type: "peers", id: message.id, peers: activity?.take() ?? [] });
      break;
    }
    case "metrics": {
      post({ type: "metrics", id: message.id, families: metrics.registry.snapshot() });
      break;
    }
    case "stats": {
      if (runtime === null) break;
      post({ type: "stats", id: message.id, generation: runtime.generation, counters: counters() });
      break;
    }
    case "shutdown": {
      clearInterval(statsTimer);
      websockets.closeAll();
      monitor?.stop();
      const timer = setTimeout(() => post({ type: "stopped" }), message.graceMs);
      await Promise.all([server?.shutdown(), https?.shutdown(), ...retired]);
      clearTimeout(timer);
      runtime?.close();
      await accessLog?.close();
      post({
        type: "stats",
        generation: runtime?.generation ?? 0,
        counters: runtime ? counters() : [],
      });
      post({ type: "stopped" });
      break;
    }
  }
};
