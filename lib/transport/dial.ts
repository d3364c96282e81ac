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
  let pending: Deno.Conn | null = null;
  let gaveUp!: () => void;
  const stopped = new Promise<null>((resolve) => gaveUp = () => resolve(null));
  const abort = () => {
    gaveUp();
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
  /** A connect given up on, still under way: see UpstreamError.ending. */
  let ending: Promise<void> | undefined;
  try {
    const connected = await tcpConnect(target, stopped);
    if ("ending" in connected) {
      ending = connected.ending;
      throw new Error("aborted");
    }
    const tcp = connected.tcp;
    pending = tcp;
    if (!noDelayLeftToCaller(target)) tcp.setNoDelay(true);
    if (!target.tls) {
      // Given up on in the turn the connect completed: closed here, not handed to nobody.
      if (timedOut || signal.aborted) throw new Error("aborted");
      pending = null;
      return tcp;
    }
    const caCerts = target.caCerts ?? [];
    const tls = await Deno.startTls(tcp, {
      hostname: target.host,
      alpnProtocols: ["http/1.1"],
      ...(caCerts.length > 0 ? { caCerts: [...caCerts] } : {}),
    });
    pending = tls;
    if (timedOut || signal.aborted) throw new Error("aborted");
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
    let error: UpstreamError;
    if (signal.aborted) error = new UpstreamError("aborted", "request aborted while connecting");
    else if (timedOut) {
      error = new UpstreamError("connect", `connect timed out after ${timeoutMs} ms`);
    } else {
      const what = pending === null ? "" : "TLS handshake failed: ";
      error = new UpstreamError("connect", what + describeNetError(e), { cause: e });
    }
    error.ending = ending;
    throw error;
  } finally {
    deadline.cancel();
    signal.removeEventListener("abort", abort);
  }
}

/**
 * How long a connect given up on (client gone, connect_timeout) may go on
 * before it is cancelled: one that completes meanwhile is closed then.
 */
const ABANDONED_CONNECT_MS = 2000;

/**
 * A TCP connection to `target`, or, once `stopped` resolves first, the end of
 * the connect given up on (resolved once its socket is closed). The
 * connect is not cancelled right away: Deno 2.9.6's `Deno.connect` rejects
 * with an AbortError when its signal fires in the turn its connect completes,
 * and never closes that socket (a probe: 357 of 500 clients that hung up at
 * once each left a backend connection open for good). A connect given up on
 * is closed when it completes, and cancelled only ABANDONED_CONNECT_MS later
 * (one that never completes, to a host that drops packets, holds a descriptor
 * no longer), when that race is as unlikely as a connect ending in that turn.
 */
async function tcpConnect(
  target: DialTarget,
  stopped: Promise<null>,
): Promise<{ tcp: Deno.TcpConn } | { ending: Promise<void> }> {
  const cancel = new AbortController();
  const connecting = Deno.connect({
    hostname: target.host,
    port: target.port,
    signal: cancel.signal,
  });
  const tcp = await Promise.race([connecting, stopped]);
  if (tcp !== null) return { tcp };
  const timer = setTimeout(() => cancel.abort(), ABANDONED_CONNECT_MS);
  Deno.unrefTimer(timer);
  const close = (late: Deno.TcpConn) => {
    try {
      late.close();
    } catch { /* closed */ }
  };
  const ending = connecting.then(close, () => {}).finally(() => clearTimeout(timer));
  return { ending };
}

function clockDeadline(clock: Clock, timeoutMs: number, onExpire: () => void) {
  const handle = clock.setTimeout(onExpire, timeoutMs);
  return { cancel: () => clock.clearTimeout(handle) };
}
