// Header rules for forwarding: hop-by-hop removal (RFC 9110 7.6.1) and the
// X-Forwarded-* family, with trust decided by `trusted_proxies`.

import { type Cidr, cidrContains, parseIp, plainIp } from "../net/address.ts";

/** Hop-by-hop fields (RFC 9110 7.6.1 and 7.8, plus the non-standard ones still seen). */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
];

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Removes hop-by-hop fields and every field named in `Connection`, in place. */
export function stripHopByHop(headers: Headers): void {
  const connection = headers.get("connection");
  if (connection !== null) {
    for (const part of connection.split(",")) {
      const name = part.trim();
      if (name !== "" && TOKEN.test(name)) headers.delete(name);
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
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
      const hop = plainIp(hops[i].trim());
      if (parseIp(hop) === null) break;
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
 * Sets X-Forwarded-For/-Proto/-Host/-Port/-Server and X-Real-IP. From a trusted
 * peer the incoming chain is extended and incoming values kept; from anyone
 * else incoming values are replaced, so a client cannot spoof them.
 */
export function setForwardedHeaders(
  headers: Headers,
  client: ClientIdentity,
  arrival: ArrivalInfo & { readonly host: string },
): void {
  const keep = (name: string, value: string) => {
    if (!client.peerTrusted || !headers.has(name)) headers.set(name, value);
  };
  const chain = client.peerTrusted ? headers.get("x-forwarded-for") : null;
  headers.set("x-forwarded-for", chain ? `${chain}, ${client.peerIp}` : client.peerIp);
  headers.set("x-real-ip", client.clientIp);
  keep("x-forwarded-proto", arrival.proto);
  if (arrival.host !== "") keep("x-forwarded-host", arrival.host);
  keep("x-forwarded-port", arrival.port);
  headers.set("x-forwarded-server", arrival.serverName);
}
