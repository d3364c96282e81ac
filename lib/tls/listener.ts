// The HTTPS listener. `Deno.serve` takes a single certificate and has no SNI
// callback, so Strom accepts TLS itself: `Deno.listenTls` with the runtime's
// per-handshake certificate resolver (`Symbol.for("unstableSniResolver")`,
// the route deno-notes describes), each handshake awaited on its own with a
// time limit (one silent client holds nobody up), and each connection then
// served by the same HTTP engine `Deno.serve` uses (`serveHttpOnConnection`,
// exposed on `Deno[Deno.internal]`), which speaks HTTP/2 when ALPN chose h2.
// rustls offers TLS 1.2 and 1.3 only, so 1.2 is the minimum.
//
// Deno caches what the resolver returns per server name for the listener's
// lifetime, so new certificates need a new listener: it is bound with
// SO_REUSEPORT next to the old one, which then stops accepting and drains
// (established connections are not dropped).

import type { SocketAddress } from "../net/address.ts";
import type { Logger } from "../log.ts";
import type { Handler } from "../listen.ts";
import type { CertificateStore } from "./store.ts";

const RESOLVER = Symbol.for("unstableSniResolver");

/** Time a client has to complete its TLS handshake. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

interface ServedConnection {
  readonly finished: Promise<void>;
  shutdown?(): Promise<void>;
}

type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (request: Request) => Response | Promise<Response>,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => ServedConnection;

function serveOnConnection(): ServeOnConnection {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const serve = internal?.serveHttpOnConnection;
  if (typeof serve !== "function") {
    throw new Error("this Deno has no serveHttpOnConnection: HTTPS needs Deno 2.x");
  }
  return serve;
}

/** A running HTTPS listener. */
export interface HttpsListener {
  readonly addr: Deno.NetAddr;
  /** Stops accepting; open connections carry on (a certificate change). */
  retire(): void;
  /** Stops accepting and lets open connections finish their requests, then closes them. */
  shutdown(): Promise<void>;
}

/** Binds `address` for HTTPS with certificates from `store`. Throws when binding fails. */
export function listenHttps(
  address: SocketAddress,
  store: CertificateStore,
  handler: Handler,
  options: { log: Logger; handshakeTimeoutMs?: number },
): HttpsListener {
  const serve = serveOnConnection();
  const listener = Deno.listenTls(
    {
      hostname: address.hostname,
      port: address.port,
      transport: "tcp",
      reusePort: true,
      alpnProtocols: ["h2", "http/1.1"],
      [RESOLVER]: (serverName: string) => store.resolve(serverName),
    } as unknown as Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem,
  );
  const open = new Set<ServedConnection>();
  const never = new AbortController().signal;
  const timeout = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;

  const accept = async (conn: Deno.TlsConn) => {
    const timer = setTimeout(() => conn.close(), timeout);
    try {
      await conn.handshake();
    } catch (e) {
      options.log.debug(
        `TLS handshake with ${(conn.remoteAddr as Deno.NetAddr).hostname} failed: ${e}`,
      );
      try {
        conn.close();
      } catch { /* closed by the timer */ }
      return;
    } finally {
      clearTimeout(timer);
    }
    const remote = conn.remoteAddr as Deno.NetAddr;
    const served = serve(
      conn,
      never,
      (request) => handler(request, { remote }),
      (error) => {
        options.log.error(`Failed to handle a request on https_address: ${String(error)}`);
        return new Response("500 - Internal Server Error", { status: 500 });
      },
      () => {},
    );
    open.add(served);
    served.finished.catch(() => {}).finally(() => open.delete(served));
  };

  const accepting = (async () => {
    for await (const conn of listener) accept(conn);
  })().catch(() => {});
  const addr = listener.addr as Deno.NetAddr;
  options.log.info(`Started listening on ${address.text} (https_address, port ${addr.port})`);
  const close = () => {
    try {
      listener.close();
    } catch { /* closed */ }
  };
  return {
    addr,
    retire: close,
    async shutdown() {
      close();
      await accepting;
      // Graceful per connection: finish its requests, then close. (Aborting
      // the signal of a connection that just ended throws inside Deno.)
      await Promise.all(
        [...open.keys()].map((s) => (s.shutdown?.() ?? s.finished).catch(() => {})),
      );
    },
  };
}
