// A circuit breaker in front of a shared rate-limit store. A Redis that hangs
// (connection up, no answers) made every rate-limited request wait for the
// command timeout (2 s) before `on_store_error` applied. After a failure the
// breaker opens: requests get `on_store_error` at once, and one request per
// `retryMs` tries the store again; its success closes the breaker.

import type { Decision, WindowStore } from "./rate_limit_window.ts";

/** How long after a failure the store is left alone before one request tries it again. */
export const STORE_RETRY_MS = 1000;

/** Thrown instead of asking a store that failed within the last `retryMs`. */
export class StoreSkipped extends Error {}

/**
 * `inner` behind a circuit breaker; `now` is the time each hit() is given, and
 * `clock` tells when a failure came (a hung store fails a command timeout later).
 */
export class StoreBreaker implements WindowStore {
  readonly #inner: WindowStore;
  readonly #clock: { now(): number };
  readonly #retryMs: number;
  /** When the store may be tried again; 0 while it answers. */
  #retryAt = 0;
  /** A trial is under way: others do not wait for it. */
  #trying = false;
  #lastError = "";

  constructor(inner: WindowStore, clock: { now(): number }, retryMs = STORE_RETRY_MS) {
    this.#inner = inner;
    this.#clock = clock;
    this.#retryMs = retryMs;
  }

  async hit(key: string, now: number): Promise<Decision> {
    if (this.#retryAt !== 0 && (this.#trying || now < this.#retryAt)) {
      throw new StoreSkipped(`not asked: it failed recently (${this.#lastError})`);
    }
    const trial = this.#retryAt !== 0;
    if (trial) this.#trying = true;
    try {
      const decision = await this.#inner.hit(key, now);
      this.#retryAt = 0;
      return decision;
    } catch (error) {
      this.#lastError = error instanceof Error ? error.message : String(error);
      // From the failure, not from the hit's start: a hung store fails after its 2 s command
      // timeout, and a retry due 1 s after the start was due already, so every request waited
      // the 2 s (a probe: 8 requests in a row, 2.00 s each).
      this.#retryAt = this.#clock.now() + this.#retryMs;
      throw error;
    } finally {
      if (trial) this.#trying = false;
    }
  }

  close(): Promise<void> {
    return this.#inner.close?.() ?? Promise.resolve();
  }
}
