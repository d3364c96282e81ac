// RateLimiter { limit, window_sec }: at most `limit` requests per client IP
// (after trusted_proxies) in any `window_sec` seconds, in memory or, with
// `store = "redis://host:port"`, shared by every Strom using that Redis.
// RustStrom keyed on IP *and port*, so each new connection started afresh.

import { HttpError, type Middleware, type MiddlewareSpec } from "./middleware.ts";
import { type Decision, MemoryWindow, type WindowStore } from "./rate_limit_window.ts";
import { checkStoreUrl } from "./redis_store_url.ts";
import { StoreBreaker, StoreSkipped } from "./store_breaker.ts";

/** Validated options; `maxClients` (default 100000) bounds the in-memory store. */
export type RateLimiterOptions = {
  readonly limit: number;
  readonly windowSec: number;
  /** `redis://host:port` (or `rediss://`), or null for in-memory. */
  readonly store: string | null;
  /** When the store fails: let the request through (default) or answer 503. */
  readonly onStoreError: "allow" | "deny";
  readonly maxClients: number;
};

/** The rate limiter's spec. */
export const rateLimiter: MiddlewareSpec<RateLimiterOptions> = {
  name: "RateLimiter",
  parse(r) {
    const limit = r.int("limit");
    const windowSec = r.int("window_sec", { min: 1 });
    const store = r.has("store") ? r.string("store") : undefined;
    const problem = store === undefined ? null : checkStoreUrl(store);
    if (problem !== null) r.problem("store", problem);
    const onStoreError = r.has("on_store_error") ? r.string("on_store_error") : "allow";
    if (onStoreError !== undefined && onStoreError !== "allow" && onStoreError !== "deny") {
      r.problem(
        "on_store_error",
        `invalid value ${JSON.stringify(onStoreError)} (expected "allow" or "deny")`,
      );
    } else if (r.has("on_store_error") && store === undefined) {
      r.problem("on_store_error", `only applies with "store"`);
    }
    const maxClients = r.int("max_clients", { fallback: 100_000, min: 1 });
    return {
      limit: limit!,
      windowSec: windowSec!,
      store: store ?? null,
      onStoreError: onStoreError === "deny" ? "deny" : "allow",
      maxClients: maxClients!,
    };
  },
  async create(options, deps) {
    const windowMs = options.windowSec * 1000;
    // The Redis client (ioredis, about 16 MB of memory) is loaded only when a pool uses it.
    const store: WindowStore = options.store === null
      ? new MemoryWindow({ limit: options.limit, windowMs, maxClients: options.maxClients })
      : new StoreBreaker(
        new (await import("./rate_limit_redis.ts")).RedisWindow(options.store, {
          limit: options.limit,
          windowMs,
          log: deps.log,
          prefix: `strom:ratelimit:${options.limit}:${options.windowSec}:`,
        }),
        deps.clock,
      );
    // A store that fails (down, or hung) is said once at WARN, and its recovery at INFO; each
    // failed hit stays a DEBUG line. After a failure, the breaker asks the store again once a
    // second: a hung store delays one request per second by its command timeout, not all.
    let failing = false;
    const limiter: Middleware = async (context, next) => {
      let decision: Decision;
      try {
        decision = await store.hit(`${context.pool}:${context.clientIp}`, deps.clock.now());
        if (failing) {
          failing = false;
          deps.log.info(`Rate limit store of pool ${context.pool} answers again`);
        }
      } catch (error) {
        if (!failing) {
          failing = true;
          deps.log.warn(
            `Rate limit store of pool ${context.pool} failed (${
              options.onStoreError === "allow" ? "requests pass unlimited" : "requests get 503"
            } until it answers): ${String(error)}`,
          );
        }
        if (!(error instanceof StoreSkipped)) {
          deps.log.debug(`Rate limit store failed for ${context.clientIp}: ${String(error)}`);
        }
        if (options.onStoreError === "allow") return await next();
        throw new HttpError(503, { message: "rate limit store unavailable" });
      }
      // RateLimit-* per draft-ietf-httpapi-ratelimit-headers; Retry-After per RFC 9110 §10.2.3.
      const resetSec = String(Math.max(1, Math.ceil(decision.resetMs / 1000)));
      const headers: Record<string, string> = {
        "ratelimit-limit": String(options.limit),
        "ratelimit-remaining": String(decision.remaining),
        "ratelimit-reset": resetSec,
      };
      if (!decision.allowed) {
        deps.onRateLimited?.(context.pool);
        throw new HttpError(429, { headers: { ...headers, "retry-after": resetSec } });
      }
      const response = await next();
      for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
      return response;
    };
    return Object.assign(limiter, { close: () => store.close?.() ?? Promise.resolve() });
  },
};
