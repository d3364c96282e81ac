// WebSocket upgrades (issue #7): balanced like any request, then Strom makes
// the opening handshake with the chosen backend itself over a dedicated TCP (or
// TLS) connection, and only after the backend's 101 upgrades the client. A
// backend that refuses gets its answer passed through. The open relay is in
// ws_relay.ts, the backend leg's framing in ws_frames.ts.

import type { Logger } from "../log.ts";
import type { TrafficMetrics } from "../metrics/metrics.ts";
import type { Backend, Pool } from "../runtime.ts";
import type { PickContext } from "../balance/strategy.ts";
import type { Connection } from "../transport/http1/connection.ts";
import type { ResponseHead } from "../transport/http1/parse.ts";
import type { StallOptions } from "../transport/stall.ts";
import { badRequest, classifyFailure, type Failure, failureResponse } from "./errors.ts";
import type { Fields } from "./headers.ts";
import type { RequestTracker } from "./tracker.ts";
import type { WebSocketRegistry } from "./websockets.ts";
import { loggable } from "./path.ts";
import { startRelay } from "./ws_relay.ts";
import { isolateActivity } from "../net/activity.ts";
import { type ClientState, tcpProgress } from "../net/sockets.ts";
import { checkAnswer, connect, handshakeHead } from "./ws_handshake.ts";

/** What the pipeline hands the WebSocket relay. */
export interface WebSocketExchange {
  /** Path and query as forwarded. */
  readonly target: string;
  /** The fields for the backend as the middlewares left them (hop-by-hop already removed). */
  readonly fields: Fields;
  /** The strategy's view of the client (IP, sticky cookie). */
  readonly pick: PickContext;
  readonly tracker: RequestTracker;
  readonly log: Logger;
  readonly metrics: TrafficMetrics;
  readonly websockets: WebSocketRegistry;
  /** The client's connection (lib/net/activity.ts): held busy while the WebSocket is open. */
  readonly peer: string;
  /** Whether the client is still connected, as the kernel says (lib/net/sockets.ts). */
  readonly clientState: () => Promise<ClientState>;
  /**
   * `send_timeout` and what ends a stalled client's connection, for the body of
   * an answer that refuses the upgrade (the pool's `read_timeout` applies too).
   */
  readonly stall: Pick<StallOptions, "stallTimeoutMs" | "onStall">;
}

/** Whether a request asks for a WebSocket (RFC 6455 4.1: GET, `Upgrade: websocket`, `Connection: upgrade`). */
export function isWebSocketUpgrade(request: Request): boolean {
  if (request.method !== "GET") return false;
  const upgrade = request.headers.get("upgrade");
  return upgrade !== null && hasToken(upgrade, "websocket") &&
    hasToken(request.headers.get("connection") ?? "", "upgrade");
}

function hasToken(list: string, token: string): boolean {
  return list.split(",").some((t) => t.trim().toLowerCase() === token);
}

/** The backend's 101 fields Strom checks itself; the others reach the client (cookies...). */
const HANDSHAKE_ANSWER = new Set([
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
]);

/**
 * Relays a WebSocket upgrade to a backend of `pool` and answers the client:
 * the upgrade (101) once the backend agreed, the backend's own answer when it
 * refused, or Strom's 400/502/503/504. Connect failures go to another backend
 * like HTTP retries; each attempt counts as a backend request.
 */
export async function relayWebSocket(
  pool: Pool,
  request: Request,
  exchange: WebSocketExchange,
): Promise<Response> {
  const key = request.headers.get("sec-websocket-key");
  const version = request.headers.get("sec-websocket-version");
  if (key === null || !/^[A-Za-z0-9+/]{22}==$/.test(key.trim()) || version?.trim() !== "13") {
    // RFC 6455 4.2.2 and 4.4: a malformed handshake or another version.
    exchange.log.debug("Refused a WebSocket handshake with 400: websocket-handshake");
    const response = badRequest("websocket-handshake");
    response.headers.set("sec-websocket-version", "13");
    return response;
  }
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",")
    .map((p) => p.trim()).filter((p) => p !== "");
  exchange.tracker.keepHeaders();
  pool.retryBudget.recordRequest();
  let candidates = pool.available();
  let bound = pool.stickyBound(exchange.pick);
  if (candidates.length === 0 && bound === null) {
    exchange.log.warn(`No backend available in pool ${pool.config.name} for a WebSocket`);
    return failureResponse("no-backend");
  }
  const head = handshakeHead(exchange.target, exchange.fields, key.trim());
  const tried: Backend[] = [];
  for (let attempt = 0;; attempt++) {
    // A retry's pick must not move a strategy's turn (see round_robin.ts), as in forward.ts.
    exchange.pick.retry = attempt > 0;
    const backend = bound ?? pool.strategy.pick(candidates, exchange.pick);
    bound = null;
    const outcome = await attemptUpgrade(pool, backend, request, { head, key, offered, exchange });
    if (outcome instanceof Response) return outcome;
    const where = `WebSocket ${
      loggable(exchange.target)
    } to backend ${backend.id} in pool ${pool.config.name}`;
    if (outcome.failure === "client-gone") {
      exchange.log.debug(`Client went away during ${where}`);
      return failureResponse("client-gone");
    }
    pool.reportOutcome(backend, true, outcome.reason);
    tried.push(backend);
    // Only a failed connect is retried: nothing reached the backend then.
    const retry = outcome.failure === "connect" && attempt < pool.config.retries;
    if (retry) candidates = pool.retryCandidates(tried);
    if (!retry || candidates.length === 0 || !pool.retryBudget.tryRetry()) {
      exchange.log.warn(`Failed ${where}: ${loggable(outcome.reason)}`);
      exchange.tracker.timedOut = outcome.failure === "timeout";
      return failureResponse(outcome.failure);
    }
    exchange.log.info(`Retrying ${where} elsewhere after: ${loggable(outcome.reason)}`);
    exchange.metrics.retried(pool.config.name);
  }
}

interface AttemptFailure {
  readonly failure: Failure;
  readonly reason: string;
}

/** One backend: connect, send the handshake, read the answer; upgrade the client on 101. */
async function attemptUpgrade(
  pool: Pool,
  backend: Backend,
  request: Request,
  { head, key, offered, exchange }: {
    head: Uint8Array;
    key: string;
    offered: string[];
    exchange: WebSocketExchange;
  },
): Promise<Response | AttemptFailure> {
  const { tracker } = exchange;
  backend.inFlight++;
  backend.requests++;
  tracker.attempt(backend.id);
  let inFlight = true;
  const settle = () => {
    if (inFlight) backend.inFlight--;
    inFlight = false;
  };
  const started = performance.now();
  // The handshake's answer is awaited for request_timeout, like an HTTP answer.
  const abort = new AbortController();
  let timedOut = false;
  let conn: Connection | null = null;
  const stop = () => {
    abort.abort();
    conn?.close();
  };
  const deadline = pool.deadlines.set(pool.config.requestTimeoutMs, () => {
    timedOut = true;
    stop();
  });
  request.signal.addEventListener("abort", stop);
  let answer: ResponseHead;
  try {
    conn = await connect(backend.address, pool, abort.signal);
    if (abort.signal.aborted) conn.close();
    await conn.write(head);
    answer = await conn.readHead("GET");
    if (answer.status === 101) await checkAnswer(answer, key, offered);
  } catch (error) {
    conn?.close();
    settle();
    const failure = classifyFailure(error, {
      timedOut,
      clientGone: request.signal.aborted && !timedOut,
    });
    const reason = timedOut
      ? `no handshake answer within ${pool.config.requestTimeoutMs} ms`
      : error instanceof Error
      ? error.message
      : String(error);
    return { failure, reason };
  } finally {
    deadline.cancel();
    // Also before upgrading: the upgrade aborts the request's signal.
    request.signal.removeEventListener("abort", stop);
  }
  tracker.backend = backend.id;
  exchange.metrics.backendAnswered(backend.id, (performance.now() - started) / 1000);
  pool.reportOutcome(backend, pool.config.outlier.count5xx && answer.status >= 500, "");
  if (answer.status !== 101) {
    const stall = { ...exchange.stall, readTimeoutMs: pool.config.readTimeoutMs };
    // A body that breaks off after the headers is the backend's failure, as for other answers.
    const broke = (why: string) =>
      pool.reportOutcome(backend, true, `answer body broke off: ${why}`);
    return passThrough(conn, answer, settle, tracker, { ...stall, broke });
  }
  // Deno 2.9.6 keeps the connection of a client that left while Strom waited for the backend
  // open for good once upgraded (its request signal never fires for an upgrade, and the
  // WebSocket never opens): the kernel is asked first (Linux; one lookup of that connection).
  if ((await exchange.clientState()) === "gone") {
    conn.close();
    settle();
    return { failure: "client-gone", reason: "the client left before its upgrade" };
  }
  return upgradeClient(request, { pool, backend, conn, answer, exchange, settle });
}

/** The backend agreed: the client is upgraded with its subprotocol and the relay starts. */
function upgradeClient(
  request: Request,
  { pool, backend, conn, answer, exchange, settle }: {
    pool: Pool;
    backend: Backend;
    conn: Connection;
    answer: ResponseHead;
    exchange: WebSocketExchange;
    settle: () => void;
  },
): Response {
  const { tracker } = exchange;
  const protocol = answer.fields.find(([name]) => name === "sec-websocket-protocol")?.[1];
  let upgraded: { socket: WebSocket; response: Response };
  try {
    upgraded = Deno.upgradeWebSocket(request, protocol ? { protocol } : {});
  } catch (error) {
    conn.close();
    settle();
    exchange.log.debug(`Could not upgrade the client's WebSocket: ${String(error)}`);
    tracker.ended(0);
    return badRequest("websocket-handshake");
  }
  // The backend stays in flight while the socket is open: LeastConnection and friends weigh
  // open WebSockets, and a drained backend shows how many it still carries.
  for (const [name, value] of answer.fields) {
    if (!HANDSHAKE_ANSWER.has(name)) upgraded.response.headers.append(name, value);
  }
  // An open WebSocket may be quiet for long: the client timeouts must leave it be.
  const held = isolateActivity.hold(exchange.peer);
  startRelay({
    socket: upgraded.socket,
    backend: conn,
    label: `backend ${backend.id} in pool ${pool.config.name}`,
    openTimeoutMs: pool.config.requestTimeoutMs,
    clock: pool.clock,
    backendProgress: () => {
      const ends = conn.ends;
      return ends === null ? null : tcpProgress(ends.local, ends.remote);
    },
    log: exchange.log,
    metrics: exchange.metrics,
    websockets: exchange.websockets,
    onEnd: (bytesIn, bytesOut) => {
      settle();
      isolateActivity.release(held);
      tracker.bytesIn = bytesIn;
      tracker.ended(bytesOut);
    },
  });
  tracker.backendAnswer = upgraded.response;
  return upgraded.response;
}

/**
 * The backend refused the upgrade: its answer goes to the client as it came,
 * its body within the same timeouts as any other answer's.
 */
function passThrough(
  conn: Connection,
  answer: ResponseHead,
  settle: () => void,
  tracker: RequestTracker,
  stall: StallOptions & { broke: (why: string) => void },
): Response {
  const done = (_clean: boolean, bytes: number, broke?: string) => {
    conn.close();
    settle();
    tracker.ended(bytes);
    if (broke !== undefined) stall.broke(broke);
  };
  const response = conn.response(answer, done, stall);
  tracker.backendAnswer = response;
  return response;
}
