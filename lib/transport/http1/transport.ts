// The transport interface: send one request to one backend, get a Response.
// The proxy pipeline does not know which transport it talks to.

import type { BackendAddress } from "../config/types.ts";
import type { Fields } from "../proxy/headers.ts";
import type { StallOptions } from "./stall.ts";

/** A request as the pipeline hands it to a transport. */
export interface UpstreamRequest extends StallOptions {
  readonly method: string;
  /** Origin-form target sent as is: path and query, e.g. `/a/b?x=1`. */
  readonly target: string;
  /** Final fields, lower-case names (hop-by-hop removed, forwarding set, Host as received). */
  readonly fields: Fields;
  /** Bytes, a stream (read once), or null. */
  readonly body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;
  /** Aborted when the client goes away or the request times out. */
  readonly signal: AbortSignal;
  /** Limit for establishing a connection (transports that cannot enforce it rely on `signal`). */
  readonly connectTimeoutMs: number;
  /**
   * Called exactly once when the exchange is over (the response body ended,
   * failed or was cancelled, or `send` rejected), with the body bytes the
   * client was given; `broke` says why, when the backend's body broke off
   * after its headers (closed early, malformed, silent past read_timeout), not
   * when the client left or stopped reading.
   */
  readonly onEnd: (bodyBytes: number, broke?: string) => void;
  /**
   * Called when the transport sends the request once more after its head went
   * out on a pooled connection the backend had closed (the keep-alive race): the
   * backend may have received it twice, and attempts are counted so.
   */
  readonly onResent?: () => void;
}

/** Why an upstream exchange failed. */
export type UpstreamFailure = "connect" | "reset" | "protocol" | "aborted";

/** Thrown by a transport; `kind` drives the status code and retry decisions. */
export class UpstreamError extends Error {
  readonly kind: UpstreamFailure;
  /**
   * A connect given up on that is still under way (see dial()): resolves once
   * its socket is closed. A pool keeps the connection's slot until then, so
   * its cap holds sockets, not only requests.
   */
  ending?: Promise<void>;
  constructor(kind: UpstreamFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UpstreamError";
    this.kind = kind;
  }
}

/** Sends requests to the backends of one pool over shared connections. */
export interface Transport {
  /**
   * Resolves with the backend's response once its headers arrived; the body
   * streams. The returned headers are mutable, hold only end-to-end fields,
   * and the body is what the client must receive. Rejects with UpstreamError.
   */
  send(backend: BackendAddress, request: UpstreamRequest): Promise<Response>;
  /**
   * Releases pooled connections once the pool is retired. Requests under way
   * finish, and a later `send()` still works: a request that a retired
   * generation routed may be sent after (its body was still arriving).
   */
  close(): void;
}

/**
 * The body of an answer without content: null, except for a HEAD answer
 * without Content-Length (its GET would be chunked or close-delimited), which
 * gets an empty stream: with null, `Deno.serve` writes `content-length: 0`, a
 * length the GET does not have (Deno 2.9.6); with a stream it writes none.
 */
export function headBody(status: number, hasLength: boolean): ReadableStream<Uint8Array> | null {
  if (hasLength || status < 200 || status === 204 || status === 205 || status === 304) return null;
  return new ReadableStream({ start: (controller) => controller.close() });
}
