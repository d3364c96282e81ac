// Lifecycle: binds the proxy and admin listeners (or starts proxy workers that
// serve the HTTP port, and the HTTPS port next to this isolate), holds the live runtime generation, runs health checks,
// reloads the config without dropping a request, and drains on shutdown.

import type { Config } from "./config/types.ts";
import { BLANK_CONFIG_PROBLEM, isBlankConfig, parseConfig, readConfigText } from "./config/load.ts";
import { ConfigError, type Problem } from "./config/errors.ts";
import type { Level, Logger } from "./log.ts";
import type { LogRing } from "./log_ring.ts";
import { defaultRuntimeDeps, Runtime, type RuntimeDeps } from "./runtime.ts";
import { adminHandler, createAdminApp } from "./admin/app.ts";
import { HealthMonitor } from "./health/monitor.ts";
import { createHttpProbe, type Probe } from "./health/probe.ts";
import { Listeners } from "./listeners.ts";
import { assertUnbound } from "./listen.ts";
import { CertificateStore, resolvedLimitMessage } from "./tls/store.ts";
import { isLoopbackHost } from "./admin/auth.ts";
import { ChallengeStore } from "./tls/challenges.ts";
import { AcmeManager, type AcmeTuning } from "./tls/acme.ts";
import { WebSocketRegistry } from "./proxy/websockets.ts";
import { type ConfigSource, WorkerGroup } from "./workers/group.ts";
import { aggregate, StateMetrics, TrafficMetrics } from "./metrics/metrics.ts";
import { type Family, merge } from "./metrics/registry.ts";
import { LiveStats } from "./metrics/live.ts";
import { AccessLog } from "./access_log.ts";
import { ClientTimeouts } from "./net/client_timeouts.ts";
import { openSocketTable } from "./net/sockets.ts";
import { isolateActivity } from "./net/activity.ts";
import { MemoryTrimmer, processMallocTrim, type Trim } from "./memory_trim.ts";
import { type DropPages, processPageDrop } from "./file_pages.ts";

export { ListenError } from "./listen.ts";
import type { LoadedCertificate } from "./tls/pem.ts";

/** Options for starting Strom. */
export interface StartOptions {
  readonly log: Logger;
  /** The level workers log at (default info). */
  readonly logLevel?: Level;
  /** Recent log lines for the admin API. */
  readonly logRing?: LogRing;
  readonly deps?: RuntimeDeps;
  /** Run health rounds on timers (default true); tests turn it off and call checkAll(). */
  readonly autoHealth?: boolean;
  /** Health probe (default: HTTP GET with the runtime's clock). */
  readonly probe?: Probe;
  /** The config's text and origin: needed for workers, reloads and the config API. */
  readonly configSource?: ConfigSource;
  /** ACME timers and protocol (default: real time, acme-client); tests inject a manual clock. */
  readonly acme?: AcmeTuning;
  /** How memory is trimmed, or why it cannot be (default: glibc's malloc_trim, lib/memory_trim.ts). */
  readonly memoryTrim?: Trim | string;
  /** How the binary's unused pages are dropped with it, or why they cannot be (default: lib/file_pages.ts). */
  readonly pageDrop?: DropPages | string;
  /** Server names an HTTPS listener resolves before it is replaced (default RESOLVED_NAMES_LIMIT; tests lower it). */
  readonly resolvedNamesLimit?: number;
}

/** Why a reload during shutdown is refused. */
const SHUTTING_DOWN: Problem = { path: "", message: "Strom is shutting down" };

/** The outcome of a reload. */
export type ReloadResult =
  /**
   * Applied; `kept` lists what it could not apply: listeners that could not move to their new
   * address (the old kept), and what needs a restart (`workers`; with workers, `http_address`);
   * `warnings` what loads but will not work as meant (also logged, as at startup).
   */
  | {
    readonly ok: true;
    readonly generation: number;
    readonly kept?: readonly Problem[];
    readonly warnings?: readonly string[];
  }
  | { readonly ok: false; readonly problems: readonly Problem[] };

/** A running Strom: its listeners and the live config generation. */
export class Strom {
  readonly log: Logger;
  readonly #stop = new AbortController();
  readonly logRing: LogRing | undefined;
  readonly startedAt = Date.now();
  readonly health: HealthMonitor;
  readonly traffic: TrafficMetrics;
  readonly state: StateMetrics;
  readonly live = new LiveStats();
  /** Certificates served on the HTTPS listener, chosen by SNI. */
  readonly certificates: CertificateStore;
  /** ACME HTTP-01 answers, served on the HTTP listener. */
  readonly challenges = new ChallengeStore();
  /** WebSockets relayed by this isolate. */
  readonly websockets = new WebSocketRegistry();
  /** Obtains and renews the config's ACME certificates into `certificates`. */
  readonly acme: AcmeManager;
  #runtime: Runtime;
  #source: ConfigSource | undefined;
  #deps: RuntimeDeps;
  #logLevel: Level;
  readonly #listeners: Listeners;
  #workers: WorkerGroup | null = null;
  #accessLog: AccessLog | null = null;
  #reloading: Promise<unknown> = Promise.resolve();
  /** The last reload kept a listener on its old address. */
  #listenersKept = false;
  #liveTimer: ReturnType<typeof setTimeout> | undefined;
  #lagSampler: { stop(): void } | null = null;
  #clientTimeouts: ClientTimeouts | null = null;
  #memoryTrimmer: MemoryTrimmer | null = null;
  #stopping: Promise<void> | null = null;

  private constructor(runtime: Runtime, options: StartOptions, deps: RuntimeDeps) {
    this.#runtime = runtime;
    this.#deps = deps;
    this.#source = options.configSource;
    this.#logLevel = options.logLevel ?? "info";
    this.log = options.log;
    this.logRing = options.logRing;
    this.traffic = deps.metrics!;
    this.state = new StateMetrics(
      () => this.#runtime,
      () => this.workerCount,
      () => this.certificates.expiries(),
    );
    this.certificates = new CertificateStore({ resolvedLimit: options.resolvedNamesLimit });
    this.#loadCertificates(runtime.config);
    this.certificates.onResolvedLimit = () => {
      this.log.warn(resolvedLimitMessage(this.certificates.resolvedLimit));
      this.certificates.renewListener();
      this.refreshCertificates();
    };
    this.acme = new AcmeManager({
      ...options.acme,
      store: this.certificates,
      challenges: this.challenges,
      log: options.log,
      onCertificate: () => this.refreshCertificates(),
      onFailure: (name) => this.state.acmeFailed(name),
    });
    this.health = new HealthMonitor({
      clock: deps.clock,
      log: options.log,
      probe: options.probe ?? createHttpProbe(deps.clock),
      onChange: (pool, backend) => {
        const p = this.#runtime.pools[pool];
        const b = p.backends[backend];
        this.#workers?.broadcastHealth(p.config.name, b.id, b.health);
      },
      onProbe: (pool, backend, ok) => this.state.healthChecked(pool, backend, ok),
    });
    this.health.watch(runtime);
    this.traffic.prime(runtime);
    this.state.prime(runtime);
    this.#listeners = new Listeners({
      log: options.log,
      runtime: () => this.#runtime,
      proxy: {
        observers: { metrics: this.traffic, accessLog: () => this.#accessLog },
        websockets: this.websockets,
      },
      certificates: this.certificates,
      challenges: this.challenges,
      admin: adminHandler(createAdminApp(this)),
      workers: () => this.#workers !== null,
      onHttps: (address) =>
        this.#workers?.broadcastHttps(
          address && { address, certificates: this.certificates.snapshot() },
        ),
    });
  }

  /**
   * Validated config in, listening balancer out; health rounds start at once.
   * With `workers` > 1 the HTTP port is served by that many worker isolates, and
   * the HTTPS port by them and this isolate.
   * Throws ListenError when a bind fails.
   */
  static async start(config: Config, options: StartOptions): Promise<Strom> {
    const started: { strom?: Strom } = {};
    const deps = {
      // Requests come once the listeners are bound.
      httpsPort: () =>
        started.strom ? started.strom.#listeners.port("https_address") ?? null : null,
      ...(options.deps ?? defaultRuntimeDeps),
    };
    deps.metrics ??= new TrafficMetrics();
    const runtime = await Runtime.create(config, 1, { log: options.log, deps });
    const strom = started.strom = new Strom(runtime, options, deps);
    for (const warning of config.warnings) options.log.warn(warning);
    try {
      strom.#accessLog = config.accessLog &&
        await AccessLog.open(config.accessLog, (m) => options.log.warn(m));
      if (config.workers > 1) {
        if (!strom.#source) throw new Error("Cannot start workers without the config text");
        // The workers share the HTTP port (SO_REUSEPORT): with nobody else.
        assertUnbound("http_address", config.httpAddress);
        strom.#workers = await WorkerGroup.start(config.workers, strom.#source, {
          log: options.log,
          logLevel: strom.#logLevel,
          runtime: () => strom.#runtime,
          watchPeers: typeof openSocketTable() !== "string",
        });
      }
      // With workers, they serve the HTTP port: every challenge answer goes to them.
      const workers = strom.#workers;
      if (workers) {
        strom.challenges.onChange = (token, answer) => workers.broadcastChallenge(token, answer);
      }
      // Persisted ACME certificates go into the store now, before HTTPS binds;
      // orders run in the background. Until a name has a certificate its
      // handshakes fail (the store finds none), nothing else does.
      strom.acme.reconfigure(config.certificates);
      strom.#listeners.bindAll(config);
    } catch (e) {
      await strom.#abort();
      throw e;
    }
    if (options.autoHealth ?? true) strom.health.start();
    strom.#sampleLive();
    strom.#lagSampler = strom.traffic.sampleEventLoop();
    strom.#watchClients();
    strom.#trimMemory(
      options.memoryTrim ?? processMallocTrim(),
      options.pageDrop ?? processPageDrop(),
    );
    return strom;
  }

  /** Starts memory trimming (lib/memory_trim.ts) for the whole process, workers included. */
  #trimMemory(trim: Trim | string, dropPages: DropPages | string): void {
    const on = this.#runtime.config.memoryTrimIntervalMs > 0;
    if (typeof trim === "string") {
      if (on) this.log.debug(`Memory is not trimmed: ${trim}`);
      return;
    }
    if (typeof dropPages === "string" && on) {
      this.log.debug(`The binary's unused pages are not dropped: ${dropPages}`);
    }
    this.#memoryTrimmer = new MemoryTrimmer({
      clock: this.#deps.clock,
      log: this.log,
      trim,
      dropPages: typeof dropPages === "string" ? undefined : dropPages,
      intervalMs: () => this.#runtime.config.memoryTrimIntervalMs,
    });
    this.#memoryTrimmer.start();
  }

  /** Starts the client header and idle timeouts (lib/net/client_timeouts.ts) where they work. */
  #watchClients(): void {
    const table = openSocketTable();
    if (typeof table === "string") {
      const { clientHeaderTimeoutMs, clientIdleTimeoutMs } = this.#runtime.config;
      if (clientHeaderTimeoutMs > 0 || clientIdleTimeoutMs > 0) {
        this.log.warn(
          `client_header_timeout and client_idle_timeout are not enforced: ${table}; slow or silent clients keep their connections`,
        );
      }
      return;
    }
    const activity = isolateActivity.reader();
    this.#clientTimeouts = new ClientTimeouts({
      clock: this.#deps.clock,
      log: this.log,
      table,
      ports: () => {
        const ports = this.#listeners.ports();
        if (this.#workers) ports.push(this.#workers.port);
        return ports;
      },
      peers: async () => {
        const own = activity.take();
        if (!this.#workers) return own;
        const theirs = await this.#workers.peers();
        return theirs && [...own, ...theirs];
      },
      limits: () => ({
        headerMs: this.#runtime.config.clientHeaderTimeoutMs,
        idleMs: this.#runtime.config.clientIdleTimeoutMs,
      }),
      onRound: (open, closed) => this.state.clientRound(open, closed),
      onStop: () => activity.close(),
    });
    this.#clientTimeouts.start();
  }

  /**
   * Opens the access log file anew, here and in the workers: after logrotate
   * moved it away (`postrotate` sends SIGHUP), lines go to a new file at the
   * configured path instead of the moved one. A failure keeps the old file.
   */
  async reopenLogs(): Promise<void> {
    await this.#accessLog?.reopen().catch((e: Error) => this.log.error(e.message));
    this.#workers?.reopenLogs();
  }

  /** The live config generation. */
  get runtime(): Runtime {
    return this.#runtime;
  }

  /** The config file's path (or a label such as "<demo>"). */
  get configPath(): string {
    return this.#runtime.config.source;
  }

  /** The text of the live config, when known. */
  get configText(): string | null {
    return this.#source?.text ?? null;
  }

  /** The bound port of a listener role (`http_address`, `admin_address`), e.g. after port 0. */
  port(role: "http_address" | "https_address" | "admin_address"): number {
    if (role === "http_address" && this.#workers) return this.#workers.port;
    const port = this.#listeners.port(role);
    if (port === undefined) throw new Error(`Cannot find listener "${role}"`);
    return port;
  }

  /**
   * Whether the admin listener is bound to loopback: what is bound, not what the
   * config says (a rebind that failed keeps the old listener on its old address).
   */
  get adminOnLoopback(): boolean {
    const address = this.#listeners.address("admin_address");
    return address !== undefined && isLoopbackHost(address.hostname);
  }

  /** The listeners, for status output. */
  listeners(): { role: string; address: string }[] {
    const out = this.#listeners.list().map(({ role, addr }) => ({
      role,
      address: formatAddr(addr.hostname, addr.port),
    }));
    if (this.#workers) {
      // Where the workers listen: a reload that changed http_address did not move them.
      const { hostname, port } = this.#workers.address;
      out.unshift({ role: "http_address", address: formatAddr(hostname, port) });
    }
    return out;
  }

  /** The Prometheus text of every metric, summed over workers. */
  async metricsText(): Promise<string> {
    return aggregate(await this.#snapshots());
  }

  /** Proxy isolates serving traffic (1 without `workers`). */
  /** Brings the workers' counts (requests, in flight) up to date; at once without workers. */
  async refreshWorkerCounts(): Promise<void> {
    await this.#workers?.refreshCounts();
  }

  /** Isolates serving the proxy listeners now (a worker that died counts once started anew). */
  get workerCount(): number {
    return this.#workers?.live ?? 1;
  }

  /** Aborted when shutdown begins: open-ended answers (the dashboard's event streams) end then. */
  get stopping(): AbortSignal {
    return this.#stop.signal;
  }

  /**
   * Reloads: validates `text` (default: the config file read again) completely;
   * when valid, builds the next generation (carrying backend state and pooled
   * connections over), swaps it in atomically and rebinds changed listeners.
   * In-flight requests finish on the generation they started with. An invalid
   * config changes nothing. Reloads run one at a time.
   */
  reload(text?: string): Promise<ReloadResult> {
    return this.#queued(() => this.#reload(text));
  }

  /**
   * Reloads `text` unless, when its turn comes, it is the text already running
   * (null then): for a watched file, whose saves may undo one another while a
   * reload is still being built. Text whose reload kept a listener on its old
   * address (the new one could not be bound) is not fully running: it is
   * reloaded again, so saving the file once more retries the move.
   */
  reloadIfChanged(text: string): Promise<ReloadResult | null> {
    return this.#queued(() =>
      text === this.configText && !this.#listenersKept ? null : this.#reload(text)
    );
  }

  /** Runs `step` after the reloads queued before it: reloads run one at a time. */
  #queued<T>(step: () => T | Promise<T>): Promise<T> {
    const next = this.#reloading.then(step);
    this.#reloading = next.catch(() => {});
    return next;
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `graceMs`
   * (default 10 s), then releases everything. Safe to call twice.
   */
  shutdown(graceMs = 10_000): Promise<void> {
    this.#stopping ??= this.#drain(graceMs);
    return this.#stopping;
  }

  /** Tests only: has worker `index` (from 0) fail as a bug would; it is started again. */
  failWorker(index: number): void {
    this.#workers?.failWorker(index);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #reload(text?: string): Promise<ReloadResult> {
    // A reload now would bind listeners nobody drains, and restart what shutdown stopped.
    if (this.#stopping) return this.#refused([SHUTTING_DOWN]);
    const source = this.#source;
    if (!source) return this.#refused([{ path: "", message: "this config has no file to reload" }]);
    let nextText = text;
    if (nextText === undefined) {
      try {
        nextText = await readConfigText(source.source);
      } catch (e) {
        if (e instanceof ConfigError) return this.#refused(e.problems);
        throw e;
      }
    }
    if (isBlankConfig(nextText)) {
      // A pipe (`--config <(...)`) gave its text once, at start: it cannot be read again.
      const file = await Deno.stat(source.source).then((s) => s.isFile, () => true);
      return this.#refused([
        file ? BLANK_CONFIG_PROBLEM : {
          path: "",
          message: "the config is not a file (a pipe?) and gave nothing when read again: " +
            "keeping the current one; reload from a file",
        },
      ]);
    }
    let config: Config;
    try {
      config = parseConfig(nextText, source);
    } catch (e) {
      if (e instanceof ConfigError) return this.#refused(e.problems);
      throw e;
    }
    const old = this.#runtime;
    const generation = old.generation + 1;
    // What can fail is done before anything changes: a reload applies whole or not at all
    // (listeners excepted: an address that cannot be bound keeps the old listener).
    const accessLogChanged = JSON.stringify(old.config.accessLog) !==
      JSON.stringify(config.accessLog);
    let accessLog: AccessLog | null = null;
    if (accessLogChanged && config.accessLog) {
      try {
        accessLog = await AccessLog.open(config.accessLog, (m) => this.log.warn(m));
      } catch (e) {
        return this.#refused([{
          path: "access_log.path",
          message: `cannot open ${config.accessLog.path}: ${(e as Error).message}`,
        }]);
      }
    }
    let runtime: Runtime;
    try {
      runtime = await Runtime.create(config, generation, {
        log: this.log,
        deps: this.#deps,
        previous: old,
      });
    } catch (e) {
      await accessLog?.close();
      return this.#refused([{ path: "", message: `cannot build the new config: ${String(e)}` }]);
    }
    if (this.#stopping) {
      // Shutdown began while the generation was built.
      runtime.close();
      await accessLog?.close();
      return this.#refused([SHUTTING_DOWN]);
    }
    const nextSource = { ...source, text: nextText };
    if (this.#workers) {
      const error = await this.#workers.reload(nextSource, runtime);
      if (error) this.log.error(`A worker could not adopt generation ${generation}: ${error}`);
    }
    // The swap: new requests see the new generation from here on.
    this.#runtime = runtime;
    this.#source = nextSource;
    this.health.watch(runtime);
    this.traffic.prime(runtime);
    this.state.prime(runtime);
    if (accessLogChanged) {
      const before = this.#accessLog;
      this.#accessLog = accessLog;
      await before?.close();
    }
    this.#loadCertificates(config, old.config);
    const moved = this.#listeners.rebind(config);
    // Saving the file again retries a listener that could not move; what needs a restart
    // would only be reported again.
    this.#listenersKept = moved.length > 0;
    const kept = [...this.#restartRequired(config), ...moved];
    this.acme.reconfigure(config.certificates);
    old.retire(runtime);
    this.state.reloaded(true);
    const warnings = config.warnings.length > 0 ? { warnings: config.warnings } : {};
    if (kept.length === 0) {
      this.log.info(`Reloaded configuration (generation ${generation})`);
    } else {
      this.log.warn(
        `Reloaded configuration (generation ${generation}), except: ${
          kept.map((p) => `${p.path}: ${p.message}`).join("; ")
        }`,
      );
    }
    // Warnings the running config had too were logged when it loaded: repeated at every reload
    // (logrotate's daily SIGHUP, a config saved often), hundreds of them would push every other
    // line out of the log ring. The answer still carries them all.
    const before = new Set(old.config.warnings);
    const fresh = config.warnings.filter((w) => !before.has(w));
    for (const warning of fresh) this.log.warn(warning);
    const repeated = config.warnings.length - fresh.length;
    if (repeated > 0) {
      this.log.info(
        `${repeated} warning(s) of the configuration as before (logged when it loaded)`,
      );
    }
    return { ok: true, generation, ...(kept.length > 0 ? { kept } : {}), ...warnings };
  }

  /**
   * What `config` asks for that only a restart applies: another number of
   * workers, and with workers another http_address than theirs.
   */
  #restartRequired(config: Config): Problem[] {
    const workers = this.#workers?.size ?? 1;
    const out: Problem[] = [];
    if (config.workers !== workers) {
      out.push({
        path: "workers",
        message: `a restart is required for workers = ${config.workers} to take effect ` +
          `(running ${workers})`,
      });
    }
    return [...out, ...this.#listeners.restartRequired(config)];
  }

  /** Refuses a config that never reached a reload (PUT /api/config's bytes were not text). */
  refuse(problems: readonly Problem[]): ReloadResult {
    return this.#refused(problems);
  }

  #refused(problems: readonly Problem[]): ReloadResult {
    this.state.reloaded(false);
    this.log.warn(
      `Could not reload configuration: ${problems.length} problem(s); keeping generation ${this.#runtime.generation}`,
    );
    for (const p of problems) {
      const line = p.line === undefined ? "" : ` (line ${p.line})`;
      this.log.warn(`  ${p.path ? `${p.path}: ` : ""}${p.message.split("\n")[0]}${line}`);
    }
    return { ok: false, problems };
  }

  /**
   * Takes a backend out of rotation, or back in: while drained it gets no new
   * requests (those in flight finish) and is still probed. Workers follow; a
   * reload keeps the state for a backend it keeps. With `keepSticky`, clients
   * a sticky cookie binds to it still reach it. False when not found.
   */
  setDrained(poolName: string, backendId: string, drained: boolean, keepSticky = false): boolean {
    const changed = this.#runtime.setDrained(poolName, backendId, drained, keepSticky);
    if (changed === null) return false;
    this.#workers?.broadcastDrain(poolName, backendId, drained, keepSticky);
    if (changed) {
      const state = !drained
        ? "back in rotation"
        : keepSticky
        ? "drained, no new clients (sticky clients kept)"
        : "drained, no new requests";
      this.log.info(`backend ${backendId} in pool ${poolName}: ${state} (admin API)`);
    }
    return true;
  }

  /**
   * Puts a config's certificates in the store (new handshakes use them at once). An ACME name keeps the
   * certificate it has only while its entry is unchanged: after a switch of
   * directory (staging to production), the old one must not be served.
   */
  #loadCertificates(config: Config, previous?: Config): void {
    const local = new Map<string, LoadedCertificate>();
    const obtained = new Set<string>();
    const before = new Map(previous?.certificates.map((c) => [c.serverName, JSON.stringify(c)]));
    for (const c of config.certificates) {
      if (c.type === "Local") local.set(c.serverName, c.loaded);
      else if (!previous || before.get(c.serverName) === JSON.stringify(c)) {
        obtained.add(c.serverName);
      }
    }
    // Without `default_certificate`, a client that names no known host gets the first configured
    // one: not whichever ACME order happened to finish first.
    const defaultName = config.defaultCertificate ?? config.certificates[0]?.serverName ?? null;
    this.certificates.replace(local, { defaultName, obtained });
  }

  /** Serves the store's current certificates: a new HTTPS listener when they changed. */
  refreshCertificates(): void {
    this.#listeners.refreshCertificates();
  }

  /** This isolate's snapshots (traffic, and state unless `withState` is false) and the workers'. */
  async #snapshots(withState = true): Promise<(readonly Family[])[]> {
    const own = [this.traffic.registry.snapshot()];
    if (withState) own.push(this.state.registry.snapshot());
    return [...own, ...(await this.#workers?.metrics() ?? [])];
  }

  /** One live sample per second for the dashboard's charts. */
  #sampleLive(): void {
    const tick = async () => {
      try {
        this.live.record(merge(await this.#snapshots(false)), Date.now());
      } catch (e) {
        // A failing metric must not end the samples (or, unhandled, the process).
        this.log.warn(`Could not take the live sample: ${e instanceof Error ? e.message : e}`);
      }
      if (!this.#stopping) {
        this.#liveTimer = setTimeout(tick, 1000);
        Deno.unrefTimer(this.#liveTimer);
      }
    };
    tick();
  }

  async #drain(graceMs: number): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#liveTimer);
    const acmeStopped = this.acme.stop();
    this.websockets.closeAll();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((resolve) =>
      timer = setTimeout(() => resolve(false), graceMs)
    );
    const drained = Promise.all([
      this.#listeners.shutdown(),
      this.#workers?.shutdown(graceMs),
      acmeStopped,
    ]).then(() => true);
    const clean = await Promise.race([drained, grace]);
    clearTimeout(timer);
    // Only now: a connection that never finishes its TLS handshake or request head holds a
    // listener's shutdown until client_header_timeout closes it.
    this.#clientTimeouts?.stop();
    if (!clean) this.log.warn(`Stopped with requests still in flight after ${graceMs} ms`);
    this.health.stop();
    this.#lagSampler?.stop();
    await this.#memoryTrimmer?.stop();
    this.#runtime.close();
    await this.#accessLog?.close();
  }

  async #abort(): Promise<void> {
    this.#clientTimeouts?.stop();
    const acmeStopped = this.acme.stop();
    this.#listeners.shutdown();
    await this.#workers?.shutdown(0);
    await acmeStopped;
    this.health.stop();
    this.#lagSampler?.stop();
    this.#runtime.close();
    await this.#accessLog?.close();
  }
}

function formatAddr(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}
