// One config generation made live: pools with their backends, strategies and
// transports. Built once from a validated Config; swapped as a whole on reload.

import type { BackendAddress, Config, PoolConfig, Scheme } from "./config/types.ts";
import type { Candidate, Strategy, StrategyDeps } from "./balance/strategy.ts";
import { createStrategy } from "./balance/registry.ts";
import type { Transport } from "./transport/transport.ts";
import { createFetchTransport } from "./transport/fetch.ts";
import { createHttp1Transport } from "./transport/http1/transport.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type HealthState, INITIAL_HEALTH } from "./health/state.ts";
import { initialOutlierState, type OutlierState, recordOutcome } from "./health/outlier.ts";
import { RetryBudget } from "./proxy/retry.ts";
import { Deadlines } from "./proxy/deadlines.ts";
import { type Chain, compose, HttpError, type MiddlewareDeps } from "./middleware/middleware.ts";
import { createMiddleware } from "./middleware/registry.ts";
import { errorResponse } from "./proxy/errors.ts";
import type { Logger } from "./log.ts";

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
  /** A probe is running (rounds never overlap for one backend). */
  probing = false;

  constructor(address: BackendAddress) {
    this.address = address;
    this.id = address.id;
  }

  /** Whether strategies may choose it at all (neither Unresponsive nor ejected). */
  get usable(): boolean {
    return this.health.status !== "Unresponsive" && !this.outlier.ejected;
  }
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
  readonly retryBudget: RetryBudget;
  readonly clock: Clock;
  /** Request deadlines of this pool (one coarse timer instead of one per request). */
  readonly deadlines: Deadlines;
  /** Set by the health monitor. */
  onEjection: EjectionListener | null = null;
  #available: readonly Backend[] | null = null;

  constructor(config: PoolConfig, deps: RuntimeDeps, chain: Chain) {
    this.config = config;
    this.backends = config.addresses.map((a) => new Backend(a));
    this.strategy = createStrategy(config.strategy, deps);
    this.transport = deps.createTransport(config);
    this.chain = chain;
    this.clock = deps.clock;
    this.deadlines = new Deadlines(deps.clock);
    this.retryBudget = new RetryBudget(config.retryBudgetPercent, deps.clock);
  }

  /**
   * The working set strategies choose from: usable Healthy backends; if there
   * are none, usable Slow ones; else none (503). Cached until a state changes.
   */
  available(): readonly Backend[] {
    if (this.#available === null) {
      const usable = this.backends.filter((b) => b.usable);
      const healthy = usable.filter((b) => b.health.status === "Healthy");
      this.#available = healthy.length > 0 ? healthy : usable;
    }
    return this.#available;
  }

  /** Drops the cached working set after a health or ejection change. */
  invalidate(): void {
    this.#available = null;
  }

  /** Records a live request's outcome at a backend (passive health). */
  reportOutcome(backend: Backend, failed: boolean, reason: string): void {
    if (!failed) {
      backend.outlier.consecutiveFailures = 0;
      return;
    }
    backend.failures++;
    const cooldown = recordOutcome(backend.outlier, true, this.config.outlier, {
      ejectedInPool: this.backends.filter((b) => b.outlier.ejected).length,
      poolSize: this.backends.length,
      now: this.clock.now(),
    });
    if (cooldown !== null) {
      this.invalidate();
      this.onEjection?.(this, backend, cooldown, reason);
    }
  }
}

/** Injected effects and factories a runtime needs. */
export interface RuntimeDeps extends StrategyDeps {
  readonly clock: Clock;
  readonly createTransport: (pool: PoolConfig) => Transport;
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
  readonly #byScheme: Record<Scheme, readonly Pool[]>;

  private constructor(config: Config, generation: number, pools: Pool[]) {
    this.config = config;
    this.generation = generation;
    this.pools = pools;
    this.#byScheme = {
      HTTP: this.pools.filter((p) => p.config.schemes.has("HTTP")),
      HTTPS: this.pools.filter((p) => p.config.schemes.has("HTTPS")),
    };
  }

  /** Builds a generation: strategies, transports and middleware chains for every pool. */
  static async create(
    config: Config,
    generation: number,
    options: { readonly log: Logger; readonly deps?: RuntimeDeps },
  ): Promise<Runtime> {
    const deps = options.deps ?? defaultRuntimeDeps;
    const middlewareDeps: MiddlewareDeps = {
      clock: deps.clock,
      log: options.log,
      baseDir: config.baseDir,
      httpsPort: config.certificates.length > 0 ? config.httpsAddress.port : null,
    };
    const onError = (error: unknown) => {
      if (!(error instanceof HttpError)) options.log.error(`A middleware failed: ${String(error)}`);
      return errorResponse(error);
    };
    const pools: Pool[] = [];
    for (const pool of config.pools) {
      const middlewares = await Promise.all(
        pool.middlewares.map((m) => createMiddleware(m.name, m.options, middlewareDeps)),
      );
      pools.push(new Pool(pool, deps, compose(middlewares, onError)));
    }
    return new Runtime(config, generation, pools);
  }

  /** Pools eligible on a listener of this scheme, in file order. */
  poolsFor(scheme: Scheme): readonly Pool[] {
    return this.#byScheme[scheme];
  }

  /** Releases transports. */
  close(): void {
    for (const pool of this.pools) pool.transport.close();
  }
}
