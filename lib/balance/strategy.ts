// The strategy interface: a pure, synchronous choice among available backends.
// The pool filters by health and counts in-flight requests; a strategy only chooses.

/** What a strategy may look at about a backend. */
export interface Candidate {
  /** The address as written in the config; stable across reloads and instances. */
  readonly id: string;
  /** Requests currently being forwarded to this backend. */
  readonly inFlight: number;
}

/** What a strategy may look at about a request, and the one thing it may write. */
export interface PickContext {
  /** Client IP (trusted-proxy aware), plain IPv4 for IPv4 clients. */
  readonly clientIp: string;
  /** The request's `Cookie` header(s), joined with "; ", or null. */
  readonly cookie: string | null;
  /** Set by a strategy that wants `Set-Cookie` on the response: one value per line ("\n"). */
  setCookie: string | null;
  /** True when the pick is for a retry, after an attempt on another backend failed. */
  retry?: boolean;
}

/** Chooses one backend; `candidates` is never empty and is in config order. */
export interface Strategy {
  pick<T extends Candidate>(candidates: readonly T[], context: PickContext): T;
  /**
   * Told how long a backend took to answer (to its response headers), for
   * strategies that learn; `failed` when the answer was a 5xx.
   */
  observe?(id: string, latencyMs: number, failed?: boolean): void;
  /**
   * Whether a backend is a backup (WeightedRoundRobin's weight 0): the pool
   * offers backups only when no other backend is usable, Healthy or Slow.
   */
  isBackup?(id: string): boolean;
  /**
   * The backend among `kept` the request is bound to (StickyCookie's cookie),
   * or null. `kept` are backends drained with their sticky clients kept: they
   * get no new clients, only those already bound to them.
   */
  boundTo?<T extends Candidate>(kept: readonly T[], context: PickContext): T | null;
}

/** Injected effects a strategy may use. */
export interface StrategyDeps {
  /** Uniform in [0, 1). */
  readonly random: () => number;
  /** Milliseconds; wall time when absent. */
  readonly clock?: { now(): number };
}
