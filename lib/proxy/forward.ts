// The proxy pipeline: request → pool → backend (→ another backend on a safe
// retry) → response. Failures become statuses in proxy/errors.ts only.

import type { Scheme } from "../config/types.ts";
import type { Deadline, Deadlines } from "./deadlines.ts";
import type { MatchRequest } from "../config/matcher.ts";
import type { Logger } from "../log.ts";
import type { Backend, Pool, Runtime } from "../runtime.ts";
import type { PickContext } from "../balance/strategy.ts";
import type { MiddlewareContext } from "../middleware/middleware.ts";
import { type Observers, RequestTracker } from "./tracker.ts";
import type { WebSocketRegistry } from "./websockets.ts";
import { plainIp } from "../net/address.ts";
import { peerKey } from "../net/activity.ts";
import { clientState, resetClient } from "../net/sockets.ts";
import { ClientBody, lengthMismatch } from "./client_body.ts";
import { UpstreamError } from "../transport/transport.ts";
import { loggable, matchingPath, removeDotSegments } from "./path.ts";
import {
  type ArrivalInfo,
  type ClientIdentity,
  type Fields,
  forwardedFields,
  identifyClient,
  validHost,
} from "./headers.ts";
import {
  type BadRequest,
  badRequest,
  classifyFailure,
  type Failure,
  failureResponse,
} from "./errors.ts";
import { mayRetry } from "./retry.ts";
import { concatBytes } from "../bytes.ts";
import { isWebSocketUpgrade, relayWebSocket } from "./websocket.ts";

/** What the proxy needs from its listener and the process. */
export interface ProxyOptions {
  /** The live config generation; read once per request. */
  readonly runtime: () => Runtime;
  readonly scheme: Scheme;
  readonly arrival: ArrivalInfo;
  /** The address the listener is bound to (an IP literal, maybe a wildcard). */
  readonly boundTo: string;
  readonly log: Logger;
  /** Metrics and the access log. */
  readonly observers: Observers;
  /** Open WebSockets (closed cleanly at shutdown). */
  readonly websockets: WebSocketRegistry;
}

/** Handles one proxied request; never throws. */
export type ProxyHandler = ((request: Request, remote: Deno.NetAddr) => Promise<Response>) & {
  /** Records a request its listener answered itself (see ConnectionHandler). */
  refused(request: Request, remote: Deno.NetAddr, response: Response): void;
};

/** A request split into the parts matchers and forwarding use. */
interface Target extends MatchRequest {
  /** Path and query exactly as forwarded. */
  readonly target: string;
  /**
   * An absolute-form target whose authority differs from the Host header:
   * ambiguous (which host is meant?), so refused with 400 (RFC 9112 3.2.2).
   */
  readonly conflict: boolean;
  /** A Host value that is no host (RFC 9112 3.2: 400; Deno refuses some, not all). */
  readonly invalidHost: boolean;
  /**
   * The client sent no Host (HTTP/1.0 allows that): `host` is "" then, so no
   * Host matcher matches (as in RustStrom), and the transport names the backend.
   */
  readonly missingHost: boolean;
  /** The authority came as HTTP/2's :authority, without a Host field. */
  readonly authorityOnly: boolean;
}

/** Creates the proxy handler for one listener. */
export function createProxy(options: ProxyOptions): ProxyHandler {
  const proxy = async (request: Request, remote: Deno.NetAddr) => {
    const tracker = new RequestTracker(options.observers, request, plainIp(remote.hostname));
    const response = await handle(request, remote, tracker);
    tracker.answered(response);
    return response;
  };
  const refused = (request: Request, remote: Deno.NetAddr, response: Response) => {
    const tracker = new RequestTracker(options.observers, request, plainIp(remote.hostname));
    tracked(request, tracker);
    identified(request, remote, tracker, options.runtime());
    tracker.answered(response);
  };
  return Object.assign(proxy, { refused });

  /** The request's target, with its path and protocol told to `tracker` for the access log. */
  function tracked(request: Request, tracker: RequestTracker): Target {
    const target = splitTarget(request, options.arrival);
    tracker.path = target.target;
    if (target.authorityOnly) tracker.protocol = "HTTP/2.0";
    return target;
  }

  /** The client as trusted proxies name it, told to `tracker` at once: every answer logs it. */
  function identified(
    request: Request,
    remote: Deno.NetAddr,
    tracker: RequestTracker,
    runtime: Runtime,
  ) {
    const client = identifyClient(
      remote.hostname,
      request.headers.get("x-forwarded-for"),
      runtime.config.trustedProxies,
    );
    tracker.identified(client.clientIp);
    return client;
  }

  async function handle(request: Request, remote: Deno.NetAddr, tracker: RequestTracker) {
    const runtime = options.runtime();
    const target = tracked(request, tracker);
    // First, so that Strom's own refusals (400, 404, 501) log the client trusted proxies name.
    const client = identified(request, remote, tracker, runtime);
    // CONNECT asks for a tunnel, which a reverse proxy does not open (RustStrom could crash on it).
    if (target.method === "CONNECT") return failureResponse("not-implemented");
    // Invalid first: Deno builds the URL from a Host such as `a/b`, which then differs from it.
    if (target.invalidHost) return refuse(options.log, target, "invalid-host");
    if (target.conflict) return refuse(options.log, target, "conflicting-host");
    // Methods are case-sensitive (RFC 9110 9.1), and a backend that takes `head` for HEAD would
    // send no body where Strom waits for one: refused, as nginx refuses them.
    if (LOWER_CASE.test(target.method)) return refuse(options.log, target, "lower-case-method");
    // A WebSocket handshake must carry Host (RFC 6455 4.1).
    if (target.missingHost && isWebSocketUpgrade(request)) {
      return refuse(options.log, target, "websocket-without-host");
    }
    // Deno takes repeated equal Content-Length fields as one; like nginx, Strom refuses them
    // (RFC 9112 6.3 allows either), so no backend ever has to decide.
    const length = request.headers.get("content-length");
    if (length !== null && !DIGITS.test(length)) {
      return refuse(options.log, target, "invalid-content-length");
    }
    const transferEncoding = request.headers.get("transfer-encoding");
    const chunked = transferEncoding !== null;
    // RFC 9112 6.1: a transfer coding Strom does not know gets 501 (Deno undoes only chunked;
    // `gzip, chunked` would go upstream with its gzip silently dropped).
    if (chunked && transferEncoding.trim().toLowerCase() !== "chunked") {
      return failureResponse("not-implemented");
    }
    const announced = (length !== null && length !== "0") || chunked;
    // Deno gives no GET or HEAD request its body (Request.body is null), so forwarding one would
    // announce a body that never follows and desynchronize the backend connection: refused.
    if (announced && (target.method === "GET" || target.method === "HEAD")) {
      return failureResponse("body-on-get");
    }
    const matchPath = matchingPath(target.path);
    if (matchPath === null) return refuse(options.log, target, "ambiguous-path");
    const pool = runtime.routerFor(options.scheme).select(
      matchPath === target.path ? target : { ...target, path: matchPath },
    );
    if (pool === null) return failureResponse("no-pool");
    tracker.pool = pool.config.name;
    const context: PickContext = {
      clientIp: client.clientIp,
      cookie: request.headers.get("cookie"),
      setCookie: null,
    };
    const middleware: MiddlewareContext = {
      request,
      scheme: options.scheme,
      clientIp: client.clientIp,
      peerTrusted: client.peerTrusted,
      method: target.method,
      host: target.host,
      path: target.path,
      matchPath,
      query: target.query,
      pool: pool.config.name,
      target: target.target,
      requestId: null,
      fields: forwardedFields(request.headers, client, { ...options.arrival, host: target.host }),
      // Deno gives some body-less HTTP/1.x requests (OPTIONS) an empty body stream; only
      // one that announces a body has one, so none is invented upstream. An HTTP/2 request
      // announces nothing: its body is forwarded as one of unknown length, unless it turns
      // out empty (a DELETE sent upstream chunked could not be retried any more).
      body: length !== null || chunked ? request.body : null,
    };
    // An h2c request whose :authority is `localhost:<port>` looks like an HTTP/1.x one without
    // Host (Deno makes the same URL of both): its body is looked into too, never dropped.
    const mayBeHttp2 = target.authorityOnly || (target.missingHost && !chunked);
    if (mayBeHttp2 && length === null && request.body !== null) {
      // A method that carries a body is streamed at once: a client may wait for the answer's
      // headers before it sends (bidirectional streaming). The others are looked into first.
      if (target.authorityOnly && BODY_METHODS.has(target.method)) middleware.body = request.body;
      else {
        const body = await nonEmpty(request.body, pool.deadlines, pool.config.requestTimeoutMs);
        if (body === "timeout") return failureResponse("request-timeout");
        middleware.body = body;
      }
    }
    const exchange = { target, client, context, options, middleware, tracker, remote };
    // A WebSocket upgrade runs the same chain; only the terminal differs.
    const terminal = isWebSocketUpgrade(request)
      ? () =>
        relayWebSocket(pool, request, {
          target: middleware.target,
          fields: middleware.fields,
          pick: context,
          tracker,
          log: options.log,
          metrics: options.observers.metrics,
          websockets: options.websockets,
          peer: peerKey(remote),
          clientState: () =>
            clientState(
              { hostname: options.boundTo, port: Number(options.arrival.port) },
              remote,
            ),
          stall: {
            stallTimeoutMs: runtime.config.sendTimeoutMs,
            onStall: () => resetStalled(exchange),
          },
        })
      : () => proxyToPool(pool, request, exchange);
    const response = await pool.chain(middleware, terminal);
    tracker.requestId = middleware.requestId;
    if (context.setCookie !== null) {
      for (const cookie of context.setCookie.split("\n")) {
        response.headers.append("set-cookie", cookie);
      }
    }
    return response;
  }
}

const DIGITS = /^\d+$/;
const LOWER_CASE = /[a-z]/;

/** Strom's 400 for a request it will not forward, with the reason also in the debug log. */
function refuse(log: Logger, target: Target, why: BadRequest): Response {
  log.debug(`Refused ${loggable(target.method)} ${loggable(target.target)} with 400: ${why}`);
  return badRequest(why);
}

/**
 * Splits `request.url` (raw target as received) into host, path and query. A
 * fragment (`#` is not allowed in a request target, RFC 9112 3.2) is dropped,
 * as nginx drops it: a backend's URL parser would take it off the path the
 * matchers saw (`/admin#x` is `/admin` there).
 */
function splitTarget(request: Request, arrival: ArrivalInfo): Target {
  let url = request.url;
  const authorityStart = url.indexOf("//") + 2;
  let pathStart = url.indexOf("/", authorityStart);
  // An absolute-form target may have a query or a fragment and no path (`http://a.com?x`,
  // RFC 3986 3.3): the authority ends there too.
  const bareQuery = url.indexOf("?", authorityStart);
  if (bareQuery >= 0 && (pathStart < 0 || bareQuery < pathStart)) pathStart = bareQuery;
  const bareFragment = url.indexOf("#", authorityStart);
  if (bareFragment >= 0 && (pathStart < 0 || bareFragment < pathStart)) pathStart = bareFragment;
  if (pathStart < 0) pathStart = url.length;
  const fragment = url.indexOf("#", pathStart);
  if (fragment >= 0) url = url.slice(0, fragment);
  const queryStart = url.indexOf("?", pathStart);
  const rawPath = url.slice(pathStart, queryStart < 0 ? url.length : queryStart) || "/";
  const path = removeDotSegments(rawPath);
  const query = queryStart < 0 ? "" : url.slice(queryStart + 1);
  const authority = url.slice(authorityStart, pathStart);
  const host = request.headers.get("host");
  // Without a Host field Deno makes the URL's authority up as `localhost:<port>` (no port when it
  // is the scheme's default). HTTP/2's :authority also arrives there without a Host field, and
  // HTTP/2 comes over TLS: only the plain HTTP listener takes that authority as made up.
  const missingHost = host === null && arrival.proto === "http" &&
    (authority === `localhost:${arrival.port}` ||
      (authority === "localhost" && arrival.port === "80"));
  const authorityOnly = host === null && !missingHost;
  // HTTP/2's :authority is held to Host's rules: Deno checks neither (`x@b.test`, `b.test:abc`).
  const named = host ?? (authorityOnly ? authority : "");
  const defaultPort = arrival.proto === "https" ? "443" : "80";
  return {
    method: request.method,
    host: host ?? (missingHost ? "" : authority),
    defaultPort,
    path,
    query,
    headers: request.headers,
    target: queryStart < 0 ? path : `${path}?${query}`,
    // Deno builds the URL from the Host header for origin-form targets, so they never differ.
    conflict: host !== null && host !== authority &&
      withoutPort(host, defaultPort) !== withoutPort(authority, defaultPort),
    // An empty Host names no host (RFC 9112 3.2 allows it only for targets without one).
    invalidHost: host === "" || (named !== "" && !validHost(named)),
    missingHost,
    authorityOnly,
  };
}

/**
 * An authority in lower case without the scheme's default port or an empty
 * one: `a.com:80`, `a.com:` and `A.com` name the same host (RFC 9110 4.2.3).
 */
function withoutPort(authority: string, defaultPort: string): string {
  const lower = authority.toLowerCase();
  if (lower.endsWith(":")) return lower.slice(0, -1);
  const suffix = `:${defaultPort}`;
  return lower.endsWith(suffix) ? lower.slice(0, -suffix.length) : lower;
}

interface Exchange {
  readonly target: Target;
  readonly client: ClientIdentity;
  readonly context: PickContext;
  readonly options: ProxyOptions;
  /** Fields and body as the middlewares left them. */
  readonly middleware: MiddlewareContext;
  readonly tracker: RequestTracker;
  /** The client's end of its connection. */
  readonly remote: Deno.NetAddr;
}

/** A failed attempt: what it means for the client, and whether it may go elsewhere. */
interface AttemptFailure {
  readonly failure: Failure;
  readonly retryable: boolean;
  readonly reason: string;
}

/**
 * How long a request waits for its answer before Strom watches for its client
 * going away. Reading `request.signal` makes Deno start an async op for that
 * request (op_http_request_on_cancel); most answers come sooner, so they never
 * pay for it. An HTTP/1.x client gone before then is seen when the watch starts:
 * the abort event still comes (checked on Deno 2.9.6 with --unstable-no-legacy-abort).
 * Not an HTTP/2 stream reset before the signal is first read: its signal never
 * aborts (a probe: streams reset within 20 ms kept their backends busy for their
 * whole answer, logged as 200). So an HTTP/2 request (`:authority` and no Host,
 * as HTTP/2 clients send them; h2 over TLS or h2c) is watched from the start.
 * Not every request on the HTTPS port: HTTP/1.1 over TLS does not need it.
 */
const WATCH_CLIENT_AFTER_MS = 20;

const NOT_LATER: Deadline = { cancel() {} };

/** The request's overall deadline (`request_timeout`) and the client going away. */
class RequestDeadline {
  readonly controller = new AbortController();
  timedOut = false;
  #deadline: Deadline;
  readonly #watchLater: Deadline;
  readonly #request: Request;
  readonly #timeoutMs: number;
  readonly #deadlines: Deadlines;
  #watching = false;
  #disposed = false;
  readonly #onClientGone = () => this.controller.abort();
  readonly #onTimeout = () => {
    this.timedOut = true;
    this.controller.abort();
  };

  constructor(timeoutMs: number, request: Request, deadlines: Deadlines, watchNow: boolean) {
    this.#request = request;
    this.#timeoutMs = timeoutMs;
    this.#deadlines = deadlines;
    this.#deadline = deadlines.set(timeoutMs, this.#onTimeout);
    this.#watchLater = watchNow
      ? NOT_LATER
      : deadlines.set(WATCH_CLIENT_AFTER_MS, () => this.#watchClient());
    if (watchNow) this.#watchClient();
  }

  #watchClient(): void {
    const signal = this.#request.signal;
    if (signal.aborted) return this.controller.abort();
    this.#watching = true;
    signal.addEventListener("abort", this.#onClientGone);
  }

  /**
   * Starts the wait anew: a streamed upload's bytes moved (the client sent more, and the backend
   * took it). So request_timeout bounds a stall of the upload, not its length, and then the
   * wait for the answer after its last bytes, as nginx's client_body_timeout and
   * proxy_send_timeout bound pauses between reads and writes.
   */
  extend(): void {
    if (this.timedOut || this.#disposed) return;
    this.#deadline.cancel();
    this.#deadline = this.#deadlines.set(this.#timeoutMs, this.#onTimeout);
  }

  /** Disarms it once response headers arrived (bodies may stream longer). */
  dispose(): void {
    this.#disposed = true;
    this.#deadline.cancel();
    this.#watchLater.cancel();
    if (this.#watching) this.#request.signal.removeEventListener("abort", this.#onClientGone);
  }
}

/**
 * Ends the connection of a client that read nothing of its answer for
 * `send_timeout`. The body failed, but the runtime keeps the connection while
 * it waits to flush what the client does not read: reset it (as nginx's
 * `reset_timedout_connection`), or it stays as long as the client wants.
 */
function resetStalled({ options, remote }: Exchange): void {
  resetClient(new Set([Number(options.arrival.port)]), peerKey(remote)).then((reset) => {
    if (!reset) {
      options.log.debug(`Could not reset the stalled connection of ${peerKey(remote)}`);
    }
  }, (e) => options.log.debug(`Resetting the connection of ${peerKey(remote)} failed: ${e}`));
}

async function proxyToPool(pool: Pool, request: Request, exchange: Exchange): Promise<Response> {
  const { options, target } = exchange;
  pool.retryBudget.recordRequest();
  let candidates = pool.available();
  // A client bound to a drained backend that keeps its sticky clients goes there first.
  let bound = pool.stickyBound(exchange.context);
  if (candidates.length === 0 && bound === null) {
    pool.noBackendLine.say(
      (message) => options.log.warn(message),
      `No backend available in pool ${pool.config.name} for ${target.method} ${
        loggable(target.path)
      }`,
    );
    return failureResponse("no-backend");
  }
  const { fields } = exchange.middleware;
  // The deadline starts before a small body is read in: a client that stalls
  // inside it is cut off at request_timeout like any other slow request.
  const deadline = new RequestDeadline(
    pool.config.requestTimeoutMs,
    request,
    pool.deadlines,
    target.authorityOnly,
  );
  let tried: Backend[] | null = null;
  try {
    let body: Body = null;
    if (exchange.middleware.body !== null) {
      try {
        body = await replayableBody(exchange.middleware.body, fields, deadline.controller.signal);
        if (body instanceof ClientBody) body.onProgress = () => deadline.extend();
      } catch {
        if (deadline.timedOut) {
          options.log.info(
            `Request body of ${target.method} ${
              loggable(target.path)
            } not received within ${pool.config.requestTimeoutMs} ms`,
          );
          return failureResponse("request-timeout");
        }
        return request.signal.aborted
          ? failureResponse("client-gone")
          : badRequest("unreadable-body");
      }
    }
    for (let attempt = 0;; attempt++) {
      exchange.context.retry = attempt > 0;
      const backend = bound ?? pool.strategy.pick(candidates, exchange.context);
      bound = null;
      const outcome = await attemptOnce(pool, backend, request, {
        fields,
        body,
        deadline,
        exchange,
      });
      if (outcome instanceof Response) return outcome;
      if (exchange.middleware.bodyError) throw exchange.middleware.bodyError; // the client's (issue #6)
      const where = `${target.method} ${
        loggable(target.path)
      } to backend ${backend.id} in pool ${pool.config.name}`;
      if (outcome.failure === "client-gone") {
        options.log.debug(`Client went away during ${where}`);
        return failureResponse(outcome.failure);
      }
      if (body instanceof ClientBody && outcome.failure === "timeout" && body.waitingForClient) {
        // request_timeout ran out while the upload waited for the client's next bytes: the
        // client is the slow party (408), not the backend.
        options.log.info(
          `Request body of ${where} not received within ${pool.config.requestTimeoutMs} ms`,
        );
        return failureResponse("request-timeout");
      }
      if (body instanceof ClientBody && body.failure !== null) {
        // The upload broke on the client's side (it went away, or its body was malformed):
        // neither the backend's failure nor worth another attempt.
        options.log.debug(`The client's body broke off during ${where}: ${body.failure}`);
        return request.signal.aborted
          ? failureResponse("client-gone")
          : badRequest("unreadable-body");
      }
      pool.reportOutcome(backend, true, outcome.reason);
      // Latency-aware strategies see a failure as an answer as slow as connect_timeout: a
      // backend that fails fast must not look like the fastest one.
      pool.strategy.observe?.(backend.id, pool.config.connectTimeoutMs);
      (tried ??= []).push(backend);
      const retry = outcome.retryable && attempt < pool.config.retries && canReplay(body);
      if (retry) candidates = pool.retryCandidates(tried!);
      if (!retry || candidates.length === 0 || !pool.retryBudget.tryRetry()) {
        options.log.warn(`Failed ${where}: ${loggable(outcome.reason)}`);
        exchange.tracker.timedOut = outcome.failure === "timeout";
        return failureResponse(outcome.failure);
      }
      options.log.info(`Retrying ${where} elsewhere after: ${loggable(outcome.reason)}`);
      options.observers.metrics.retried(pool.config.name);
    }
  } finally {
    deadline.dispose();
  }
}

/** Methods whose requests normally carry a body. */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

/**
 * `body`, or null when it ends without a byte: its first chunk is waited for
 * (an HTTP/2 request without a body has ended its stream already), up to
 * `timeoutMs` ("timeout": the client sent nothing that long).
 */
async function nonEmpty(
  body: ReadableStream<Uint8Array>,
  deadlines: Deadlines,
  timeoutMs: number,
): Promise<ReadableStream<Uint8Array> | null | "timeout"> {
  const reader = body.getReader();
  let first: ReadableStreamReadResult<Uint8Array> | "timeout";
  let deadline: Deadline | undefined;
  const late = new Promise<"timeout">((resolve) =>
    deadline = deadlines.set(timeoutMs, () => resolve("timeout"))
  );
  try {
    do first = await Promise.race([reader.read(), late]); while (
      first !== "timeout" && !first.done && first.value.length === 0
    );
  } catch {
    first = { done: false, value: new Uint8Array(0) }; // the failure shows when it is read on
  } finally {
    deadline?.cancel();
  }
  if (first === "timeout") {
    reader.cancel().catch(() => {});
    return "timeout";
  }
  if (first.done) return null;
  let pending: Uint8Array | null = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== null) {
        const chunk = pending;
        pending = null;
        if (chunk.length > 0) return controller.enqueue(chunk);
      }
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/** A request body as attempts send it: bytes when small enough to keep, else the client's stream. */
type Body = Uint8Array<ArrayBuffer> | ClientBody | null;

/** Small bodies of known length are read once, so any attempt can send them again. */
const BUFFER_LIMIT = 64 * 1024;

async function replayableBody(
  body: ReadableStream<Uint8Array>,
  fields: Fields,
  signal: AbortSignal,
): Promise<Body> {
  const field = fields.find(([name]) => name === "content-length")?.[1];
  const length = field === undefined ? null : Number(field);
  return length !== null && length <= BUFFER_LIMIT
    ? await readAll(body, signal, length)
    : new ClientBody(body, length);
}

/**
 * The whole of `body`, which must be `declared` bytes long (see ClientBody);
 * rejects (and cancels it) when `signal` aborts first.
 */
async function readAll(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  declared: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const reader = body.getReader();
  const stop = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", stop);
  try {
    const parts: Uint8Array[] = [];
    let received = 0;
    while (true) {
      const { done, value } = await reader.read();
      if (signal.aborted) throw new Error("aborted while reading the request body");
      if (!done) received += value.length;
      const mismatch = lengthMismatch(received, declared, done);
      if (mismatch !== null) {
        reader.cancel().catch(() => {});
        throw mismatch;
      }
      if (done) return concatBytes(parts);
      parts.push(value);
    }
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

/**
 * Whether another attempt can send the body: bytes always; a stream only if no
 * attempt has read from it yet (a transport that failed to connect never reads it).
 * (A stream an attempt read from and gave up is unlocked again: `locked` is no guide.)
 */
function canReplay(body: Body): boolean {
  return !(body instanceof ClientBody) || body.replayable;
}

async function attemptOnce(
  pool: Pool,
  backend: Backend,
  request: Request,
  { fields, body, deadline, exchange }: {
    fields: Fields;
    body: Body;
    deadline: RequestDeadline;
    exchange: Exchange;
  },
): Promise<Response | AttemptFailure> {
  backend.inFlight++;
  backend.requests++;
  const { tracker } = exchange;
  tracker.attempt(backend.id);
  if (body instanceof ClientBody) tracker.inBody = body;
  else tracker.bytesIn = body?.length ?? 0;
  const started = performance.now();
  let finished = false;
  let responded = false;
  let endedWith = -1;
  /** A 5xx that outlier detection counts (`count_5xx`). */
  let failedStatus = 0;
  /** Why the answer's body broke off after its headers, if it did. */
  let broken: string | undefined;
  // The outcome is told once the answer is over: a body that broke off after its headers is the
  // backend's failure, as a refused connect is (told at the headers, the success would have
  // reset the count of failures in a row each time: never an ejection).
  const tellOutcome = () => {
    const reason = broken !== undefined
      ? `answer body broke off: ${broken}`
      : failedStatus !== 0
      ? `status ${failedStatus}`
      : "";
    pool.reportOutcome(backend, reason !== "", reason);
  };
  const finish = (bytes: number, broke?: string) => {
    if (finished) return;
    finished = true;
    backend.inFlight--;
    broken = broke;
    // An attempt that read from the body ends the upload with it (no other may send it).
    if (body instanceof ClientBody && body.touched) body.abandon();
    if (!responded) endedWith = bytes;
    else {
      tracker.ended(bytes);
      tellOutcome();
    }
  };
  try {
    const response = await pool.transport.send(backend.address, {
      method: request.method,
      target: exchange.middleware.target,
      fields,
      body: body instanceof ClientBody ? body.stream : body,
      signal: deadline.controller.signal,
      connectTimeoutMs: pool.config.connectTimeoutMs,
      stallTimeoutMs: exchange.options.runtime().config.sendTimeoutMs,
      readTimeoutMs: pool.config.readTimeoutMs,
      onStall: () => resetStalled(exchange),
      onEnd: finish,
      onResent: () => {
        backend.requests++;
        tracker.attempt(backend.id);
      },
    });
    responded = true;
    tracker.backend = backend.id;
    tracker.backendAnswer = response;
    const tookMs = performance.now() - started;
    exchange.options.observers.metrics.backendAnswered(backend.id, tookMs / 1000);
    // A backend that answers every request at once with 500 must not look fastest.
    pool.strategy.observe?.(backend.id, tookMs, response.status >= 500);
    if (pool.config.outlier.count5xx && response.status >= 500) failedStatus = response.status;
    if (endedWith >= 0) {
      tracker.ended(endedWith);
      tellOutcome();
    }
    return response;
  } catch (error) {
    finish(0);
    const failure = classifyFailure(error, {
      timedOut: deadline.timedOut,
      clientGone: request.signal.aborted,
    });
    const kind = error instanceof UpstreamError ? error.kind : "protocol";
    return {
      failure,
      retryable: failure !== "timeout" && mayRetry(kind, request.method, canReplay(body)),
      reason: deadline.timedOut
        ? `timed out after ${pool.config.requestTimeoutMs} ms`
        : error instanceof Error
        ? error.message
        : String(error),
    };
  }
}
