// The sliding window in Redis, so several Strom instances share one limit. One
// Lua script per request does purge, count and add atomically (a sorted set of
// request times per client), so concurrent instances cannot both take the last
// slot. Times come from each instance's clock: keep their clocks in sync (NTP).

import { Redis } from "ioredis";
import type { Logger } from "../log.ts";
import type { Decision, WindowStore } from "./rate_limit_window.ts";
import { withPasswordHidden } from "../net/address.ts";
import { parseStoreUrl } from "./redis_store_url.ts";

/**
 * KEYS[1] the client's set; ARGV: now (ms), window (ms), limit, a unique
 * member, the database. The script selects its database itself: a SELECT the
 * client sends once per connection, when refused (a number beyond the
 * server's `databases`), left every hit counted in database 0, with one
 * warning; here the hit fails, and `on_store_error` applies. Database 0, the
 * connection's own, needs no SELECT (an ACL may not allow the command).
 */
const SCRIPT = `
if ARGV[5] ~= '0' then redis.call('SELECT', tonumber(ARGV[5])) end
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  count = count + 1
  allowed = 1
end
if count > 0 then
  redis.call('PEXPIRE', key, window)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {allowed, count, tonumber(oldest[2])}
end
return {allowed, count, now}
`;

/** How long one Redis round trip may take before `on_store_error` applies (a real outage, not a busy CPU). */
const COMMAND_TIMEOUT_MS = 2000;

type SlidingWindowRedis = Redis & {
  slidingWindow(key: string, ...args: (string | number)[]): Promise<[number, number, number]>;
};

/** A WindowStore in Redis at `url` (throws when it is invalid); fails fast (rejects) while Redis is unreachable. */
export class RedisWindow implements WindowStore {
  readonly #redis: SlidingWindowRedis;
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #prefix: string;
  /** The database number, which the script selects (see SCRIPT). */
  readonly #db: number;
  readonly #instance = crypto.randomUUID().slice(0, 8);
  #sequence = 0;
  #lastError = "";

  constructor(
    url: string,
    options: { limit: number; windowMs: number; prefix: string; log: Logger },
  ) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#prefix = options.prefix;
    // The URL is checked at load; checked again here because ioredis must never read one
    // itself (see redis_store_url.ts).
    const address = parseStoreUrl(url);
    if (typeof address === "string") throw new Error(address);
    const { tls, db, ...where } = address;
    this.#db = db;
    this.#redis = new Redis({
      ...where,
      ...(tls ? { tls: {} } : {}),
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    }) as SlidingWindowRedis;
    this.#redis.defineCommand("slidingWindow", { numberOfKeys: 1, lua: SCRIPT });
    const { log } = options;
    const shown = withPasswordHidden(url);
    this.#redis.on("error", (e: Error) => {
      if (e.message !== this.#lastError) log.warn(`Rate limit store ${shown}: ${e.message}`);
      this.#lastError = e.message;
    });
    this.#redis.on("ready", () => {
      if (this.#lastError !== "") log.info(`Rate limit store ${shown} is reachable again`);
      this.#lastError = "";
    });
  }

  /**
   * Counts a hit now. The window is shared with other instances, so it runs on
   * the wall clock (as the header says, keep the instances' clocks in sync),
   * not on the `now` of this instance's never-stepping clock.
   */
  async hit(key: string, _now: number): Promise<Decision> {
    const now = Date.now();
    // Only the first connection may queue a command; once lost, fail at once.
    const status = this.#redis.status;
    if (status !== "ready" && status !== "connect" && status !== "connecting") {
      throw new Error(`Cannot reach the rate limit store: connection ${status}`);
    }
    const member = `${now}:${this.#instance}:${this.#sequence++}`;
    const [allowed, count, oldest] = await this.#redis.slidingWindow(
      this.#prefix + key,
      now,
      this.#windowMs,
      this.#limit,
      member,
      this.#db,
    );
    return {
      allowed: allowed === 1,
      remaining: Math.max(0, this.#limit - count),
      resetMs: oldest + this.#windowMs - now,
    };
  }

  async close(): Promise<void> {
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }
}
