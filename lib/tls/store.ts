// The certificates served on the HTTPS listener, chosen per handshake by SNI:
// exact name, then a wildcard for the parent domain, then the default.

import { covers, type LoadedCertificate } from "./pem.ts";

/** What the TLS resolver hands to rustls. */
export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

interface Entry {
  readonly name: string;
  readonly certificate: LoadedCertificate;
  readonly pair: KeyPair;
}

/** What a store serves, as plain data (sent to worker isolates). */
export interface CertificateSnapshot {
  readonly entries: readonly (readonly [string, LoadedCertificate])[];
  readonly defaultName: string | null;
  /** The store's RESOLVED_NAMES_LIMIT. */
  readonly resolvedLimit: number;
}

/**
 * Server names resolved for one HTTPS listener before it is replaced. Deno
 * keeps what the resolver returned, per name, for the listener's lifetime
 * (about 1 KB each, measured with Deno 2.9.6), so clients sending made-up
 * names would grow the process without end.
 */
export const RESOLVED_NAMES_LIMIT = 10_000;

/** The WARN line when an HTTPS listener reached its limit and is replaced. */
export function resolvedLimitMessage(limit: number): string {
  return `The HTTPS listener has resolved ${limit} server names: replacing it, which frees what Deno keeps for each`;
}

/** Certificates by server name; replaced on reload, updated by ACME. */
export class CertificateStore {
  #entries = new Map<string, Entry>();
  #defaultName: string | null = null;
  /** Grows with every change of what would be served. */
  version = 0;
  /** Names resolved since the HTTPS listener was bound (see RESOLVED_NAMES_LIMIT). */
  #resolved = 0;
  readonly #resolvedLimit: number;
  /** Called once the listener's resolved names reach the limit: time for a new listener. */
  onResolvedLimit: (() => void) | null = null;

  constructor(options: { resolvedLimit?: number } = {}) {
    this.#resolvedLimit = options.resolvedLimit ?? RESOLVED_NAMES_LIMIT;
  }

  /** Server names an HTTPS listener resolves before `onResolvedLimit`. */
  get resolvedLimit(): number {
    return this.#resolvedLimit;
  }

  /** A new HTTPS listener starts with Deno's per-name cache empty. */
  listenerBound(): void {
    this.#resolved = 0;
  }

  /** Makes the next refresh bind a new listener, though what is served did not change. */
  renewListener(): void {
    this.version++;
  }

  /**
   * Replaces the certificates (a reload): `local` ones as given; names in
   * `obtained` (ACME) keep the certificate they already have until it is renewed.
   */
  replace(
    local: ReadonlyMap<string, LoadedCertificate>,
    options: { defaultName: string | null; obtained: ReadonlySet<string> },
  ): void {
    const next = new Map<string, Entry>();
    for (const [name, certificate] of local) next.set(name, entry(name, certificate));
    for (const name of options.obtained) {
      const old = this.#entries.get(name);
      if (old) next.set(name, old);
    }
    if (!sameEntries(this.#entries, next) || this.#defaultName !== options.defaultName) {
      this.version++;
    }
    this.#entries = next;
    this.#defaultName = options.defaultName;
  }

  /** A store serving what `snapshot` describes. */
  static from(snapshot: CertificateSnapshot): CertificateStore {
    const store = new CertificateStore({ resolvedLimit: snapshot.resolvedLimit });
    for (const [name, certificate] of snapshot.entries) {
      store.#entries.set(name, entry(name, certificate));
    }
    store.#defaultName = snapshot.defaultName;
    return store;
  }

  /** What this store serves now, as plain data. */
  snapshot(): CertificateSnapshot {
    return {
      entries: [...this.#entries].map(([name, e]) => [name, e.certificate] as const),
      defaultName: this.#defaultName,
      resolvedLimit: this.#resolvedLimit,
    };
  }

  /** Sets one name's certificate (obtained or renewed at run time). */
  put(name: string, certificate: LoadedCertificate): void {
    this.#entries.set(name.toLowerCase(), entry(name.toLowerCase(), certificate));
    this.version++;
  }

  /** The certificate of a name, if any. */
  get(name: string): LoadedCertificate | undefined {
    return this.#entries.get(name.toLowerCase())?.certificate;
  }

  /** How many certificates are ready. */
  get size(): number {
    return this.#entries.size;
  }

  /** The key pair for a handshake's server name (exact, wildcard, default); throws when none. */
  resolve(serverName: string | null | undefined): KeyPair {
    if (serverName != null && ++this.#resolved === this.#resolvedLimit) {
      queueMicrotask(() => this.onResolvedLimit?.());
    }
    const host = (serverName ?? "").toLowerCase().replace(/\.$/, "");
    if (host !== "") {
      const exact = this.#entries.get(host);
      if (exact) return exact.pair;
      const dot = host.indexOf(".");
      const wildcard = dot > 0 ? this.#entries.get(`*.${host.slice(dot + 1)}`) : undefined;
      if (wildcard) return wildcard.pair;
      for (const e of this.#entries.values()) {
        if (e.certificate.names.some((n) => covers(n, host))) return e.pair;
      }
    }
    const fallback = (this.#defaultName && this.#entries.get(this.#defaultName)) ||
      this.#entries.values().next().value;
    if (!fallback) throw new Error(`no certificate for "${host}"`);
    return fallback.pair;
  }

  /** Every certificate's expiry, for metrics. */
  expiries(): { name: string; notAfter: Date }[] {
    return [...this.#entries.values()].map((e) => ({
      name: e.name,
      notAfter: e.certificate.notAfter,
    }));
  }
}

function entry(name: string, certificate: LoadedCertificate): Entry {
  return { name, certificate, pair: { cert: certificate.certPem, key: certificate.keyPem } };
}

function sameEntries(a: Map<string, Entry>, b: Map<string, Entry>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, e] of a) {
    const other = b.get(name);
    if (!other || other.pair.cert !== e.pair.cert || other.pair.key !== e.pair.key) return false;
  }
  return true;
}
