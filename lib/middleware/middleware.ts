// The middleware interface: an onion around the backend call, in file order
// (first listed is outermost), like Hono's. Factories validate and compile
// their options once, at config time; per request there is no parsing.

import type { Scheme } from "../config/types.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Fields } from "../proxy/headers.ts";

/** What a middleware sees of one request, and may change on its way upstream. */
export interface MiddlewareContext {
  /** The client's request (read its headers here; the body is in `body`). */
  readonly request: Request;
  readonly scheme: Scheme;
  /** Client IP after `trusted_proxies`. */
  readonly clientIp: string;
  readonly method: string;
  /** Host as received ("" when absent). */
  readonly host: string;
  /** Path after dot-segment removal, raw percent-encoding. */
  readonly path: string;
  /** Raw query without "?"; "" when none. */
  readonly query: string;
  /** Name of the pool handling it. */
  readonly pool: string;
  /** Fields sent upstream (lower-case names); middlewares may edit the list. */
  fields: Fields;
  /** Body sent upstream; middlewares may wrap it (e.g. to count bytes). */
  body: ReadableStream<Uint8Array> | null;
}

/** Runs the rest of the chain (and finally the backend call). */
export type Next = () => Promise<Response>;

/** One middleware: answer early (or throw HttpError), or call `next` and adjust its response. */
export type Middleware = (context: MiddlewareContext, next: Next) => Promise<Response>;

/** Effects and facts a middleware factory may use. */
export interface MiddlewareDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** Folder of the config file (relative paths resolve against it). */
  readonly baseDir: string;
  /** Port of the HTTPS listener, or null when there is none. */
  readonly httpsPort: number | null;
  /** Counts a request a middleware refused for rate limiting (metrics). */
  readonly onRateLimited?: (pool: string) => void;
}

/** Thrown by middlewares to answer with a status; turned into a response in one place. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  /** Body text; default `<status> - <reason>`. */
  readonly body: string | null;

  constructor(
    status: number,
    options: { headers?: Record<string, string>; body?: string; message?: string } = {},
  ) {
    super(options.message ?? `HTTP ${status}`);
    this.name = "HttpError";
    this.status = status;
    this.headers = options.headers ?? {};
    this.body = options.body ?? null;
  }
}

/** The composed chain of a pool: runs `terminal` inside the middlewares. */
export type Chain = (context: MiddlewareContext, terminal: Next) => Promise<Response>;

/** Composes middlewares in order; `errorResponse` turns a throw into a response. */
export function compose(
  middlewares: readonly Middleware[],
  errorResponse: (error: unknown) => Response,
): Chain {
  if (middlewares.length === 0) return (_context, terminal) => terminal();
  return (context, terminal) => {
    const dispatch = async (i: number): Promise<Response> => {
      if (i === middlewares.length) return await terminal();
      try {
        return await middlewares[i](context, () => dispatch(i + 1));
      } catch (error) {
        return errorResponse(error);
      }
    };
    return dispatch(0);
  };
}
