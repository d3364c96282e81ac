// The primary's side of multi-core serving: N workers share the HTTP port
// (and the HTTPS port, with the primary); the primary probes health once and
// tells every worker, and sums their counters for the admin API.

import type { Level, Logger } from "../log.ts";
import type { Runtime } from "../runtime.ts";
import type { HealthState } from "../health/state.ts";
import {
  type Counters,
  COUNTERS_PER_BACKEND,
  type DrainNews,
  type FromWorker,
  type HealthNews,
  type ToWorker,
} from "./protocol.ts";
import type { SocketAddress } from "../net/address.ts";
import type { CertificateSnapshot } from "../tls/store.ts";
import { type Family, merge } from "../metrics/registry.ts";

/** Where the config came from, so workers can build the same generation. */
export interface ConfigSource {
  readonly text: string;
  readonly source: string;
  readonly baseDir: string;
}

/** Options of a worker group. */
export interface WorkerGroupOptions {
  readonly log: Logger;
  readonly logLevel: Level;
  readonly runtime: () => Runtime;
  /** Workers record their busy peers for the primary's client timeouts. */
  readonly watchPeers: boolean;
}

/** A worker that ran at least this long before it died is started again at once. */
const STEADY_MS = 10_000;
/** Longest wait before a worker that keeps dying is started again. */
const MAX_RESTART_DELAY_MS = 30_000;

/**
 * Running proxy workers. A worker that dies (an error nothing caught) is
 * logged and started anew with the live config, certificates, challenges,
 * drains and health states; meanwhile the others serve alone and nobody
 * waits for its answers.
 */
export class WorkerGroup {
  /** By position; null while a dead worker's successor starts. */
  readonly #workers: (Worker | null)[] = [];
  readonly #counters: BackendCounters[] = [];
  /** Per backend of the primary's runtime: the workers' sums last added to its counters. */
  readonly #written = new WeakMap<object, readonly [number, number, number]>();
  readonly #options: WorkerGroupOptions;
  #config: ConfigSource;
  #generation = 1;
  /**
   * What a worker started anew must be told, as the others were: the latest HTTPS and challenge
   * message of each subject. Drains and health states are not kept here but read from the live
   * runtime then (a log of them would replay those of backends a reload removed and added anew).
   */
  readonly #news = new Map<string, ToWorker>();
  /** Per position: deaths in a row of a worker that died soon after it started. */
  readonly #quickDeaths: number[] = [];
  /** Where the workers listen (the first one's bound address); null until it listens. */
  #http: { hostname: string; port: number } | null = null;
  /**
   * Requests and failures that workers which died had counted, by pool and backend name: they
   * stay in the totals (counters never go back), while the successor counts from zero.
   */
  readonly #carried = new Map<string, readonly [number, number]>();
  /** Per position: the worker's traffic metrics as it last gave them (null: none yet). */
  readonly #lastMetrics: (readonly Family[] | null)[] = [];
  /** The counters and histograms of workers that died, as they last gave them: kept in the sums. */
  #carriedMetrics: readonly Family[] = [];
  #asked = 0;
  #stopping = false;

  private constructor(config: ConfigSource, options: WorkerGroupOptions) {
    this.#config = config;
    this.#options = options;
  }

  /** Starts `count` workers and waits until each listens; rejects with the first worker's error. */
  static async start(
    count: number,
    config: ConfigSource,
    options: WorkerGroupOptions,
  ): Promise<WorkerGroup> {
    const group = new WorkerGroup(config, options);
    for (let index = 0; index < count; index++) {
      group.#counters.push(new Map());
      group.#quickDeaths.push(0);
      group.#lastMetrics.push(null);
    }
    try {
      // The first one binds (port 0 picks one), the others join it on that port.
      group.#http = await group.#spawn(0);
      const ready: Promise<unknown>[] = [];
      for (let index = 1; index < count; index++) ready.push(group.#spawn(index));
      await Promise.all(ready);
    } catch (e) {
      group.#terminate();
      throw e;
    }
    return group;
  }

  /**
   * Starts the worker at `index`; resolves with its port once it listens,
   * rejects when it cannot start. Once it listened, its death starts another.
   */
  #spawn(index: number): Promise<{ hostname: string; port: number }> {
    const id = index + 1;
    const { log } = this.#options;
    const worker = new Worker(new URL("./entry.ts", import.meta.url), { type: "module" });
    this.#workers[index] = worker;
    const started = performance.now();
    let listening = false;
    return new Promise((resolve, reject) => {
      worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
        const message = event.data;
        if (message.type === "listening") {
          listening = true;
          resolve({ hostname: message.hostname, port: message.port });
        } else if (message.type === "error") reject(new Error(message.message));
        else if (message.type === "stats") {
          if (this.#workers[index] === worker) {
            this.#collect(index, message.generation, message.counters);
          }
        } else if (message.type === "log") log[message.level](message.message);
      });
      worker.onerror = (event) => {
        event.preventDefault();
        if (!listening) return reject(new Error(`worker ${id} failed: ${event.message}`));
        this.#died(index, worker, event.message, performance.now() - started);
      };
      const start: ToWorker = {
        type: "start",
        id,
        configText: this.#config.text,
        source: this.#config.source,
        baseDir: this.#config.baseDir,
        logLevel: this.#options.logLevel,
        watchPeers: this.#options.watchPeers,
        generation: this.#generation,
        ...(this.#http ? { http: this.#http } : {}),
        states: backendStates(this.#options.runtime()),
      };
      worker.postMessage(start);
    });
  }

  /** A worker that listened died: its successor starts (later when it keeps dying young). */
  #died(index: number, worker: Worker, reason: string, livedMs: number): void {
    if (this.#workers[index] !== worker) return;
    worker.terminate();
    this.#workers[index] = null;
    this.#carry(this.#counters[index]);
    this.#counters[index] = new Map();
    // Its counters stay in /metrics (a total going back reads as a reset); its gauges go.
    const last = this.#lastMetrics[index];
    if (last !== null) {
      const cumulative = last.filter((f) => f.type !== "gauge");
      this.#carriedMetrics = merge([this.#carriedMetrics, cumulative]);
      this.#lastMetrics[index] = null;
    }
    if (this.#stopping) return;
    const quick = livedMs < STEADY_MS ? ++this.#quickDeaths[index] : (this.#quickDeaths[index] = 0);
    const delay = quick === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** (quick - 1));
    this.#options.log.error(
      `Worker ${index + 1} died (${reason}); starting it again${
        delay > 0 ? ` in ${delay / 1000} s` : ""
      }`,
    );
    Deno.unrefTimer(setTimeout(() => this.#restart(index), delay));
  }

  /** Starts the worker at `index` anew and tells it what the others were told since. */
  async #restart(index: number): Promise<void> {
    if (this.#stopping) return;
    let port: number;
    try {
      port = (await this.#spawn(index)).port;
    } catch (e) {
      const worker = this.#workers[index];
      if (worker) this.#died(index, worker, (e as Error).message, 0);
      return;
    }
    const worker = this.#workers[index];
    if (!worker || this.#stopping) return;
    for (const message of this.#news.values()) worker.postMessage(message);
    for (const message of backendStates(this.#options.runtime())) worker.postMessage(message);
    this.#options.log.info(`Worker ${index + 1} started again, listening on port ${port}`);
  }

  /** The workers now running. */
  #alive(): Worker[] {
    return this.#workers.filter((w): w is Worker => w !== null);
  }

  /** Sends `message` to every running worker. */
  #broadcast(message: ToWorker): void {
    for (const worker of this.#alive()) worker.postMessage(message);
  }

  /**
   * Broadcasts the latest news about `subject`, kept for workers started later
   * (`ended`: nothing to keep, e.g. a challenge no longer answered).
   */
  #announce(subject: string, message: ToWorker, ended = false): void {
    if (ended) this.#news.delete(subject);
    else this.#news.set(subject, message);
    this.#broadcast(message);
  }

  /** How many workers run. */
  get size(): number {
    return this.#workers.length;
  }

  /** Workers running now: one that died counts again once started anew. */
  get live(): number {
    return this.#workers.filter((worker) => worker !== null).length;
  }

  /**
   * The peers each worker served since it was last asked, or serves now
   * (lib/net/activity.ts); null when a worker did not answer.
   */
  async peers(): Promise<string[] | null> {
    const id = ++this.#asked;
    const replies = await Promise.all(
      this.#alive().map((worker) =>
        this.#ask(worker, { type: "peers", id }, (m) => m.type === "peers" && m.id === id)
      ),
    );
    const out: string[] = [];
    for (const reply of replies) {
      if (reply?.type !== "peers") return null;
      out.push(...reply.peers);
    }
    return out;
  }

  /**
   * Has every worker report its counters now rather than at its next report (up to
   * STATS_INTERVAL_MS away): in-flight counts change fast, and a drain's caller waits for 0.
   * A worker that does not answer within a second counts as it last reported.
   */
  async refreshCounts(): Promise<void> {
    const id = ++this.#asked;
    await Promise.all(
      this.#alive().map((worker) =>
        this.#ask(worker, { type: "stats", id }, (m) => m.type === "stats" && m.id === id, 1000)
      ),
    );
  }

  /** The shared HTTP port. */
  get port(): number {
    return this.#http?.port ?? 0;
  }

  /** Where the workers listen for HTTP (the first one's bound address). */
  get address(): { readonly hostname: string; readonly port: number } {
    return this.#http ?? { hostname: "", port: 0 };
  }

  /** Has every worker open its access log file anew. */
  reopenLogs(): void {
    this.#broadcast({ type: "reopen-logs" });
  }

  /**
   * Has every worker build `runtime`'s generation from `config`; resolves with the first
   * error, or null. Forgets the counts of backends `runtime` no longer has.
   */
  async reload(config: ConfigSource, runtime: Runtime): Promise<string | null> {
    const { generation } = runtime;
    this.#config = config;
    this.#generation = generation;
    const message: ToWorker = {
      type: "reload",
      generation,
      configText: config.text,
      source: config.source,
      baseDir: config.baseDir,
    };
    const replies = await Promise.all(
      this.#alive().map((worker) =>
        this.#ask(worker, message, (m) => m.type === "reloaded" && m.generation === generation)
      ),
    );
    this.#forgetRemoved(runtime);
    for (const reply of replies) {
      if (reply === null) return "a worker did not answer the reload";
      if (reply.type === "reloaded" && reply.error) return reply.error;
    }
    return null;
  }

  /**
   * Every worker's traffic metrics, and what workers that died had counted. A
   * worker that does not answer (within 10 s) counts as it last answered.
   */
  async metrics(): Promise<(readonly Family[])[]> {
    const id = ++this.#asked;
    const replies = await Promise.all(
      this.#workers.map(async (worker, index) => {
        if (worker === null) return null;
        const reply = await this.#ask(
          worker,
          { type: "metrics", id },
          (m) => m.type === "metrics" && m.id === id,
        );
        if (this.#workers[index] !== worker) return null; // died meanwhile: carried over already
        if (reply?.type === "metrics") this.#lastMetrics[index] = reply.families;
        return this.#lastMetrics[index];
      }),
    );
    const parts = replies.filter((r): r is readonly Family[] => r !== null);
    return this.#carriedMetrics.length > 0 ? [...parts, this.#carriedMetrics] : parts;
  }

  /** Sends a message and waits (up to 10 s) for the reply that `matches`. */
  #ask(
    worker: Worker,
    message: ToWorker,
    matches: (m: FromWorker) => boolean,
    timeoutMs = 10_000,
  ): Promise<FromWorker | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), timeoutMs);
      const onMessage = (event: MessageEvent<FromWorker>) => {
        if (matches(event.data)) done(event.data);
      };
      const done = (reply: FromWorker | null) => {
        clearTimeout(timer);
        worker.removeEventListener("message", onMessage);
        resolve(reply);
      };
      worker.addEventListener("message", onMessage);
      worker.postMessage(message);
    });
  }

  /** Tells every worker to answer (or stop answering) an ACME HTTP-01 challenge. */
  broadcastChallenge(token: string, keyAuthorization: string | null): void {
    const message: ToWorker = { type: "challenge", token, keyAuthorization };
    this.#announce(`challenge ${token}`, message, keyAuthorization === null);
  }

  /** Tells every worker to serve HTTPS on the primary's port with these certificates (null: stop). */
  broadcastHttps(
    https: { readonly address: SocketAddress; readonly certificates: CertificateSnapshot } | null,
  ): void {
    this.#announce("https", { type: "https", https });
  }

  /** Tells every worker that a backend was drained or restored. */
  broadcastDrain(pool: string, backend: string, drained: boolean, keepSticky: boolean): void {
    this.#broadcast({ type: "drain", pool, backend, drained, keepSticky });
  }

  /** Tells every worker about a backend's new health state. */
  broadcastHealth(pool: string, backend: string, state: HealthState): void {
    this.#broadcast({ type: "health", pool, backend, state });
  }

  /** Lets every worker drain for up to `graceMs`, then ends them. */
  async shutdown(graceMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.all(
      this.#alive().map((worker) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs + 1000);
          worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
            if (event.data.type !== "stopped") return;
            clearTimeout(timer);
            resolve();
          });
          worker.postMessage({ type: "shutdown", graceMs } satisfies ToWorker);
        })
      ),
    );
    this.#terminate();
  }

  #collect(index: number, generation: number, counters: Counters): void {
    const runtime = this.#options.runtime();
    // Counters come by position: those of a worker still on another generation (a reload under
    // way) would land on other backends. Its previous report stands until it catches up, kept
    // by backend, not by position: a reload that reorders pools or backends moves no number.
    if (generation !== runtime.generation) return;
    this.#counters[index] = byBackend(runtime, counters);
    // The primary's runtime shows the sum over workers and itself.
    runtime.pools.forEach((pool) => {
      backendKeys(pool).forEach((key, b) => {
        const backend = pool.backends[b];
        let requests = 0, failures = 0, inFlight = 0, ejected = 0;
        for (const worker of this.#counters) {
          const row = worker.get(key);
          if (!row) continue;
          requests += row[0];
          failures += row[1];
          inFlight += row[2];
          ejected += row[3];
        }
        const carried = this.#carried.get(key);
        if (carried) {
          requests += carried[0];
          failures += carried[1];
        }
        backend.ejectedInWorkers = ejected;
        // The primary's own traffic (HTTPS) counts too: add the change of the workers' sums.
        const last = this.#written.get(backend) ?? [0, 0, 0];
        backend.requests += requests - last[0];
        backend.failures += failures - last[1];
        backend.inFlight += inFlight - last[2];
        this.#written.set(backend, [requests, failures, inFlight]);
      });
    });
  }

  /**
   * Drops the counts of backends `runtime` does not have: a backend a later reload adds
   * again starts from zero, as the runtime's own counters do, not with what a dead worker
   * (or a worker's report on an older generation) had counted for it before.
   */
  #forgetRemoved(runtime: Runtime): void {
    const keys = new Set(runtime.pools.flatMap((pool) => backendKeys(pool)));
    for (const counts of [this.#carried, ...this.#counters]) {
      for (const key of counts.keys()) if (!keys.has(key)) counts.delete(key);
    }
    // The series of removed pools and backends go from the dead workers' metrics too, as the
    // live workers drop theirs: kept, they outlived the reload, and a total that the live
    // workers no longer added to went back (read as a counter reset).
    this.#carriedMetrics = seriesStillThere(this.#carriedMetrics, runtime.pools);
  }

  /** Keeps what a dead worker counted (its in-flight requests are gone with it). */
  #carry(counters: BackendCounters): void {
    for (const [key, row] of counters) {
      const [requests, failures] = this.#carried.get(key) ?? [0, 0];
      this.#carried.set(key, [requests + row[0], failures + row[1]]);
    }
  }

  #terminate(): void {
    this.#stopping = true;
    for (const worker of this.#alive()) worker.terminate();
  }

  /** Tests only: has the worker at `index` fail as a bug would. */
  failWorker(index: number): void {
    this.#workers[index]?.postMessage({ type: "fail" } satisfies ToWorker);
  }
}

/** The drain and health state of each of `runtime`'s backends, as messages for a new worker. */
function backendStates(runtime: Runtime): (HealthNews | DrainNews)[] {
  return runtime.pools.flatMap((pool) =>
    pool.backends.flatMap((b): (HealthNews | DrainNews)[] => [
      { type: "health", pool: pool.config.name, backend: b.id, state: b.health },
      {
        type: "drain",
        pool: pool.config.name,
        backend: b.id,
        drained: b.drained,
        keepSticky: b.keepSticky,
      },
    ])
  );
}

/** A backend's key in the group's maps. */
function backendKey(pool: string, backend: string): string {
  return `${pool}\u0000${backend}`;
}

/** A worker's counters by backend key: requests, failures, in flight, ejected. */
type BackendCounters = Map<string, readonly number[]>;

/**
 * The keys of a pool's backends, in order. An address listed twice is two
 * backends: the second gets `#1` after its key, and so on.
 */
function backendKeys(pool: { config: { name: string }; backends: readonly { id: string }[] }) {
  const seen = new Map<string, number>();
  return pool.backends.map((backend) => {
    const key = backendKey(pool.config.name, backend.id);
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return n === 0 ? key : `${key}#${n}`;
  });
}

/** A worker's report, by position in `runtime`'s layout (the one it was made in), by backend. */
function byBackend(runtime: Runtime, counters: Counters): BackendCounters {
  const out: BackendCounters = new Map();
  runtime.pools.forEach((pool, p) => {
    const row = counters[p];
    if (!row) return;
    backendKeys(pool).forEach((key, b) => {
      const at = b * COUNTERS_PER_BACKEND;
      out.set(key, [row[at] ?? 0, row[at + 1] ?? 0, row[at + 2] ?? 0, row[at + 3] ?? 0]);
    });
  });
  return out;
}

/**
 * `families` without the series of pools and backends that `pools` no longer has: by pool and
 * backend together where a series names both (a backend left in another pool does not keep its
 * series of the pool it left), else by the one it names.
 */
export function seriesStillThere(
  families: readonly Family[],
  pools: readonly { config: { name: string }; backends: readonly { id: string }[] }[],
): Family[] {
  const names = new Set(pools.map((pool) => pool.config.name));
  const backends = new Set(pools.flatMap((pool) => pool.backends.map((b) => b.id)));
  const pairs = new Set(
    pools.flatMap((pool) => pool.backends.map((b) => `${pool.config.name}\n${b.id}`)),
  );
  const kept = ({ pool, backend }: Readonly<Record<string, string>>) =>
    pool !== undefined && backend !== undefined
      ? pairs.has(`${pool}\n${backend}`)
      : (pool === undefined || names.has(pool)) && (backend === undefined || backends.has(backend));
  return families.map((family) => ({
    ...family,
    samples: family.samples.filter((sample) => kept(sample.labels)),
  }));
}
