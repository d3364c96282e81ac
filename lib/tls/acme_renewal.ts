// One ACME name's life: the persisted certificate first, then an order when it
// is missing or due, checks on a timer, and exponential backoff after failures.
// A failure keeps whatever certificate is served; it is logged and counted.

import type { CertificateConfig } from "../config/types.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { ChallengeStore } from "./challenges.ts";
import type { CertificateStore } from "./store.ts";
import { AcmeFiles } from "./acme_files.ts";
import type { OrderCertificate } from "./acme_order.ts";
import { type LoadedCertificate, parseCertificate } from "./pem.ts";
import { nextCheckDelayMs, renewalDue, type RenewalTiming, retryDelayMs } from "./acme_schedule.ts";

/** An ACME entry of the config. */
export type AcmeCertificateConfig = Extract<CertificateConfig, { type: "ACME" }>;

/** What a renewal works with (shared by every name). */
export interface RenewalDeps {
  readonly store: CertificateStore;
  readonly challenges: ChallengeStore;
  readonly log: Logger;
  readonly clock: Clock;
  readonly timing: RenewalTiming;
  readonly order: OrderCertificate;
  /** Called after a name's certificate was put in the store (Strom serves it). */
  readonly onCertificate: (name: string) => void;
  /** Called after each failed order (the failure metric). */
  readonly onFailure: (name: string) => void;
  /** Polling of pending ACME objects (ms); see OrderRequest. */
  readonly pollMinMs?: number;
  readonly pollMaxMs?: number;
  readonly requestTimeoutMs?: number;
}

/** Keeps one name's ACME certificate current. */
export class AcmeRenewal {
  readonly config: AcmeCertificateConfig;
  readonly #deps: RenewalDeps;
  readonly #files: AcmeFiles;
  readonly #abort = new AbortController();
  #notAfter: Date | null = null;
  #notBefore: Date | null = null;
  #failures = 0;
  #timer: number | undefined;
  #running: Promise<void> | null = null;
  #stopped = false;

  constructor(config: AcmeCertificateConfig, deps: RenewalDeps) {
    this.config = config;
    this.#deps = deps;
    this.#files = new AcmeFiles(config.persistDir);
  }

  /** Serves the persisted certificate when it is still valid, then checks (and orders) at once. */
  start(): void {
    this.#loadPersisted();
    this.#check();
  }

  /** When the held certificate expires, or null when there is none yet. */
  get notAfter(): Date | null {
    return this.#notAfter;
  }

  /** Consecutive failed orders (0 after a success). */
  get failures(): number {
    return this.#failures;
  }

  /** Settles when the order in progress (if any) has ended. */
  settled(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  /** Stops the timer and aborts an order in progress; settles when it has ended. */
  stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#deps.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
    return this.settled();
  }

  #loadPersisted(): void {
    const { serverName, directoryUrl } = this.config;
    const persisted = this.#files.readCertificate(serverName, directoryUrl);
    if (persisted === null) return;
    if (!persisted.ok) {
      this.#deps.log.warn(
        `Ignoring the persisted certificate of "${serverName}": ${persisted.problem}`,
      );
      return;
    }
    const { certificate } = persisted;
    if (certificate.notAfter.getTime() <= this.#deps.clock.now()) return;
    this.#notAfter = certificate.notAfter;
    this.#notBefore = certificate.notBefore;
    this.#deps.store.put(serverName, certificate);
    this.#deps.log.info(
      `Using the persisted certificate of "${serverName}" (expires ${certificate.notAfter.toISOString()})`,
    );
    this.#deps.onCertificate(serverName);
  }

  /** Orders when due, else waits; synchronous when nothing is due, so a manual clock can skip ahead. */
  #check(): void {
    if (this.#stopped || this.#running) return;
    const now = this.#deps.clock.now();
    const { renewBeforeDays } = this.config;
    const notBefore = this.#notBefore;
    if (this.#notAfter && !renewalDue(this.#notAfter, { now, renewBeforeDays, notBefore })) {
      this.#schedule(
        nextCheckDelayMs(this.#notAfter, {
          now,
          renewBeforeDays,
          timing: this.#deps.timing,
          notBefore,
        }),
      );
      return;
    }
    // The next check is scheduled only once this order is over, so a timer
    // never fires while an order runs.
    this.#running = this.#renew()
      .catch((e) => this.#stopped ? null : this.#failed(e))
      .then((nextMs) => {
        this.#running = null;
        if (nextMs !== null) this.#schedule(nextMs);
      });
  }

  /** One order; resolves to the wait before the next check (null once stopped). */
  async #renew(): Promise<number | null> {
    const { serverName: name, directoryUrl, email } = this.config;
    const { log } = this.#deps;
    log.info(`Ordering a certificate for "${name}" from "${directoryUrl}"`);
    let loaded: LoadedCertificate;
    try {
      const accountKey = await this.#files.accountKey(directoryUrl, email);
      if (this.#stopped) return null;
      const pair = await this.#deps.order({
        name,
        directoryUrl,
        email,
        accountKey,
        caCerts: this.config.caCerts,
        challenges: this.#deps.challenges,
        signal: this.#abort.signal,
        trace: (line) => log.trace(`acme ${name}: ${line}`),
        pollMinMs: this.#deps.pollMinMs,
        pollMaxMs: this.#deps.pollMaxMs,
        requestTimeoutMs: this.#deps.requestTimeoutMs,
      });
      const parsed = parseCertificate(pair.certPem, pair.keyPem);
      if (typeof parsed === "string") {
        throw new Error(`the CA sent an unusable certificate: ${parsed}`);
      }
      loaded = parsed;
    } catch (e) {
      return this.#stopped ? null : this.#failed(e);
    }
    try {
      await this.#files.writeCertificate(name, directoryUrl, loaded);
    } catch (e) {
      // Served anyway: it is valid. Only a restart would order again.
      log.error(`Could not persist the certificate of "${name}": ${(e as Error).message}`);
      this.#deps.onFailure(name);
    }
    if (this.#stopped) return null;
    this.#failures = 0;
    this.#notAfter = loaded.notAfter;
    this.#notBefore = loaded.notBefore;
    this.#deps.store.put(name, loaded);
    log.info(`Obtained a certificate for "${name}" (expires ${loaded.notAfter.toISOString()})`);
    const { renewBeforeDays } = this.config;
    const lifetimeDays = (loaded.notAfter.getTime() - loaded.notBefore.getTime()) / 86_400_000;
    if (lifetimeDays <= renewBeforeDays) {
      log.warn(
        `The certificate of "${name}" is valid for ${
          lifetimeDays.toFixed(1)
        } days, less than renew_before_days = ${renewBeforeDays}: it is renewed once two thirds of its lifetime are over`,
      );
    }
    this.#deps.onCertificate(name);
    return nextCheckDelayMs(loaded.notAfter, {
      now: this.#deps.clock.now(),
      renewBeforeDays,
      timing: this.#deps.timing,
      notBefore: loaded.notBefore,
    });
  }

  /** Logs and counts a failed order; returns the backoff before the next try. */
  #failed(error: unknown): number {
    this.#failures++;
    const delay = retryDelayMs(this.#failures, this.#deps.timing);
    const kept = this.#notAfter ? "keeping the current one" : "none served yet";
    this.#deps.log.error(
      `Could not obtain a certificate for "${this.config.serverName}" (${kept}; failure ${this.#failures}, next try in ${
        formatDelay(delay)
      }): ${error instanceof Error ? error.message : String(error)}`,
    );
    this.#deps.onFailure(this.config.serverName);
    return delay;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = this.#deps.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#check();
    }, delayMs);
  }
}

function formatDelay(ms: number): string {
  if (ms >= 3_600_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  if (ms >= 60_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 1000).toFixed(1)} s`;
}
