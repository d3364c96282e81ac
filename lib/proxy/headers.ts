// Header rules for forwarding: hop-by-hop removal (RFC 9110 7.6.1) and the
// X-Forwarded-* family, with trust decided by `trusted_proxies`.

import { type Cidr, cidrContains, hopAddress, parseIp, plainIp } from "../net/address.ts";

/** A header field list: lower-case names and values, in order. Cheaper than Headers. */
export type Fields = [name: string, value: string][];

/** Hop-by-hop fields (RFC 9110 7.6.1 and 7.8, plus the non-standard ones still seen). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** Fields Strom sets itself on the way to a backend. */
const FORWARDING = new Set([
  "x-forwarded-for",
  "x-real-ip",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-forwarded-port",
  "x-forwarded-server",
]);

/**
 * A Host value (RFC 9110 7.2): reg-name or IPv4, or an IPv6 literal in
 * brackets, then an optional port (its digits in group 1). A reg-name's
 * sub-delimiters (`,;*!$&'()+=`) are refused, as no host name has them: with
 * `Host: a.com,evil.example` no `Host('a.com')` pool matches, while a backend
 * that reads X-Forwarded-Host as a list takes the request for a.com.
 */
export const HOST = /^(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{0,5}))?$/;

/** Whether a Host value is valid: HOST's form, and a port (if any) up to 65535. No allocation. */
export function validHost(value: string): boolean {
  if (!HOST.test(value)) return false;
  // A reg-name has no ":", and an IPv6 literal ends in "]": a last ":" after it starts the port,
  // and only five digits can pass 65535.
  if (value.endsWith("]")) return true;
  const colon = value.lastIndexOf(":");
  return colon < 0 || value.length - colon - 1 < 5 || Number(value.slice(colon + 1)) <= 65535;
}

/** A valid Host value without its port. */
export function hostWithoutPort(value: string): string {
  return value.endsWith("]") || !value.includes(":")
    ? value
    : value.slice(0, value.lastIndexOf(":"));
}

/**
 * Fields a client could forge to claim another address, scheme, host or path
 * prefix. X-Forwarded-Prefix, which StripPrefix sets, backends use to build links.
 */
const SPOOFABLE = new Set([...FORWARDING, "forwarded", "x-forwarded-prefix"]);

/** Whether Strom sets or vets this field (lower-case) on the way to a backend. */
export function isForwardingField(lower: string): boolean {
  return SPOOFABLE.has(lower);
}

/**
 * A (lower-case) field name as backends that read fields CGI-style see it:
 * `x_request_id` and `x-request-id` are both HTTP_X_REQUEST_ID there.
 */
export function cgiSpelling(lower: string): string {
  return lower.includes("_") ? lower.replaceAll("_", "-") : lower;
}

/** An RFC 9110 token: what a field name (or a cookie name) must be. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Fields a `Connection` value cannot make hop-by-hop: a message's length and
 * its Host belong to the message, and dropping them on a peer's word would
 * change its framing (`Connection: content-length` forwarded a body chunked)
 * or its target.
 */
const NEVER_LISTED = new Set(["content-length", "host"]);

/**
 * The extra hop-by-hop names a `Connection` value lists (lower case), or null
 * when it lists none beyond the usual `close` / `keep-alive` (and the fields
 * in NEVER_LISTED).
 */
export function connectionListed(connection: string | null): Set<string> | null {
  if (connection === null) return null;
  let listed: Set<string> | null = null;
  for (const part of connection.split(",")) {
    const name = part.trim().toLowerCase();
    if (name === "" || name === "close" || name === "keep-alive" || !TOKEN.test(name)) continue;
    if (NEVER_LISTED.has(name)) continue;
    (listed ??= new Set()).add(name);
  }
  return listed;
}

/** Whether a (lower-case) field name is hop-by-hop, given what `Connection` listed. */
export function isHopByHop(name: string, listed: Set<string> | null): boolean {
  return HOP_BY_HOP.has(name) || (listed !== null && listed.has(name));
}

/** The end-to-end fields of a Headers object (hop-by-hop and Connection-listed ones removed). */
export function endToEnd(headers: Headers): Fields {
  const listed = connectionListed(headers.get("connection"));
  const out: Fields = [];
  // forEach, not for-of: Deno 2.9 sorts the fields again for every step of an
  // iterator (5.1 us for 8 fields, against 0.6 us with forEach).
  headers.forEach((value, name) => {
    if (!isHopByHop(name, listed)) out.push([name, value]);
  });
  return out;
}

/** Who sent a request, as far as Strom can tell. */
export interface ClientIdentity {
  /** The TCP peer, plain IPv4 for IPv4 clients on a dual-stack listener. */
  readonly peerIp: string;
  /** Whether the peer is in `trusted_proxies` (its X-Forwarded-* are believed). */
  readonly peerTrusted: boolean;
  /** The original client: the right-most untrusted hop of X-Forwarded-For when trusted, else the peer. */
  readonly clientIp: string;
}

/** Decides the client identity from the peer address and, for trusted peers, X-Forwarded-For. */
export function identifyClient(
  remoteIp: string,
  forwardedFor: string | null,
  trusted: readonly Cidr[],
): ClientIdentity {
  const peerIp = plainIp(remoteIp);
  if (trusted.length === 0 || !isTrusted(peerIp, trusted)) {
    return { peerIp, peerTrusted: false, clientIp: peerIp };
  }
  let clientIp = peerIp;
  if (forwardedFor !== null) {
    const hops = forwardedFor.split(",");
    for (let i = hops.length - 1; i >= 0; i--) {
      // Canonical, so that one client is one key (IPHash, rate limits) however a proxy wrote it.
      const hop = hopAddress(hops[i].trim());
      if (hop === null) break;
      clientIp = hop;
      if (!isTrusted(hop, trusted)) break;
    }
  }
  return { peerIp, peerTrusted: true, clientIp };
}

function isTrusted(ip: string, trusted: readonly Cidr[]): boolean {
  const bytes = parseIp(ip);
  return bytes !== null && trusted.some((c) => cidrContains(c, bytes));
}

/** What the listener knows about where a request arrived. */
export interface ArrivalInfo {
  readonly proto: "http" | "https";
  /** The real port of the listener the request came in on. */
  readonly port: string;
  /** This machine's host name, for X-Forwarded-Server. */
  readonly serverName: string;
}

/**
 * The fields sent to a backend, built in one pass over the client's headers:
 * hop-by-hop fields removed, Host kept as received (or taken from HTTP/2's
 * :authority), and X-Forwarded-For/-Proto/-Host/-Port/-Server and X-Real-IP set.
 * From a trusted peer the incoming chain is extended and incoming values kept;
 * from anyone else incoming values are replaced, so a client cannot spoof them.
 */
export function forwardedFields(
  headers: Headers,
  client: ClientIdentity,
  arrival: ArrivalInfo & { readonly host: string },
): Fields {
  const listed = connectionListed(headers.get("connection"));
  const out: Fields = [];
  let hasHost = false;
  let chain: string | null = null;
  let proto: string | null = null;
  let host: string | null = null;
  let port: string | null = null;
  headers.forEach((value, name) => { // forEach: see endToEnd
    if (isHopByHop(name, listed)) return;
    // Backends that read fields CGI-style (X_Forwarded_For becomes HTTP_X_FORWARDED_FOR) would
    // take an underscore spelling for the real field: those are dropped, as nginx drops them.
    if (name.includes("_") && SPOOFABLE.has(cgiSpelling(name))) return;
    // RFC 7239 Forwarded, which Strom does not write, and X-Forwarded-Prefix, which it writes
    // only with StripPrefix: believed from trusted peers only.
    if ((name === "forwarded" || name === "x-forwarded-prefix") && !client.peerTrusted) return;
    if (FORWARDING.has(name)) {
      if (!client.peerTrusted) return;
      if (name === "x-forwarded-for") chain = value;
      else if (name === "x-forwarded-proto") proto = value;
      else if (name === "x-forwarded-host") host = value;
      else if (name === "x-forwarded-port") port = value;
      return;
    }
    if (name === "host") hasHost = true;
    out.push([name, value]);
  });
  if (!hasHost && arrival.host !== "") out.push(["host", arrival.host]);
  out.push(
    ["x-forwarded-for", chain ? `${chain}, ${client.peerIp}` : client.peerIp],
    ["x-real-ip", client.clientIp],
    ["x-forwarded-proto", proto ?? arrival.proto],
  );
  if (host !== null || arrival.host !== "") out.push(["x-forwarded-host", host ?? arrival.host]);
  out.push(["x-forwarded-port", port ?? arrival.port], ["x-forwarded-server", arrival.serverName]);
  return out;
}
