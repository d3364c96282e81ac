// What Authentication (LDAP) and BasicAuth (htpasswd) share: reading Basic
// credentials (RFC 7617), the 401 challenge, a short cache of good
// credentials, and not forwarding `Authorization` unless told to.

import { nodeCrypto } from "../node_builtins.ts";
import type { Clock } from "../clock.ts";
import type { TableReader } from "../config/fields.ts";
import { HttpError, type Middleware, type MiddlewareContext } from "./middleware.ts";

/** Basic credentials from a request. */
export interface Credentials {
  readonly user: string;
  readonly password: string;
  /** `user:password` as sent, for the cache key. */
  readonly raw: string;
}

/** Options both Basic-auth middlewares take. */
export type ChallengeOptions = {
  /** Realm in the challenge (default "Restricted"). */
  readonly realm: string;
  /** Seconds a verified user:password is remembered (default 60; 0 = never). */
  readonly cacheTtlSec: number;
  /** Send `Authorization` on to the backend (default false: removed). */
  readonly forwardAuthorization: boolean;
};

/** Reads `realm`, `cache_ttl_sec` and `forward_authorization`. */
export function parseChallengeOptions(r: TableReader): ChallengeOptions {
  const realm = r.string("realm", "Restricted");
  if (realm !== undefined && !/^[\x20-\x7e]*$/.test(realm)) {
    r.problem("realm", `invalid realm ${JSON.stringify(realm)}: expected printable ASCII`);
  }
  return {
    realm: realm!,
    cacheTtlSec: r.int("cache_ttl_sec", { fallback: 60 })!,
    forwardAuthorization: r.bool("forward_authorization", false)!,
  };
}

/** Decodes `Authorization: Basic <base64(user:password)>`; null when absent or malformed. */
export function readBasic(header: string | null): Credentials | null {
  const match = header?.match(/^basic +([A-Za-z0-9+/]+=*) *$/i);
  if (!match) return null;
  let raw: string;
  try {
    const bytes = Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0));
    raw = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  const colon = raw.indexOf(":");
  if (colon <= 0) return null;
  return { user: raw.slice(0, colon), password: raw.slice(colon + 1), raw };
}

/**
 * Verified credentials for a while, keyed by an HMAC of `user:password` under
 * a per-process random key: neither name nor password is kept, and a wrong
 * password never matches an entry.
 */
export class CredentialCache {
  readonly #ttlMs: number;
  readonly #clock: Clock;
  readonly #key = crypto.getRandomValues(new Uint8Array(32));
  readonly #entries = new Map<string, number>();
  readonly #createHmac = nodeCrypto().createHmac;
  static readonly MAX_ENTRIES = 10_000;

  constructor(ttlSec: number, clock: Clock) {
    this.#ttlMs = ttlSec * 1000;
    this.#clock = clock;
  }

  #digest(credentials: Credentials): string {
    return this.#createHmac("sha256", this.#key).update(credentials.raw).digest("base64");
  }

  has(credentials: Credentials): boolean {
    if (this.#ttlMs === 0) return false;
    const key = this.#digest(credentials);
    const expires = this.#entries.get(key);
    if (expires === undefined) return false;
    if (expires > this.#clock.now()) return true;
    this.#entries.delete(key);
    return false;
  }

  add(credentials: Credentials): void {
    if (this.#ttlMs === 0) return;
    const now = this.#clock.now();
    for (const [key, expires] of this.#entries) { // oldest first: drop the expired
      if (expires > now && this.#entries.size < CredentialCache.MAX_ENTRIES) break;
      this.#entries.delete(key);
    }
    const key = this.#digest(credentials);
    this.#entries.delete(key); // re-inserted last: the map stays in expiry order
    this.#entries.set(key, now + this.#ttlMs);
  }
}

/** Verifies credentials: true to let them in, false for 401; throws on a backend failure. */
export type Verify = (credentials: Credentials) => Promise<boolean>;

/** The middleware around a `verify`: cache, challenge, and the forwarding rule. */
export function basicAuthMiddleware(
  options: ChallengeOptions,
  verify: Verify,
  clock: Clock,
): Middleware {
  const cache = new CredentialCache(options.cacheTtlSec, clock);
  const challenge = `Basic realm=${JSON.stringify(options.realm)}, charset="UTF-8"`;
  return async (context: MiddlewareContext, next) => {
    const credentials = readBasic(context.request.headers.get("authorization"));
    const ok = credentials !== null &&
      (cache.has(credentials) || (await verify(credentials) && (cache.add(credentials), true)));
    if (!ok) throw new HttpError(401, { headers: { "www-authenticate": challenge } });
    if (!options.forwardAuthorization) {
      context.fields = context.fields.filter(([name]) => name !== "authorization");
    }
    return await next();
  };
}
