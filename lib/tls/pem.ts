// Reading a PEM certificate chain and its private key, checked at config load.

import type { X509Certificate } from "node:crypto";
import { nodeCrypto } from "../node_builtins.ts";

/** A certificate ready to serve. */
export interface LoadedCertificate {
  /** The PEM chain, leaf first, exactly as in the file. */
  readonly certPem: string;
  /** The key as PKCS#8 PEM (PKCS#1 RSA and SEC1 EC keys are converted). */
  readonly keyPem: string;
  /** When the leaf certificate expires. */
  readonly notAfter: Date;
  /** When the leaf certificate became valid. */
  readonly notBefore: Date;
  /** DNS names the leaf covers (subjectAltName, else the CN). */
  readonly names: readonly string[];
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const KEY_BLOCK =
  /-----BEGIN (RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (RSA |EC )?PRIVATE KEY-----/;

/** Parses PEM texts; returns the certificate or a one-line problem. */
export function parseCertificate(certText: string, keyText: string): LoadedCertificate | string {
  const blocks = certText.match(CERT_BLOCK);
  if (!blocks) return "no CERTIFICATE block in the certificate file";
  const { createPrivateKey, X509Certificate } = nodeCrypto();
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]);
    for (const block of blocks.slice(1)) new X509Certificate(block);
  } catch (e) {
    return `invalid certificate: ${(e as Error).message}`;
  }
  const keyBlock = keyText.match(KEY_BLOCK)?.[0];
  // PKCS#8 (`ENCRYPTED PRIVATE KEY`), or the traditional form `openssl rsa -aes256` writes.
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(keyText) ||
    (keyBlock !== undefined && /^Proc-Type: 4,ENCRYPTED/m.test(keyBlock));
  if (encrypted) {
    return "the private key is encrypted, which Strom cannot use: decrypt it first " +
      "(openssl pkey -in key.pem -out plain-key.pem)";
  }
  if (!keyBlock) return "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in the key file";
  let keyPem: string;
  try {
    const key = createPrivateKey(keyBlock);
    const unusable = unservableKey(key.asymmetricKeyType, key.asymmetricKeyDetails);
    if (unusable !== null) return unusable;
    if (!leaf.checkPrivateKey(key)) return "the private key does not belong to the certificate";
    keyPem = key.export({ format: "pem", type: "pkcs8" }) as string;
  } catch (e) {
    return `invalid private key: ${(e as Error).message}`;
  }
  return {
    certPem: blocks.join("\n") + "\n",
    keyPem,
    notAfter: new Date(leaf.validTo),
    notBefore: new Date(leaf.validFrom),
    names: namesOf(leaf),
  };
}

/** ECDSA curves Deno's TLS signs with (node:crypto's names). */
const TLS_CURVES = new Set(["prime256v1", "secp384r1", "secp521r1"]);

/**
 * Why Deno's TLS cannot serve a key node:crypto reads, or null. Deno takes RSA
 * of 2048 bits or more, ECDSA on P-256, P-384 and P-521, and Ed25519 (measured
 * with Deno 2.9.6); others (DSA, Ed448, secp256k1, RSA-1024) pass node:crypto
 * but fail every handshake, or the listener.
 */
function unservableKey(
  type: string | undefined,
  details: { modulusLength?: number; namedCurve?: string } | undefined,
): string | null {
  const supported = "Deno's TLS serves RSA keys of 2048 bits or more, " +
    "ECDSA keys on P-256, P-384 or P-521, and Ed25519 keys";
  if (type === "rsa") {
    const bits = details?.modulusLength ?? 0;
    return bits >= 2048 ? null : `the RSA key has ${bits} bits: ${supported}`;
  }
  if (type === "ec") {
    const curve = details?.namedCurve ?? "unknown";
    return TLS_CURVES.has(curve) ? null : `the EC key is on curve ${curve}: ${supported}`;
  }
  if (type === "ed25519") return null;
  return `the private key is ${type ?? "of an unknown type"}: ${supported}`;
}

/** The DNS names of a certificate: its subjectAltName DNS entries, else its CN. */
export function namesOf(cert: X509Certificate): string[] {
  const alt = cert.subjectAltName?.split(",").map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4).toLowerCase()) ?? [];
  if (alt.length > 0) return alt;
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** Whether a certificate name (possibly `*.x.y`) covers `host`. */
export function covers(name: string, host: string): boolean {
  if (name === host) return true;
  if (!name.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === name.slice(2);
}
