// One config generation made live: pools with their backends, strategies and
// transports. Built once from a validated Config; swapped as a whole on reload.

import type { BackendAddress, Config, PoolConfig, Scheme } from "./config/types.ts";
import type { Candidate, Strategy, StrategyDeps } from "./balance/strategy.ts";
import { createStrategy } from "./balance/registry.ts";
import type { Transport } from "./transport/transport.ts";
import { createFetchTransport } from "./transport/fetch.ts";

/** A backend of a pool, with the live counters the strategies and admin API read. */
export class Backend implements Candidate {
  readonly address: BackendAddress;
  readonly id: string;
  /** Requests forwarded and not yet finished (response body included). */
  inFlight = 0;
  /** Requests sent to this backend in this generation. */
  requests = 0;
  /** Requests that failed at this backend (connect, reset, timeout) in this generation. */
  failures = 0;

  constructor(address: BackendAddress) {
    this.address = address;
    this.id = address.id;
  }
}

/** A pool made live. */
export class Pool {
  readonly config: PoolConfig;
  readonly backends: readonly Backend[];
  readonly strategy: Strategy;
  readonly transport: Transport;

  constructor(config: PoolConfig, deps: RuntimeDeps) {
    this.config = config;
    this.backends = config.addresses.map((a) => new Backend(a));
    this.strategy = createStrategy(config.strategy, deps);
    this.transport = deps.createTransport(config);
  }

  /** Backends a strategy may choose from now (health filtering arrives with health checks). */
  available(): readonly Backend[] {
    return this.backends;
  }
}

/** Injected effects and factories a runtime needs. */
export interface RuntimeDeps extends StrategyDeps {
  readonly createTransport: (pool: PoolConfig) => Transport;
}

/** Default dependencies: real randomness and the fetch transport. */
export const defaultRuntimeDeps: RuntimeDeps = {
  random: Math.random,
  createTransport: (pool) => createFetchTransport(pool.client),
};

/** A live config generation. */
export class Runtime {
  readonly config: Config;
  readonly generation: number;
  readonly pools: readonly Pool[];
  readonly #byScheme: Record<Scheme, readonly Pool[]>;

  constructor(config: Config, generation: number, deps: RuntimeDeps = defaultRuntimeDeps) {
    this.config = config;
    this.generation = generation;
    this.pools = config.pools.map((p) => new Pool(p, deps));
    this.#byScheme = {
      HTTP: this.pools.filter((p) => p.config.schemes.has("HTTP")),
      HTTPS: this.pools.filter((p) => p.config.schemes.has("HTTPS")),
    };
  }

  /** Pools eligible on a listener of this scheme, in file order. */
  poolsFor(scheme: Scheme): readonly Pool[] {
    return this.#byScheme[scheme];
  }

  /** Releases transports; in-flight requests holding them finish first where the transport allows. */
  close(): void {
    for (const pool of this.pools) pool.transport.close();
  }
}
