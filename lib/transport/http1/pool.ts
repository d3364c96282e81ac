// Keep-alive connections to one backend: reuse the most recently used idle
// connection, open new ones up to a cap, queue beyond it.

import { UpstreamError } from "../transport.ts";
import { Connection } from "./connection.ts";
import { type ConnectTimers, dial, type DialTarget, noDelayLeftToCaller } from "../dial.ts";
import { formatAuthority } from "../../net/address.ts";
import { systemClock } from "../../clock.ts";

/** Limits of one backend's connection pool. */
export interface PoolLimits {
  /** Open connections at most (busy and idle). */
  readonly maxConnections: number;
  /** Idle connections kept at most. */
  readonly maxIdle: number;
  /** An idle connection older than this is closed instead of reused. */
  readonly idleTimeoutMs: number;
}

/** A connection lent to one request. */
export interface Lease {
  readonly conn: Connection;
  /** Whether it carried a request before (it may have been closed by the backend meanwhile). */
  readonly reused: boolean;
}

/**
 * A request that cannot be sent again reuses only a connection idle for less
 * than this share of the idle time after which the backend last closed one:
 * its keep-alive timeout, learned (see HostPool.acquire()).
 */
export const LEARNED_IDLE_SHARE = 0.75;
/**
 * How long what the pool learned holds without another such close: a backend
 * that closed its idle connections once for another reason (a restart) limits
 * reuse for that long at most.
 */
export const LEARNED_IDLE_HOLD_MS = 60_000;

interface Waiter {
  resolve(lease: Lease): void;
  reject(error: unknown): void;
  signal: AbortSignal;
  connectTimeoutMs: number;
}

/** The connection pool of one backend. */
export class HostPool {
  readonly #target: DialTarget;
  readonly #limits: PoolLimits;
  readonly #idle: Connection[] = [];
  readonly #waiters: Waiter[] = [];
  readonly #timers: ConnectTimers | undefined;
  readonly #clock: { now(): number };
  #open = 0;
  #closed = false;
  /** The idle time after which the backend last closed a pooled connection (see acquire()). */
  #backendIdleMs = Infinity;
  /** When it did. */
  #backendIdleAt = -Infinity;
  readonly #learnIdleClose = (conn: Connection): void => {
    const now = this.#clock.now();
    this.#backendIdleMs = now - conn.idleSince;
    this.#backendIdleAt = now;
  };

  /**
   * `target`: the backend's host and port, and whether (and trusting what) to
   * speak TLS; `timers`: what times its connects out (see dial()); `clock`: what
   * idle times are read from.
   */
  constructor(
    target: DialTarget,
    limits: PoolLimits,
    timers?: ConnectTimers,
    clock: { now(): number } = systemClock,
  ) {
    this.#target = target;
    this.#limits = limits;
    this.#clock = clock;
    this.#timers = timers;
  }

  /** Open connections (busy and idle). */
  get open(): number {
    return this.#open;
  }

  /**
   * A connection for one request: an idle one (returned at once, no promise),
   * a new one, or the next one released. `reuseWithinMs`: only a connection
   * idle for less than that is reused (0: a new one), for a request that cannot
   * be sent again should the backend have closed the connection meanwhile; older
   * idle connections stay for others. A finite `reuseWithinMs` is shortened to
   * LEARNED_IDLE_SHARE of the backend's keep-alive timeout, learned from the last
   * idle connection the backend closed within LEARNED_IDLE_HOLD_MS: a backend
   * closing them after 50 ms would otherwise close some just as such a request
   * goes out (a probe: 15 of 150 POSTs lost).
   */
  acquire(
    signal: AbortSignal,
    connectTimeoutMs: number,
    reuseWithinMs = Infinity,
  ): Lease | Promise<Lease> {
    const now = this.#clock.now();
    if (reuseWithinMs !== Infinity && now - this.#backendIdleAt < LEARNED_IDLE_HOLD_MS) {
      reuseWithinMs = Math.min(reuseWithinMs, this.#backendIdleMs * LEARNED_IDLE_SHARE);
    }
    while (this.#idle.length > 0) {
      // The most recently used first: the others have been idle longer.
      const conn = this.#idle[this.#idle.length - 1];
      const idleFor = now - conn.idleSince;
      if (idleFor >= this.#limits.idleTimeoutMs || conn.closed) {
        this.#discard(this.#idle.pop()!);
        continue;
      }
      if (idleFor >= reuseWithinMs) break;
      this.#idle.pop();
      conn.unpark();
      return { conn, reused: true };
    }
    // Idle connections left are too old for this request: the oldest makes room for the new
    // one (at the cap it must; below it, a steady flow of such requests, each a second apart,
    // would otherwise leave one more idle connection each until the idle timeout).
    if (this.#idle.length > 0) this.#discard(this.#idle.shift()!);
    if (this.#open < this.#limits.maxConnections) return this.#connect(signal, connectTimeoutMs);
    return new Promise((resolve, reject) => {
      // Settled once. A connection opened for a waiter whose request was aborted meanwhile (the
      // abort came in the turn its connect completed) goes back to the pool: it was lost, with
      // its slot, and a pool with a cap then stalled for good once all were lost.
      let settled = false;
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        waiter.reject(
          new UpstreamError("aborted", "request aborted while waiting for a connection"),
        );
      };
      const waiter: Waiter = {
        resolve: (lease) => {
          if (settled) return this.release(lease.conn, true);
          settled = true;
          signal.removeEventListener("abort", onAbort);
          resolve(lease);
        },
        reject: (error) => {
          if (settled) return;
          settled = true;
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
        signal,
        connectTimeoutMs,
      };
      this.#waiters.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Returns a connection: kept for reuse when `reusable`, else closed. */
  release(conn: Connection, reusable: boolean): void {
    if (!reusable || conn.closed || conn.hasLeftover) {
      this.#discard(conn);
      this.#serveWaiter();
      return;
    }
    const waiter = this.#nextWaiter();
    if (waiter) return waiter.resolve({ conn, reused: true });
    if (this.#closed || this.#idle.length >= this.#limits.maxIdle) return this.#discard(conn);
    conn.idleSince = this.#clock.now();
    conn.park();
    this.#idle.push(conn);
  }

  /** Closes idle connections past their idle timeout. */
  sweep(now = this.#clock.now()): void {
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      if (now - this.#idle[i].idleSince >= this.#limits.idleTimeoutMs) {
        this.#discard(this.#idle.splice(i, 1)[0]);
      }
    }
  }

  /**
   * Closes every idle connection; busy ones close when released, once no
   * request waits for one. Requests waiting still get a connection, within the
   * same cap: a pool is closed when a reload replaced it, and a reload fails
   * no request.
   */
  close(): void {
    this.#closed = true;
    for (const conn of this.#idle.splice(0)) this.#discard(conn);
  }

  async #connect(signal: AbortSignal, connectTimeoutMs: number): Promise<Lease> {
    this.#open++;
    try {
      const conn = await dial(this.#target, signal, connectTimeoutMs, this.#timers);
      const { host, port } = this.#target;
      const authority = formatAuthority(host, port);
      const noDelayDue = noDelayLeftToCaller(this.#target);
      const connection = new Connection(conn, authority, noDelayDue);
      connection.onIdleClose = this.#learnIdleClose;
      return { conn: connection, reused: false };
    } catch (e) {
      // A connect given up on keeps its slot until its socket is closed: the cap bounds the
      // connects a backend sees, also from clients that leave while they wait (a probe saw
      // hundreds of SYNs under way to a backend capped at 2).
      const freed = () => {
        this.#open--;
        this.#serveWaiter();
      };
      const ending = e instanceof UpstreamError ? e.ending : undefined;
      if (ending) ending.then(freed);
      else freed();
      throw e;
    }
  }

  #discard(conn: Connection): void {
    conn.close();
    this.#open--;
  }

  #nextWaiter(): Waiter | undefined {
    let waiter = this.#waiters.shift();
    while (waiter && waiter.signal.aborted) waiter = this.#waiters.shift();
    return waiter;
  }

  /** A slot freed up: open a connection for the next waiter, if any. */
  #serveWaiter(): void {
    if (this.#open >= this.#limits.maxConnections) return;
    const waiter = this.#nextWaiter();
    if (waiter) {
      this.#connect(waiter.signal, waiter.connectTimeoutMs).then(waiter.resolve, waiter.reject);
    }
  }
}
