// An exact sliding-window counter per client, in memory: a client may make at
// most `limit` requests in any `windowMs`. Only allowed requests are counted,
// so a client that keeps retrying while refused is let in again as soon as its
// oldest counted request leaves the window (RustStrom kept such clients out
// for good, and never forgot an old client behind an active one: spec §2.10.2).

/** A rate-limit decision for one request. */
export interface Decision {
  readonly allowed: boolean;
  /** Requests left in the window after this one. */
  readonly remaining: number;
  /** Milliseconds until the oldest counted request leaves the window (a slot frees). */
  readonly resetMs: number;
}

/** Where windows live: in this process, or shared (Redis). */
export interface WindowStore {
  hit(key: string, now: number): Decision | Promise<Decision>;
  close?(): Promise<void>;
}

/** Timestamps of a client's counted requests, oldest first. */
class Times {
  values: number[] = [];
  head = 0;

  get size(): number {
    return this.values.length - this.head;
  }

  get oldest(): number {
    return this.values[this.head];
  }

  get newest(): number {
    return this.values[this.values.length - 1];
  }

  /** Drops timestamps at or before `cutoff`; compacts now and then. */
  dropUpTo(cutoff: number): void {
    while (this.head < this.values.length && this.values[this.head] <= cutoff) this.head++;
    if (this.head > 32 && this.head * 2 > this.values.length) {
      this.values = this.values.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * The in-memory store. Memory is bounded: at most `maxClients` clients are
 * tracked (the least recently seen is forgotten first), each with at most
 * `limit` timestamps, and a client idle for a whole window is dropped.
 */
export class MemoryWindow implements WindowStore {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxClients: number;
  /** In order of last request, least recent first. */
  readonly #clients = new Map<string, Times>();

  constructor(options: { limit: number; windowMs: number; maxClients: number }) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxClients = options.maxClients;
  }

  /** Clients currently tracked. */
  get size(): number {
    return this.#clients.size;
  }

  hit(key: string, now: number): Decision {
    this.#purge(now);
    if (this.#limit === 0) return { allowed: false, remaining: 0, resetMs: this.#windowMs };
    const times = this.#clients.get(key) ?? new Times();
    this.#clients.delete(key); // re-inserted at the back: the map stays in last-seen order
    times.dropUpTo(now - this.#windowMs);
    const allowed = times.size < this.#limit;
    if (allowed) times.values.push(now);
    this.#clients.set(key, times);
    if (this.#clients.size > this.#maxClients) {
      this.#clients.delete(this.#clients.keys().next().value!);
    }
    return {
      allowed,
      remaining: this.#limit - times.size,
      resetMs: times.oldest + this.#windowMs - now,
    };
  }

  /** Forgets clients from the front whose newest request left the window. */
  #purge(now: number): void {
    for (const [key, times] of this.#clients) {
      if (times.newest + this.#windowMs > now) break;
      this.#clients.delete(key);
    }
  }
}
