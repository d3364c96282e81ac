// Drives one middleware directly: a fake request context, injected deps, and
// a `next` that plays the backend.

import type { Scheme } from "../../lib/config/types.ts";
import {
  compose,
  type Middleware,
  type MiddlewareContext,
  type MiddlewareDeps,
  type MiddlewareSpec,
} from "../../lib/middleware/middleware.ts";
import { errorResponse } from "../../lib/proxy/errors.ts";
import { matchingPath } from "../../lib/proxy/path.ts";
import { TableReader } from "../../lib/config/fields.ts";
import type { Problem } from "../../lib/config/errors.ts";
import { type Logger, silentLogger } from "../../lib/log.ts";
import { ManualClock } from "./clock.ts";

/** A request as a middleware sees it; `url` is `http://host/path?query`. */
export function fakeContext(
  url: string,
  init: RequestInit & {
    scheme?: Scheme;
    clientIp?: string;
    peerTrusted?: boolean;
    pool?: string;
  } = {},
): MiddlewareContext {
  const parsed = new URL(url);
  const matchPath = matchingPath(parsed.pathname);
  // The proxy answers such a path 400 before any middleware sees it.
  if (matchPath === null) throw new Error(`no middleware sees the path of ${url}`);
  const headers = new Headers(init.headers);
  if (!headers.has("host")) headers.set("host", parsed.host); // as a server's request has
  const request = new Request(url, { ...init, headers });
  const fields: [string, string][] = [...request.headers];
  return {
    request,
    scheme: init.scheme ?? "HTTP",
    clientIp: init.clientIp ?? "192.0.2.1",
    peerTrusted: init.peerTrusted ?? false,
    method: request.method,
    host: request.headers.get("host") ?? parsed.host,
    path: parsed.pathname,
    matchPath,
    query: parsed.search.slice(1),
    pool: init.pool ?? "pool-0",
    target: parsed.pathname + parsed.search,
    requestId: null,
    fields,
    body: request.body,
  };
}

/** Deps with a manual clock and a silent logger unless overridden. */
export function testDeps(overrides: Partial<MiddlewareDeps> = {}): MiddlewareDeps & {
  clock: ManualClock;
} {
  return {
    clock: new ManualClock(),
    log: silentLogger as Logger,
    baseDir: Deno.cwd(),
    httpsPort: () => null,
    newId: (() => {
      let n = 0;
      return () => `id-${++n}`;
    })(),
    ...overrides,
  } as MiddlewareDeps & { clock: ManualClock };
}

/** Parses options of a spec from a plain object; throws listing the problems. */
export function parseOptions<O>(
  spec: MiddlewareSpec<O>,
  table: Record<string, unknown>,
  baseDir = Deno.cwd(),
): O {
  const problems: Problem[] = [];
  const reader = new TableReader(table, spec.name, problems);
  const options = spec.parse(reader, { baseDir });
  reader.finish();
  if (problems.length > 0) {
    throw new Error(problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  }
  return options;
}

/** The problems parsing `table` as a spec's options reports, as "path: message" lines. */
export function optionProblems<O>(
  spec: MiddlewareSpec<O>,
  table: Record<string, unknown>,
): string[] {
  const found: Problem[] = [];
  const reader = new TableReader(table, spec.name, found);
  spec.parse(reader, { baseDir: Deno.cwd() });
  reader.finish();
  return found.map((p) => `${p.path}: ${p.message}`);
}

/** Builds a middleware from a spec and raw options. */
export async function build<O>(
  spec: MiddlewareSpec<O>,
  table: Record<string, unknown>,
  deps: MiddlewareDeps = testDeps(),
): Promise<Middleware & { close?: () => Promise<void> }> {
  return await spec.create(parseOptions(spec, table, deps.baseDir), deps);
}

/** Runs a middleware the way a pool does (a thrown HttpError becomes its response). */
export function run(
  middleware: Middleware,
  context: MiddlewareContext,
  backend: (context: MiddlewareContext) => Response | Promise<Response> = () =>
    new Response("backend"),
): Promise<Response> {
  return compose([middleware], errorResponse)(context, async () => await backend(context));
}

/** The value of a field sent upstream, or null. */
export function field(context: MiddlewareContext, name: string): string | null {
  return context.fields.find(([n]) => n === name)?.[1] ?? null;
}
