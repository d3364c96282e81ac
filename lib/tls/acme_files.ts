// What ACME keeps in `persist_dir`: account keys and obtained certificates, so a
// restart reuses them instead of ordering again. Private keys are mode 0600 and
// written whole (a temp file renamed), so a crash never leaves half a key.
//
//   account-<hash of directory and email>.key   the ACME account's key
//   <name>-<hash of directory>.crt               the chain, leaf first
//   <name>-<hash of directory>.key               its private key
//
// The directory is part of the names so that a staging certificate is never
// served after switching to production, and one folder can serve several CAs.
//
// Several names usually share one account (same directory and email) and start
// ordering together: they share one read-or-create of its key (see accountKey),
// and every write goes through a temp file of its own, so that two writers never
// trip over each other's temp file (File exists, then ENOENT on chmod or rename).

import { nodeCrypto } from "../node_builtins.ts";
import { join, resolve } from "node:path";
import { type LoadedCertificate, parseCertificate } from "./pem.ts";
import { readConfigText, readFailure } from "../config/files.ts";

/** A certificate read back from `persist_dir`, or why it cannot be used. */
export type PersistedCertificate =
  | { readonly ok: true; readonly certificate: LoadedCertificate }
  | { readonly ok: false; readonly problem: string };

/**
 * Account keys being read or created, by file: the names of one account that
 * order at the same time get the same key instead of each creating one. Only
 * while in flight: afterwards the file is the truth (read again, made again
 * when it was removed).
 */
const accountKeysInFlight = new Map<string, Promise<string>>();

/** The files of one `persist_dir`. */
export class AcmeFiles {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The account key (PEM) for a directory and email; created (EC P-256, mode 0600) when missing, once for concurrent callers. */
  accountKey(directoryUrl: string, email: string): Promise<string> {
    const path = resolve(this.dir, `account-${hash(`${directoryUrl}\n${email}`)}.key`);
    let key = accountKeysInFlight.get(path);
    if (key === undefined) {
      key = this.#readOrCreateAccountKey(path).finally(() => accountKeysInFlight.delete(path));
      accountKeysInFlight.set(path, key);
    }
    return key;
  }

  async #readOrCreateAccountKey(path: string): Promise<string> {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const { privateKey } = nodeCrypto().generateKeyPairSync("ec", {
      namedCurve: "P-256",
      privateKeyEncoding: { format: "pem", type: "pkcs8" },
      publicKeyEncoding: { format: "pem", type: "spki" },
    });
    await this.#write(path, privateKey, 0o600);
    return privateKey;
  }

  /** The persisted certificate of a name, or null when there is none. */
  readCertificate(name: string, directoryUrl: string): PersistedCertificate | null {
    const base = this.#base(name, directoryUrl);
    let certText: string;
    let keyText: string;
    try {
      certText = readConfigText(`${base}.crt`);
      keyText = readConfigText(`${base}.key`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      return { ok: false, problem: `cannot read "${base}.crt": ${readFailure(e)}` };
    }
    const loaded = parseCertificate(certText, keyText);
    if (typeof loaded === "string") return { ok: false, problem: `"${base}.crt": ${loaded}` };
    if (!loaded.names.includes(name)) {
      return { ok: false, problem: `"${base}.crt" does not cover "${name}"` };
    }
    return { ok: true, certificate: loaded };
  }

  /** Persists a name's chain and key (the key mode 0600). */
  async writeCertificate(
    name: string,
    directoryUrl: string,
    pair: { certPem: string; keyPem: string },
  ): Promise<void> {
    const base = this.#base(name, directoryUrl);
    await this.#write(`${base}.key`, pair.keyPem, 0o600);
    await this.#write(`${base}.crt`, pair.certPem, 0o644);
  }

  #base(name: string, directoryUrl: string): string {
    return join(this.dir, `${name}-${hash(directoryUrl)}`);
  }

  async #write(path: string, text: string, mode: number): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // A temp name of its own: a fixed one raced between concurrent writers.
    const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    try {
      await Deno.writeTextFile(temp, text, { mode, createNew: true });
      await Deno.chmod(temp, mode); // the umask may have cut `mode`
      await Deno.rename(temp, path);
    } catch (e) {
      await Deno.remove(temp).catch(() => {});
      throw e;
    }
  }
}

function hash(text: string): string {
  return nodeCrypto().createHash("sha256").update(text).digest("hex").slice(0, 16);
}
