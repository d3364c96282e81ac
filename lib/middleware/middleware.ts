// The middleware interface: an onion around the backend call, in file order
// (first listed is outermost), like Hono's. Factories validate and compile
// their options once, at config time; per request there is no parsing.

import type { Scheme } from "../config/types.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Fields } from "../proxy/headers.ts";
import type { TableReader } from "../config/fields.ts";
import { REASONS } from "../reasons.ts";

/** What a middleware sees of one request, and may change on its way upstream. */
export interface MiddlewareContext {
  /** The client's request (read its headers here; the body is in `body`). */
  readonly request: Request;
  readonly scheme: Scheme;
  /** Client IP after `trusted_proxies`. */
  readonly clientIp: string;
  /** Whether the TCP peer is in `trusted_proxies` (its forwarding headers are believed). */
  readonly peerTrusted: boolean;
  readonly method: string;
  /** Host as received ("" when absent). */
  readonly host: string;
  /** Path after dot-segment removal, raw percent-encoding. */
  readonly path: string;
  /**
   * The path the matchers chose the pool by (lib/proxy/path.ts, matchingPath):
   * percent-decoded, repeated slashes merged, dot-segments resolved. A check
   * on the path must use it, or `/%61pi` and `//api` slip past one for `/api`.
   */
  readonly matchPath: string;
  /** Raw query without "?"; "" when none. */
  readonly query: string;
  /** Name of the pool handling it. */
  readonly pool: string;
  /**
   * Path and query sent upstream: `path`, then `?query` when there is one.
   * Middlewares may rewrite it (StripPrefix); matching already happened.
   */
  target: string;
  /** The request's ID when a RequestId middleware gave it one (the access log records it). */
  requestId: string | null;
  /** Fields sent upstream (lower-case names); middlewares may edit the list. */
  fields: Fields;
  /** Body sent upstream; middlewares may wrap it (e.g. to count bytes). */
  body: ReadableStream<Uint8Array> | null;
  /**
   * Set by a middleware that cut the upstream body off (MaxBodySize): a failed
   * attempt is then the client's doing, answered with this error, and neither
   * retried nor counted against the backend.
   */
  bodyError?: HttpError;
}

/** Runs the rest of the chain (and finally the backend call). */
export type Next = () => Promise<Response>;

/** One middleware: answer early (or throw HttpError), or call `next` and adjust its response. */
export type Middleware = (context: MiddlewareContext, next: Next) => Promise<Response>;

/** A middleware with resources (connections, timers) to release when its generation ends. */
export type ClosableMiddleware = Middleware & { close?: () => Promise<void> };

/** What option parsing may read besides the table: where relative paths resolve. */
export interface ParseContext {
  /** Folder of the config file. */
  readonly baseDir: string;
  /** Records a non-fatal remark about the value at `path` (a load warning). */
  readonly warn?: (path: string, message: string) => void;
}

/**
 * One middleware: `parse` validates its options at config load (problems go to
 * the reader, with their paths) and `create` builds the handler at runtime.
 */
export interface MiddlewareSpec<Options = Record<string, unknown>> {
  /** The config name, as in `[backend_pools.middlewares.<name>]`. */
  readonly name: string;
  parse(reader: TableReader, context: ParseContext): Options;
  create(options: Options, deps: MiddlewareDeps): ClosableMiddleware | Promise<ClosableMiddleware>;
}

/** Effects and facts a middleware factory may use. */
export interface MiddlewareDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** Folder of the config file (relative paths resolve against it). */
  readonly baseDir: string;
  /**
   * The port Strom's HTTPS listener is bound to now, or null when there is none:
   * after a reload that could not move it, still the old one.
   */
  readonly httpsPort: () => number | null;
  /** A new unique request ID (a random UUID outside tests). */
  readonly newId: () => string;
  /** Counts a request a middleware refused for rate limiting (metrics). */
  readonly onRateLimited?: (pool: string) => void;
}

/** `<status> - <reason>`, the body of an answer Strom makes up for a status. */
export function statusText(status: number): string {
  return `${status} - ${REASONS[status] ?? "Error"}`;
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
export interface Chain {
  (context: MiddlewareContext, terminal: Next): Promise<Response>;
  /** Releases the middlewares' resources (Redis and LDAP connections); never rejects. */
  close(): Promise<void>;
}

/** Composes middlewares in order; `errorResponse` turns a throw into a response. */
export function compose(
  middlewares: readonly ClosableMiddleware[],
  errorResponse: (error: unknown) => Response,
): Chain {
  const close = async () => {
    await Promise.allSettled(middlewares.map((m) => m.close?.()));
  };
  if (middlewares.length === 0) return Object.assign((_c: unknown, t: Next) => t(), { close });
  const run = (context: MiddlewareContext, terminal: Next) => {
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
  return Object.assign(run, { close });
}

/**
 * The bytes of a body a middleware streams in place of the backend's (Compression's), counted as
 * they are handed out, for the access log's `bytes_out` and `strom_bytes_transferred_total`.
 * Bodies that come whole are counted from their Content-Length instead.
 */
export class StreamedBytes {
  bytes = 0;
  #ended = false;
  #onEnd: ((bytes: number) => void) | null = null;

  /** The body is done: it ended, failed or was cancelled. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const onEnd = this.#onEnd;
    this.#onEnd = null;
    onEnd?.(this.bytes);
  }

  /** Calls `onEnd` with the count once the body is done (at once if it is). */
  whenEnded(onEnd: (bytes: number) => void): void {
    if (this.#ended) onEnd(this.bytes);
    else this.#onEnd = onEnd;
  }
}

const streamedBytes = new WeakMap<Response, StreamedBytes>();

/** Marks `response` as one whose body `count` counts; returns it. */
export function withStreamedBytes(response: Response, count: StreamedBytes): Response {
  streamedBytes.set(response, count);
  return response;
}

/** The count of a body made by a middleware (withStreamedBytes), if it is one. */
export function streamedBytesOf(response: Response): StreamedBytes | undefined {
  return streamedBytes.get(response);
}
