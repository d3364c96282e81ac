// `[certificates."name"]`: RustStrom's internally tagged form (`type = "Local"`)
// and its older externally tagged form (`Local = { ... }`).

import { parseIp } from "../net/address.ts";
import { resolve } from "node:path";
import type { Problem } from "./errors.ts";
import { isTable, TableReader } from "./fields.ts";
import type { CertificateConfig } from "./types.ts";
import { covers, type LoadedCertificate, parseCertificate } from "../tls/pem.ts";
import { readConfigText, readFailure } from "./files.ts";

const TYPES = ["Local", "ACME"];
/** A server name that is an IP address: clients send no SNI for those. */
const IP_NAME = /^[\d.]+$|:/;
const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
// A DNS name, optionally with one leading wildcard label.
const SERVER_NAME =
  /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Validates the `certificates` table; relative paths resolve against `baseDir`. */
export function validateCertificates(
  raw: unknown,
  baseDir: string,
  problems: Problem[],
  warnings: string[] = [],
  now = Date.now(),
): (CertificateConfig | undefined)[] {
  if (raw === undefined) return [];
  const table = TableReader.of(raw, "certificates", problems);
  if (!table) return [];
  const seen = new Map<string, string>(); // lower case -> as written first
  return Object.keys(table.table).map((serverName) => {
    let r = TableReader.of(table.raw(serverName), table.at(serverName), problems);
    if (!r) return undefined;
    // Host names are case-insensitive: two entries for one name would leave one unused.
    const lower = serverName.toLowerCase();
    const first = seen.get(lower);
    if (first !== undefined) {
      r.problem("", `"${serverName}" is the same server name as "${first}" (names ignore case)`);
      return undefined;
    }
    seen.set(lower, serverName);
    // A DNS name, or (as rustls' ServerName in RustStrom) an IP literal, IPv6 included.
    if (!SERVER_NAME.test(serverName) && parseIp(serverName) === null) {
      r.problem("", `invalid server name ${JSON.stringify(serverName)}: expected a DNS name`);
    }
    let type = r.has("type") ? r.string("type") : undefined;
    if (type === undefined && !r.has("type")) {
      // Older form: `Local = { ... }` / `ACME = { ... }`.
      const keys = Object.keys(r.table);
      if (keys.length === 1 && TYPES.includes(keys[0]) && isTable(r.table[keys[0]])) {
        type = keys[0];
        r = new TableReader(r.table[type] as Record<string, unknown>, r.at(type), problems);
      } else {
        r.problem("type", "missing required key");
        return undefined;
      }
    }
    const cert = readCertificate(r, lower, type, baseDir);
    r.finish();
    if (cert?.type === "Local") warnAbout(cert, table.at(serverName), warnings, now);
    return cert;
  });
}

/** What loads but will not work as meant: clients refuse the certificate, or never ask for it. */
function warnAbout(
  { serverName, loaded }: Extract<CertificateConfig, { type: "Local" }>,
  at: string,
  warnings: string[],
  now: number,
): void {
  if (loaded.notAfter.getTime() <= now) {
    warnings.push(
      `${at}: the certificate expired on ${loaded.notAfter.toISOString()}; clients refuse it`,
    );
  } else if (loaded.notBefore.getTime() > now) {
    warnings.push(
      `${at}: the certificate is valid only from ${loaded.notBefore.toISOString()}; clients refuse it until then`,
    );
  }
  if (IP_NAME.test(serverName)) {
    warnings.push(
      `${at}: clients send no server name for an IP address, so this certificate is served only as the default one`,
    );
  } else if (!loaded.names.some((name) => covers(name, serverName))) {
    warnings.push(
      `${at}: the certificate is for ${
        loaded.names.join(", ") || "no DNS name"
      }, not ${serverName}; clients asking for ${serverName} refuse it`,
    );
  }
}

/** Reads and checks a PEM chain and key (a config error when unreadable or mismatched). */
function loadPair(
  r: TableReader,
  certPath: string,
  keyPath: string,
): LoadedCertificate | undefined {
  const read = (key: string, path: string, what: string): string | undefined => {
    try {
      return readConfigText(path);
    } catch (e) {
      r.problem(key, `cannot read the ${what} "${path}": ${readFailure(e)}`);
      return undefined;
    }
  };
  const certText = read("certificate_path", certPath, "certificate");
  const keyText = read("private_key_path", keyPath, "key");
  if (certText === undefined || keyText === undefined) return undefined;
  const loaded = parseCertificate(certText, keyText);
  if (typeof loaded === "string") {
    r.problem("", `${loaded} (certificate "${certPath}", key "${keyPath}")`);
    return undefined;
  }
  return loaded;
}

/** Reads `ca_file`: the CA certificates trusted for the ACME directory's HTTPS. */
function readCaFile(r: TableReader, baseDir: string): string[] | undefined {
  const caFile = r.string("ca_file");
  if (caFile === undefined) return undefined;
  let pem: string;
  try {
    pem = readConfigText(resolve(baseDir, caFile));
  } catch (e) {
    r.problem("ca_file", `cannot read "${resolve(baseDir, caFile)}": ${readFailure(e)}`);
    return undefined;
  }
  const blocks = pem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) {
    r.problem("ca_file", `no CERTIFICATE block in ${JSON.stringify(caFile)}`);
  }
  return blocks.length === 0 ? undefined : blocks;
}

function readCertificate(
  r: TableReader,
  serverName: string,
  type: string | undefined,
  baseDir: string,
): CertificateConfig | undefined {
  if (type === "Local") {
    const cert = r.string("certificate_path");
    const key = r.string("private_key_path");
    if (cert === undefined || key === undefined) return undefined;
    const certificatePath = resolve(baseDir, cert);
    const privateKeyPath = resolve(baseDir, key);
    const loaded = loadPair(r, certificatePath, privateKeyPath);
    if (!loaded) return undefined;
    return { type, serverName, certificatePath, privateKeyPath, loaded };
  }
  if (type === "ACME") {
    const staging = r.bool("staging");
    const email = r.string("email");
    const persistDir = r.string("persist_dir");
    const directoryUrl = r.string(
      "directory_url",
      staging
        ? "https://acme-staging-v02.api.letsencrypt.org/directory"
        : "https://acme-v02.api.letsencrypt.org/directory",
    );
    const renewBeforeDays = r.int("renew_before_days", { fallback: 30, min: 1, max: 365 });
    const caCerts = r.has("ca_file") ? readCaFile(r, baseDir) : [];
    if (IP_NAME.test(serverName)) {
      r.problem("", "ACME does not support IP addresses");
    }
    if (serverName.startsWith("*.")) r.problem("", "HTTP-01 cannot obtain wildcard certificates");
    if (persistDir?.includes("\0")) {
      r.problem("persist_dir", "a folder name cannot hold a NUL character");
    }
    if (directoryUrl !== undefined && !/^https?:\/\/[^/]/.test(directoryUrl)) {
      r.problem("directory_url", `invalid URL ${JSON.stringify(directoryUrl)}: expected https://`);
    }
    if (
      staging === undefined || email === undefined || persistDir === undefined ||
      directoryUrl === undefined || renewBeforeDays === undefined || caCerts === undefined
    ) return undefined;
    return {
      type,
      serverName,
      staging,
      email,
      persistDir: resolve(baseDir, persistDir),
      directoryUrl,
      renewBeforeDays,
      caCerts,
    };
  }
  if (type !== undefined) {
    r.problem(
      "type",
      `unknown certificate type ${JSON.stringify(type)} (expected "Local" or "ACME")`,
    );
  }
  return undefined;
}
