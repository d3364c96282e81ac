// One active health probe: `GET <path>` over a fresh HTTP/1.1 connection
// (like RustStrom's unpooled check), bounded by `timeout` from connect to the
// last byte needed. Returns a ProbeResult; never throws.

import type { BackendAddress, HealthConfig } from "../config/types.ts";
import type { Clock } from "../clock.ts";
import { VERSION } from "../version.ts";
import type { ProbeResult } from "./state.ts";
import { describeNetError } from "../net/errors.ts";
import { dial } from "../transport/dial.ts";
import { writtenAuthority } from "../net/address.ts";

/** The User-Agent probes send, so backends can recognize (and not log) them. */
export const PROBE_USER_AGENT = `Strom-HealthCheck/${VERSION}`;
/** The most of a body a probe reads when it looks for `expected_body`. */
const MAX_BODY = 64 * 1024;

/** Probes a backend; a failing backend is a result, not an exception. */
export type Probe = (
  backend: BackendAddress,
  config: HealthConfig,
  tls?: { readonly caCerts: readonly string[] },
) => Promise<ProbeResult>;

/** Creates the HTTP probe that measures time with `clock`. */
export function createHttpProbe(clock: Clock): Probe {
  return async (backend, config, tls) => {
    const started = clock.now();
    let conn: Deno.Conn | null = null;
    let timedOut = false;
    // The timeout covers the connect and TLS handshake too: a backend whose host drops SYNs, or
    // that never speaks TLS, held a probe (and its pool's round) for minutes.
    const connecting = new AbortController();
    const timer = clock.setTimeout(() => {
      timedOut = true;
      connecting.abort();
      try {
        conn?.close();
      } catch { /* closed */ }
    }, config.timeoutMs);
    const fail = (reason: string, status: number | null = null): ProbeResult => ({
      ok: false,
      slow: false,
      status,
      latencyMs: clock.now() - started,
      reason,
    });
    try {
      conn = await dial(
        { host: backend.host, port: backend.port, tls: backend.tls, caCerts: tls?.caCerts },
        connecting.signal,
        config.timeoutMs,
        clock,
      );
      if (timedOut) return fail(`timed out after ${config.timeoutMs} ms`);
      const head =
        `GET ${config.path} HTTP/1.1\r\nHost: ${config.host ?? writtenAuthority(backend.id)}\r\n` +
        `User-Agent: ${PROBE_USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n`;
      await conn.write(new TextEncoder().encode(head));
      const answer = await readAnswer(conn, config.expectedBody !== null);
      const latencyMs = clock.now() - started;
      if (answer === null) return fail("connection closed before an answer");
      const { status } = answer;
      if (!config.expectedStatus.some((r) => status >= r.from && status <= r.to)) {
        return fail(`status ${status}`, status);
      }
      if (config.expectedBody !== null && !answer.body.includes(config.expectedBody)) {
        return fail(`body does not contain ${JSON.stringify(config.expectedBody)}`, status);
      }
      const slow = latencyMs > config.slowThresholdMs;
      return {
        ok: true,
        slow,
        status,
        latencyMs,
        reason: `status ${status}${slow ? ", slow" : ""}`,
      };
    } catch (e) {
      if (timedOut) return fail(`timed out after ${config.timeoutMs} ms`);
      return fail(describeNetError(e));
    } finally {
      clock.clearTimeout(timer);
      try {
        conn?.close();
      } catch { /* closed */ }
    }
  };
}

/** Reads the status line, headers and (when wanted) up to 64 KiB of the body. */
async function readAnswer(
  conn: Deno.Conn,
  wantBody: boolean,
): Promise<{ status: number; body: string } | null> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(16 * 1024);
  let text = "";
  let headEnd = -1;
  while (headEnd < 0) {
    const n = await conn.read(buf);
    if (n === null) return null;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0 && text.length > MAX_BODY) throw new Error("answer headers too large");
  }
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!m) throw new Error("malformed status line");
  const status = Number(m[1]);
  if (!wantBody) return { status, body: "" };
  let body = text.slice(headEnd + 4);
  while (body.length < MAX_BODY) {
    const n = await conn.read(buf);
    if (n === null) break;
    body += decoder.decode(buf.subarray(0, n), { stream: true });
  }
  return { status, body };
}
