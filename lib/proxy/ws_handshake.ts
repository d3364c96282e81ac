// The backend leg's opening handshake (RFC 6455 section 4.1), with Strom as
// the client: a dedicated connection, the request bytes, and the checks of the
// backend's 101.

import type { BackendAddress } from "../config/types.ts";
import type { Pool } from "../runtime.ts";
import { dial } from "../transport/dial.ts";
import { Connection } from "../transport/http1/connection.ts";
import { ProtocolError, type ResponseHead } from "../transport/http1/parse.ts";
import type { Fields } from "./headers.ts";

/** Fields of the client's handshake Strom never forwards: it offers no extension (see README). */
const NOT_FORWARDED = new Set([
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "content-length",
]);

/** Opens a dedicated connection: TCP, then TLS for `wss://` backends, within connect_timeout. */
export async function connect(
  address: BackendAddress,
  pool: Pool,
  signal: AbortSignal,
): Promise<Connection> {
  const caCerts = pool.config.client.caCerts;
  const target = { host: address.host, port: address.port, tls: address.tls, caCerts };
  const conn = await dial(target, signal, pool.config.connectTimeoutMs);
  return new Connection(conn, address.authority);
}

/** Checks a 101 answer against RFC 6455 4.1: the accept value, a protocol offered, no extension. */
export async function checkAnswer(
  answer: ResponseHead,
  key: string,
  offered: string[],
): Promise<void> {
  const field = (name: string) => answer.fields.find(([n]) => n === name)?.[1] ?? null;
  // Upgrade and Connection are hop-by-hop, dropped by the parser; a correct
  // accept value already proves the backend understood the handshake.
  if (field("sec-websocket-accept") !== await acceptValue(key)) {
    throw new ProtocolError("invalid Sec-WebSocket-Accept in the backend's 101");
  }
  const protocol = field("sec-websocket-protocol");
  if (protocol !== null && !offered.includes(protocol)) {
    throw new ProtocolError(`the backend chose a subprotocol not offered: "${protocol}"`);
  }
  if (field("sec-websocket-extensions") !== null) {
    throw new ProtocolError("the backend chose an extension although none was offered");
  }
}

/** Base64 of SHA-1 over the key and the protocol's GUID (RFC 6455 4.2.2). */
async function acceptValue(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** The handshake request: the client's target and fields, plus Upgrade and Strom's own version of the rest. */
export function handshakeHead(target: string, fields: Fields, key: string): Uint8Array {
  let text = "";
  for (const [name, value] of fields) {
    if (!NOT_FORWARDED.has(name)) text += `${name}: ${value}\r\n`;
  }
  text += `upgrade: websocket\r\nconnection: Upgrade\r\n`;
  text += `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`;
  // As the HTTP/1.1 transport does: the target as UTF-8, field values as octets.
  const line = new TextEncoder().encode(`GET ${target} HTTP/1.1\r\n`);
  const out = new Uint8Array(line.length + text.length);
  out.set(line);
  for (let i = 0; i < text.length; i++) out[line.length + i] = text.charCodeAt(i);
  return out;
}
