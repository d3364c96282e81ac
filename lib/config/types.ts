// The validated configuration. Produced only by `load.ts`/`validate.ts`; frozen,
// defaults applied, durations carry their unit in the name. Nothing after
// validation re-checks or re-defaults these values.

import type { Matcher } from "./matcher.ts";
import type { Cidr, SocketAddress } from "../net/address.ts";
import type { LoadedCertificate } from "../tls/pem.ts";

/** A listener scheme, as written in `schemes` (case-sensitive, like RustStrom). */
export type Scheme = "HTTP" | "HTTPS";

/** A backend as written in `addresses`: `host[:port]` (port 80 when omitted). */
export interface BackendAddress {
  /** The address exactly as written in the config; used as its identity and metric label. */
  readonly id: string;
  /** Host name or IP literal, IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
  /** `host:port` with IPv6 bracketed: what goes into URLs and connect calls. */
  readonly authority: string;
  /** Reached over TLS (`https://` addresses; the fetch transport). */
  readonly tls: boolean;
}

/** A strategy as configured: its registry name and validated options. */
export interface StrategyConfig {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
}

/** A middleware as configured: its name and validated options, in file order. */
export interface MiddlewareConfig {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
}

/** An inclusive range of HTTP status codes. */
export interface StatusRange {
  readonly from: number;
  readonly to: number;
}

/** `health_config` of a pool: RustStrom's keys (names and units) plus Strom's. */
export interface HealthConfig {
  /** A passing answer slower than this is "Slow". Default 300 ms. */
  readonly slowThresholdMs: number;
  /** Probe timeout (connect and answer). Default 500 ms. */
  readonly timeoutMs: number;
  /** Probe path. Default "/". */
  readonly path: string;
  /** Consecutive passing probes that bring an Unresponsive backend back. Default 2. */
  readonly healthyAfter: number;
  /** Consecutive failing probes that take a backend out. Default 3. */
  readonly unhealthyAfter: number;
  /** Statuses that pass. Default 200-299. */
  readonly expectedStatus: readonly StatusRange[];
  /** A substring the answer's body must contain, or null. */
  readonly expectedBody: string | null;
  /** Seconds between this pool's rounds; null uses `health_interval.check_every`. */
  readonly intervalMs: number | null;
  /** Host header for probes; null sends the backend's address. */
  readonly host: string | null;
}

/** `outlier_detection` of a pool: passive health from live traffic. */
export interface OutlierConfig {
  /** Consecutive failed requests that eject a backend; 0 disables. Default 5. */
  readonly consecutiveFailures: number;
  /** Whether a 5xx answer counts as a failure. Default false. */
  readonly count5xx: boolean;
  /** First ejection's length; doubles on each repeated ejection. Default 30 s. */
  readonly baseEjectionMs: number;
  /** Longest ejection. Default 300 s. */
  readonly maxEjectionMs: number;
  /** Never eject more than this share of a pool. Default 50. */
  readonly maxEjectionPercent: number;
}

/** `client` of a pool: the shared upstream connection pool. */
export interface ClientConfig {
  /**
   * How long an idle keep-alive connection is kept; null leaves it to the
   * transport (HTTP/1.1: 4 s, below common backend keep-alive timeouts).
   */
  readonly poolIdleTimeoutMs: number | null;
  /** Idle connections kept per backend; `null` means unlimited. */
  readonly poolMaxIdlePerHost: number | null;
  /** Open connections per backend at most (HTTP/1.1 transport); null: 512. */
  readonly maxConnectionsPerHost: number | null;
  /** Extra CA certificates (PEM) trusted for `https://` backends (`ca_file`). */
  readonly caCerts: readonly string[];
}

/** How a pool reaches its backends. */
export type TransportName = "http1" | "fetch";

/** One `[[backend_pools]]` entry. */
export interface PoolConfig {
  /** Index in file order; pools are named `pool <index>` in logs unless `name` is set. */
  readonly index: number;
  /** Display name: `name` from the file, or the matcher source. */
  readonly name: string;
  readonly matcherSource: string;
  readonly matcher: Matcher;
  readonly addresses: readonly BackendAddress[];
  readonly schemes: ReadonlySet<Scheme>;
  readonly strategy: StrategyConfig;
  readonly health: HealthConfig;
  readonly client: ClientConfig;
  /** Default "http1" (Strom's own HTTP/1.1 client); "fetch" uses Deno's fetch. */
  readonly transport: TransportName;
  readonly middlewares: readonly MiddlewareConfig[];
  /** Total time for one request, headers and body wait included. Default 30 s. */
  readonly requestTimeoutMs: number;
  /** Time to establish a backend connection, per attempt. Default 5 s. */
  readonly connectTimeoutMs: number;
  /**
   * Longest wait for the next bytes of a response body once its headers came
   * (like nginx's proxy_read_timeout); 0: none. Default 5 min.
   */
  readonly readTimeoutMs: number;
  readonly outlier: OutlierConfig;
  /** Further attempts on other backends after a failure that is safe to retry. Default 2. */
  readonly retries: number;
  /** Retries allowed as a share of the pool's requests over the last 10 s. Default 20. */
  readonly retryBudgetPercent: number;
}

/** A `[certificates."name"]` entry. */
export type CertificateConfig =
  | {
    readonly type: "Local";
    readonly serverName: string;
    /** Absolute paths (relative ones are resolved against the config file's folder). */
    readonly certificatePath: string;
    readonly privateKeyPath: string;
    /** The chain and key, read and checked at load. */
    readonly loaded: LoadedCertificate;
  }
  | {
    readonly type: "ACME";
    readonly serverName: string;
    readonly staging: boolean;
    readonly email: string;
    readonly persistDir: string;
    /** The ACME directory (RFC 8555); Let's Encrypt's by default (staging per `staging`). */
    readonly directoryUrl: string;
    /** Renew when fewer days than this are left. Default 30. */
    readonly renewBeforeDays: number;
    /** CA certificates (PEM) trusted for the directory's HTTPS (`ca_file`); none: the system's. */
    readonly caCerts: readonly string[];
  };

/** `[access_log]`: one line per request. */
export interface AccessLogConfig {
  readonly format: "json" | "common" | "combined";
  /** A file (appended to, relative to the config file) or "stdout". */
  readonly path: string;
}

/** The whole configuration. */
export interface Config {
  /** Absolute path of the file it came from, or a label such as "<demo>". */
  readonly source: string;
  /** Folder relative paths in the config resolve against (the config file's). */
  readonly baseDir: string;
  readonly httpAddress: SocketAddress;
  readonly httpsAddress: SocketAddress;
  /** Admin listener (API, metrics, dashboard). Default 127.0.0.1:9090. */
  readonly adminAddress: SocketAddress;
  /**
   * Bearer token for the admin API (from `admin_token` or `admin_token_file`),
   * or null. Required for mutating calls, and for every call off loopback.
   */
  readonly adminToken: string | null;
  /** A client that reads nothing of a streamed response for this long is cut off. Default 60 s. */
  readonly sendTimeoutMs: number;
  /**
   * A client connection without a complete request head (TLS handshake
   * included) this long after it was accepted is closed; 0: never. Default 10 s.
   */
  readonly clientHeaderTimeoutMs: number;
  /** A client connection idle this long after its last request is closed; 0: never. Default 60 s. */
  readonly clientIdleTimeoutMs: number;
  /**
   * How often freed malloc memory is returned to the OS (lib/memory_trim.ts);
   * 0: never. Default 1 s.
   */
  readonly memoryTrimIntervalMs: number;
  /** Worker isolates serving the HTTP port (SO_REUSEPORT). Default 1. */
  readonly workers: number;
  /** Seconds between health rounds; 0 disables. Default 10. */
  readonly healthCheckEverySec: number;
  readonly trustedProxies: readonly Cidr[];
  /** The access log, or null when off (the default). */
  readonly accessLog: AccessLogConfig | null;
  readonly pools: readonly PoolConfig[];
  readonly certificates: readonly CertificateConfig[];
  /** The certificate for clients without SNI or with an unknown name; null: the first one. */
  readonly defaultCertificate: string | null;
  /** Non-fatal remarks found while loading (RustStrom's load warnings). */
  readonly warnings: readonly string[];
}
