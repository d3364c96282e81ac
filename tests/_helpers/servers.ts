// Real servers on 127.0.0.1 port 0 for tests, disposed with `await using`.

import { parseConfig } from "../../lib/config/load.ts";
import type { Config } from "../../lib/config/types.ts";
import { type Logger, silentLogger } from "../../lib/log.ts";
import { defaultRuntimeDeps, type RuntimeDeps } from "../../lib/runtime.ts";
import { Strom } from "../../lib/server.ts";
import type { Probe } from "../../lib/health/probe.ts";
import type { LogRing } from "../../lib/log_ring.ts";
import type { AcmeTuning } from "../../lib/tls/acme.ts";
import type { Trim } from "../../lib/memory_trim.ts";
import type { DropPages } from "../../lib/file_pages.ts";

/** A test backend: a real HTTP server and what it has seen. */
export interface TestBackend extends AsyncDisposable {
  readonly port: number;
  readonly address: string;
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  /** Requests received so far. */
  readonly requests: Request[];
  close(): Promise<void>;
}

/** Starts a backend on an ephemeral port; the default handler answers its own address as text. */
export function startBackend(
  handler?: (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => Response | Promise<Response>,
): TestBackend {
  const requests: Request[] = [];
  let closed: Promise<void> | null = null;
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request, info) => {
      requests.push(request);
      return handler ? handler(request, info) : new Response(`backend ${server.addr.port}`);
    },
  );
  const address = `127.0.0.1:${server.addr.port}`;
  const close = () => closed ??= server.shutdown();
  return {
    port: server.addr.port,
    address,
    server,
    requests,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A running Strom under test. */
export interface TestStrom extends AsyncDisposable {
  readonly strom: Strom;
  readonly config: Config;
  /** `http://127.0.0.1:<port>` of the HTTP listener. */
  readonly url: string;
  /** `http://127.0.0.1:<port>` of the admin listener. */
  readonly adminUrl: string;
}

/** Options for startStrom. */
export interface StromTestOptions {
  readonly log?: Logger;
  readonly deps?: Partial<RuntimeDeps>;
  /** Run health rounds on timers (default false: tests call `strom.health.checkAll()`). */
  readonly autoHealth?: boolean;
  readonly probe?: Probe;
  /** Where the config "lives" (for reload and the config API); default "<test>". */
  readonly source?: { source: string; baseDir: string };
  /** Recent log lines for GET /api/logs (give `log` a sink that fills it). */
  readonly logRing?: LogRing;
  /** ACME timers and protocol (e.g. a ManualClock). */
  readonly acme?: AcmeTuning;
  /** Memory trimming (default: glibc's malloc_trim). */
  readonly memoryTrim?: Trim | string;
  /** Dropping the binary's unused pages (default: not done, as it would act on the test runner). */
  readonly pageDrop?: DropPages | string;
  /** Server names an HTTPS listener resolves before it is replaced. */
  readonly resolvedNamesLimit?: number;
}

/**
 * Starts Strom from TOML text. Listener addresses default to 127.0.0.1:0 unless
 * the text sets them.
 */
export async function startStrom(toml: string, options: StromTestOptions = {}): Promise<TestStrom> {
  const prefix = [
    /^http_address/m.test(toml) ? "" : `http_address = "127.0.0.1:0"\n`,
    /^admin_address/m.test(toml) ? "" : `admin_address = "127.0.0.1:0"\n`,
  ].join("");
  const origin = options.source ?? { source: "<test>", baseDir: Deno.cwd() };
  const config = parseConfig(prefix + toml, origin);
  const strom = await Strom.start(config, {
    configSource: { ...origin, text: prefix + toml },
    log: options.log ?? silentLogger,
    deps: { ...defaultRuntimeDeps, ...options.deps },
    autoHealth: options.autoHealth ?? false,
    probe: options.probe,
    logRing: options.logRing,
    acme: options.acme,
    memoryTrim: options.memoryTrim,
    pageDrop: options.pageDrop ?? "not in tests started in-process",
    resolvedNamesLimit: options.resolvedNamesLimit,
  });
  return {
    strom,
    config,
    url: `http://127.0.0.1:${strom.port("http_address")}`,
    adminUrl: `http://127.0.0.1:${strom.port("admin_address")}`,
    [Symbol.asyncDispose]: () => strom.shutdown(1000),
  };
}

/**
 * A probe for `startStrom`: the backend `held` (its id) gets its answer, failing
 * or passing, only when the test calls `answer(ok)`; every other backend passes
 * at once. For tests about what happens while a probe is still running.
 */
export function heldProbe(held: string): { probe: Probe; answer: (ok: boolean) => void } {
  let answer: (ok: boolean) => void = () => {};
  const probe: Probe = (backend) =>
    backend.id === held
      ? new Promise((resolve) =>
        answer = (ok) =>
          resolve({
            ok,
            slow: false,
            status: ok ? 200 : 503,
            latencyMs: 1,
            reason: `status ${ok ? 200 : 503}`,
          })
      )
      : Promise.resolve({ ok: true, slow: false, status: 200, latencyMs: 1, reason: "status 200" });
  return { probe, answer: (ok) => answer(ok) };
}

/** The transport integration tests run against (`STROM_TEST_TRANSPORT`, default http1). */
export const TEST_TRANSPORT = Deno.env.get("STROM_TEST_TRANSPORT") ?? "http1";

/**
 * TOML for one pool over `addresses`; `extra` lines go inside the pool table.
 * The pool uses TEST_TRANSPORT unless `extra` names a transport.
 */
export function poolToml(
  addresses: readonly string[],
  options: { matcher?: string; strategy?: string; extra?: string; schemes?: string } = {},
): string {
  return `
[[backend_pools]]
matcher = ${JSON.stringify(options.matcher ?? "PathPrefix('/')")}
addresses = ${JSON.stringify(addresses)}
schemes = ${options.schemes ?? '["HTTP"]'}
strategy = ${options.strategy ?? "{ RoundRobin = {} }"}
${/^transport\s*=/m.test(options.extra ?? "") ? "" : `transport = "${TEST_TRANSPORT}"`}
${options.extra ?? ""}
`;
}

/** Polls `condition` until it holds or `timeoutMs` passes; the message says what was awaited. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  message: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${message}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A client that sends the Host header tests give it (plain fetch replaces it). */
const client = Deno.createHttpClient({ allowHost: true });

/** GETs a URL and returns status, headers and text body (the body is always consumed). */
export async function get(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const response = await fetch(url, { client, ...init });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** A backend that speaks raw bytes: `respond` gets each connection and writes what it likes. */
export function startRawBackend(
  respond: (conn: Deno.TcpConn, head: string) => Promise<void>,
): { port: number; address: string } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const serve = async (conn: Deno.TcpConn) => {
    conns.add(conn);
    try {
      const buf = new Uint8Array(65536);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      await respond(conn, head);
    } catch {
      /* peer went away */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}
