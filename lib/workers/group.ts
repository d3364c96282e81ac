// The primary's side of multi-core serving: N workers share the HTTP port
// (and the HTTPS port, with the primary); the primary probes health once and
// tells every worker, and sums their counters for the admin API.

import type { Level, Logger } from "../log.ts";
import type { Runtime } from "../runtime.ts";
import type { HealthState } from "../health/state.ts";
import { type Counters, COUNTERS_PER_BACKEND, type FromWorker, type ToWorker } from "./protocol.ts";
import type { SocketAddress } from "../net/address.ts";
import type { CertificateSnapshot } from "../tls/store.ts";
import type { Family } from "../metrics/registry.ts";

/** Where the config came from, so workers can build the same generation. */
export interface ConfigSource {
  readonly text: string;
  readonly source: string;
  readonly baseDir: string;
}

/** Running proxy workers. */
export class WorkerGroup {
  readonly #workers: Worker[] = [];
  readonly #counters: Counters[] = [];
  /** Per backend of the primary's runtime: the workers' sums last added to its counters. */
  readonly #written = new WeakMap<object, readonly [number, number, number]>();
  readonly #runtime: () => Runtime;
  #port = 0;
  #asked = 0;

  private constructor(runtime: () => Runtime) {
    this.#runtime = runtime;
  }

  /** Starts `count` workers and waits until each listens; rejects with the first worker's error. */
  static async start(
    count: number,
    config: ConfigSource,
    options: {
      readonly log: Logger;
      readonly logLevel: Level;
      readonly runtime: () => Runtime;
      /** Workers record their busy peers for the primary's client timeouts. */
      readonly watchPeers: boolean;
    },
  ): Promise<WorkerGroup> {
    const group = new WorkerGroup(options.runtime);
    const ready: Promise<number>[] = [];
    for (let id = 1; id <= count; id++) {
      const worker = new Worker(new URL("./entry.ts", import.meta.url), { type: "module" });
      group.#workers.push(worker);
      group.#counters.push([]);
      ready.push(
        new Promise((resolve, reject) => {
          worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
            const message = event.data;
            if (message.type === "listening") resolve(message.port);
            else if (message.type === "error") reject(new Error(message.message));
            else if (message.type === "stats") {
              group.#collect(id - 1, message.generation, message.counters);
            } else if (message.type === "log") options.log[message.level](message.message);
          });
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(`worker ${id} failed: ${event.message}`));
          };
        }),
      );
      const start: ToWorker = {
        type: "start",
        id,
        configText: config.text,
        source: config.source,
        baseDir: config.baseDir,
        logLevel: options.logLevel,
        watchPeers: options.watchPeers,
      };
      worker.postMessage(start);
    }
    try {
      const ports = await Promise.all(ready);
      group.#port = ports[0];
    } catch (e) {
      group.#terminate();
      throw e;
    }
    return group;
  }

  /** How many workers run. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * The peers each worker served since it was last asked, or serves now
   * (lib/net/activity.ts); null when a worker did not answer.
   */
  async peers(): Promise<string[] | null> {
    const id = ++this.#asked;
    const replies = await Promise.all(
      this.#workers.map((worker) =>
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

  /** The shared HTTP port. */
  get port(): number {
    return this.#port;
  }

  /** Has every worker open its access log file anew. */
  reopenLogs(): void {
    for (const worker of this.#workers) {
      worker.postMessage({ type: "reopen-logs" } satisfies ToWorker);
    }
  }

  /** Has every worker build the new generation; resolves with the first error, or null. */
  async reload(config: ConfigSource, generation: number): Promise<string | null> {
    const message: ToWorker = {
      type: "reload",
      generation,
      configText: config.text,
      source: config.source,
      baseDir: config.baseDir,
    };
    const replies = await Promise.all(
      this.#workers.map((worker) =>
        this.#ask(worker, message, (m) => m.type === "reloaded" && m.generation === generation)
      ),
    );
    for (const reply of replies) {
      if (reply === null) return "a worker did not answer the reload";
      if (reply.type === "reloaded" && reply.error) return reply.error;
    }
    return null;
  }

  /** Every worker's traffic metrics (a worker that does not answer is left out). */
  async metrics(): Promise<Family[][]> {
    const id = ++this.#asked;
    const replies = await Promise.all(
      this.#workers.map((worker) =>
        this.#ask(worker, { type: "metrics", id }, (m) => m.type === "metrics" && m.id === id)
      ),
    );
    return replies.flatMap((r) => r?.type === "metrics" ? [r.families] : []);
  }

  /** Sends a message and waits (up to 10 s) for the reply that `matches`. */
  #ask(
    worker: Worker,
    message: ToWorker,
    matches: (m: FromWorker) => boolean,
  ): Promise<FromWorker | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), 10_000);
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
    for (const worker of this.#workers) worker.postMessage(message);
  }

  /** Tells every worker to serve HTTPS on the primary's port with these certificates (null: stop). */
  broadcastHttps(
    https: { readonly address: SocketAddress; readonly certificates: CertificateSnapshot } | null,
  ): void {
    const message: ToWorker = { type: "https", https };
    for (const worker of this.#workers) worker.postMessage(message);
  }

  /** Tells every worker that a backend was drained or restored. */
  broadcastDrain(pool: string, backend: string, drained: boolean): void {
    const message: ToWorker = { type: "drain", pool, backend, drained };
    for (const worker of this.#workers) worker.postMessage(message);
  }

  /** Tells every worker about a backend's new health state. */
  broadcastHealth(pool: string, backend: string, state: HealthState): void {
    const message: ToWorker = { type: "health", pool, backend, state };
    for (const worker of this.#workers) worker.postMessage(message);
  }

  /** Lets every worker drain for up to `graceMs`, then ends them. */
  async shutdown(graceMs: number): Promise<void> {
    await Promise.all(this.#workers.map((worker) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs + 1000);
        worker.addEventListener("message", (event: MessageEvent<FromWorker>) => {
          if (event.data.type !== "stopped") return;
          clearTimeout(timer);
          resolve();
        });
        worker.postMessage({ type: "shutdown", graceMs } satisfies ToWorker);
      })
    ));
    this.#terminate();
  }

  #collect(index: number, generation: number, counters: Counters): void {
    const runtime = this.#runtime();
    // Counters go by position: those of a worker still on another generation (a reload under
    // way) would land on other backends. Its previous report stands until it catches up.
    if (generation !== runtime.generation) return;
    this.#counters[index] = counters;
    // The primary's runtime shows the sum over workers and itself.
    runtime.pools.forEach((pool, p) => {
      pool.backends.forEach((backend, b) => {
        let requests = 0, failures = 0, inFlight = 0, ejected = 0;
        const at = b * COUNTERS_PER_BACKEND;
        for (const worker of this.#counters) {
          const row = worker[p];
          if (!row) continue;
          requests += row[at] ?? 0;
          failures += row[at + 1] ?? 0;
          inFlight += row[at + 2] ?? 0;
          ejected += row[at + 3] ?? 0;
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

  #terminate(): void {
    for (const worker of this.#workers) worker.terminate();
  }
}
