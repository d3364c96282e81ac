// Follows one request to its end for metrics and the access log: the answer's
// status when headers are ready, the body bytes when the body is done.

import { type AccessLog, basicUser } from "../access_log.ts";
import type { TrafficMetrics } from "../metrics/metrics.ts";
import { streamedBytesOf } from "../middleware/middleware.ts";

/** Where finished requests are reported. */
export interface Observers {
  readonly metrics: TrafficMetrics;
  /** The access log, or null when off. */
  readonly accessLog: () => AccessLog | null;
}

/** One request's progress; created when it arrives. */
export class RequestTracker {
  readonly #observers: Observers;
  readonly #request: Request;
  /** The peer, until the client is identified through `trusted_proxies`. */
  #client: string;
  readonly #started = performance.now();
  readonly #time = new Date();
  status = 0;
  pool: string | null = null;
  /** The backend whose answer the client gets (null: Strom's own answer). */
  backend: string | null = null;
  /**
   * The backend's answer as the transport made it: its body's bytes are the transport's count
   * (`ended`). A middleware may answer with another one instead (Compression, CustomErrorPages).
   */
  backendAnswer: Response | null = null;
  /** The backend of the last attempt, answered or not (the access log's `backend`, as nginx's $upstream_addr). */
  #tried: string | null = null;
  #attempts = 0;
  path = "";
  /**
   * As the access log writes it. Deno does not say which HTTP version a request
   * came in; one with `:authority` and no Host is HTTP/2 (HTTP/1.1 requires Host).
   */
  protocol: "HTTP/1.1" | "HTTP/2.0" = "HTTP/1.1";
  requestId: string | null = null;
  /** Strom gave up waiting for the backend (request_timeout): its own 504, not a backend's. */
  timedOut = false;
  bytesIn = 0;
  /** A streamed request body, whose bytes so far are `bytesIn` at the end (null: use `bytesIn`). */
  inBody: { readonly bytes: number } | null = null;
  #bytesOut = 0;
  /** The bytes of the backend's body the transport handed out, once it is done (-1: not yet). */
  #backendBytes = -1;
  /** Whether the client gets the backend's answer as the transport made it. */
  #passedOn = false;
  #answered = false;
  #ended = false;
  /** Referer, User-Agent and Authorization copied by keepHeaders(), or null to read them at the end. */
  #kept: { referer: string | null; userAgent: string | null; authorization: string | null } | null =
    null;

  constructor(observers: Observers, request: Request, client: string) {
    this.#observers = observers;
    this.#request = request;
    this.#client = client;
    observers.metrics.requestStarted();
  }

  /** An attempt at `backend` (its id) begins. */
  attempt(backend: string): void {
    this.#attempts++;
    this.#tried = backend;
  }

  /** The client as `trusted_proxies` identify it (the access log's `client`, as nginx's realip). */
  identified(clientIp: string): void {
    this.#client = clientIp;
  }

  /**
   * Copies what the access log reads from the request now: a WebSocket upgrade
   * consumes the request, and its headers throw afterwards.
   */
  keepHeaders(): void {
    const headers = this.#request.headers;
    this.#kept = {
      referer: headers.get("referer"),
      userAgent: headers.get("user-agent"),
      authorization: headers.get("authorization"),
    };
  }

  /** The response headers are ready. */
  answered(response: Response): void {
    if (this.#answered) return;
    this.#answered = true;
    this.status = response.status;
    const seconds = (performance.now() - this.#started) / 1000;
    this.#observers.metrics.requestAnswered(
      this.status,
      this.pool === null ? null : seconds,
      this.timedOut,
    );
    // The bytes that go to the client: the transport's count of the backend's body when that
    // is what the client gets; else those of the answer Strom or a middleware made.
    // (Never touch response.body here: that would turn a byte body into a stream.)
    if (this.backend !== null && response === this.backendAnswer) {
      this.#passedOn = true;
      if (this.#backendBytes >= 0) this.#end(this.#backendBytes);
      return;
    }
    // A HEAD answer announces its length but sends no body; a client gone (499) gets nothing.
    if (this.#request.method === "HEAD" || this.status === 499) return this.#end(0);
    const streamed = streamedBytesOf(response);
    if (streamed !== undefined) return streamed.whenEnded((bytes) => this.#end(bytes));
    this.#end(Number(response.headers.get("content-length") ?? 0) || 0);
  }

  /**
   * The backend's body is done (or was abandoned) after `bytes` bytes: the count when the
   * client gets that body.
   */
  ended(bytes: number): void {
    if (this.#backendBytes >= 0) return;
    this.#backendBytes = bytes;
    if (this.#passedOn) this.#end(bytes);
  }

  #end(bytes: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#bytesOut = bytes;
    this.#finish();
  }

  #finish(): void {
    if (!this.#answered || !this.#ended) return;
    const { metrics } = this.#observers;
    if (this.inBody !== null) this.bytesIn = this.inBody.bytes;
    metrics.bytesIn(this.bytesIn);
    metrics.bytesOut(this.#bytesOut);
    const log = this.#observers.accessLog();
    if (log === null) return;
    const kept = this.#kept ?? {
      referer: this.#request.headers.get("referer"),
      userAgent: this.#request.headers.get("user-agent"),
      authorization: this.#request.headers.get("authorization"),
    };
    log.write({
      time: this.#time,
      client: this.#client,
      method: this.#request.method,
      path: this.path,
      protocol: this.protocol,
      status: this.status,
      bytesIn: this.bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: performance.now() - this.#started,
      pool: this.pool,
      backend: this.backend ?? this.#tried,
      attempts: this.#attempts,
      referer: kept.referer,
      userAgent: kept.userAgent,
      user: basicUser(kept.authorization),
      requestId: this.requestId,
    });
  }
}
