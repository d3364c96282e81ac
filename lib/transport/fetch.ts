// Forwarding through `fetch` with one shared `Deno.createHttpClient` per pool.
//
// Known limits of fetch as a proxy client (see docs/deno-notes): it adds
// `accept`, `accept-language`, `accept-encoding` and `user-agent` when the
// client did not send them, its URL parser rewrites `\` to `/`, it refuses the
// WHATWG "bad ports", and it decodes gzip/br bodies while keeping their
// headers. The last one is repaired here: a decoded body loses
// Content-Encoding and Content-Length, so the client receives a correct body.

import type { BackendAddress, ClientConfig } from "../config/types.ts";
import { headBody, type Transport, UpstreamError, type UpstreamRequest } from "./transport.ts";
import { endToEnd, type Fields } from "../proxy/headers.ts";
import { BackendBodyBroke, ReadTimer, type StallOptions, StallTimer } from "./stall.ts";
import { MAX_HEAD_BYTES, MAX_HEADER_LINES, ProtocolError, transferFraming } from "./http1/parse.ts";

/** Encodings Deno's fetch decodes by itself (measured with Deno 2.9.6). */
const DECODED = new Set(["gzip", "br"]);

/**
 * Whether Deno's fetch decodes the answer to a request with these fields: not
 * for a Range request, nor for `Accept-Encoding: identity` (measured with Deno
 * 2.9.6; `identity;q=1` or `identity, gzip` are decoded). An answer it did not
 * decode keeps its Content-Encoding.
 */
function decodes(fields: Fields): boolean {
  for (const [name, value] of fields) {
    if (name === "range") return false;
    if (name === "accept-encoding" && value.trim().toLowerCase() === "identity") return false;
  }
  return true;
}

/** Statuses whose responses never have a body (the Response constructor rejects one). */
const NULL_BODY_STATUS = new Set([204, 205, 304]);

/** Creates a fetch transport for one pool. */
export function createFetchTransport(client: ClientConfig): Transport {
  const options: Deno.CreateHttpClientOptions = {
    allowHost: true,
    http1: true,
    http2: false,
    ...(client.poolIdleTimeoutMs === null ? {} : { poolIdleTimeout: client.poolIdleTimeoutMs }),
    ...(client.caCerts.length > 0 ? { caCerts: [...client.caCerts] } : {}),
    ...(client.poolMaxIdlePerHost === null
      ? {}
      : { poolMaxIdlePerHost: client.poolMaxIdlePerHost }),
  };
  // Closed once the pool is retired (a reload replaced it) and no request uses it: a request
  // of the old generation may still be sent after that (its body was arriving, a middleware
  // was checking it), and a closed client failed it with 502 "Bad resource ID" (a probe). Such
  // a late request gets a client of its own, closed after it as well.
  let http: Deno.HttpClient | null = Deno.createHttpClient(options);
  let retired = false;
  let using = 0;
  const closeIfDone = () => {
    if (retired && using === 0 && http !== null) {
      http.close();
      http = null;
    }
  };
  return {
    async send(backend: BackendAddress, request: UpstreamRequest): Promise<Response> {
      const canHaveBody = request.method !== "GET" && request.method !== "HEAD";
      using++;
      let ended = false;
      const onEnd = (bytes: number, broke?: string) => {
        if (ended) return;
        ended = true;
        using--;
        closeIfDone();
        request.onEnd(bytes, broke);
      };
      let upstream: Response;
      try {
        upstream = await fetch(
          `${backend.tls ? "https" : "http"}://${backend.authority}${urlTarget(request.target)}`,
          {
            method: request.method,
            headers: request.fields,
            body: canHaveBody ? request.body : null,
            signal: request.signal,
            redirect: "manual",
            client: http ??= Deno.createHttpClient(options),
          },
        );
      } catch (e) {
        onEnd(0);
        throw classify(e);
      }
      // Refused as the HTTP/1.1 transport refuses them: a 101 nobody asked for (WebSockets
      // take their own path), a length that contradicts chunked framing, and a transfer
      // coding Deno's client does not undo (it reads such a body up to the close, raw).
      const refusal = upstream.status === 101
        ? "unexpected 101 Switching Protocols"
        : upstream.headers.has("transfer-encoding") && upstream.headers.has("content-length")
        ? "both Transfer-Encoding and Content-Length"
        : transferCodingProblem(upstream, request.method) ?? headSizeProblem(upstream.headers);
      if (refusal !== null) {
        upstream.body?.cancel().catch(() => {});
        onEnd(0);
        throw new UpstreamError("protocol", `invalid answer from ${backend.id}: ${refusal}`);
      }
      const headers = new Headers(endToEnd(upstream.headers));
      const encoding = headers.get("content-encoding");
      if (
        encoding !== null && DECODED.has(encoding.trim().toLowerCase()) && decodes(request.fields)
      ) {
        headers.delete("content-encoding");
        headers.delete("content-length");
      }
      // RFC 9110 8.6: no Content-Length on a 204; an HTTP/2 client takes one as a protocol error.
      if (upstream.status === 204) headers.delete("content-length");
      let body = upstream.body;
      if (body !== null && NULL_BODY_STATUS.has(upstream.status)) {
        body.cancel().catch(() => {});
        body = null;
      }
      if (body === null) onEnd(0);
      const out = body !== null
        ? trackBody(body, backend.id, onEnd, request)
        : request.method === "HEAD"
        ? headBody(upstream.status, headers.has("content-length"))
        : null;
      return new Response(out, { status: upstream.status, headers });
    },
    close: () => {
      retired = true;
      closeIfDone();
    },
  };
}

/**
 * Why an answer's head is refused for its size, or null: the HTTP/1.1
 * transport's limits (64 KiB, 256 fields), which Deno's client does not keep.
 * Passed on, a 200 with a 200 KB field broke common clients (curl, Python's
 * http.client) instead of being a clean 502.
 */
function headSizeProblem(headers: Headers): string | null {
  let bytes = 0;
  let fields = 0;
  headers.forEach((value, name) => {
    bytes += name.length + value.length + 4; // ": " and CR LF
    fields++;
  });
  if (bytes > MAX_HEAD_BYTES) return `response head over ${MAX_HEAD_BYTES / 1024} KiB`;
  return fields > MAX_HEADER_LINES ? "too many header fields" : null;
}

/** Why an answer's Transfer-Encoding cannot be passed on, or null. */
function transferCodingProblem(upstream: Response, method: string): string | null {
  const codings = upstream.headers.get("transfer-encoding");
  if (codings === null || method === "HEAD" || NULL_BODY_STATUS.has(upstream.status)) return null;
  try {
    transferFraming(codings);
    return null;
  } catch (e) {
    if (e instanceof ProtocolError) return e.message;
    throw e;
  }
}

/**
 * The request target as fetch's URL parser must see it to send it unchanged
 * in meaning: it would take a backslash in the path for a slash (and then
 * resolve `..\x` into a path no matcher saw: `/public/..\admin` reached the
 * backend as `/admin`) and a `#` for the start of a fragment it drops. Both are
 * sent percent-encoded; anything else it changes it only percent-encodes.
 */
export function urlTarget(target: string): string {
  if (!target.includes("\\") && !target.includes("#")) return target;
  const query = target.indexOf("?");
  const path = query < 0 ? target : target.slice(0, query);
  const rest = query < 0 ? "" : target.slice(query);
  return path.replaceAll("\\", "%5C").replaceAll("#", "%23") + rest.replaceAll("#", "%23");
}

function classify(e: unknown): UpstreamError {
  if (e instanceof DOMException && (e.name === "AbortError" || e.name === "TimeoutError")) {
    return new UpstreamError("aborted", "request aborted", { cause: e });
  }
  const detail = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
  if (detail.includes("(Connect)")) return new UpstreamError("connect", detail, { cause: e });
  if (detail.includes("connection closed") || detail.includes("reset")) {
    return new UpstreamError("reset", detail, { cause: e });
  }
  return new UpstreamError("protocol", detail, { cause: e });
}

/**
 * Passes a body through and calls `done(bytes)` once when it ends, fails or is
 * cancelled; a client that pulls nothing for `stallTimeoutMs` fails it, which
 * cancels the backend's body, and then `onStall` is called. A backend that
 * sends nothing for `readTimeoutMs` fails it too.
 */
function trackBody(
  body: ReadableStream<Uint8Array>,
  backend: string,
  onEnd: (bytes: number, broke?: string) => void,
  { stallTimeoutMs, onStall, readTimeoutMs, signal }: StallOptions & { signal: AbortSignal },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let ended = false;
  const done = (n: number, broke?: string) => {
    if (!ended) {
      ended = true;
      onEnd(n, broke);
    }
  };
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stall = new StallTimer(stallTimeoutMs, () => {
    done(bytes);
    reader.cancel(stall.error).catch(() => {});
    controller.error(stall.error);
    onStall?.();
  });
  const silent = new ReadTimer(readTimeoutMs, (error) => {
    done(bytes, error.message);
    reader.cancel(error).catch(() => {});
    controller.error(new BackendBodyBroke(backend, error.message));
  });
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(controller) {
      stall.disarm();
      silent.arm();
      try {
        const { value, done: end } = await reader.read();
        silent.disarm();
        if (end) {
          done(bytes);
          controller.close();
        } else {
          bytes += value.length;
          controller.enqueue(value);
          stall.arm();
        }
      } catch (e) {
        silent.disarm();
        // Deno's client says "error reading a body from connection"; a cause, when given, says why.
        const reason = !(e instanceof Error)
          ? String(e)
          : e.cause instanceof Error
          ? e.cause.message
          : e.message;
        // Aborted (the client left, the request timed out): not the backend's failure.
        done(bytes, signal.aborted ? undefined : reason);
        controller.error(new BackendBodyBroke(backend, reason));
      }
    },
    cancel(reason) {
      stall.disarm();
      silent.disarm();
      done(bytes);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
