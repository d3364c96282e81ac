// HttpsRedirector: plain HTTP requests are sent to https:// on the same host,
// path and query. Unlike RustStrom it keeps the client's port out of the new
// URL (it belongs to the HTTP listener) and uses the HTTPS listener's instead,
// and it lets through what a trusted proxy (`trusted_proxies`) says came over
// HTTPS (`X-Forwarded-Proto: https`, as a TLS terminator in front sends), which
// would otherwise be redirected for ever.

import { HttpError, type MiddlewareContext, type MiddlewareSpec } from "./middleware.ts";
import { hostWithoutPort, validHost } from "../proxy/headers.ts";

/** Options: `status = 301 | 308` for GET and HEAD (default 301); other methods always get 308. */
export type HttpsRedirectorOptions = { readonly status: 301 | 308 };

/** Paths an ACME HTTP-01 validation must reach over plain HTTP (RFC 8555 §8.3). */
const ACME_PREFIX = "/.well-known/acme-challenge/";

/** Whether a trusted peer says the client's request came over HTTPS (its last X-Forwarded-Proto). */
function forwardedOverHttps(context: MiddlewareContext): boolean {
  if (!context.peerTrusted) return false;
  const proto = context.request.headers.get("x-forwarded-proto");
  if (proto === null) return false;
  return proto.slice(proto.lastIndexOf(",") + 1).trim().toLowerCase() === "https";
}

/** The redirector's spec. */
export const httpsRedirector: MiddlewareSpec<HttpsRedirectorOptions> = {
  name: "HttpsRedirector",
  parse(r) {
    const status = r.int("status", { fallback: 301 });
    if (status !== undefined && status !== 301 && status !== 308) {
      r.problem("status", `invalid redirect status ${status} (expected 301 or 308)`);
    }
    return { status: status === 308 ? 308 : 301 };
  },
  create(options, deps) {
    return (context, next) => {
      if (context.scheme === "HTTPS" || forwardedOverHttps(context)) return next();
      // The routed path: `/.well-known/acme-challenge/..%2f..%2fapp` is `/app`, not ACME's.
      if (context.matchPath.startsWith(ACME_PREFIX)) return next();
      // The Host field, or HTTP/2's :authority (h2c requests have no Host field).
      const host = context.host;
      if (host === "") throw new HttpError(400, { body: "Missing Host header" });
      if (!validHost(host)) throw new HttpError(400, { body: "Invalid Host header" });
      const hostname = hostWithoutPort(host);
      const query = context.query === "" ? "" : `?${context.query}`;
      // The port bound, not the configured one: a reload may have kept the old listener.
      const httpsPort = deps.httpsPort();
      const port = httpsPort === null || httpsPort === 443 ? "" : `:${httpsPort}`;
      const location = `https://${hostname.toLowerCase()}${port}${context.path}${query}`;
      deps.log.debug(`Redirecting to ${location}`);
      // 301 lets old clients turn a POST into a GET; 308 keeps the method and body (RFC 9110 §15.4).
      const safe = context.method === "GET" || context.method === "HEAD";
      return Promise.resolve(
        new Response(null, { status: safe ? options.status : 308, headers: { location } }),
      );
    };
  },
};
