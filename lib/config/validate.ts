// Walks a parsed TOML document and builds the typed Config, collecting every
// problem with its dotted path. Accepts RustStrom's schema plus Strom's additions.

import type { Problem } from "./errors.ts";
import { describe, isTable, shownValue, TableReader } from "./fields.ts";
import { MAX_DURATION_MS, parseDurationMs, readDurationMs } from "./duration.ts";
import { caretLines, compileMatcher, hostsOf, MatcherSyntaxError } from "./matcher.ts";
import { dirname, resolve as resolvePath } from "node:path";
import type {
  AccessLogConfig,
  BackendAddress,
  CertificateConfig,
  ClientConfig,
  Config,
  MiddlewareConfig,
  PoolConfig,
  Scheme,
  StrategyConfig,
  TransportName,
} from "./types.ts";
import {
  formatAuthority,
  parseBackendAuthority,
  parseSocketAddress,
  type SocketAddress,
  withPasswordHidden,
} from "../net/address.ts";
import { parseStrategy } from "../balance/registry.ts";
import { readNetworks } from "./networks.ts";
import { readHealth, readOutlier } from "./health.ts";
import { findMiddleware } from "../middleware/registry.ts";
import type { MiddlewareSpec } from "../middleware/middleware.ts";
import { validateCertificates } from "./certificates.ts";
import { readConfigText, readFailure } from "./files.ts";

/** Where a document came from: used for messages and to resolve relative paths. */
export interface Origin {
  readonly source: string;
  /** Folder that relative paths in the config are resolved against. */
  readonly baseDir: string;
}

/** The outcome of validation: a Config, or every problem found. */
export type Validation =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly problems: readonly Problem[] };

/** Validates a parsed TOML document completely. */
export function validateConfig(doc: Record<string, unknown>, origin: Origin): Validation {
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const top = new TableReader(doc, "", problems);
  const address = (key: string, fallback: string) => readSocket(top, key, fallback);
  const httpAddress = address("http_address", "[::]:80");
  const httpsAddress = address("https_address", "[::]:443");
  const adminAddress = address("admin_address", "127.0.0.1:9090");
  const adminToken = readAdminToken(top, origin.baseDir, adminAddress);
  const healthCheckEverySec = readHealthInterval(top);
  const workers = readWorkers(top);
  const sendTimeoutMs = top.has("send_timeout")
    ? parseDurationMs(top.raw("send_timeout"), "send_timeout", problems)
    : 60_000;
  if (sendTimeoutMs === 0) top.problem("send_timeout", "expected a positive duration");
  const clientHeaderTimeoutMs = readClientTimeout(top, "client_header_timeout", 10_000);
  const clientIdleTimeoutMs = readClientTimeout(top, "client_idle_timeout", 60_000);
  const memoryTrimIntervalMs = readMemoryTrimInterval(top);
  const trustedProxies = readNetworks(top, "trusted_proxies") ?? [];
  const accessLog = readAccessLog(top.subtable("access_log"), origin.baseDir);
  readPrometheusAddress(top, warnings);
  const pools = readPools(top, warnings, origin.baseDir);
  if (workers !== undefined && workers > 1) warnPerWorkerCaps(pools, workers, warnings);
  const certificates = validateCertificates(
    top.raw("certificates"),
    origin.baseDir,
    problems,
    warnings,
  );
  const defaultCertificate = top.has("default_certificate")
    ? top.string("default_certificate") ?? null
    : null;
  if (
    defaultCertificate !== null &&
    !certificates.some((c) => c?.serverName === defaultCertificate.toLowerCase())
  ) {
    top.problem(
      "default_certificate",
      `no certificate named ${JSON.stringify(defaultCertificate)}`,
    );
  }
  const listeners: [string, SocketAddress | undefined][] = [
    ["http_address", httpAddress],
    ["admin_address", adminAddress],
  ];
  if (certificates.length > 0) listeners.splice(1, 0, ["https_address", httpsAddress]);
  else if (top.has("https_address")) {
    warnings.push(
      "https_address: no certificates are configured, so Strom does not listen there " +
        "(an HttpsRedirector sends clients to port 443 of their host)",
    );
  }
  checkListenerClashes(top, listeners);
  top.finish();
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: deepFreeze({
      source: origin.source,
      baseDir: origin.baseDir,
      httpAddress: httpAddress!,
      httpsAddress: httpsAddress!,
      adminAddress: adminAddress!,
      adminToken,
      workers: workers!,
      sendTimeoutMs: sendTimeoutMs!,
      clientHeaderTimeoutMs: clientHeaderTimeoutMs!,
      clientIdleTimeoutMs: clientIdleTimeoutMs!,
      memoryTrimIntervalMs: memoryTrimIntervalMs!,
      healthCheckEverySec: healthCheckEverySec!,
      trustedProxies,
      accessLog: accessLog ?? null,
      pools: pools as PoolConfig[],
      certificates: certificates as CertificateConfig[],
      defaultCertificate: defaultCertificate?.toLowerCase() ?? null,
      warnings,
    }),
  };
}

/**
 * RustStrom's `prometheus_metrics_address`, which its own docker and test
 * configs set: it never took effect there (metrics were on a hard-coded
 * 0.0.0.0:9090), so a file carrying it loads, with a warning that says where
 * the metrics are instead.
 */
function readPrometheusAddress(top: TableReader, warnings: string[]): void {
  if (!top.has("prometheus_metrics_address")) return;
  const text = top.string("prometheus_metrics_address");
  if (text === undefined) return;
  warnings.push(
    `prometheus_metrics_address (${JSON.stringify(text)}) is ignored, as RustStrom ignored it: ` +
      "metrics are served at /metrics on admin_address",
  );
}

/**
 * Two listeners on one port cannot both bind when their addresses are the same
 * or one is a wildcard covering the other (`[::]` covers everything, being
 * dual-stack; `0.0.0.0` every IPv4 address): a problem at load instead of a
 * failed start. Port 0 picks a free port for each.
 */
function checkListenerClashes(
  top: TableReader,
  listeners: readonly [string, SocketAddress | undefined][],
): void {
  const covers = (a: string, b: string) =>
    a === b || a === "::" || (a === "0.0.0.0" && !b.includes(":"));
  for (let i = 0; i < listeners.length; i++) {
    for (let j = 0; j < i; j++) {
      const [key, a] = listeners[i];
      const [other, b] = listeners[j];
      if (a === undefined || b === undefined || a.port === 0 || a.port !== b.port) continue;
      if (covers(a.hostname, b.hostname) || covers(b.hostname, a.hostname)) {
        top.problem(key, `${a.text} overlaps ${other} ${b.text}: each listener needs its own port`);
      }
    }
  }
}

function readSocket(r: TableReader, key: string, fallback: string): SocketAddress | undefined {
  const text = r.string(key, fallback);
  if (text === undefined) return undefined;
  const parsed = parseSocketAddress(text);
  if (typeof parsed === "string") {
    r.problem(key, `invalid address ${JSON.stringify(text)}: ${parsed}`);
    return undefined;
  }
  return parsed;
}

/** A client timeout: 0 (off) or at least a second (it is enforced once a second). */
function readClientTimeout(top: TableReader, key: string, fallback: number): number | undefined {
  if (!top.has(key)) return fallback;
  const ms = parseDurationMs(top.raw(key), key, top.problems);
  if (ms !== undefined && ms > 0 && ms < 1000) {
    top.problem(key, "expected 0 (off) or at least 1s: it is checked once a second");
    return undefined;
  }
  return ms;
}

/** `memory_trim_interval`: 0 (off) or at least 100 ms; default 1 s (lib/memory_trim.ts). */
function readMemoryTrimInterval(top: TableReader): number | undefined {
  const key = "memory_trim_interval";
  if (!top.has(key)) return 1000;
  const ms = parseDurationMs(top.raw(key), key, top.problems);
  if (ms !== undefined && ms > 0 && ms < 100) {
    top.problem(key, "expected 0 (off) or at least 100ms");
    return undefined;
  }
  return ms;
}

function readHealthInterval(top: TableReader): number | undefined {
  const table = top.subtable("health_interval");
  if (!table) return top.has("health_interval") ? undefined : 10;
  const every = table.int("check_every", { max: 86_400 });
  table.finish();
  return every;
}

/** `admin_token` or `admin_token_file`; required when the admin listener is not on loopback. */
function readAdminToken(
  top: TableReader,
  baseDir: string,
  admin: SocketAddress | undefined,
): string | null {
  const inline = top.has("admin_token") ? top.string("admin_token") : undefined;
  const file = top.has("admin_token_file") ? top.string("admin_token_file") : undefined;
  let token: string | null = inline ?? null;
  if (inline !== undefined && file !== undefined) {
    top.problem("admin_token_file", "set either admin_token or admin_token_file, not both");
  } else if (file !== undefined) {
    try {
      token = readConfigText(resolvePath(baseDir, file)).trim();
    } catch (e) {
      top.problem(
        "admin_token_file",
        `cannot read "${resolvePath(baseDir, file)}": ${readFailure(e)}`,
      );
    }
  }
  const tokenKey = inline !== undefined ? "admin_token" : "admin_token_file";
  if (token !== null && !TOKEN_CHARACTERS.test(token)) {
    // A client's Authorization header could never carry it: HTTP takes the spaces around a
    // field value off, and a header is no place for control characters or non-ASCII.
    top.problem(
      tokenKey,
      "the token must be printable ASCII without spaces at its ends (no client could send it)",
    );
  } else if (token !== null && token.length < 16) {
    top.problem(tokenKey, "the token must be at least 16 characters");
  }
  if (admin && token === null && !isLoopback(admin.hostname)) {
    top.problem(
      "admin_address",
      `the admin listener ${
        JSON.stringify(admin.text)
      } is not on loopback: set admin_token or admin_token_file`,
    );
  }
  return token;
}

/** What an admin token may be: printable ASCII, no space or tab at either end. */
const TOKEN_CHARACTERS = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

function isLoopback(hostname: string): boolean {
  return hostname === "::1" || /^127\./.test(hostname) || hostname === "::ffff:127.0.0.1";
}

/** `[access_log] format = "json" | "common" | "combined", path = "stdout" | FILE`. */
function readAccessLog(r: TableReader | null, baseDir: string): AccessLogConfig | undefined {
  if (!r) return undefined;
  const format = r.string("format", "combined");
  if (format !== undefined && format !== "json" && format !== "common" && format !== "combined") {
    r.problem(
      "format",
      `unknown format ${JSON.stringify(format)} (expected "json", "common" or "combined")`,
    );
  }
  let path = r.string("path", "stdout");
  if (path === "") r.problem("path", 'expected a file or "stdout"');
  if (path?.includes("\0")) {
    r.problem("path", "a file name cannot hold a NUL character");
    path = undefined;
  }
  const file = path === undefined || path === "" || path === "stdout" || path === "-"
    ? null
    : resolvePath(baseDir, path);
  if (file !== null) {
    // Found here, not only when the log is opened: `--check` passed a config that could not start.
    const folder = dirname(file);
    try {
      if (!Deno.statSync(folder).isDirectory) r.problem("path", `"${folder}" is not a folder`);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? " does not exist" : `: ${readFailure(e)}`;
      r.problem("path", `the folder "${folder}"${why}`);
    }
  }
  r.finish();
  if (format === undefined || path === undefined) return undefined;
  return { format: format as AccessLogConfig["format"], path: file ?? "stdout" };
}

/**
 * `max_connections_per_host` caps one isolate's pool: with workers, a backend
 * may get that many from each (nginx's `max_conns` without a shared zone is
 * per worker process alike). Said at load, since the setting exists to protect
 * a backend.
 */
function warnPerWorkerCaps(
  pools: readonly (PoolConfig | undefined)[],
  workers: number,
  warnings: string[],
): void {
  pools.forEach((pool, i) => {
    const cap = pool?.client.maxConnectionsPerHost;
    if (cap === undefined || cap === null) return;
    warnings.push(
      `backend_pools[${i}].client.max_connections_per_host: ${cap} per worker: with workers = ` +
        `${workers}, a backend may get up to ${cap * workers} connections (${
          cap * (workers + 1)
        } with HTTPS traffic, which the main isolate serves too)`,
    );
  });
}

/** `workers = N | "auto"` ("auto": one per CPU core). */
function readWorkers(top: TableReader): number | undefined {
  const value = top.raw("workers");
  if (value === undefined) return 1;
  if (value === "auto") return Math.max(1, navigator.hardwareConcurrency || 1);
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 256) return n;
  top.problem("workers", `expected a number from 1 to 256 or "auto", found ${describe(value)}`);
  return undefined;
}

function readPools(
  top: TableReader,
  warnings: string[],
  baseDir: string,
): (PoolConfig | undefined)[] {
  const list = top.array("backend_pools") ?? [];
  if (list.length === 0) warnings.push("No backend pool found.");
  const names = new Set<string>();
  /** Sticky cookie name → the pools that use it so far. */
  const cookies = new Map<string, PoolConfig[]>();
  return list.map((value, index) => {
    const r = TableReader.of(value, top.at("backend_pools") + `[${index}]`, top.problems);
    if (!r) return undefined;
    const pool = readPool(r, index, warnings, baseDir);
    r.finish();
    const cookie = pool && stickyCookieName(pool.strategy);
    if (cookie) {
      const earlier = cookies.get(cookie) ?? [];
      // Browsers keep cookies per host: pools of different hosts cannot overwrite each other's.
      const clash = earlier.find((other) => mayShareHost(other, pool));
      if (clash) {
        warnings.push(
          `${r.at("strategy")}: pools "${clash.name}" and "${pool.name}" both keep clients with ` +
            `the cookie "${cookie}" (Path=/): a client of both overwrites one pool's with the ` +
            "other's and sticks to neither; give each pool its own cookie_name",
        );
      }
      cookies.set(cookie, [...earlier, pool]);
    }
    // Checked whatever else is wrong with either pool, so it is not found only once they are fixed.
    const given = (value as Record<string, unknown>).name;
    const name = given === undefined ? `pool-${index}` : given;
    if (typeof name === "string") {
      if (names.has(name)) r.problem("name", `duplicate pool name ${JSON.stringify(name)}`);
      names.add(name);
    }
    return pool;
  });
}

/** Whether one client may reach both pools on one host name (by their matchers' Host terms). */
function mayShareHost(a: PoolConfig, b: PoolConfig): boolean {
  const hostsA = hostsOf(a.matcher);
  const hostsB = hostsOf(b.matcher);
  return hostsA === null || hostsB === null || [...hostsA].some((h) => hostsB.has(h));
}

/** The cookie name of a StickyCookie strategy; null for other strategies. */
function stickyCookieName(strategy: StrategyConfig): string | null {
  if (strategy.name !== "StickyCookie") return null;
  const name = strategy.options.cookieName;
  return typeof name === "string" ? name : null;
}

function readPool(
  r: TableReader,
  index: number,
  warnings: string[],
  baseDir: string,
): PoolConfig | undefined {
  const before = r.problems.length;
  const name = r.string("name", `pool-${index}`)!;
  // Logs, metrics labels and the admin API's paths name a pool by it.
  if (name === "") r.problem("name", "expected a non-empty name (or no name: pool-N)");
  // A line break or another control character would split or garble log lines and labels.
  else if (/\p{Cc}/u.test(name)) {
    r.problem("name", `control characters are not allowed in a name: ${JSON.stringify(name)}`);
  }
  const matcherSource = r.string("matcher");
  const matcher = matcherSource === undefined ? undefined : readMatcher(r, matcherSource, warnings);
  const addresses = readAddresses(r, warnings);
  const schemes = readSchemes(r);
  const strategyValue = r.raw("strategy", true);
  const strategy = strategyValue === undefined
    ? undefined
    : parseStrategy(strategyValue, r.at("strategy"), r.problems, {
      addresses: addresses?.map((a) => a.id),
      warn: (path, message) => warnings.push(`${path}: ${message}`),
    });
  const health = readHealth(r.subtable("health_config"));
  const client = readClient(r.subtable("client"), baseDir, warnings);
  const transport = readTransport(r);
  const middlewares = readMiddlewares(r.subtable("middlewares"), baseDir, warnings);
  const timeout = (key: string, fallbackMs: number) =>
    r.has(key) ? parseDurationMs(r.raw(key), r.at(key), r.problems) : fallbackMs;
  const requestTimeoutMs = timeout("request_timeout", 30_000);
  const connectTimeoutMs = timeout("connect_timeout", 5_000);
  // 0 (or less than 1 ms) would time every request out at once; read_timeout's 0 turns it off.
  if (requestTimeoutMs !== undefined && requestTimeoutMs < 1) {
    r.problem("request_timeout", "expected a duration of at least 1 ms");
  }
  if (connectTimeoutMs !== undefined && connectTimeoutMs < 1) {
    // The fetch transport connects without it (only its WebSocket upgrades use it): a config
    // that ran with it stays valid.
    if (transport === "fetch") {
      warnings.push(
        `${
          r.at("connect_timeout")
        }: under 1 ms, every WebSocket upgrade of this pool times out at once`,
      );
    } else r.problem("connect_timeout", "expected a duration of at least 1 ms");
  }
  const readTimeoutMs = timeout("read_timeout", 300_000);
  const outlier = readOutlier(r.subtable("outlier_detection"));
  const retries = r.int("retries", { fallback: 2, max: 10 });
  const retryBudgetPercent = r.int("retry_budget_percent", { fallback: 20, max: 100 });
  if (r.problems.length > before) return undefined;
  if (schemes!.size === 0) {
    warnings.push(
      `backend pool at index ${index} is unreachable, since no schemes are registered. Consider adding \`HTTP\` or \`HTTPS\` to the schemes array.`,
    );
  }
  if (addresses!.length === 0) {
    warnings.push(
      `backend pool at index ${index} does not contain any addresses. It will always result in service unavailable errors.`,
    );
  }
  return {
    index,
    name,
    matcherSource: matcherSource!,
    matcher: matcher!,
    addresses: addresses!,
    schemes: schemes!,
    strategy: strategy!,
    health: health!,
    client: client!,
    transport: transport!,
    middlewares: middlewares!,
    requestTimeoutMs: requestTimeoutMs!,
    connectTimeoutMs: connectTimeoutMs!,
    readTimeoutMs: readTimeoutMs!,
    outlier: outlier!,
    retries: retries!,
    retryBudgetPercent: retryBudgetPercent!,
  };
}

function readMatcher(r: TableReader, source: string, warnings: string[]) {
  try {
    return compileMatcher(source, (reason) => warnings.push(`${r.at("matcher")}: ${reason}`));
  } catch (e) {
    if (!(e instanceof MatcherSyntaxError)) throw e;
    r.problem("matcher", `invalid matcher: ${e.message}\n${caretLines(source, e.column, 0)}`);
    return undefined;
  }
}

function readAddresses(r: TableReader, warnings: string[]): BackendAddress[] | undefined {
  const list = r.array("addresses", true);
  if (!list) return undefined;
  const out: BackendAddress[] = [];
  const before = r.problems.length;
  const seen = new Map<string, number>();
  list.forEach((v, i) => {
    const path = r.at("addresses") + `[${i}]`;
    if (typeof v !== "string") {
      r.problems.push({ path, message: 'expected a string such as "10.0.0.2:8080"' });
      return;
    }
    const first = seen.get(v);
    if (first === undefined) seen.set(v, i);
    else {
      // RustStrom took a repeat as one more backend; some use it as a weight.
      warnings.push(
        `${path}: ${shownValue(v)} is also addresses[${first}]: each listing gets its own ` +
          "share of the traffic, and metrics and the admin API cannot tell them apart",
      );
    }
    const parsed = parseBackendAuthority(v);
    if (typeof parsed === "string") {
      // A password written in the address is not repeated (problems reach logs and the API).
      r.problems.push({
        path,
        message: `invalid address ${shownValue(withPasswordHidden(v))}: ${parsed}`,
      });
      return;
    }
    out.push({ id: v, ...parsed, authority: formatAuthority(parsed.host, parsed.port) });
  });
  return r.problems.length > before ? undefined : out;
}

function readSchemes(r: TableReader): Set<Scheme> | undefined {
  const list = r.array("schemes", true);
  if (!list) return undefined;
  const out = new Set<Scheme>();
  list.forEach((v, i) => {
    if (v === "HTTP" || v === "HTTPS") out.add(v);
    else {
      r.problems.push({
        path: r.at("schemes") + `[${i}]`,
        message: `invalid scheme ${shownValue(v)} (expected "HTTP" or "HTTPS")`,
      });
    }
  });
  return out;
}

function readClient(
  r: TableReader | null,
  baseDir: string,
  warnings: string[],
): ClientConfig | undefined {
  if (!r) {
    return {
      poolIdleTimeoutMs: null,
      poolMaxIdlePerHost: null,
      maxConnectionsPerHost: null,
      caCerts: [],
    };
  }
  const idle = r.has("pool_idle_timeout") ? readPoolIdleTimeout(r, warnings) : null;
  const maxIdle = r.has("pool_max_idle_per_host") ? r.int("pool_max_idle_per_host") : null;
  const maxConnections = r.has("max_connections_per_host")
    ? r.int("max_connections_per_host", { min: 1 })
    : null;
  const caCerts: string[] = [];
  const caFile = r.has("ca_file") ? r.string("ca_file") : undefined;
  if (caFile !== undefined) {
    try {
      const pem = readConfigText(resolvePath(baseDir, caFile));
      caCerts.push(
        ...(pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []),
      );
      if (caCerts.length === 0) {
        r.problem("ca_file", `no CERTIFICATE block in ${JSON.stringify(caFile)}`);
      }
    } catch (e) {
      r.problem("ca_file", `cannot read "${resolvePath(baseDir, caFile)}": ${readFailure(e)}`);
    }
  }
  r.finish();
  return {
    poolIdleTimeoutMs: idle ?? null,
    poolMaxIdlePerHost: maxIdle ?? null,
    maxConnectionsPerHost: maxConnections ?? null,
    caCerts,
  };
}

function readTransport(r: TableReader): TransportName | undefined {
  const name = r.string("transport", "http1");
  if (name === "http1" || name === "fetch") return name;
  if (name !== undefined) {
    r.problem(
      "transport",
      `unknown transport ${JSON.stringify(name)} (expected "http1" or "fetch")`,
    );
  }
  return undefined;
}

function readMiddlewares(
  r: TableReader | null,
  baseDir: string,
  warnings: string[],
): MiddlewareConfig[] | undefined {
  if (!r) return [];
  const out: MiddlewareConfig[] = [];
  const warn = (path: string, message: string) => warnings.push(`${path}: ${message}`);
  for (const name of Object.keys(r.table)) {
    const value = r.raw(name);
    const spec = findMiddleware(name);
    if (typeof spec === "string") {
      r.problem(name, spec);
      continue;
    }
    if (value === false) {
      // RustStrom enabled a middleware whatever its value, `false` included.
      r.problem(name, "`false` does not turn a middleware off: remove the key instead");
      continue;
    }
    // RustStrom took any value for a middleware without options (`HttpsRedirector = true`).
    // Another value than `true` and a table (`"yes"`, `1`) turns on one that needs none, with a
    // warning; one with required options is refused (RustStrom dropped it without a word).
    let table = value === true ? {} : value;
    if (!isTable(table) && needsNoOptions(spec, baseDir)) {
      warn(r.at(name), `${describe(value)} turns ${name} on as \`true\` does`);
      table = {};
    }
    const options = TableReader.of(table, r.at(name), r.problems);
    if (!options) continue;
    const parsed = spec.parse(options, { baseDir, warn });
    options.finish();
    out.push({ name, options: parsed });
  }
  return out;
}

/**
 * RustStrom's `pool_idle_timeout`: a Rust Duration, so "keep them for ever"
 * could be written as years. Past what a timer can wait it is kept for that
 * long (24.8 days), with a warning, rather than refused.
 */
function readPoolIdleTimeout(r: TableReader, warnings: string[]): number | undefined {
  const path = r.at("pool_idle_timeout");
  const ms = readDurationMs(r.raw("pool_idle_timeout"), path, r.problems);
  if (ms === undefined || ms <= MAX_DURATION_MS) return ms;
  warnings.push(
    `${path}: longer than timers can wait; idle connections are kept ${MAX_DURATION_MS} ms (24.8 days)`,
  );
  return MAX_DURATION_MS;
}

/** Whether a middleware takes an empty table (it has no required option). */
function needsNoOptions(spec: MiddlewareSpec, baseDir: string): boolean {
  const problems: Problem[] = [];
  const empty = TableReader.of({}, "", problems)!;
  spec.parse(empty, { baseDir, warn: () => {} });
  empty.finish();
  return problems.length === 0;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
