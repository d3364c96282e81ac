// Middleware names and option validation. Every RustStrom middleware is
// validated completely at load, so a typo is an error instead of a silently
// dropped (fail-open) middleware as in RustStrom. Middlewares whose behaviour a
// later issue implements fail the load with "not available yet" until then.

import { checkInt, suggest, type TableReader } from "../config/fields.ts";
import type { Middleware, MiddlewareDeps } from "./middleware.ts";

/** One middleware: option validation at config time, construction at runtime. */
export interface MiddlewareSpec {
  readonly name: string;
  /** The issue that implements it while it is not available; null when available. */
  readonly pendingIssue: number | null;
  /** Validates the options table; problems go to the reader. */
  parse(reader: TableReader): Record<string, unknown>;
  /** Builds the middleware from validated options (absent while pending). */
  create?(
    options: Readonly<Record<string, unknown>>,
    deps: MiddlewareDeps,
  ): Middleware | Promise<Middleware>;
}

const none = (): Record<string, unknown> => ({});

const SPECS: readonly MiddlewareSpec[] = [
  { name: "HttpsRedirector", pendingIssue: 6, parse: none },
  {
    name: "RateLimiter",
    pendingIssue: 6,
    parse: (r) => ({
      limit: r.int("limit"),
      windowSec: r.int("window_sec", { min: 1 }),
    }),
  },
  { name: "Compression", pendingIssue: 6, parse: none },
  { name: "MaxBodySize", pendingIssue: 6, parse: (r) => ({ limit: r.int("limit") }) },
  {
    name: "Authentication",
    pendingIssue: 6,
    parse: (r) => ({
      ldapAddress: r.string("ldap_address"),
      userDirectory: r.string("user_directory"),
      rdnIdentifier: r.string("rdn_identifier"),
      recursive: r.bool("recursive"),
    }),
  },
  {
    name: "CustomErrorPages",
    pendingIssue: 6,
    parse(r) {
      const location = r.string("location");
      const errors = r.array("errors", true)?.map((v, i) =>
        checkInt(v, r.at("errors") + `[${i}]`, r.problems, { min: 100, max: 599 })
      );
      return { location, errors };
    },
  },
];

const BY_NAME = new Map(SPECS.map((s) => [s.name, s]));

/** Middleware names a config may use. */
export const MIDDLEWARE_NAMES: readonly string[] = SPECS.map((s) => s.name);

/** The spec for a name, or a message naming the closest known one. */
export function findMiddleware(name: string): MiddlewareSpec | string {
  const spec = BY_NAME.get(name);
  if (spec) return spec;
  const hint = suggest(name, MIDDLEWARE_NAMES);
  const list = MIDDLEWARE_NAMES.map((n) => `"${n}"`).join(", ");
  return `unknown middleware ${JSON.stringify(name)}` +
    (hint ? ` (did you mean "${hint}"?)` : ` (expected one of ${list})`);
}

/** Builds a configured middleware; throws for one that is not available yet. */
export function createMiddleware(
  name: string,
  options: Readonly<Record<string, unknown>>,
  deps: MiddlewareDeps,
): Middleware | Promise<Middleware> {
  const spec = BY_NAME.get(name);
  if (!spec?.create) throw new Error(`Cannot create middleware "${name}": not available`);
  return spec.create(options, deps);
}
