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
import { concatBytes } from "../bytes.ts";
import { headEndLf, latin1, parseChunkSize } from "../transport/http1/parse.ts";

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
      ...(timedOut ? { timedOut } : {}),
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

/**
 * Reads the status line, headers and (when wanted) up to 64 KiB of the body,
 * framed as the proxy frames answers: a head whose lines end in CR LF or a
 * bare LF, then a body of its Content-Length, in chunks, or up to the close.
 */
async function readAnswer(
  conn: Deno.Conn,
  wantBody: boolean,
): Promise<{ status: number; body: string } | null> {
  const reader = new ProbeReader(conn);
  let lf: number;
  while ((lf = headEndLf(reader.bytes, 0, reader.bytes.length)) < 0) {
    if (reader.bytes.length > MAX_BODY) throw new Error("answer headers too large");
    if (!(await reader.more())) return null;
  }
  const text = latin1(reader.bytes.subarray(0, lf));
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!m) throw new Error("malformed status line");
  const status = Number(m[1]);
  if (!wantBody) return { status, body: "" };
  let length: number | null = null;
  let chunked = false;
  for (const line of text.split("\n").slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length" && /^\d+$/.test(value)) length = Number(value);
    else if (name === "transfer-encoding") chunked = value.split(",").at(-1)!.trim() === "chunked";
  }
  reader.consume(lf + (reader.bytes[lf + 1] === 10 ? 2 : 3)); // the empty line: LF or CR LF
  const body = chunked
    ? await readChunked(reader)
    : await reader.take(Math.min(length ?? MAX_BODY, MAX_BODY));
  return { status, body: new TextDecoder().decode(body) };
}

/** A chunked body's data, up to MAX_BODY bytes (the rest is not needed). */
async function readChunked(reader: ProbeReader): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  while (total < MAX_BODY) {
    let lf: number;
    while ((lf = reader.bytes.indexOf(10)) < 0) {
      if (reader.bytes.length > 1024) throw new Error("chunk line too long");
      if (!(await reader.more())) return concatBytes(parts);
    }
    const size = parseChunkSize(latin1(reader.bytes.subarray(0, lf)));
    reader.consume(lf + 1);
    if (size === 0) break;
    const data = await reader.take(Math.min(size, MAX_BODY - total));
    parts.push(data);
    total += data.length;
    if (data.length < size) break; // closed early, or past what is needed
    await reader.skipLineEnd();
  }
  return concatBytes(parts);
}

/** The bytes of a probe's connection read so far and not yet consumed. */
class ProbeReader {
  bytes: Uint8Array = new Uint8Array(0);
  readonly #conn: Deno.Conn;
  readonly #buf = new Uint8Array(16 * 1024);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Reads more; false at the end of the stream. */
  async more(): Promise<boolean> {
    const n = await this.#conn.read(this.#buf);
    if (n === null) return false;
    this.bytes = concatBytes([this.bytes, this.#buf.subarray(0, n)]);
    return true;
  }

  consume(n: number): void {
    this.bytes = this.bytes.subarray(n);
  }

  /** The next `n` bytes, fewer when the stream ends first. */
  async take(n: number): Promise<Uint8Array> {
    while (this.bytes.length < n && await this.more());
    const out = this.bytes.subarray(0, Math.min(n, this.bytes.length));
    this.consume(out.length);
    return out;
  }

  /** Skips the CR LF (or bare LF) that ends a chunk's data. */
  async skipLineEnd(): Promise<void> {
    for (const byte of [13, 10]) {
      if (this.bytes.length === 0 && !(await this.more())) return;
      if (this.bytes[0] === byte) this.consume(1);
    }
  }
}
