// Serving HTTP on a listener Strom binds itself. Plain TCP goes through
// `Deno.serve`. TLS goes through the engine behind it, `serveHttpOnListener`
// (exposed on `Deno[Deno.internal]`), because `Deno.serve` takes a single
// certificate and has no SNI callback, while a `Deno.listenTls` listener can
// carry the runtime's per-handshake resolver (lib/tls/listener.ts).
//
// Both serve at the listener level on purpose: serving each accepted
// connection separately (`serveHttpOnConnection`) would allow per-connection
// header and idle timeouts, but Deno then closes upgraded WebSockets right
// after their 101 (measured with Deno 2.9.6), and WebSockets must work. Slow
// and idle clients are closed from outside instead (lib/net/client_timeouts.ts),
// for which every request holds its peer in `isolateActivity` until its
// response has been sent.

import type { Logger } from "../log.ts";
import type { SocketAddress } from "./address.ts";
import { isolateActivity, peerKey } from "./activity.ts";
import { BackendBodyBroke, ClientStalled } from "../transport/stall.ts";

/**
 * Handles one request; `remote` is the peer. `refused`, when there, hears of
 * the requests the listener answers itself (new uploads while it stops), for
 * the access log and metrics.
 */
export type ConnectionHandler =
  & ((
    request: Request,
    remote: Deno.NetAddr,
  ) => Response | Promise<Response>)
  & {
    refused?(request: Request, remote: Deno.NetAddr, response: Response): void;
  };

interface Served {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

type ServeOnListener = (
  listener: Deno.Listener,
  signal: AbortSignal,
  handler: (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => Response | Promise<Response>,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => Served;

/** A running listener. */
export interface HttpListener {
  readonly addr: Deno.NetAddr;
  /**
   * Waits for the uploads under way (see Uploads), then stops accepting, closes
   * idle connections and waits until requests in flight finished.
   */
  shutdown(): Promise<void>;
}

/**
 * Requests on one listener that may still be reading their body (any method
 * but GET and HEAD, until Deno has sent the response). Deno 2.9's
 * `shutdown()` makes every request body of its server unreadable at once
 * (denoland/deno#36809): an upload under way when SIGTERM came, or when a
 * reload moved the listener, was cut off and half of it forwarded. A listener
 * stopping waits for these first, and then shuts down. Meanwhile it answers
 * GET and HEAD as usual and refuses new uploads with 503: counted too, a
 * steady flow of overlapping POSTs kept the count above zero until the grace
 * ran out, and then the stop cut them all.
 */
class Uploads {
  open = 0;
  /** Set once the listener stops: answers to requests arriving now close their connection. */
  draining = false;
  #waiters: (() => void)[] = [];

  add(completed: Promise<void>): void {
    this.open++;
    const done = () => {
      if (--this.open === 0) { for (const wake of this.#waiters.splice(0)) wake(); }
    };
    completed.then(done, done);
  }

  /** Resolves once none is open, or after `limitMs`. */
  idle(limitMs: number): Promise<void> {
    if (this.open === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, limitMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * How long a stopping listener waits for the uploads on it before shutting
 * down (a process shutdown is also bounded by its grace).
 */
export const UPLOAD_DRAIN_MS = 30_000;

/**
 * Deno's handler for `handler`: each request holds its peer as busy until Deno
 * has sent the response (or given up); requests that may carry a body are
 * counted in `uploads`.
 */
function holdingPeers(handler: ConnectionHandler, uploads: Uploads) {
  return (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    const remote = info.remoteAddr;
    if (isolateActivity.recording) {
      const entry = isolateActivity.hold(peerKey(remote));
      const release = () => isolateActivity.release(entry);
      info.completed.then(release, release);
    }
    const method = request.method;
    const mayCarryBody = method !== "GET" && method !== "HEAD";
    if (uploads.draining) {
      // A new upload would hold the stop for as long as clients keep sending them (and be cut
      // off at the grace): refused before a backend sees any of it, as a closed port would.
      if (mayCarryBody) {
        const refusal = stopping();
        handler.refused?.(request, remote, refusal);
        return afterBody(request, refusal);
      }
      return closingConnection(handler(request, remote));
    }
    if (!mayCarryBody) return handler(request, remote);
    uploads.add(info.completed);
    return afterBody(request, handler(request, remote));
  };
}

/** The most of an unread request body Strom reads before its own answer (see afterBody). */
const DISCARD_BYTES = 1024 * 1024;
/** How long it waits for those bytes. */
const DISCARD_MS = 1000;

/**
 * The answer, once a request body nobody read is read and dropped.
 * Strom answers some requests itself (404, 401, 413, 429, 503...) without
 * reading their body; over HTTP/2, Deno then resets the stream when the body
 * has not all arrived, and the client sees an error instead of the answer
 * (curl: exit 92, 1 in 6 small POSTs in a probe). nginx discards such a body
 * too. Up to DISCARD_BYTES within DISCARD_MS; the rest is cancelled (a
 * 64 KiB cap left concurrent uploads of 200 KB on one connection all reset).
 */
async function afterBody(
  request: Request,
  answer: Response | Promise<Response>,
): Promise<Response> {
  const response = await answer;
  const body = request.body;
  if (body === null || request.bodyUsed || body.locked) return response;
  const reader = body.getReader();
  const timer = setTimeout(() => void reader.cancel().catch(() => {}), DISCARD_MS);
  try {
    for (let read = 0; read <= DISCARD_BYTES;) {
      const { done, value } = await reader.read();
      if (done) return response;
      read += value.length;
    }
    await reader.cancel();
  } catch {
    /* the client went away, or the time ran out */
  } finally {
    clearTimeout(timer);
  }
  return response;
}

/** The answer to a request that may carry a body, arriving while its listener stops. */
function stopping(): Response {
  const text = "503 - Service Unavailable (stopping)";
  return new Response(text, {
    status: 503,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "content-length": String(text.length),
      "connection": "close",
      "retry-after": "1",
    },
  });
}

/**
 * The answer with `Connection: close`: a keep-alive client of a stopping
 * listener sends its next request elsewhere instead of holding it open (Deno
 * leaves the field out on HTTP/2). A WebSocket's 101 is left as it is.
 */
async function closingConnection(answer: Response | Promise<Response>): Promise<Response> {
  const response = await answer;
  if (response.status === 101) return response;
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    // Immutable headers (a fetch() answer): a copy with the same body.
    const headers = new Headers(response.headers);
    headers.set("connection", "close");
    const { status, statusText } = response;
    return new Response(response.body, { status, statusText, headers });
  }
}

function errorHandler(role: string, log: Logger) {
  return (error: unknown) => {
    if (error instanceof ClientStalled) {
      // send_timeout: the client's doing, as nginx's "client timed out" (info).
      log.info(`Cut off a client on ${role}: ${error.message}`);
      return new Response(null, { status: 500 });
    }
    if (error instanceof BackendBodyBroke) {
      // The backend's doing, logged as its other failures are (warn); the client sees a cut.
      log.warn(`Cut off a response on ${role}: ${error.message}`);
      return new Response(null, { status: 502 });
    }
    log.error(`Failed to handle a request on ${role}: ${String(error)}`);
    return new Response("500 - Internal Server Error", { status: 500 });
  };
}

/**
 * Keeps a listener accepting. Deno ends its accept loop on an accept error
 * such as EMFILE (out of file descriptors) and closes the listener, but keeps
 * serving the connections it has (measured with Deno 2.9.6 for plain and TLS
 * listeners). The failed loop makes its server's `finished` reject; the port
 * is then bound again with `bind` (retrying until descriptors are free), so
 * Strom keeps serving once the shortage is over instead of going deaf. The old
 * server is left to finish its connections and is shut down with the listener.
 */
function resilient(
  bind: (port: number, uploads: Uploads) => { server: Served; addr: Deno.NetAddr },
  port: number,
  options: { role: string; log: Logger },
): HttpListener {
  const uploads = new Uploads();
  let { server, addr } = bind(port, uploads);
  /** Servers whose accept loop died: their connections are still served. */
  const dead: Served[] = [];
  let stopping: Promise<void> | null = null;
  /** Binds the port again, retrying while descriptors are short. */
  const revive = async () => {
    for (let delay = 100; !stopping; delay = Math.min(delay * 2, 2000)) {
      await new Promise((r) => setTimeout(r, delay));
      if (stopping) break;
      try {
        const next = bind(addr.port, uploads).server;
        dead.push(server);
        server = next;
        watch(next);
        options.log.warn(
          `The ${options.role} listener had stopped; it listens on port ${addr.port} again`,
        );
        break;
      } catch (e) {
        options.log.debug(`Cannot bind ${options.role} again yet: ${e}`);
      }
    }
  };
  /** A failed accept loop makes its server's `finished` reject (once): revive then. */
  const watch = (s: Served) => {
    s.finished.catch(() => {
      if (!stopping) void revive();
    });
  };
  watch(server);
  const stop = () =>
    stopping ??= (async () => {
      // Uploads under way first (see Uploads); the listener accepts meanwhile.
      uploads.draining = true;
      await uploads.idle(UPLOAD_DRAIN_MS);
      await Promise.all([server, ...dead].map((s) => s.shutdown().catch(() => {})));
    })();
  return { addr, shutdown: stop };
}

/** Binds `address` with `Deno.serve`; throws Deno's error when binding fails. */
export function serveTcp(
  address: SocketAddress,
  handler: ConnectionHandler,
  options: { role: string; log: Logger; reusePort?: boolean },
): HttpListener {
  const bind = (port: number, uploads: Uploads) => {
    const server = Deno.serve({
      hostname: address.hostname,
      port,
      ...(options.reusePort ? { reusePort: true } : {}),
      onListen: () => {},
      onError: errorHandler(options.role, options.log),
    }, holdingPeers(handler, uploads));
    return { server, addr: server.addr };
  };
  return resilient(bind, address.port, options);
}

/**
 * Binds TLS listeners with `listenTls(port)` and serves them (HTTP/2 when ALPN
 * chose h2); throws when the first bind fails. Revived like `serveTcp`.
 */
export function serveTls(
  listenTls: (port: number) => Deno.TlsListener,
  port: number,
  handler: ConnectionHandler,
  options: { role: string; log: Logger },
): HttpListener {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const serve: ServeOnListener | undefined = internal?.serveHttpOnListener;
  if (typeof serve !== "function") {
    throw new Error("this Deno has no serveHttpOnListener (HTTPS needs Deno 2.x)");
  }
  const bind = (port: number, uploads: Uploads) => {
    const listener = listenTls(port);
    const server = serve(
      listener,
      new AbortController().signal,
      holdingPeers(handler, uploads),
      errorHandler(options.role, options.log),
      () => {},
    );
    return { server, addr: listener.addr as Deno.NetAddr };
  };
  return resilient(bind, port, options);
}
