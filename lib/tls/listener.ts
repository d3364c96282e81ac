// The HTTPS listener: `Deno.listenTls` with the runtime's per-handshake
// certificate resolver (`Symbol.for("unstableSniResolver")`, the route
// deno-notes describes, since `Deno.serve` takes a single certificate), served
// by lib/net/http_listener.ts (Deno's engine: handshakes run concurrently in
// their own tasks; h2 by ALPN).
// rustls offers TLS 1.2 and 1.3 only, so 1.2 is the minimum.
//
// Deno 2.9.6 gives handshakes no time limit; the client timeouts
// (lib/net/client_timeouts.ts) close a connection that has not delivered a
// request head, handshake included, within client_header_timeout. Two other
// ways were measured and dropped. Accepting from the listener in JS
// and closing a `Deno.TlsConn` whose handshake is pending cancels the handshake
// but leaves the TCP connection open (the silent client was still connected
// 15 s later). `node:tls`'s `handshakeTimeout` (with the socket destroyed on
// `tlsClientError`) does close it, but relaying its sockets to `Deno.serve`
// cost about 47 us per request (a trivial handler over HTTPS: 33.0 k req/s
// direct, 12.8 k through it), a third of Strom's throughput.
//
// A single certificate is given to Deno directly (see listenTls below).
//
// Deno caches what the resolver returns per server name for the listener's
// lifetime, so new certificates need a new listener: it is bound with
// SO_REUSEPORT next to the old one, which then shuts down gracefully
// (requests in flight finish; idle keep-alive connections close).

import type { SocketAddress } from "../net/address.ts";
import type { Logger } from "../log.ts";
import type { Handler } from "../listen.ts";
import type { CertificateStore } from "./store.ts";
import { type HttpListener, serveTls } from "../net/http_listener.ts";

const RESOLVER = Symbol.for("unstableSniResolver");

/** A running HTTPS listener. */
export type HttpsListener = HttpListener;

/** Binds `address` for HTTPS with certificates from `store`. Throws when binding fails. */
export function listenHttps(
  address: SocketAddress,
  store: CertificateStore,
  handler: Handler,
  options: { log: Logger },
): HttpsListener {
  const listenTls = (port: number) =>
    Deno.listenTls(
      {
        hostname: address.hostname,
        port,
        transport: "tcp",
        reusePort: true,
        // HTTP/1.0 clients (curl --http1.0) offer only http/1.0: without it, no common protocol.
        alpnProtocols: ["h2", "http/1.1", "http/1.0"],
        // One certificate answers every name: given as such, not through the resolver, which
        // fails a handshake whose ClientHello does not arrive in one read (Deno 2.9.6: a
        // ClientHello larger than a segment, as post-quantum key shares make it, on a real link).
        ...(store.size === 1
          ? store.resolve(null)
          : { [RESOLVER]: (serverName: string) => store.resolve(serverName) }),
      } as unknown as Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem,
    );
  const served = serveTls(
    listenTls,
    address.port,
    Object.assign((request: Request, remote: Deno.NetAddr) => handler(request, { remote }), {
      refused: handler.refused,
    }),
    {
      role: "https_address",
      log: options.log,
    },
  );
  options.log.info(
    `Started listening on ${address.text} (https_address, port ${served.addr.port})`,
  );
  return served;
}
