// One config generation made live: pools with their backends, strategies and
// transports. Built once from a validated Config; swapped as a whole on reload.

import type { BackendAddress, Config, PoolConfig, Scheme } from "./config/types.ts";
import type { Candidate, PickContext, Strategy, StrategyDeps } from "./balance/strategy.ts";
import { createStrategy } from "./balance/registry.ts";
import type { Transport } from "./transport/transport.ts";
import { createFetchTransport } from "./transport/fetch.ts";
import { createHttp1Transport } from "./transport/http1/transport.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type HealthState, INITIAL_HEALTH } from "./health/state.ts";
import {
  eject,
  initialOutlierState,
  type OutlierState,
  readmit,
  recordOutcome,
} from "./health/outlier.ts";
import { RetryBudget } from "./proxy/retry.ts";
import { probeIntervalMs } from "./config/health.ts";
import { Deadlines } from "./proxy/deadlines.ts";
import {
  type Chain,
  type ClosableMiddleware,
  compose,
  HttpError,
  type MiddlewareDeps,
} from "./middleware/middleware.ts";
import { createMiddleware } from "./middleware/registry.ts";
import { errorResponse } from "./proxy/errors.ts";
import { type Logger, ThrottledLine } from "./log.ts";
import { PoolRouter } from "./routing.ts";
import type { TrafficMetrics } from "./metrics/metrics.ts";

/** Deep equality of validated config parts (plain data). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The Healthy backends of `usable`, or, when there are none, all of them (the Slow ones). */
function healthyFirst(usable: readonly Backend[]): readonly Backend[] {
  const healthy = usable.filter((b) => b.health.status === "Healthy");
  return healthy.length > 0 ? healthy : usable;
}

/** A backend of a pool, with the live state strategies, health and the admin API read. */
export class Backend implements Candidate {
  readonly address: BackendAddress;
  readonly id: string;
  /** Requests forwarded and not yet finished (response body included). */
  inFlight = 0;
  /** Attempts sent to this backend. */
  requests = 0;
  /** Attempts that failed at this backend (connect, reset, timeout). */
  failures = 0;
  /** Active health, from probes. */
  health: HealthState = INITIAL_HEALTH;
  /** Passive health, from live traffic. */
  readonly outlier: OutlierState = initialOutlierState();
  /** The probe running now, if any (probes of one backend never overlap). */
  probing: Promise<void> | null = null;
  /** `failures` when the last probe ended: live failures since then corroborate a failed probe. */
  failuresAtProbe = 0;
  /** Taken out of rotation by an operator (admin API): no new requests, health still probed. */
  drained = false;
  /**
   * With `drained`: clients a sticky cookie binds to it still reach it (nginx's
   * and HAProxy's `drain`); only new clients go elsewhere.
   */
  keepSticky = false;
  /** With `workers`: how many workers have it ejected (each ejects on its own traffic). */
  ejectedInWorkers = 0;

  constructor(address: BackendAddress) {
    this.address = address;
    this.id = address.id;
  }

  /** Whether strategies may choose it at all (not Unresponsive, ejected or drained). */
  get usable(): boolean {
    return this.health.status !== "Unresponsive" && !this.outlier.ejected && !this.drained;
  }
}

/**
 * Whether `backend` gets new requests anywhere: in the pool's working set
 * (`available`), and, with `workers` > 1, not ejected by every worker's live
 * traffic (each worker ejects on its own; the primary's set does not see it).
 */
export function takesTraffic(
  backend: Backend,
  available: readonly Backend[],
  workers: number,
): boolean {
  return available.includes(backend) && !(workers > 1 && backend.ejectedInWorkers >= workers);
}

/** Called when live traffic ejects a backend; the health monitor probes it back. */
export type EjectionListener = (
  pool: Pool,
  backend: Backend,
  cooldownMs: number,
  reason: string,
) => void;

/** A pool made live. */
export class Pool {
  readonly config: PoolConfig;
  readonly backends: readonly Backend[];
  readonly strategy: Strategy;
  readonly transport: Transport;
  /** The pool's middlewares, composed around the backend call. */
  readonly chain: Chain;
  /** The middlewares in the chain, in `config.middlewares` order (a reload keeps unchanged ones). */
  readonly middlewares: readonly ClosableMiddleware[];
  readonly retryBudget: RetryBudget;
  readonly clock: Clock;
  /** "No backend available" (once per request otherwise) said at most once a second. */
  readonly noBackendLine: ThrottledLine;
  /** Request deadlines of this pool (one coarse timer instead of one per request). */
  readonly deadlines: Deadlines;
  /** Set by the health monitor. */
  onEjection: EjectionListener | null = null;
  #available: readonly Backend[] | null = null;
  #kept: readonly Backend[] | null = null;

  readonly #metrics: TrafficMetrics | undefined;

  constructor(
    config: PoolConfig,
    deps: RuntimeDeps,
    parts: {
      chain: Chain;
      middlewares: readonly ClosableMiddleware[];
      transport: Transport;
      backends: Backend[];
    },
  ) {
    this.config = config;
    this.backends = parts.backends;
    this.strategy = createStrategy(config.strategy, deps);
    this.transport = parts.transport;
    this.chain = parts.chain;
    this.middlewares = parts.middlewares;
    this.#metrics = deps.metrics;
    this.clock = deps.clock;
    this.noBackendLine = new ThrottledLine(deps.clock);
    this.deadlines = new Deadlines(deps.clock);
    this.retryBudget = new RetryBudget(config.retryBudgetPercent, deps.clock);
  }

  /**
   * The working set strategies choose from: usable Healthy backends; if there
   * are none, usable Slow ones; if none is usable but some are out only by
   * passive ejection (not Unresponsive, not drained), those (as nginx takes
   * its failed peers back when all have failed: an ejection that outlived the
   * rest of its pool, a reload that left only an ejected backend); else none
   * (503). A strategy's backups (weight 0) come in only when no other backend
   * is usable, Healthy or Slow: a slow primary is still a primary. Cached
   * until a state changes.
   */
  available(): readonly Backend[] {
    if (this.#available === null) {
      let usable = this.backends.filter((b) => b.usable);
      if (usable.length === 0) {
        usable = this.backends.filter((b) =>
          b.outlier.ejected && b.health.status !== "Unresponsive" && !b.drained
        );
      }
      const isBackup = this.strategy.isBackup;
      const primaries = isBackup ? usable.filter((b) => !isBackup(b.id)) : usable;
      this.#available = healthyFirst(primaries.length > 0 ? primaries : usable);
    }
    return this.#available;
  }

  /**
   * Where a retry may go after the backends in `tried` failed it: the working
   * set without them, or, when that leaves none, the usable backups (Healthy
   * first), as if the failed primaries were out of rotation.
   */
  retryCandidates(tried: readonly Backend[]): readonly Backend[] {
    const rest = this.available().filter((b) => !tried.includes(b));
    const isBackup = this.strategy.isBackup;
    if (rest.length > 0 || !isBackup) return rest;
    return healthyFirst(
      this.backends.filter((b) => b.usable && isBackup(b.id) && !tried.includes(b)),
    );
  }

  /**
   * The backend out of the working set that this request's sticky cookie binds
   * it to, or null (the request goes to the working set): one drained that keeps
   * its sticky clients, or one Slow while others are Healthy (new clients go to
   * those; the sessions a backend already holds stay, as HAProxy and nginx keep
   * them on a server that is up), when neither Unresponsive nor ejected.
   */
  stickyBound(context: PickContext): Backend | null {
    if (this.strategy.boundTo === undefined) return null;
    this.#kept ??= this.backends.filter((b) =>
      b.health.status !== "Unresponsive" && !b.outlier.ejected &&
      (b.drained ? b.keepSticky : b.health.status === "Slow" && !this.available().includes(b))
    );
    return this.#kept.length === 0 ? null : this.strategy.boundTo(this.#kept, context);
  }

  /** Drops the cached working set after a health or ejection change. */
  invalidate(): void {
    this.#available = null;
    this.#kept = null;
  }

  /**
   * Records a live request's outcome at a backend (passive health), and counts a
   * failure in `failures` and strom_backend_failures_total alike.
   */
  reportOutcome(backend: Backend, failed: boolean, reason: string): void {
    if (!failed) {
      backend.outlier.consecutiveFailures = 0;
      return;
    }
    backend.failures++;
    this.#metrics?.backendFailed(backend.id);
    const cooldown = recordOutcome(backend.outlier, true, this.config.outlier, {
      // Backends out for any reason (Unresponsive, ejected, drained) count against
      // max_ejection_percent: ejecting the last one still serving made the pool 503 for the
      // whole cooldown while its probes passed.
      outOfRotation: this.backends.filter((b) => b !== backend && !b.usable).length,
      poolSize: this.backends.length,
      now: this.clock.now(),
    });
    if (cooldown !== null) {
      this.invalidate();
      this.#metrics?.ejected(this.config.name, backend.id);
      this.onEjection?.(this, backend, cooldown, reason);
    }
  }

  /** Takes `backend` back after an ejection. */
  readmit(backend: Backend): void {
    readmit(backend.outlier, this.clock.now());
    this.invalidate();
  }

  /** Ejects `backend` again (its readmission probe failed); returns the new cooldown. */
  ejectAgain(backend: Backend): number {
    const cooldown = eject(backend.outlier, this.config.outlier, this.clock.now());
    this.invalidate();
    this.#metrics?.ejected(this.config.name, backend.id);
    return cooldown;
  }
}

/** Injected effects and factories a runtime needs. */
export interface RuntimeDeps extends StrategyDeps {
  readonly clock: Clock;
  /** New request IDs (RequestId middleware); default random UUIDs. */
  readonly newId?: () => string;
  readonly createTransport: (pool: PoolConfig) => Transport;
  /** Counts ejections (and more, through the proxy); absent in unit tests. */
  readonly metrics?: TrafficMetrics;
  /**
   * The port the HTTPS listener is bound to now (null: none), for HttpsRedirector;
   * absent: the config's.
   */
  readonly httpsPort?: () => number | null;
}

/** Default dependencies: real time and randomness, the transport each pool names. */
export const defaultRuntimeDeps: RuntimeDeps = {
  random: Math.random,
  clock: systemClock,
  createTransport: (pool) =>
    pool.transport === "fetch"
      ? createFetchTransport(pool.client)
      : createHttp1Transport(pool.client),
};

/** A live config generation. */
export class Runtime {
  readonly config: Config;
  readonly generation: number;
  readonly pools: readonly Pool[];
  readonly #byScheme: Record<Scheme, PoolRouter>;

  private constructor(config: Config, generation: number, pools: Pool[]) {
    this.config = config;
    this.generation = generation;
    this.pools = pools;
    this.#byScheme = {
      HTTP: new PoolRouter(this.pools.filter((p) => p.config.schemes.has("HTTP"))),
      HTTPS: new PoolRouter(this.pools.filter((p) => p.config.schemes.has("HTTPS"))),
    };
  }

  /**
   * Builds a generation: strategies, transports and middleware chains for every
   * pool. From `previous`, a pool of the same name keeps its backends (health,
   * ejections, counters, in-flight requests), its pooled connections when its
   * client settings did not change, and its middlewares (rate-limit counts,
   * LDAP connections) when their options did not change.
   */
  static async create(
    config: Config,
    generation: number,
    options: { readonly log: Logger; readonly deps?: RuntimeDeps; readonly previous?: Runtime },
  ): Promise<Runtime> {
    const deps = options.deps ?? defaultRuntimeDeps;
    const httpsPort = httpsPortOf(config);
    // HttpsRedirector puts the HTTPS port in its Location: a chain with one is built anew
    // when that port changed (or the HTTPS listener came or went).
    const portChanged = options.previous !== undefined &&
      httpsPortOf(options.previous.config) !== httpsPort;
    const middlewareDeps: MiddlewareDeps = {
      clock: deps.clock,
      log: options.log,
      baseDir: config.baseDir,
      httpsPort: deps.httpsPort ?? (() => httpsPort),
      onRateLimited: deps.metrics && ((pool) => deps.metrics!.rateLimited(pool)),
      newId: deps.newId ?? (() => crypto.randomUUID()),
    };
    const onError = (error: unknown) => {
      if (!(error instanceof HttpError)) options.log.error(`A middleware failed: ${String(error)}`);
      return errorResponse(error);
    };
    const pools: Pool[] = [];
    for (const pool of config.pools) {
      const prev = options.previous?.pools.find((p) => p.config.name === pool.name);
      // Each middleware whose name and options did not change is kept, wherever it moved in the
      // list and whatever changed around it: its state (rate-limit counts, LDAP connections and
      // cache) lives on. The others are made anew.
      const spareMiddlewares = prev
        ? prev.config.middlewares.map((config, i) => ({ config, instance: prev.middlewares[i] }))
        : [];
      const middlewares = await Promise.all(pool.middlewares.map((m) => {
        const stale = portChanged && m.name === "HttpsRedirector";
        const i = stale ? -1 : spareMiddlewares.findIndex((s) => same(s.config, m));
        if (i >= 0) return spareMiddlewares.splice(i, 1)[0].instance;
        return createMiddleware(m.name, m.options, middlewareDeps);
      }));
      const unchanged = prev !== undefined && prev.middlewares.length === middlewares.length &&
        middlewares.every((m, i) => m === prev.middlewares[i]);
      const chain = unchanged ? prev.chain : compose(middlewares, onError);
      const transport = prev && prev.config.transport === pool.transport &&
          same(prev.config.client, pool.client)
        ? prev.transport
        : deps.createTransport(pool);
      const spare = [...(prev?.backends ?? [])];
      // Without active checks no probe would ever change a carried health state: an
      // Unresponsive backend stayed out for good. It starts Healthy, as at a fresh start.
      const probed = probeIntervalMs(config, pool) > 0;
      const backends = pool.addresses.map((address) => {
        const i = spare.findIndex((b) => b.id === address.id);
        if (i < 0) return new Backend(address);
        const backend = spare.splice(i, 1)[0];
        if (!probed && backend.health !== INITIAL_HEALTH) {
          if (backend.health.status !== "Healthy") {
            options.log.info(
              `Health checks are off for pool ${pool.name}: ${backend.id} (${backend.health.status}) counts as Healthy again`,
            );
          }
          backend.health = INITIAL_HEALTH;
        }
        return backend;
      });
      pools.push(new Pool(pool, deps, { chain, middlewares, transport, backends }));
    }
    return new Runtime(config, generation, pools);
  }

  /** Closes what the generation that replaced this one does not use (idle connections first). */
  retire(next: Runtime): void {
    for (const pool of this.pools) {
      if (!next.pools.includes(pool)) pool.noBackendLine.stop();
      if (!next.pools.some((p) => p.transport === pool.transport)) pool.transport.close();
      for (const middleware of pool.middlewares) {
        if (!next.pools.some((p) => p.middlewares.includes(middleware))) void middleware.close?.();
      }
    }
  }

  /**
   * Drains a backend (no new requests; those in flight finish; with
   * `keepSticky`, clients its sticky cookie binds still come) or restores it.
   * An address listed more than once in the pool is drained in every listing.
   * Returns whether anything changed, or null when the pool or the backend is
   * not in this generation.
   */
  setDrained(
    poolName: string,
    backendId: string,
    drained: boolean,
    keepSticky = false,
  ): boolean | null {
    const pool = this.pools.find((p) => p.config.name === poolName);
    const listings = pool?.backends.filter((b) => b.id === backendId) ?? [];
    if (!pool || listings.length === 0) return null;
    const keep = drained && keepSticky;
    let changed = false;
    for (const backend of listings) {
      changed ||= backend.drained !== drained || backend.keepSticky !== keep;
      backend.drained = drained;
      backend.keepSticky = keep;
    }
    pool.invalidate();
    return changed;
  }

  /** Picks among the pools eligible on a listener of this scheme. */
  routerFor(scheme: Scheme): PoolRouter {
    return this.#byScheme[scheme];
  }

  /** Releases transports and middleware resources (Redis, LDAP connections). */
  close(): void {
    for (const pool of this.pools) {
      pool.noBackendLine.stop();
      pool.transport.close();
      void pool.chain.close();
    }
  }
}

/** The port of the HTTPS listener a config has, or null without certificates. */
function httpsPortOf(config: Config): number | null {
  return config.certificates.length > 0 ? config.httpsAddress.port : null;
}
