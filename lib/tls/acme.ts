// ACME certificates (issue #7, RFC 8555): one renewal per `type = "ACME"`
// entry, started and stopped as reloads add, change or remove entries. Each
// keeps its name's certificate in the CertificateStore; see acme_renewal.ts
// for the schedule, acme_order.ts for the protocol, acme_files.ts for what is
// kept in `persist_dir`.

import type { CertificateConfig } from "../config/types.ts";
import { type Clock, systemClock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { ChallengeStore } from "./challenges.ts";
import type { CertificateStore } from "./store.ts";
import { type OrderCertificate, orderCertificate } from "./acme_order.ts";
import { DEFAULT_TIMING, type RenewalTiming } from "./acme_schedule.ts";
import { type AcmeCertificateConfig, AcmeRenewal, type RenewalDeps } from "./acme_renewal.ts";

/** Injected timing and protocol, for tests; production uses the defaults. */
export interface AcmeTuning {
  /** Drives the renewal timers (default: real time). */
  readonly clock?: Clock;
  /** Check interval and failure backoff (default DEFAULT_TIMING). */
  readonly timing?: Partial<RenewalTiming>;
  /** Places an order (default: acme-client against the entry's directory). */
  readonly order?: OrderCertificate;
  /** Polling of pending ACME objects, first and longest wait in ms (default 1 s and 10 s). */
  readonly pollMinMs?: number;
  readonly pollMaxMs?: number;
  /** One request to the CA at most this long (default 30 s; tests wait less). */
  readonly requestTimeoutMs?: number;
}

/** What the manager works with. */
export interface AcmeManagerOptions extends AcmeTuning {
  readonly store: CertificateStore;
  readonly challenges: ChallengeStore;
  readonly log: Logger;
  /** Called after a certificate was put in the store (Strom rebinds HTTPS to serve it). */
  readonly onCertificate: (name: string) => void;
  /** Called after each failed order (`strom_acme_failures_total`). */
  readonly onFailure: (name: string) => void;
}

/** Obtains and renews every ACME certificate of the live config. */
export class AcmeManager {
  readonly #deps: RenewalDeps;
  readonly #renewals = new Map<string, AcmeRenewal>();
  /** Renewals stopped by a reload whose order may still be ending. */
  readonly #stopping = new Set<Promise<void>>();
  /** stop() was called: nothing starts any more. */
  #stopped = false;

  constructor(options: AcmeManagerOptions) {
    this.#deps = {
      store: options.store,
      challenges: options.challenges,
      log: options.log,
      clock: options.clock ?? systemClock,
      timing: { ...DEFAULT_TIMING, ...options.timing },
      order: options.order ?? orderCertificate,
      onCertificate: options.onCertificate,
      onFailure: options.onFailure,
      pollMinMs: options.pollMinMs,
      pollMaxMs: options.pollMaxMs,
      requestTimeoutMs: options.requestTimeoutMs,
    };
  }

  /**
   * Adopts a config's ACME entries: new names start (persisted certificate
   * first, then an order if needed), changed ones restart, removed ones stop.
   * Unchanged entries carry on with their timers.
   */
  reconfigure(certificates: readonly CertificateConfig[]): void {
    if (this.#stopped) return;
    const wanted = new Map<string, AcmeCertificateConfig>();
    for (const c of certificates) if (c.type === "ACME") wanted.set(c.serverName, c);
    for (const [name, renewal] of this.#renewals) {
      const next = wanted.get(name);
      if (next && JSON.stringify(next) === JSON.stringify(renewal.config)) continue;
      this.#renewals.delete(name);
      const stopped: Promise<void> = renewal.stop().finally(() => this.#stopping.delete(stopped));
      this.#stopping.add(stopped);
    }
    for (const [name, config] of wanted) {
      if (this.#renewals.has(name)) continue;
      const renewal = new AcmeRenewal(config, this.#deps);
      this.#renewals.set(name, renewal);
      renewal.start();
    }
  }

  /** The renewal of a name, if it is an ACME entry (for status and tests). */
  renewal(name: string): AcmeRenewal | undefined {
    return this.#renewals.get(name.toLowerCase());
  }

  /** Stops every renewal (timers cleared, orders aborted); settles when all have ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const all = [...this.#renewals.values()].map((r) => r.stop());
    this.#renewals.clear();
    await Promise.all([...all, ...this.#stopping]);
  }
}
