// Lifecycle: binds the proxy and admin listeners (or starts proxy workers that
// share the HTTP port), holds the live runtime generation, runs health checks,
// and drains in-flight requests on shutdown.

import type { Config } from "./config/types.ts";
import type { Level, Logger } from "./log.ts";
import { defaultRuntimeDeps, Runtime, type RuntimeDeps } from "./runtime.ts";
import { createAdminApp } from "./admin/app.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { createHttpProbe, type Probe } from "./health/probe.ts";
import { listen, listenProxy } from "./listen.ts";
import { type ConfigSource, WorkerGroup } from "./workers/group.ts";

export { ListenError } from "./listen.ts";

/** Options for starting Strom. */
export interface StartOptions {
  readonly log: Logger;
  /** The level workers log at (default info). */
  readonly logLevel?: Level;
  readonly deps?: RuntimeDeps;
  /** Run health rounds on timers (default true); tests turn it off and call checkAll(). */
  readonly autoHealth?: boolean;
  /** Health probe (default: HTTP GET with the runtime's clock). */
  readonly probe?: Probe;
  /** Where the config came from; needed to start workers (`workers` > 1). */
  readonly configSource?: ConfigSource;
}

/** A running Strom: its listeners and the live config generation. */
export class Strom {
  readonly log: Logger;
  readonly startedAt = Date.now();
  readonly configPath: string;
  readonly health: HealthMonitor;
  #runtime: Runtime;
  #servers: { role: string; server: Deno.HttpServer<Deno.NetAddr> }[] = [];
  #workers: WorkerGroup | null = null;
  #stopping: Promise<void> | null = null;

  private constructor(runtime: Runtime, options: StartOptions, deps: RuntimeDeps) {
    this.#runtime = runtime;
    this.log = options.log;
    this.configPath = runtime.config.source;
    this.health = new HealthMonitor({
      clock: deps.clock,
      log: options.log,
      probe: options.probe ?? createHttpProbe(deps.clock),
      onChange: (pool, backend) =>
        this.#workers?.broadcastHealth(pool, backend, this.#healthOf(pool, backend)),
    });
    this.health.watch(runtime);
  }

  /**
   * Validated config in, listening balancer out; health rounds start at once.
   * With `workers` > 1 the HTTP port is served by that many worker isolates.
   * Throws ListenError when a bind fails.
   */
  static async start(config: Config, options: StartOptions): Promise<Strom> {
    const deps = options.deps ?? defaultRuntimeDeps;
    const runtime = await Runtime.create(config, 1, { log: options.log, deps });
    const strom = new Strom(runtime, options, deps);
    for (const warning of config.warnings) options.log.warn(warning);
    try {
      if (config.workers > 1) {
        if (!options.configSource) throw new Error("Cannot start workers without the config text");
        strom.#workers = await WorkerGroup.start(config.workers, options.configSource, {
          log: options.log,
          logLevel: options.logLevel ?? "info",
          runtime: () => strom.#runtime,
        });
      } else {
        strom.#servers.push({
          role: "http_address",
          server: listenProxy("HTTP", "http_address", config.httpAddress, () => strom.#runtime, {
            log: options.log,
          }),
        });
      }
      strom.#servers.push({
        role: "admin_address",
        server: listen("admin_address", config.adminAddress, createAdminApp(strom).fetch, {
          log: options.log,
        }),
      });
    } catch (e) {
      await strom.#abort();
      throw e;
    }
    if (options.autoHealth ?? true) strom.health.start();
    return strom;
  }

  /** The live config generation. */
  get runtime(): Runtime {
    return this.#runtime;
  }

  /** The bound port of a listener role (`http_address`, `admin_address`), e.g. after port 0. */
  port(role: string): number {
    if (role === "http_address" && this.#workers) return this.#workers.port;
    const entry = this.#servers.find((s) => s.role === role);
    if (!entry) throw new Error(`Cannot find listener "${role}"`);
    return entry.server.addr.port;
  }

  /** The listeners, for status output. */
  listeners(): { role: string; address: string }[] {
    const out = this.#servers.map(({ role, server }) => ({
      role,
      address: formatAddr(server.addr.hostname, server.addr.port),
    }));
    if (this.#workers) {
      const { hostname } = this.#runtime.config.httpAddress;
      out.unshift({ role: "http_address", address: formatAddr(hostname, this.#workers.port) });
    }
    return out;
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `graceMs`
   * (default 10 s), then releases everything. Safe to call twice.
   */
  shutdown(graceMs = 10_000): Promise<void> {
    this.#stopping ??= this.#drain(graceMs);
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  #healthOf(pool: number, backend: number) {
    return this.#runtime.pools[pool].backends[backend].health;
  }

  async #drain(graceMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((resolve) =>
      timer = setTimeout(() => resolve(false), graceMs)
    );
    const drained = Promise.all([
      ...this.#servers.map((s) => s.server.shutdown()),
      this.#workers?.shutdown(graceMs),
    ]).then(() => true);
    const clean = await Promise.race([drained, grace]);
    clearTimeout(timer);
    if (!clean) this.log.warn(`Stopped with requests still in flight after ${graceMs} ms`);
    this.health.stop();
    this.#runtime.close();
  }

  async #abort(): Promise<void> {
    for (const { server } of this.#servers) server.shutdown();
    await this.#workers?.shutdown(0);
    this.health.stop();
    this.#runtime.close();
  }
}

function formatAddr(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}
