// Strom's metrics (lib/metrics/registry.ts). The per-request calls add to
// label children kept here; per-backend state is read from the live runtime at
// scrape time instead of being pushed per request.

import * as N from "./names.ts";
import {
  CONTENT_TYPE,
  type Counter,
  type CounterChild,
  type Family,
  type Gauge,
  type Histogram,
  type HistogramChild,
  merge,
  Registry,
  render,
} from "./registry.ts";
import { eventLoopLag, heapMetrics, processMetrics } from "./process.ts";
import { type Runtime, takesTraffic } from "../runtime.ts";
import type { HealthStatus } from "../health/state.ts";

const STATES: HealthStatus[] = ["Healthy", "Slow", "Unresponsive"];

/** Traffic metrics every isolate counts (the primary adds up the workers' at scrape time). */
export class TrafficMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter;
  readonly #active: Gauge;
  readonly #duration: Histogram;
  readonly #fine: Histogram;
  readonly #backendTime: Histogram;
  readonly #status: Counter;
  readonly #errors: Counter;
  readonly #timeouts: Counter;
  readonly #backendFailures: Counter;
  readonly #bytes: Counter;
  readonly #retries: Counter;
  readonly #ejections: Counter;
  readonly #rateLimited: Counter;
  readonly #websockets: Gauge;
  readonly #statusChildren = new Map<number, CounterChild>();
  readonly #backendChildren = new Map<string, HistogramChild>();
  readonly #bytesIn: CounterChild;
  readonly #bytesOut: CounterChild;
  readonly #lag: { start(): { stop(): void } };

  constructor() {
    const r = this.registry;
    this.#requests = r.counter({
      name: N.HTTP_REQUESTS_TOTAL,
      help: "Requests received on the proxy listeners",
    });
    this.#active = r.gauge({
      name: N.ACTIVE_HTTP_CONNECTIONS,
      help: "Requests in progress (RustStrom's name; it counts requests, not connections)",
    });
    this.#duration = r.histogram({
      name: N.HTTP_REQUEST_DURATION_SECONDS,
      help:
        "Time from a request's arrival to its response headers, for requests that matched a pool",
      buckets: N.DURATION_BUCKETS,
    });
    this.#fine = r.histogram({
      name: N.REQUEST_DURATION_SECONDS,
      help: "Time from arrival to response headers of every proxied request, fine buckets",
      buckets: N.FINE_BUCKETS,
    });
    this.#backendTime = r.histogram({
      name: N.BACKEND_RESPONSE_TIME_SECONDS,
      help: "Time to the response headers of forwarded requests, by backend",
      labelNames: ["backend"],
      buckets: N.DURATION_BUCKETS,
    });
    this.#status = r.counter({
      name: N.HTTP_STATUS_CODES_TOTAL,
      help: "Responses by status code",
      labelNames: ["code"],
    });
    this.#errors = r.counter({
      name: N.HTTP_ERRORS_TOTAL,
      help: "Responses with a 5xx status",
    });
    this.#timeouts = r.counter({
      name: N.HTTP_TIMEOUTS_TOTAL,
      help: "Requests that ran past request_timeout (504)",
    });
    this.#backendFailures = r.counter({
      name: N.BACKEND_FAILURES_TOTAL,
      help:
        "Attempts that failed at a backend (connect, reset, invalid answer, timeout; with count_5xx, a 5xx answer)",
      labelNames: ["backend"],
    });
    this.#bytes = r.counter({
      name: N.BYTES_TRANSFERRED_TOTAL,
      help: 'Body bytes: direction="in" from clients, "out" to clients',
      labelNames: ["direction"],
    });
    this.#retries = r.counter({
      name: N.RETRIES_TOTAL,
      help: "Requests sent again to another backend",
      labelNames: ["pool"],
    });
    this.#ejections = r.counter({
      name: N.EJECTIONS_TOTAL,
      help: "Backends taken out of rotation by passive health (outlier detection)",
      labelNames: ["pool", "backend"],
    });
    this.#rateLimited = r.counter({
      name: N.RATE_LIMITED_TOTAL,
      help: "Requests refused by a RateLimiter",
      labelNames: ["pool"],
    });
    this.#websockets = r.gauge({
      name: N.WEBSOCKETS_OPEN,
      help: "WebSockets relayed right now (each isolate counts its own; they add up)",
    });
    this.#bytesIn = this.#bytes.labels("in");
    this.#bytesOut = this.#bytes.labels("out");
    this.#lag = eventLoopLag(r);
    heapMetrics(r);
  }

  /** Samples this isolate's event-loop lag until `stop()`. */
  sampleEventLoop(): { stop(): void } {
    return this.#lag.start();
  }

  /**
   * Creates the labelled series of a runtime at zero, so they exist before any
   * traffic, and drops those of pools and backends it no longer has (a config
   * generator that renames backends at each reload would otherwise grow
   * /metrics without end).
   */
  prime(runtime: Runtime): void {
    const live = liveLabels(runtime);
    this.#retries.retain(live.pool);
    this.#rateLimited.retain(live.pool);
    this.#backendFailures.retain(live.backend);
    this.#backendTime.retain(live.backend);
    this.#ejections.retain(live.poolBackend);
    for (const id of this.#backendChildren.keys()) {
      if (!live.backends.has(id)) this.#backendChildren.delete(id);
    }
    for (const pool of runtime.pools) {
      this.#retries.labels(pool.config.name).inc(0);
      this.#rateLimited.labels(pool.config.name).inc(0);
      for (const backend of pool.backends) {
        this.#backendFailures.labels(backend.id).inc(0);
        this.#backend(backend.id);
        this.#ejections.labels(pool.config.name, backend.id).inc(0);
      }
    }
  }

  requestStarted(): void {
    this.#requests.inc();
    this.#active.inc();
  }

  /**
   * A request's response headers are ready (`seconds` since arrival; null for
   * no pool). `timedOut`: Strom's own 504 after request_timeout, which is what
   * http_timeouts_total counts (a backend's 504 is not a timeout of Strom's).
   */
  requestAnswered(status: number, seconds: number | null, timedOut = false): void {
    this.#active.dec();
    let child = this.#statusChildren.get(status);
    if (child === undefined) {
      child = this.#status.labels(String(status));
      this.#statusChildren.set(status, child);
    }
    child.inc();
    if (status >= 500) this.#errors.inc();
    if (timedOut) this.#timeouts.inc();
    if (seconds !== null) {
      this.#duration.observe(seconds);
      this.#fine.observe(seconds);
    }
  }

  backendAnswered(backend: string, seconds: number): void {
    this.#backend(backend).observe(seconds);
  }

  backendFailed(backend: string): void {
    this.#backendFailures.labels(backend).inc();
  }

  bytesIn(n: number): void {
    if (n > 0) this.#bytesIn.inc(n);
  }

  bytesOut(n: number): void {
    if (n > 0) this.#bytesOut.inc(n);
  }

  retried(pool: string): void {
    this.#retries.labels(pool).inc();
  }

  ejected(pool: string, backend: string): void {
    this.#ejections.labels(pool, backend).inc();
  }

  rateLimited(pool: string): void {
    this.#rateLimited.labels(pool).inc();
  }

  /** A relayed WebSocket opened (both legs up). */
  websocketOpened(): void {
    this.#websockets.inc();
  }

  /** A relayed WebSocket ended (both legs closed). */
  websocketClosed(): void {
    this.#websockets.dec();
  }

  #backend(id: string): HistogramChild {
    let child = this.#backendChildren.get(id);
    if (child === undefined) {
      child = this.#backendTime.labels(id);
      this.#backendChildren.set(id, child);
    }
    return child;
  }
}

/** What the primary knows beyond traffic: backend state, reloads, health checks, process. */
export class StateMetrics {
  readonly registry = new Registry();
  readonly #reloads: Counter;
  readonly #checks: Counter;
  readonly #acmeFailures: Counter;
  readonly #clientConnections: Gauge;
  readonly #clientTimeouts: Counter;

  constructor(
    runtime: () => Runtime,
    workers: () => number,
    certificates: () => { name: string; notAfter: Date }[] = () => [],
  ) {
    const r = this.registry;
    const perBackend =
      (fill: (set: (value: number, ...labels: string[]) => void) => void) => (gauge: Gauge) => {
        gauge.reset();
        fill((value, ...labels) => gauge.labels(...labels).set(value));
      };
    const eachBackend = (
      f: (pool: string, backend: Runtime["pools"][number]["backends"][number]) => void,
    ) => {
      for (const pool of runtime().pools) for (const b of pool.backends) f(pool.config.name, b);
    };
    r.gauge({
      name: N.BACKEND_UP,
      help: "1 when the backend may receive traffic (not Unresponsive, ejected or drained)",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) => eachBackend((pool, b) => set(b.usable ? 1 : 0, pool, b.id))),
    });
    r.gauge({
      name: N.BACKEND_AVAILABLE,
      help: "1 when the backend is in the set new requests go to now (as /api/pools' available)",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) => {
        const count = workers();
        for (const pool of runtime().pools) {
          const available = pool.available();
          for (const b of pool.backends) {
            set(takesTraffic(b, available, count) ? 1 : 0, pool.config.name, b.id);
          }
        }
      }),
    });
    r.gauge({
      name: N.BACKEND_STATE,
      help: "1 for the backend's current active-health state",
      labelNames: ["pool", "backend", "state"],
      collect: perBackend((set) =>
        eachBackend((pool, b) => {
          for (const state of STATES) {
            set(b.health.status === state ? 1 : 0, pool, b.id, state);
          }
        })
      ),
    });
    r.gauge({
      name: N.BACKEND_EJECTED,
      help: "1 while passive health keeps the backend out (as seen by the main isolate)",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) =>
        eachBackend((pool, b) => set(b.outlier.ejected ? 1 : 0, pool, b.id))
      ),
    });
    r.gauge({
      name: N.BACKEND_EJECTED_IN_WORKERS,
      help: "With workers: in how many workers passive health keeps the backend out",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) => eachBackend((pool, b) => set(b.ejectedInWorkers, pool, b.id))),
    });
    r.gauge({
      name: N.BACKEND_IN_FLIGHT,
      help: "Requests being forwarded to the backend",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) => eachBackend((pool, b) => set(b.inFlight, pool, b.id))),
    });
    // A counter by its name and its values (it restarts at 0 for a backend removed and added
    // again, as counters do when a process restarts); exposed as a gauge before, which
    // Prometheus' naming rules and linters flag (a probe).
    r.gauge({
      countsUp: true,
      name: N.BACKEND_REQUESTS_TOTAL,
      help: "Attempts sent to the backend, read from the runtime",
      labelNames: ["pool", "backend"],
      collect: perBackend((set) => eachBackend((pool, b) => set(b.requests, pool, b.id))),
    });
    this.#checks = r.counter({
      name: N.HEALTH_CHECKS_TOTAL,
      help: "Active health probes by result",
      labelNames: ["pool", "backend", "result"],
    });
    this.#reloads = r.counter({
      name: N.CONFIG_RELOADS_TOTAL,
      help: "Config reloads by result",
      labelNames: ["result"],
    });
    this.#reloads.labels("success").inc(0);
    this.#reloads.labels("failure").inc(0);
    r.gauge({
      name: N.CONFIG_GENERATION,
      help: "Generation of the live config (1 at start, +1 per successful reload)",
      collect: (g) => g.set(runtime().generation),
    });
    r.gauge({
      name: N.WORKERS,
      help: "Isolates serving the proxy listeners now (one that died counts once started anew)",
      collect: (g) => g.set(workers()),
    });
    r.gauge({
      name: N.CERTIFICATE_EXPIRY_SECONDS,
      help: "When each served certificate expires (Unix time)",
      labelNames: ["name"],
      collect: (g) => {
        g.reset();
        for (const c of certificates()) g.labels(c.name).set(c.notAfter.getTime() / 1000);
      },
    });
    this.#acmeFailures = r.counter({
      name: N.ACME_FAILURES_TOTAL,
      help: "Failed ACME orders (the current certificate is kept)",
      labelNames: ["name"],
    });
    this.#clientConnections = r.gauge({
      name: N.CLIENT_CONNECTIONS,
      help: "Client connections open on Strom's ports (counted once a second; Linux)",
    });
    this.#clientTimeouts = r.counter({
      name: N.CLIENT_TIMEOUTS_TOTAL,
      help: "Client connections closed by client_header_timeout or client_idle_timeout",
      labelNames: ["reason"],
    });
    this.#clientTimeouts.labels("header").inc(0);
    this.#clientTimeouts.labels("idle").inc(0);
    processMetrics(r);
  }

  /** A round of the client timeouts: connections open, and those closed by reason. */
  clientRound(open: number, closed: { header: number; idle: number }): void {
    this.#clientConnections.set(open);
    this.#clientTimeouts.labels("header").inc(closed.header);
    this.#clientTimeouts.labels("idle").inc(closed.idle);
  }

  /**
   * Creates the per-backend check counters and the ACME failure counters at
   * zero, and drops those of backends and names the runtime no longer has.
   */
  prime(runtime: Runtime): void {
    const live = liveLabels(runtime);
    this.#checks.retain(live.poolBackend);
    const acme = new Set<string>();
    for (const c of runtime.config.certificates) if (c.type === "ACME") acme.add(c.serverName);
    this.#acmeFailures.retain((labels) => acme.has(labels.name));
    for (const pool of runtime.pools) {
      for (const b of pool.backends) {
        for (const result of ["pass", "fail"]) {
          this.#checks.labels(pool.config.name, b.id, result).inc(0);
        }
      }
    }
    for (const c of runtime.config.certificates) {
      if (c.type === "ACME") this.#acmeFailures.labels(c.serverName).inc(0);
    }
  }

  healthChecked(pool: string, backend: string, ok: boolean): void {
    this.#checks.labels(pool, backend, ok ? "pass" : "fail").inc();
  }

  /** An ACME order for `name` failed. */
  acmeFailed(name: string): void {
    this.#acmeFailures.labels(name).inc();
  }

  reloaded(ok: boolean): void {
    this.#reloads.labels(ok ? "success" : "failure").inc();
  }
}

/** Tests on label sets: does the series belong to a pool or backend of `runtime`? */
function liveLabels(runtime: Runtime) {
  const pools = new Set<string>();
  const backends = new Set<string>();
  const pairs = new Set<string>();
  for (const pool of runtime.pools) {
    pools.add(pool.config.name);
    for (const b of pool.backends) {
      backends.add(b.id);
      pairs.add(`${pool.config.name}\n${b.id}`);
    }
  }
  type Labels = Readonly<Record<string, string>>;
  return {
    backends,
    pool: (labels: Labels) => pools.has(labels.pool),
    backend: (labels: Labels) => backends.has(labels.backend),
    poolBackend: (labels: Labels) => pairs.has(`${labels.pool}\n${labels.backend}`),
  };
}

/** The Prometheus text of several registries' snapshots, summed (workers and primary). */
export function aggregate(parts: readonly (readonly Family[])[]): string {
  return render(merge(parts));
}

/** The content type of the Prometheus text format. */
export const METRICS_CONTENT_TYPE = CONTENT_TYPE;
