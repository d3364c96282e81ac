// The fast path for `http://` backends: HTTP/1.1 over `Deno.connect` with a
// keep-alive pool per backend. Bytes pass through untouched (no decoding), the
// request target and fields are sent exactly as given, and backend answers are
// parsed strictly.

import type { BackendAddress, ClientConfig } from "../../config/types.ts";
import { type Transport, UpstreamError, type UpstreamRequest } from "../transport.ts";
import { describeNetError } from "../../net/errors.ts";
import { writtenAuthority } from "../../net/address.ts";
import type { Connection } from "./connection.ts";
import type { DialTarget } from "../dial.ts";
import { HostPool, type Lease, type PoolLimits } from "./pool.ts";
import { ProtocolError, type ResponseHead } from "./parse.ts";
import { Deadlines } from "../../proxy/deadlines.ts";
import { type Clock, systemClock } from "../../clock.ts";

/** Idle keep-alive time when the config sets none: below common backend timeouts (5 s). */
export const DEFAULT_IDLE_TIMEOUT_MS = 4000;
/** Connections per backend when the config sets no cap. */
export const DEFAULT_MAX_CONNECTIONS = 512;

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * A request that cannot be sent again once written (not idempotent, or a body
 * streamed from the client) reuses only a connection idle for less than this:
 * one idle longer may be closed by the backend just as the request goes out
 * (the keep-alive race), and the request would be lost. Backends close idle
 * connections after 2 s (gunicorn) to 75 s (nginx); one that closes them
 * sooner is learned from (see HostPool.acquire()).
 */
export const UNRESENDABLE_REUSE_MS = 1000;

/** Creates the HTTP/1.1 transport of one pool; `clock` times its connects out and its idle connections. */
export function createHttp1Transport(client: ClientConfig, clock: Clock = systemClock): Transport {
  const limits: PoolLimits = {
    maxConnections: client.maxConnectionsPerHost ?? DEFAULT_MAX_CONNECTIONS,
    maxIdle: client.poolMaxIdlePerHost ?? Infinity,
    idleTimeoutMs: client.poolIdleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
  };
  const pools = new Map<string, HostPool>();
  const caCerts = client.caCerts;
  // One coarse timer for all connects in progress, not one each (see dial()).
  const connectDeadlines = new Deadlines(clock);
  const sweeper = setInterval(() => {
    for (const pool of pools.values()) pool.sweep();
  }, Math.max(500, Math.min(limits.idleTimeoutMs / 2, 30_000)));
  Deno.unrefTimer(sweeper);
  return {
    send(backend, request) {
      let pool = pools.get(backend.authority);
      if (!pool) {
        // TCP_NODELAY is set by the connection before its second write (see dial.ts).
        const target: DialTarget = {
          host: backend.host,
          port: backend.port,
          tls: backend.tls,
          caCerts,
          noDelay: "later",
        };
        pool = new HostPool(target, limits, connectDeadlines, clock);
        pools.set(backend.authority, pool);
      }
      return send(pool, backend, request);
    },
    close() {
      clearInterval(sweeper);
      for (const pool of pools.values()) pool.close();
    },
  };
}

async function send(
  pool: HostPool,
  backend: BackendAddress,
  request: UpstreamRequest,
): Promise<Response> {
  // A reused connection the backend closed meanwhile is the classic keep-alive
  // race: retry on another connection when it is safe (as Go's transport does).
  // A request whose head went out may have been the reason the connection closed
  // (it crashed the backend's worker): that one goes once more at most, as nginx
  // gives a cached connection's failure one extra try.
  let resentAfterWrite = false;
  const resendable = isIdempotent(request) && !(request.body instanceof ReadableStream);
  for (let attempt = 0;; attempt++) {
    let lease: Lease;
    try {
      // A resend after the head went out takes a new connection: another pooled one may be
      // closed by now too (a probe: 85 of 4,480 GETs got 502 from a backend closing each one).
      const reuseWithinMs = resentAfterWrite ? 0 : resendable ? Infinity : UNRESENDABLE_REUSE_MS;
      const acquired = pool.acquire(request.signal, request.connectTimeoutMs, reuseWithinMs);
      lease = acquired instanceof Promise ? await acquired : acquired;
    } catch (e) {
      request.onEnd(0);
      throw toUpstreamError(e, request.signal, backend);
    }
    const state = { wroteHead: false };
    try {
      return await exchange(pool, lease.conn, request, state, backend);
    } catch (e) {
      const stale = lease.reused && lease.conn.received === 0 && !request.signal.aborted &&
        !(e instanceof ProtocolError) && attempt < 3;
      if (stale && !state.wroteHead) continue; // nothing went out: a streamed body is untouched
      if (stale && resendable && !resentAfterWrite) {
        resentAfterWrite = true;
        request.onResent?.();
        continue;
      }
      request.onEnd(0);
      throw toUpstreamError(e, request.signal, backend);
    }
  }
}

function isIdempotent(request: UpstreamRequest): boolean {
  return IDEMPOTENT.has(request.method) || request.fields.some(([n]) => n === "idempotency-key");
}

async function exchange(
  pool: HostPool,
  conn: Connection,
  request: UpstreamRequest,
  state: { wroteHead: boolean },
  backend: BackendAddress,
): Promise<Response> {
  conn.received = 0;
  conn.uses++;
  const onAbort = () => conn.close();
  request.signal.addEventListener("abort", onAbort);
  let bodyWritten = true;
  let head: ResponseHead;
  try {
    // Aborted before the listener was added (while the connection was being handed over): its
    // deadline is spent, so nothing else would end a wait for the answer.
    if (request.signal.aborted) throw new UpstreamError("aborted", "request aborted");
    const { body } = request;
    const chunked = body instanceof ReadableStream &&
      !request.fields.some(([name]) => name === "content-length");
    const headBytes = encodeHead(conn, request, chunked, backend);
    if (body instanceof Uint8Array) {
      const all = new Uint8Array(headBytes.length + body.length);
      all.set(headBytes);
      all.set(body, headBytes.length);
      await conn.write(all);
      state.wroteHead = true;
    } else {
      await conn.write(headBytes);
      state.wroteHead = true;
      if (body instanceof ReadableStream) {
        bodyWritten = false;
        // A backend may answer before it read the whole body (a 413, a 401) and close: its
        // answer is read, not lost to the failed write (as HAProxy passes it on). Only a body
        // the client broke ends the connection here: the backend would wait for the rest.
        writeBody(conn, body, chunked).then(
          () => bodyWritten = true,
          (e) => e instanceof BackendWriteFailed || conn.close(),
        );
      }
    }
    head = await conn.readHead(request.method);
    const rest = conn.readSmallBody(head);
    if (rest !== null) await rest;
  } catch (e) {
    conn.close();
    pool.release(conn, false);
    throw e;
  } finally {
    request.signal.removeEventListener("abort", onAbort);
  }
  if (head.status === 101) {
    pool.release(conn, false);
    throw new ProtocolError("unexpected 101 Switching Protocols");
  }
  let released = false;
  const release = (clean: boolean, bytes: number, broke?: string) => {
    released = true;
    pool.release(conn, clean && head.keepAlive && bodyWritten);
    request.onEnd(bytes, broke);
  };
  try {
    return conn.response(head, release, request);
  } catch (e) {
    // An answer no Response can carry: never keep (or leak) the connection it came on.
    if (!released) {
      conn.close();
      release(false, 0);
    }
    throw e;
  }
}

/** A write to the backend failed: the connection is broken, what it received may still be read. */
class BackendWriteFailed extends Error {}

/**
 * Writes a streamed request body, chunk-encoded when its length is unknown.
 * Fails with BackendWriteFailed when the backend's connection does.
 */
async function writeBody(conn: Connection, body: ReadableStream<Uint8Array>, chunked: boolean) {
  const write = (bytes: Uint8Array) =>
    conn.write(bytes).catch((e) => {
      throw new BackendWriteFailed("write to the backend failed", { cause: e });
    });
  for await (const chunk of body) {
    if (chunk.length === 0) continue;
    if (!chunked) {
      await write(chunk);
      continue;
    }
    const size = encodeLatin1(`${chunk.length.toString(16)}\r\n`);
    const framed = new Uint8Array(size.length + chunk.length + 2);
    framed.set(size);
    framed.set(chunk, size.length);
    framed[framed.length - 2] = 13;
    framed[framed.length - 1] = 10;
    await write(framed);
  }
  if (chunked) await write(encodeLatin1("0\r\n\r\n"));
}

/**
 * The request line and fields as bytes, exactly as received: Deno decodes the
 * request target as UTF-8 and field values as octets (latin1), so each is
 * encoded back the same way. A request without Host (an HTTP/1.0 client may
 * send none) gets the backend's address, which HTTP/1.1 requires (RFC 9112 3.2).
 */
function encodeHead(
  conn: Connection,
  request: UpstreamRequest,
  chunked: boolean,
  backend: BackendAddress,
): Uint8Array {
  let line = `${request.method} ${request.target} HTTP/1.1\r\n`;
  let text = "";
  let hasHost = false;
  const { body } = request;
  for (const [name, value] of request.fields) {
    if (body instanceof Uint8Array && name === "content-length") continue;
    if (name === "host") hasHost = true;
    text += `${name}: ${value}\r\n`;
  }
  if (!hasHost) line += `host: ${writtenAuthority(backend.id)}\r\n`;
  if (body instanceof Uint8Array) text += `content-length: ${body.length}\r\n`;
  else if (chunked) text += "transfer-encoding: chunked\r\n";
  text += "\r\n";
  // The common case is all ASCII, where both encodings agree (so a head too long
  // for the connection's read buffer may take the other path too).
  const ascii = conn.asciiBytes(line + text);
  if (ascii !== null) return ascii;
  const lineBytes = utf8.encode(line);
  const fields = encodeLatin1(text);
  const out = new Uint8Array(lineBytes.length + fields.length);
  out.set(lineBytes);
  out.set(fields, lineBytes.length);
  return out;
}

const utf8 = new TextEncoder();

function encodeLatin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function toUpstreamError(e: unknown, signal: AbortSignal, backend: BackendAddress): UpstreamError {
  if (e instanceof UpstreamError) return e;
  if (signal.aborted) return new UpstreamError("aborted", "request aborted", { cause: e });
  if (e instanceof ProtocolError) {
    return new UpstreamError("protocol", `invalid answer from ${backend.id}: ${e.message}`, {
      cause: e,
    });
  }
  return new UpstreamError("reset", describeNetError(e), { cause: e });
}
