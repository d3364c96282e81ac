// Messages between the primary isolate and its proxy workers.

import type { HealthState } from "../health/state.ts";
import type { Level } from "../log.ts";
import type { SocketAddress } from "../net/address.ts";
import type { CertificateSnapshot } from "../tls/store.ts";
import type { Family } from "../metrics/registry.ts";

/** A backend's health state, as the primary's probes found it. */
export interface HealthNews {
  readonly type: "health";
  /** By name and id, not position: a worker may still run the previous generation. */
  readonly pool: string;
  readonly backend: string;
  readonly state: HealthState;
}

/** An operator drained (or restored) a backend; pool and backend by name. */
export interface DrainNews {
  readonly type: "drain";
  readonly pool: string;
  readonly backend: string;
  readonly drained: boolean;
  /** With `drained`: clients a sticky cookie binds to it still reach it. */
  readonly keepSticky: boolean;
}

/** Primary → worker. */
export type ToWorker =
  | {
    readonly type: "start";
    readonly id: number;
    readonly configText: string;
    readonly source: string;
    readonly baseDir: string;
    readonly logLevel: Level;
    /** Whether the primary runs the client timeouts, which ask for this worker's busy peers. */
    readonly watchPeers: boolean;
    /** The generation the config is (1 at startup; later for a worker started anew). */
    readonly generation: number;
    /**
     * The shared HTTP address when it is known already (a worker started anew): the first
     * worker's, since a changed http_address needs a restart with workers; else the config's.
     */
    readonly http?: { readonly hostname: string; readonly port: number };
    /**
     * The backends' health and drains as the primary knows them now, applied before the
     * worker listens: one started anew must not send a request to a backend that is down or
     * drained in the moment before they reach it as messages.
     */
    readonly states?: readonly (HealthNews | DrainNews)[];
  }
  | HealthNews
  | {
    readonly type: "reload";
    readonly generation: number;
    readonly configText: string;
    readonly source: string;
    readonly baseDir: string;
  }
  | DrainNews
  | { readonly type: "metrics"; readonly id: number }
  /** Report the counters now (answered with a "stats" message carrying `id`). */
  | { readonly type: "stats"; readonly id: number }
  | { readonly type: "peers"; readonly id: number }
  | { readonly type: "challenge"; readonly token: string; readonly keyAuthorization: string | null }
  | {
    /** Serve HTTPS on `address` (the primary's bound port) with these certificates; null: stop. */
    readonly type: "https";
    readonly https:
      | { readonly address: SocketAddress; readonly certificates: CertificateSnapshot }
      | null;
  }
  /** Open the access log file anew (logrotate moved it; SIGHUP). */
  | { readonly type: "reopen-logs" }
  /** Tests only: fail as a bug would, with an error nothing catches. */
  | { readonly type: "fail" }
  | { readonly type: "shutdown"; readonly graceMs: number };

/** Per backend of each pool, COUNTERS_PER_BACKEND numbers: requests, failures, in-flight, ejected (1 or 0). */
export type Counters = number[][];

/** How many numbers each backend has in a pool's row of Counters. */
export const COUNTERS_PER_BACKEND = 4;

/** Worker → primary. */
export type FromWorker =
  | { readonly type: "listening"; readonly hostname: string; readonly port: number }
  | { readonly type: "error"; readonly message: string }
  /**
   * Counters by position in the worker's generation (the primary skips another generation's);
   * `id` when asked for.
   */
  | {
    readonly type: "stats";
    readonly generation: number;
    readonly counters: Counters;
    readonly id?: number;
  }
  | {
    /** Peers served since the previous ask, or being served (lib/net/activity.ts). */
    readonly type: "peers";
    readonly id: number;
    readonly peers: string[];
  }
  | { readonly type: "metrics"; readonly id: number; readonly families: Family[] }
  | {
    readonly type: "log";
    readonly level: "error" | "warn" | "info" | "debug" | "trace";
    readonly message: string;
  }
  | { readonly type: "reloaded"; readonly generation: number; readonly error: string | null }
  | { readonly type: "stopped" };

/** How often workers report their counters. */
export const STATS_INTERVAL_MS = 1000;
