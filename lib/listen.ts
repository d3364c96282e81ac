// Binding listeners: the proxy listener (a Hono app in front of the proxy
// pipeline) and plain ones (admin), with one-line bind errors.

import { Hono } from "hono";
import type { Scheme } from "./config/types.ts";
import type { SocketAddress } from "./net/address.ts";
import type { Logger } from "./log.ts";
import type { Runtime } from "./runtime.ts";
import { createProxy } from "./proxy/forward.ts";
import type { Observers } from "./proxy/tracker.ts";
import { type ConnectionHandler, type HttpListener, serveTcp } from "./net/http_listener.ts";
import type { WebSocketRegistry } from "./proxy/websockets.ts";
import { CHALLENGE_PREFIX, type ChallengeStore } from "./tls/challenges.ts";
import type { CertificateStore } from "./tls/store.ts";
import { listenHttps } from "./tls/listener.ts";

/** A listener that could not bind; the message names the address and the cause. */
export class ListenError extends Error {
  constructor(role: string, address: SocketAddress, cause: unknown) {
    super(`Cannot listen on ${address.text} (${role}): ${describeBindError(cause)}`, { cause });
    this.name = "ListenError";
  }
}

/**
 * Throws a ListenError when another socket holds `address`. The HTTPS listener
 * and the workers bind with SO_REUSEPORT, which would share the port with a
 * second Strom (or anything else bound that way) without a word, and take half
 * its connections; a plain bind first says "address already in use" instead.
 */
export function assertUnbound(role: string, address: SocketAddress): void {
  if (address.port === 0) return;
  try {
    Deno.listen({ hostname: address.hostname, port: address.port }).close();
  } catch (e) {
    throw new ListenError(role, address, e);
  }
}

/** A request handler that also gets the peer address (and may hear of refusals, see ConnectionHandler). */
export type Handler =
  & ((
    request: Request,
    env: { remote: Deno.NetAddr },
  ) => Response | Promise<Response>)
  & Pick<ConnectionHandler, "refused">;

/** Options for `listen`. */
export interface ListenOptions {
  readonly log: Logger;
  /** Share the port with other workers (SO_REUSEPORT; needs --unstable-net). */
  readonly reusePort?: boolean;
}

/** Options for `listenProxy`. */
export interface ProxyListenOptions extends ListenOptions {
  readonly observers: Observers;
  /** WebSockets relayed through this listener. */
  readonly websockets: WebSocketRegistry;
  /** ACME HTTP-01 answers, served before routing (known tokens only). */
  readonly challenges?: ChallengeStore;
}

/** Binds `address` and serves `handler`; throws ListenError when binding fails. */
export function listen(
  role: string,
  address: SocketAddress,
  handler: Handler,
  { log, reusePort = false }: ListenOptions,
): HttpListener {
  let server: HttpListener;
  try {
    const serve = (request: Request, remote: Deno.NetAddr) => handler(request, { remote });
    server = serveTcp(address, Object.assign(serve, { refused: handler.refused }), {
      role,
      log,
      reusePort,
    });
  } catch (e) {
    throw new ListenError(role, address, e);
  }
  log.info(`Started listening on ${address.text} (${role}, port ${server.addr.port})`);
  return server;
}

type Env = { Bindings: { remote: Deno.NetAddr } };

/**
 * The handler of a proxy listener: a Hono app whose catch-all route runs the
 * proxy pipeline. `setPort` tells it the real port once bound.
 */
export function proxyHandler(
  scheme: Scheme,
  { hostname, port }: { readonly hostname: string; readonly port: number },
  runtime: () => Runtime,
  options: ProxyListenOptions,
): Handler & { setPort(port: number): void } {
  const arrival = {
    proto: scheme === "HTTP" ? "http" as const : "https" as const,
    port: String(port),
    serverName: hostName(),
  };
  const proxy = createProxy({
    runtime,
    scheme,
    arrival,
    boundTo: hostname,
    log: options.log,
    observers: options.observers,
    websockets: options.websockets,
  });
  const app = new Hono<Env>();
  const { challenges } = options;
  if (challenges) {
    // RFC 8555 8.3: a known token is answered here; anything else is routed as usual.
    app.get(`${CHALLENGE_PREFIX}:token`, (c, next) => {
      const answer = challenges.answer(new URL(c.req.url).pathname);
      return answer === null ? next() : Promise.resolve(c.text(answer));
    });
  }
  app.all("*", (c) => proxy(c.req.raw, c.env.remote));
  return Object.assign(
    // HEAD goes to the proxy directly: Hono answers HEAD with `new Response(null, answer)`,
    // for which Deno writes `content-length: 0` even where the backend sent no length.
    // So does every request while no ACME challenge waits for its answer: the app's one
    // route is then the catch-all, and Hono's dispatch (a Context and two promises per
    // request) cost ~1.5 us of CPU per request out of ~34 in CPU profiles under wrk.
    (request: Request, env: { remote: Deno.NetAddr }) =>
      request.method === "HEAD"
        ? proxy(request, env.remote).then(withoutContent)
        : challenges === undefined || challenges.empty
        ? proxy(request, env.remote)
        : app.fetch(request, env),
    {
      setPort: (p: number) => arrival.port = String(p),
      refused: proxy.refused,
    },
  );
}

/**
 * An answer to HEAD without its content (RFC 9110 9.3.2): Deno leaves a body
 * out over HTTP/1.1 but sends it over HTTP/2, where clients take it as a
 * protocol error and never see the status (a probe: curl exit 92 for Strom's own
 * 404, 429, 502 and 503). The length of a body Strom or a middleware made is kept
 * in Content-Length, as nginx announces it; a backend's answer to HEAD has no body
 * (null, or an empty stream so that Deno writes no length it did not send).
 */
async function withoutContent(response: Response): Promise<Response> {
  if (response.body === null || response.status === 101) return response;
  const length = (await response.arrayBuffer().catch(() => new ArrayBuffer(0))).byteLength;
  const headers = new Headers(response.headers);
  if (length > 0 && !headers.has("content-length")) headers.set("content-length", String(length));
  const { status, statusText } = response;
  const empty = new ReadableStream({ start: (controller) => controller.close() });
  return new Response(empty, { status, statusText, headers });
}

/** Binds a plain-HTTP proxy listener. */
export function listenProxy(
  scheme: Scheme,
  role: string,
  address: SocketAddress,
  runtime: () => Runtime,
  options: ProxyListenOptions,
): HttpListener {
  const handler = proxyHandler(scheme, address, runtime, options);
  const server = listen(role, address, handler, options);
  handler.setPort(server.addr.port);
  return server;
}

/** Binds `address` for HTTPS with `certificates` (chosen by SNI) and serves the proxy there. */
export function listenHttpsProxy(
  address: SocketAddress,
  certificates: CertificateStore,
  runtime: () => Runtime,
  options: ProxyListenOptions,
): HttpListener {
  const handler = proxyHandler("HTTPS", address, runtime, options);
  let server: HttpListener;
  try {
    server = listenHttps(address, certificates, handler, { log: options.log });
  } catch (e) {
    throw new ListenError("https_address", address, e);
  }
  handler.setPort(server.addr.port);
  return server;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "strom";
  }
}

function describeBindError(e: unknown): string {
  if (e instanceof Deno.errors.AddrInUse) return "address already in use";
  if (e instanceof Deno.errors.PermissionDenied) {
    return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
  }
  if (e instanceof Deno.errors.AddrNotAvailable) return "address not available on this machine";
  return e instanceof Error ? e.message : String(e);
}
