// A RateLimiter's `store`: `redis://[[user]:password@]host[:port][/db]`, or
// `rediss://` for TLS. Checked at load, and turned here into the Redis client's
// options, so the client never reads the URL itself: ioredis takes a query's
// parameters as client options, and a database that is no number became NaN,
// whose SELECT was rejected where nothing handled it ("ERR value is not an
// integer or out of range") while the limiter quietly used database 0.

import { withPasswordHidden } from "../net/address.ts";

/** Where a Redis store is; `port` defaults to 6379 and `db` to 0. */
export interface RedisAddress {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
  readonly db: number;
  readonly tls: boolean;
}

/** The address in a store URL, or the problem with it (its password shown as `***`). */
export function parseStoreUrl(text: string): RedisAddress | string {
  const invalid = (why: string) =>
    `invalid store ${JSON.stringify(withPasswordHidden(text))}: ${why}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // A password holding "/", "?" or "#" cuts the URL short where it stands.
    return invalid(
      `expected "redis://host:port" (a password's "/", "?", "#" and "@" as %2F, %3F...)`,
    );
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    return invalid(`expected "redis://" or "rediss://"`);
  }
  if (url.hostname === "") return invalid("expected a host");
  if (url.port === "0") return invalid("port 0 cannot be connected to");
  // Not shown: a query may hold a password.
  if (url.search !== "" || url.hash !== "") return invalid(`expected no "?" or "#" part`);
  const path = url.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,9}$/.test(path)) {
    return invalid(
      `expected a database number (0 or more) after the host, found ${JSON.stringify(path)}`,
    );
  }
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    return invalid(`expected a user and password in URL encoding ("%40" for "@")`);
  }
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port === "" ? 6379 : Number(url.port),
    ...(username !== "" || password !== "" ? { username, password } : {}),
    db: path === "" ? 0 : Number(path),
    tls: url.protocol === "rediss:",
  };
}

/** Checks a store URL; a message when it is not `redis://host[:port][/db]`. */
export function checkStoreUrl(text: string): string | null {
  const parsed = parseStoreUrl(text);
  return typeof parsed === "string" ? parsed : null;
}
