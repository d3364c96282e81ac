// Admin API protection: a bearer token for mutating calls (and for every call
// when the admin listener is not on loopback), and no cross-origin writes.

import type { Context, MiddlewareHandler } from "hono";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** Whether `hostname` is a loopback address. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "::1" || hostname.startsWith("127.") || hostname === "::ffff:127.0.0.1";
}

/** `Bearer <token>`; the scheme's name is case-insensitive (RFC 9110 11.1). */
const BEARER = /^bearer[ \t]+/i;

/** The token check: constant-time comparison of the bearer token. */
function tokenMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const scheme = BEARER.exec(header);
  if (scheme === null) return false;
  const given = new TextEncoder().encode(header.slice(scheme[0].length).trim());
  const expected = new TextEncoder().encode(token);
  return given.length === expected.length && sameBytes(given, expected);
}

/** Constant-time equality of two byte arrays of the same length. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Hono middleware enforcing the admin rules for every path. `token()` is read
 * per request so a reload that changes the token applies at once.
 */
export function adminGuard(
  options: { token: () => string | null; loopback: () => boolean },
): MiddlewareHandler {
  return async (c, next) => {
    const mutating = !SAFE.has(c.req.method);
    if (mutating && crossOrigin(c.req.raw)) {
      return c.text("403 - cross-origin requests cannot change Strom", 403);
    }
    // On loopback, reads need no token, but only under a loopback name: a page whose name an
    // attacker rebinds to 127.0.0.1 sends its own name as Host (DNS rebinding).
    if (mutating || !options.loopback() || !loopbackName(c.req.header("host"))) {
      const refused = checkToken(c, options.token());
      if (refused) return refused;
    }
    await next();
  };
}

/** Whether a Host header names this machine: localhost (and `*.localhost`), 127.0.0.0/8 or [::1]. */
export function loopbackName(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.toLowerCase().replace(/:\d*$/, "").replace(/\.$/, "");
  if (name === "[::1]") return true;
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/**
 * For a route whose answer holds secrets (the config text: the token itself,
 * LDAP and Redis credentials): once a token exists, reading it needs the token
 * too, even on loopback. Attached to the route, so it applies to every spelling
 * of the path the router matches (`/api/%63onfig` is `/api/config` to it).
 */
export function secretRoute(options: { token: () => string | null }): MiddlewareHandler {
  return async (c, next) => {
    const token = options.token();
    if (token !== null) {
      const refused = checkToken(c, token);
      if (refused) return refused;
    }
    await next();
  };
}

/** The answer refusing a request without the right bearer token, or null when it has it. */
function checkToken(c: Context, token: string | null): Response | null {
  if (token === null) {
    return c.text("403 - set admin_token or admin_token_file to allow this call", 403);
  }
  if (!tokenMatches(c.req.header("authorization"), token)) {
    c.header("WWW-Authenticate", 'Bearer realm="strom admin"');
    return c.text("401 - a valid admin token is required", 401);
  }
  return null;
}

/**
 * A browser request from a page of another origin. The browser's own
 * Sec-Fetch-Site decides when it is there (a TLS proxy in front may rewrite
 * Host, so the page's origin and Host differ though the page is Strom's);
 * otherwise Origin is compared with Host (host names are case-insensitive).
 */
function crossOrigin(request: Request): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site !== "same-origin" && site !== "none";
  const origin = request.headers.get("origin");
  if (origin === null) return false;
  const host = request.headers.get("host")?.toLowerCase();
  try {
    return new URL(origin).host !== host;
  } catch {
    return true;
  }
}
