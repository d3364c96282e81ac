// Runs health rounds over the live runtime and probes ejected backends back.
// Tests call `checkAll()` directly instead of waiting for timers.

import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Backend, Pool, Runtime } from "../runtime.ts";
import type { Probe } from "./probe.ts";
import { probeIntervalMs } from "../config/health.ts";
import { nextHealth, type ProbeResult } from "./state.ts";

/**
 * Probes under way at once, over all pools; more wait for a turn (each one's
 * timeout starts when it runs), pool by pool in turn. Many pools over the same
 * backends otherwise probe them all at the same moment: 3,000 probes of two
 * backends took up to 591 ms each, past the default 500 ms timeout, and took
 * healthy backends out.
 */
export const MAX_PROBES_AT_ONCE = 64;
/**
 * Probes of one pool under way at once: a pool of many backends that do not
 * answer (each probe holding its turn for the whole `timeout`) leaves turns for
 * the others. With one cap for all, such a pool held every turn, and a small
 * pool's probes came 13 s apart instead of every 2 s.
 */
export const MAX_PROBES_PER_POOL = 16;

/** What the monitor needs. */
export interface MonitorOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly probe: Probe;
  /** Called after a backend's active health state changed (pool and backend indexes). */
  readonly onChange?: (pool: number, backend: number) => void;
  /** Called after every probe. */
  readonly onProbe?: (pool: string, backend: string, ok: boolean) => void;
  /**
   * Probes only bring ejected backends back, and leave active health alone: a
   * worker's monitor, whose active health comes from the primary's rounds.
   */
  readonly probeBackOnly?: boolean;
}

/** Active health checking for one runtime generation at a time. */
export class HealthMonitor {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #probe: Probe;
  readonly #onChange: ((pool: number, backend: number) => void) | undefined;
  readonly #onProbe: MonitorOptions["onProbe"];
  readonly #probeBackOnly: boolean;
  #runtime: Runtime | null = null;
  #timers = new Set<number>();
  #running = false;
  /** Probes under way (in all, and by pool), and those waiting, by pool (in the order of turns). */
  #probing = 0;
  readonly #probingIn = new Map<string, number>();
  readonly #waiting = new Map<string, (() => void)[]>();
  /**
   * When each pool's last round started, and what it checked (`checksOf`), by name: a reload
   * carries pools by name.
   */
  readonly #roundStarted = new Map<string, { at: number; checks: string }>();

  constructor(options: MonitorOptions) {
    this.#clock = options.clock;
    this.#log = options.log;
    this.#probe = options.probe;
    this.#onChange = options.onChange;
    this.#onProbe = options.onProbe;
    this.#probeBackOnly = options.probeBackOnly ?? false;
  }

  /** Watches a runtime's pools: listens for ejections and, when started, schedules rounds. */
  watch(runtime: Runtime): void {
    this.#clearTimers();
    this.#runtime = runtime;
    for (const pool of runtime.pools) {
      pool.onEjection = (p, b, ms, reason) => this.#onEjection(p, b, ms, reason);
      // Backends carried over from the previous generation keep their cooldowns.
      for (const backend of pool.backends) {
        if (!backend.outlier.ejected) continue;
        const wait = Math.max(0, backend.outlier.ejectedUntil - this.#clock.now());
        this.#later(() => this.#cooldownOver(pool, backend), wait);
      }
    }
    if (this.#running) this.#scheduleRounds(true);
  }

  /** Starts periodic rounds; the first runs at once. */
  start(): void {
    this.#running = true;
    this.#scheduleRounds(false);
  }

  /** Stops every timer. */
  stop(): void {
    this.#running = false;
    this.#clearTimers();
  }

  /**
   * Probes every backend of every pool once; resolves when the round is done.
   * A probe already running is waited for and followed by a new one, so the
   * result reflects the backends as they are after the call.
   */
  async checkAll(): Promise<void> {
    await Promise.all((this.#runtime?.pools ?? []).map((pool) => this.checkPool(pool)));
  }

  /** Probes every backend of one pool concurrently (as `checkAll()` does). */
  async checkPool(pool: Pool): Promise<void> {
    await Promise.all(pool.backends.map((backend) => this.#checkAfter(pool, backend)));
  }

  /**
   * A probe by checks a reload changed, after the one running now if any. A pass brings an
   * Unresponsive backend back at once (a path the reload fixed must not keep it out for
   * `healthy_after` rounds); a failure counts as any other, towards `unhealthy_after` (a reload
   * that only changed a threshold must not take a backend out on one failed probe).
   */
  async #checkAnew(pool: Pool, backend: Backend): Promise<void> {
    while (backend.probing) await backend.probing;
    const { health } = backend;
    if (health.verified) {
      // One pass short of healthy_after: from Unresponsive (passes) and from Slow (fast passes).
      const due = pool.config.health.healthyAfter - 1;
      backend.health = {
        ...health,
        successes: Math.max(health.successes, due),
        fasts: Math.max(health.fasts, due),
      };
    }
    await this.#check(pool, backend);
  }

  /** A fresh probe of `backend`, after the one running now if any. */
  async #checkAfter(pool: Pool, backend: Backend): Promise<void> {
    while (backend.probing) await backend.probing;
    await this.#check(pool, backend);
  }

  #intervalMs(pool: Pool): number {
    return probeIntervalMs(this.#runtime!.config, pool.config);
  }

  /**
   * Starts each pool's rounds. After a reload (`reloaded`), a pool whose
   * backends were all probed before keeps its cadence (its next round comes
   * an interval after its last one), so frequent reloads do not probe every
   * backend each time; a pool with a backend never probed, or whose checks
   * changed (a new path, expected status...), starts at once.
   */
  #scheduleRounds(reloaded: boolean): void {
    const runtime = this.#runtime;
    if (!runtime) return;
    const names = new Set(runtime.pools.map((pool) => pool.config.name));
    for (const name of this.#roundStarted.keys()) {
      if (!names.has(name)) this.#roundStarted.delete(name); // removed by a reload
    }
    for (const pool of runtime.pools) {
      const interval = this.#intervalMs(pool);
      if (interval <= 0) continue;
      const name = pool.config.name;
      const checks = checksOf(pool);
      // `fresh`: a probe under way may check what the config no longer asks; wait for it.
      const round = async (fresh = false) => {
        const now = this.#clock.now();
        this.#roundStarted.set(name, { at: now, checks });
        await Promise.all(
          pool.backends.map((b) => fresh ? this.#checkAnew(pool, b) : this.#check(pool, b)),
        );
        if (!this.#running || this.#runtime !== runtime) return;
        this.#later(round, Math.max(0, interval - (this.#clock.now() - now)));
      };
      const last = this.#roundStarted.get(name);
      const known = pool.backends.every((backend) => backend.health.verified);
      const changed = last !== undefined && last.checks !== checks;
      const wait = reloaded && last !== undefined && !changed && known
        ? Math.max(0, interval - (this.#clock.now() - last.at))
        : 0;
      if (wait === 0) round(changed);
      else this.#later(round, wait);
    }
  }

  /** Probes `backend` unless a probe of it is running already (then resolves with that one). */
  #check(pool: Pool, backend: Backend): Promise<void> {
    if (backend.probing) return backend.probing;
    const checks = checksOf(pool);
    const probing = this.#inTurn(
      pool.config.name,
      () => this.#probe(backend.address, pool.config.health, pool.config.client),
    )
      .then((result) => this.#apply(pool, backend, result, checks))
      .catch((e) => this.#log.error(`Health check of backend ${backend.id} failed: ${e}`))
      .finally(() => backend.probing = null);
    backend.probing = probing;
    return probing;
  }

  /** Runs `probe` (of a backend of `pool`) now if the caps allow, else in turn. */
  async #inTurn(pool: string, probe: () => Promise<ProbeResult>): Promise<ProbeResult> {
    if (this.#mayStart(pool) && !this.#waiting.has(pool)) this.#started(pool);
    else {
      // Started by #startWaiting when its turn comes (counted then).
      await new Promise<void>((resolve) => {
        const queue = this.#waiting.get(pool);
        if (queue) queue.push(resolve);
        else this.#waiting.set(pool, [resolve]);
      });
    }
    try {
      return await probe();
    } finally {
      this.#probing--;
      this.#probingIn.set(pool, this.#probingIn.get(pool)! - 1);
      this.#startWaiting();
    }
  }

  #mayStart(pool: string): boolean {
    return this.#probing < MAX_PROBES_AT_ONCE &&
      (this.#probingIn.get(pool) ?? 0) < MAX_PROBES_PER_POOL;
  }

  #started(pool: string): void {
    this.#probing++;
    this.#probingIn.set(pool, (this.#probingIn.get(pool) ?? 0) + 1);
  }

  /** Starts waiting probes while the caps allow: a pool in line starts one, then goes to the back. */
  #startWaiting(): void {
    let tries = this.#waiting.size;
    while (tries-- > 0 && this.#probing < MAX_PROBES_AT_ONCE) {
      const [pool, queue] = this.#waiting.entries().next().value!;
      this.#waiting.delete(pool);
      if (!this.#mayStart(pool)) {
        this.#waiting.set(pool, queue); // at its cap: the next pool's turn
        continue;
      }
      this.#started(pool);
      queue.shift()!();
      if (queue.length > 0) this.#waiting.set(pool, queue);
      tries = this.#waiting.size;
    }
  }

  /** What a probe of `backend` by the checks `checks` (see checksOf()) found. */
  #apply(probed: Pool, backend: Backend, result: ProbeResult, checks: string): void {
    // A reload may have come while the probe ran: the backend now lives in the
    // new generation's pool (or in none), whose cached working set must change.
    const runtime = this.#runtime;
    const pool = this.#current(probed, backend);
    if (!runtime || !pool) return; // removed from the config meanwhile
    // Under way when a reload turned the pool's checks off: nothing would ever correct what it
    // says (a failure left the backend Unresponsive for good; the reload started it Healthy).
    if (this.#intervalMs(pool) <= 0) return;
    // By checks a reload has changed since (a path that failed, reloaded twice: A, B, back to
    // A): what it says is no longer asked; a probe by the checks of now follows (#checkAnew).
    if (pool !== probed && checksOf(pool) !== checks) return;
    this.#onProbe?.(pool.config.name, backend.id, result.ok);
    if (!this.#probeBackOnly) this.#applyHealth(runtime, pool, backend, result);
    const outlier = backend.outlier;
    if (outlier.ejected && this.#clock.now() >= outlier.ejectedUntil) {
      if (result.ok) this.#readmit(pool, backend, result.reason);
      else {
        this.#onEjection(pool, backend, pool.ejectAgain(backend), result.reason);
      }
    }
  }

  /** Active health: the state machine's next state, and what changes with it. */
  #applyHealth(runtime: Runtime, pool: Pool, backend: Backend, result: ProbeResult): void {
    const before = backend.health;
    // Live requests failed since the last probe: two signals agree. (Not the outlier's
    // consecutive count: a request begun before the failures may still end well after them.)
    const corroborated = backend.failures > backend.failuresAtProbe;
    backend.failuresAtProbe = backend.failures;
    backend.health = nextHealth(before, result, pool.config.health, corroborated);
    if (backend.health.status !== before.status) {
      pool.invalidate();
      this.#onChange?.(runtime.pools.indexOf(pool), pool.backends.indexOf(backend));
      this.#log.info(
        `backend ${backend.id} in pool ${pool.config.name}: ${before.status} -> ${backend.health.status} (${result.reason})`,
      );
    }
  }

  /**
   * The pool of the live generation that holds `backend`: `pool` itself, or
   * after a reload the new pool it was carried into (undefined: removed).
   */
  #current(pool: Pool, backend: Backend): Pool | undefined {
    const pools = this.#runtime?.pools;
    if (pools === undefined) return undefined;
    return pools.includes(pool) && pool.backends.includes(backend)
      ? pool
      : pools.find((p) => p.backends.includes(backend));
  }

  #onEjection(pool: Pool, backend: Backend, cooldownMs: number, reason: string): void {
    this.#log.warn(
      `backend ${backend.id} in pool ${pool.config.name}: ejected for ${cooldownMs} ms (${reason})`,
    );
    // A request begun before a reload ejects through the old pool: the new one must see it too.
    this.#current(pool, backend)?.invalidate();
    this.#later(() => {
      const current = this.#current(pool, backend);
      if (current) this.#cooldownOver(current, backend);
    }, cooldownMs);
  }

  /**
   * After an ejection's cooldown, one probe decides: back in rotation, or
   * ejected for longer. With the pool's health checks off there is no probe to
   * trust (its path may not even exist), so the backend is simply back, as
   * Envoy's outlier detection does without active checks; live traffic ejects
   * it again if it still fails.
   */
  #cooldownOver(pool: Pool, backend: Backend): void {
    if (this.#intervalMs(pool) > 0) {
      this.#check(pool, backend);
      return;
    }
    if (backend.outlier.ejected) {
      this.#readmit(pool, backend, "cooldown over; health checks are off");
    }
  }

  #readmit(pool: Pool, backend: Backend, why: string): void {
    pool.readmit(backend);
    this.#log.info(`backend ${backend.id} in pool ${pool.config.name}: back in rotation (${why})`);
  }

  #later(callback: () => void, delayMs: number): void {
    const handle = this.#clock.setTimeout(() => {
      this.#timers.delete(handle);
      callback();
    }, delayMs);
    this.#timers.add(handle);
  }

  #clearTimers(): void {
    for (const handle of this.#timers) this.#clock.clearTimeout(handle);
    this.#timers.clear();
  }
}

/** What a pool's probes check and with which CAs, as a comparable string (the interval aside). */
function checksOf(pool: Pool): string {
  return JSON.stringify([{ ...pool.config.health, intervalMs: null }, pool.config.client.caCerts]);
}
