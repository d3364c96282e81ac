// Listeners and lifecycle: binds the proxy and admin listeners, holds the live
// runtime generation, and drains in-flight requests on shutdown.

import { Hono } from "hono";
import type { Config, Scheme } from "./config/types.ts";
import type { SocketAddress } from "./net/address.ts";
import type { Logger } from "./log.ts";
import { defaultRuntimeDeps, Runtime, type RuntimeDeps } from "./runtime.ts";
import { createProxy } from "./proxy/forward.ts";
import { createAdminApp } from "./admin/app.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { createHttpProbe, type Probe } from "./health/probe.ts";

/** A listener that could not bind; the message names the address and the cause. */
export class ListenError extends Error {
  constructor(role: string, address: SocketAddress, cause: unknown) {
    super(`Cannot listen on ${address.text} (${role}): ${describeBindError(cause)}`, { cause });
    this.name = "ListenError";
  }
}

/** Options for starting Strom. */
export interface StartOptions {
  readonly log: Logger;
  readonly deps?: RuntimeDeps;
  /** Run health rounds on timers (default true); tests turn it off and call checkAll(). */
  readonly autoHealth?: boolean;
  /** Health probe (default: HTTP GET with the runtime's clock). */
  readonly probe?: Probe;
  /** Where the config came from, for the admin API. */
  readonly configPath?: string;
}

type Env = { Bindings: { remote: Deno.NetAddr } };

/** A running Strom: its listeners and the live config generation. */
export class Strom {
  readonly log: Logger;
  readonly startedAt = Date.now();
  readonly configPath: string | undefined;
  readonly health: HealthMonitor;
  #runtime: Runtime;
  #servers: { role: string; server: Deno.HttpServer<Deno.NetAddr> }[] = [];
  #stopping: Promise<void> | null = null;

  private constructor(runtime: Runtime, options: StartOptions, deps: RuntimeDeps) {
    this.#runtime = runtime;
    this.log = options.log;
    this.configPath = options.configPath;
    this.health = new HealthMonitor({
      clock: deps.clock,
      log: options.log,
      probe: options.probe ?? createHttpProbe(deps.clock),
    });
    this.health.watch(runtime);
  }

  /**
   * Validated config in, listening balancer out; health rounds start at once.
   * Throws ListenError when a bind fails.
   */
  static start(config: Config, options: StartOptions): Strom {
    const deps = options.deps ?? defaultRuntimeDeps;
    const strom = new Strom(new Runtime(config, 1, deps), options, deps);
    for (const warning of config.warnings) options.log.warn(warning);
    try {
      strom.#listenProxy("HTTP", "http_address", config.httpAddress);
      strom.#listen("admin_address", config.adminAddress, createAdminApp(strom).fetch);
    } catch (e) {
      strom.#abortListeners();
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
    const entry = this.#servers.find((s) => s.role === role);
    if (!entry) throw new Error(`Cannot find listener "${role}"`);
    return entry.server.addr.port;
  }

  /** The listeners, for status output. */
  listeners(): { role: string; address: string }[] {
    return this.#servers.map(({ role, server }) => ({
      role,
      address: `${
        server.addr.hostname.includes(":") ? `[${server.addr.hostname}]` : server.addr.hostname
      }:${server.addr.port}`,
    }));
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

  async #drain(graceMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((resolve) =>
      timer = setTimeout(() => resolve(false), graceMs)
    );
    const drained = Promise.all(this.#servers.map((s) => s.server.shutdown())).then(() => true);
    const clean = await Promise.race([drained, grace]);
    clearTimeout(timer);
    if (!clean) this.log.warn(`Stopped with requests still in flight after ${graceMs} ms`);
    this.health.stop();
    this.#runtime.close();
  }

  #listenProxy(scheme: Scheme, role: string, address: SocketAddress): void {
    const arrival = {
      proto: scheme === "HTTP" ? "http" as const : "https" as const,
      port: "",
      serverName: hostName(),
    };
    const proxy = createProxy({ runtime: () => this.#runtime, scheme, arrival, log: this.log });
    const app = new Hono<Env>();
    app.all("*", (c) => proxy(c.req.raw, c.env.remote));
    const server = this.#listen(role, address, app.fetch);
    arrival.port = String(server.addr.port);
  }

  #listen(
    role: string,
    address: SocketAddress,
    fetch: (request: Request, env: { remote: Deno.NetAddr }) => Response | Promise<Response>,
  ): Deno.HttpServer<Deno.NetAddr> {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: address.hostname,
        port: address.port,
        onListen: () => {},
        onError: (error) => {
          this.log.error(`Failed to handle a request on ${role}: ${String(error)}`);
          return new Response("500 - Internal Server Error", { status: 500 });
        },
      }, (request, info) => fetch(request, { remote: info.remoteAddr }));
    } catch (e) {
      throw new ListenError(role, address, e);
    }
    this.#servers.push({ role, server });
    this.log.info(`Started listening on ${address.text} (${role}, port ${server.addr.port})`);
    return server;
  }

  #abortListeners(): void {
    for (const { server } of this.#servers) server.shutdown();
    this.health.stop();
    this.#runtime.close();
  }
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "strom";
  }
}

function describeBindError(e: unknown): string {
  if (e instanceof Deno.errors.AddrInUse) return "address already in use";
  if (e instanceof Deno.errors.PermissionDenied) {
    return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
  }
  if (e instanceof Deno.errors.AddrNotAvailable) return "address not available on this machine";
  return e instanceof Error ? e.message : String(e);
}
