// StripPrefix (Strom's own): removes a path prefix before the request goes
// upstream, so a pool matched by `PathPrefix('/api')` can reach a backend
// that serves from `/`.
//
//   [backend_pools.middlewares.StripPrefix]
//   prefixes = ["/api", "/v1"]
//
// A prefix matches whole segments: "/api" strips "/api" and "/api/users" (to
// "/" and "/users") but leaves "/apis" alone. The longest matching prefix wins.
// The stripped prefix goes upstream as `X-Forwarded-Prefix` (replacing any the
// client sent), so the backend can build links; the query is kept. A path the
// pool was chosen by only once decoded (`/%61pi/users`, `//api/users`) is
// stripped in that form, and the rest goes upstream re-encoded. A rest that
// starts with several slashes, escaped or not, goes with one (`//evil.example/x`
// reads as a link to another host, and `/%2F%2Fevil.example/x` does once decoded).

import { shownValue } from "../config/fields.ts";
import type { MiddlewareSpec } from "./middleware.ts";

/** Validated options: prefixes without a trailing slash, longest first. */
export type StripPrefixOptions = { readonly prefixes: readonly string[] };

/** Visible ASCII without "?" and "#", starting with "/". */
const PREFIX = /^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/;

/** Several slashes at the start, some of them maybe escaped (`/%2F%2Fevil.example` decodes to two). */
const LEADING_SLASHES = /^\/(?:\/|%2[fF])+/;

/** The strip-prefix middleware's spec. */
export const stripPrefix: MiddlewareSpec<StripPrefixOptions> = {
  name: "StripPrefix",
  parse(r) {
    const list = r.array("prefixes", true);
    if (list === null) return { prefixes: [] };
    const prefixes: string[] = [];
    list.forEach((value, i) => {
      const path = `${r.at("prefixes")}[${i}]`;
      const prefix = typeof value === "string" ? value.replace(/\/+$/, "") : null;
      if (prefix === null || typeof value !== "string" || !PREFIX.test(value)) {
        r.problems.push({
          path,
          message: `invalid prefix ${
            shownValue(value)
          }: expected a path such as "/api" (visible ASCII, no "?" or "#")`,
        });
      } else if (prefix === "") {
        r.problems.push({ path, message: `the prefix "/" would strip nothing` });
      } else prefixes.push(prefix);
    });
    if (list.length === 0) r.problem("prefixes", "expected at least one prefix");
    return { prefixes: [...new Set(prefixes)].sort((a, b) => b.length - a.length) };
  },
  create(options) {
    return async (context, next) => {
      const target = context.target;
      const queryAt = target.indexOf("?");
      const path = queryAt < 0 ? target : target.slice(0, queryAt);
      for (const prefix of options.prefixes) {
        let rest = restAfter(path, prefix);
        if (rest === null) {
          rest = restAfter(context.matchPath, prefix);
          if (rest === null || !decodable(path)) continue;
          rest = encodePath(rest);
        }
        rest = rest.replace(LEADING_SLASHES, "/") || "/";
        context.target = queryAt < 0 ? rest : rest + target.slice(queryAt);
        context.fields = context.fields.filter(([name]) => name !== "x-forwarded-prefix");
        context.fields.push(["x-forwarded-prefix", prefix]);
        break;
      }
      return await next();
    };
  },
};

/**
 * What follows `prefix` in `path` when it starts with it as whole segments,
 * else null. Parameters of the prefix's last segment go with it (`/api;v=2/x`
 * leaves `/x`), as the matchers left them out; the rest keeps its own.
 */
function restAfter(path: string, prefix: string): string | null {
  if (!path.startsWith(prefix)) return null;
  if (path.length === prefix.length) return "";
  const next = path.charCodeAt(prefix.length);
  if (next === 0x2f) return path.slice(prefix.length);
  if (next !== 0x3b) return null;
  const slash = path.indexOf("/", prefix.length);
  return slash < 0 ? "" : path.slice(slash);
}

/**
 * Whether the path's escapes are UTF-8 throughout. Else matchingPath left some
 * undecoded, and the decoded form cannot be told from the raw one any more.
 */
function decodable(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

/** A decoded path percent-encoded again where RFC 3986 does not allow the character as is. */
function encodePath(path: string): string {
  return encodeURI(path).replace(/[?#]/g, (c) => (c === "?" ? "%3F" : "%23"));
}
