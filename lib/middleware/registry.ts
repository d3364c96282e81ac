// Middleware names and where each is defined: one file per middleware. Every
// option is validated at load, so a typo is an error instead of a silently
// dropped (fail-open) middleware as in RustStrom (spec §2.10.0).

import { suggest } from "../config/fields.ts";
import type { ClosableMiddleware, MiddlewareDeps, MiddlewareSpec } from "./middleware.ts";
import { httpsRedirector } from "./https_redirector.ts";
import { rateLimiter } from "./rate_limiter.ts";
import { compression } from "./compression.ts";
import { maxBodySize } from "./max_body_size.ts";
import { authentication } from "./authentication.ts";
import { customErrorPages } from "./custom_error_pages.ts";
import { headers } from "./headers.ts";
import { basicAuth } from "./basic_auth.ts";
import { stripPrefix } from "./strip_prefix.ts";
import { ipFilter } from "./ip_filter.ts";
import { requestId } from "./request_id.ts";

/** Every middleware a config may name: RustStrom's six, then Strom's own. */
export const MIDDLEWARES: readonly MiddlewareSpec[] = [
  httpsRedirector,
  rateLimiter,
  compression,
  maxBodySize,
  authentication,
  customErrorPages,
  headers,
  basicAuth,
  stripPrefix,
  ipFilter,
  requestId,
] as MiddlewareSpec[];

const BY_NAME = new Map(MIDDLEWARES.map((s) => [s.name, s]));

/** Middleware names a config may use. */
export const MIDDLEWARE_NAMES: readonly string[] = MIDDLEWARES.map((s) => s.name);

/** The spec for a name, or a message naming the closest known one. */
export function findMiddleware(name: string): MiddlewareSpec | string {
  const spec = BY_NAME.get(name);
  if (spec) return spec;
  const hint = suggest(name, MIDDLEWARE_NAMES);
  const list = MIDDLEWARE_NAMES.map((n) => `"${n}"`).join(", ");
  return `unknown middleware ${JSON.stringify(name)}` +
    (hint ? ` (did you mean "${hint}"?)` : ` (expected one of ${list})`);
}

/** Builds a configured middleware from options its spec validated. */
export function createMiddleware(
  name: string,
  options: Readonly<Record<string, unknown>>,
  deps: MiddlewareDeps,
): ClosableMiddleware | Promise<ClosableMiddleware> {
  const spec = BY_NAME.get(name);
  if (!spec) throw new Error(`Cannot create middleware "${name}": unknown`);
  return spec.create(options, deps);
}
