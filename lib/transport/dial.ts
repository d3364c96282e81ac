// Opening a connection to a backend within its connect_timeout: TCP, then TLS
// for `https://` (and `wss://`) backends.
//
// One AbortController and one timer per connect, both done with when the
// connect settles. `AbortSignal.timeout` + `AbortSignal.any`, used before,
// left a timer behind that fired `connect_timeout` later for every connect,
// building a TimeoutError (with its stack) and dispatching abort events. In a
// loop of 20,000 connects and closes (Deno 2.9.6) that cost 88-123 us of CPU
// per connect against 77-95 us now: it shows with backends that close every
// connection (HTTP/1.0, `Connection: close`), where each request connects.

import { UpstreamError } from "./transport.ts";
import { describeNetError } from "../net/errors.ts";
import { type Clock, systemClock } from "../clock.ts";
import { shutConnection } from "../net/sockets.ts";

/**
 * What sets a connect's timeout: a Clock's own timer for each connect, or
 * deadlines shared by many connects (`Deadlines` in lib/proxy/deadlines.ts:
 * one coarse timer for all of them, firing up to 10 ms late). A pool whose
 * backends close every connection connects for every request; a timer each
 * (Node's Timeout) cost ~3 us per connect in a CPU profile there.
 */
export type ConnectTimers = Clock | {
  set(timeoutMs: number, onExpire: () => void): { cancel(): void };
};

/** Where to connect. */
export interface DialTarget {
  readonly host: string;
  readonly port: number;
  /** Speak TLS (server name `host`, checked against the system roots or `caCerts`). */
  readonly tls: boolean;
  /** Extra trusted roots (PEM) for TLS; none means the system's. */
  readonly caCerts?: readonly string[];
  /**
   * When TCP_NODELAY is set: at connect (the default), or by the caller before
   * its second write ("later", plain TCP only: TLS gets it at connect). A
   * connection's first write goes out at once either way (Nagle holds a small
   * write only while earlier data is unacknowledged), and a backend that closes
   * every connection gets one write per connection: "later" then saves a
   * system call per request.
   */
  readonly noDelay?: "connect" | "later";
}

/** Whether `dial(target)` leaves TCP_NODELAY to the caller. */
export function noDelayLeftToCaller(target: DialTarget): boolean {
  return !target.tls && target.noDelay === "later";
}

/**
 * A connection to `target` with TCP_NODELAY set (unless left to the caller),
 * its TLS handshake done when `target.tls`. Fails with an UpstreamError:
 * "aborted" when `signal` aborts first, else "connect" (refused, unreachable,
 * a failed handshake, or not done within `timeoutMs`, TCP and TLS together).
 */
export async function dial(
  target: DialTarget,
  signal: AbortSignal,
  timeoutMs: number,
  timers: ConnectTimers = systemClock,
): Promise<Deno.TcpConn | Deno.TlsConn> {
  if (signal.aborted) throw new UpstreamError("aborted", "request aborted before connecting");
  const controller = new AbortController();
  let pending: Deno.Conn | null = null;
  const abort = () => {
    controller.abort();
    try {
      pending?.close(); // cancels a handshake in progress
    } catch { /* already closed, or handed over to TLS */ }
  };
  let timedOut = false;
  /** The local port of a connection in its TLS handshake (0: none). */
  let handshaking = 0;
  const onTimeout = () => {
    timedOut = true;
    abort();
  };
  const deadline = "set" in timers
    ? timers.set(timeoutMs, onTimeout)
    : clockDeadline(timers, timeoutMs, onTimeout);
  signal.addEventListener("abort", abort);
  try {
    const tcp = await Deno.connect({
      hostname: target.host,
      port: target.port,
      signal: controller.signal,
    });
    if (!noDelayLeftToCaller(target)) tcp.setNoDelay(true);
    if (!target.tls) return tcp;
    pending = tcp;
    const caCerts = target.caCerts ?? [];
    const tls = await Deno.startTls(tcp, {
      hostname: target.host,
      alpnProtocols: ["http/1.1"],
      ...(caCerts.length > 0 ? { caCerts: [...caCerts] } : {}),
    });
    pending = tls;
    if (controller.signal.aborted) throw new Error("aborted");
    handshaking = tcp.localAddr.port;
    await tls.handshake();
    pending = null;
    return tls;
  } catch (e) {
    try {
      pending?.close();
    } catch { /* closed by abort() */ }
    // A cancelled handshake leaves the TCP connection open (see shutConnection).
    if (handshaking !== 0 && (timedOut || signal.aborted)) {
      shutConnection(handshaking, target.port).catch(() => {});
    }
    if (signal.aborted) throw new UpstreamError("aborted", "request aborted while connecting");
    if (timedOut) throw new UpstreamError("connect", `connect timed out after ${timeoutMs} ms`);
    const what = pending === null ? "" : "TLS handshake failed: ";
    throw new UpstreamError("connect", what + describeNetError(e), { cause: e });
  } finally {
    deadline.cancel();
    signal.removeEventListener("abort", abort);
  }
}

function clockDeadline(clock: Clock, timeoutMs: number, onExpire: () => void) {
  const handle = clock.setTimeout(onExpire, timeoutMs);
  return { cancel: () => clock.clearTimeout(handle) };
}
