// Strict parsing of a backend's HTTP/1.1 response head (RFC 9112). Anything
// ambiguous is refused, so a confused backend gives a 502 and a closed
// connection instead of a desynchronized pool.

import { connectionListed, type Fields, isHopByHop, TOKEN } from "../../proxy/headers.ts";

/** How the response body is delimited. */
export type Framing =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" }
  | { readonly kind: "close" };

/** A parsed response head. */
export interface ResponseHead {
  readonly status: number;
  /** End-to-end fields only (hop-by-hop and Connection-listed ones are dropped here). */
  readonly fields: Fields;
  readonly framing: Framing;
  /** Whether the connection may carry another request afterwards. */
  readonly keepAlive: boolean;
}

/** A backend answer that cannot be trusted; the connection must be closed. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Longest response head accepted. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Most header lines accepted. */
export const MAX_HEADER_LINES = 256;

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: [^\r\n]*)?$/;
// Field values: visible ASCII, obs-text, spaces and tabs; no CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** An LF that is not the end of a CR LF. */
const BARE_LF = /(?:^|[^\r])\n/;
/**
 * Field names seen before, as sent, mapped to their lower case: a known one
 * needs neither the token check nor lower-casing again. Backends send the
 * same few names in every answer; past the cap (or 64 characters), names are
 * checked each time.
 */
const KNOWN_NAMES = new Map<string, string>();
const KNOWN_NAMES_CAP = 512;

/**
 * A string of its own: V8 makes a slice of 13 characters or more a view into
 * the string it was cut from, so a name kept in KNOWN_NAMES would keep the
 * whole head it came in (up to 64 KiB) alive.
 */
function ownCopy(text: string): string {
  return text.split("").join("");
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** Decodes bytes one-to-one into a string (HTTP fields are octets, RFC 9110 5.5). */
export function latin1(bytes: Uint8Array): string {
  // Heads are nearly always ASCII, where UTF-8 and latin1 agree: one native
  // call (~0.2 us for 250 bytes on Deno 2.9, against ~1.2 us below). A result
  // as long as the bytes, without U+FFFD, had one ASCII byte per character.
  const text = utf8.decode(bytes);
  if (text.length === bytes.length && !text.includes("\ufffd")) return text;
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

/**
 * Heads parsed lately, by their text (answers to requests other than HEAD,
 * whose framing the method changes). A backend sends the same head again and
 * again but for its Date, which changes once a second: a lookup (~0.15 us for
 * nginx's 150 characters on Deno 2.9) instead of a parse (~2 us). Entries are
 * frozen, as every answer with that head shares one; the map is emptied when
 * full, so heads that never repeat (a cookie per answer) cost a lookup and an
 * insert each, and at most RECENT_HEADS_CAP heads of up to
 * RECENT_HEAD_MAX_CHARS characters are kept.
 */
const RECENT_HEADS = new Map<string, ResponseHead>();
const RECENT_HEADS_CAP = 256;
const RECENT_HEAD_MAX_CHARS = 1024;

/**
 * As parseResponseHead, from RECENT_HEADS when the same head came lately. The
 * answer is shared and frozen: its fields must not be changed.
 */
export function parseResponseHeadCached(head: string, method: string): ResponseHead {
  if (method === "HEAD" || head.length > RECENT_HEAD_MAX_CHARS) {
    return parseResponseHead(head, method);
  }
  const known = RECENT_HEADS.get(head);
  if (known !== undefined) return known;
  const parsed = parseResponseHead(head, method);
  for (const field of parsed.fields) Object.freeze(field);
  Object.freeze(parsed.fields);
  Object.freeze(parsed.framing);
  Object.freeze(parsed);
  if (RECENT_HEADS.size >= RECENT_HEADS_CAP) RECENT_HEADS.clear();
  // The head is a string of its own (latin1() decodes it), not a view into a larger one.
  RECENT_HEADS.set(head, parsed);
  return parsed;
}

/**
 * Parses a response head (status line and fields, without the final CRLF CRLF)
 * for a request with `method`.
 */
export function parseResponseHead(head: string, method: string): ResponseHead {
  // A line may end in a bare LF (RFC 9112 2.2); a lone CR stays invalid.
  const lines = BARE_LF.test(head) ? head.split(/\r?\n/) : head.split("\r\n");
  const m = STATUS_LINE.exec(lines[0]);
  if (!m) throw new ProtocolError(`invalid status line ${JSON.stringify(lines[0].slice(0, 80))}`);
  if (lines.length - 1 > MAX_HEADER_LINES) throw new ProtocolError("too many header fields");
  const minor = m[1];
  const status = Number(m[2]);
  let fields: Fields = [];
  let contentLength: string | null = null;
  let transferEncoding: string | null = null;
  let connection = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new ProtocolError(`invalid header line ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = line.slice(0, colon);
    // Optional whitespace is spaces and tabs only (RFC 9110 5.5): `trim()` also took vertical
    // tabs, form feeds and U+00A0 (byte 0xA0, obs-text) off a value's ends.
    let from = colon + 1;
    let to = line.length;
    while (from < to && isOws(line.charCodeAt(from))) from++;
    while (to > from && isOws(line.charCodeAt(to - 1))) to--;
    const value = line.slice(from, to);
    let lower = KNOWN_NAMES.get(name);
    if (lower === undefined) {
      if (!TOKEN.test(name)) {
        throw new ProtocolError(`invalid header name ${JSON.stringify(name.slice(0, 80))}`);
      }
      lower = name.toLowerCase();
      if (KNOWN_NAMES.size < KNOWN_NAMES_CAP && name.length <= 64) {
        KNOWN_NAMES.set(ownCopy(name), ownCopy(lower));
      }
    }
    if (!FIELD_VALUE.test(value)) throw new ProtocolError(`invalid value of header "${name}"`);
    if (lower === "content-length") {
      contentLength = contentLength === null ? value : `${contentLength}, ${value}`;
    } else if (lower === "transfer-encoding") {
      transferEncoding = transferEncoding === null ? value : `${transferEncoding}, ${value}`;
    } else if (lower === "connection") connection += `,${value.toLowerCase()}`;
    if (!isHopByHop(lower, null)) fields.push([lower, value]);
  }
  const framing = decideFraming(status, method, contentLength, transferEncoding);
  if (connection === "" || connection === ",keep-alive") {
    // The usual Connection fields (none, or nginx's): nothing listed, no close.
    const keepAlive = framing.kind !== "close" &&
      (minor === "1" || (connection !== "" && transferEncoding === null));
    return { status, fields, framing, keepAlive };
  }
  const listed = connectionListed(connection);
  if (listed !== null) fields = fields.filter(([name]) => !listed.has(name));
  const tokens = connection.split(",").map((t) => t.trim());
  // RFC 9112 6.1: an HTTP/1.0 answer with Transfer-Encoding leaves the connection unusable.
  const keepAlive = framing.kind !== "close" && !tokens.includes("close") &&
    (minor === "1" || (tokens.includes("keep-alive") && transferEncoding === null));
  return { status, fields, framing, keepAlive };
}

function decideFraming(
  status: number,
  method: string,
  contentLength: string | null,
  transferEncoding: string | null,
): Framing {
  if (transferEncoding !== null && contentLength !== null) {
    throw new ProtocolError("both Transfer-Encoding and Content-Length");
  }
  // RFC 9112 6.3: these never have a body, whatever the fields say.
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) {
    return { kind: "none" };
  }
  if (transferEncoding !== null) return transferFraming(transferEncoding);
  if (contentLength !== null) return { kind: "length", length: parseContentLength(contentLength) };
  return { kind: "close" };
}

/** A space or a tab. */
function isOws(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * The framing a response's Transfer-Encoding gives its body: chunked, or up to
 * the close for an empty list. Throws a ProtocolError for any other coding,
 * which would reach the client undone, its bytes passed off as the content
 * (nginx refuses them too), and for chunked not last (RFC 9112 6.3).
 */
export function transferFraming(transferEncoding: string): Framing {
  const codings = transferEncoding.toLowerCase().split(",").map((c) => c.trim());
  const chunked = codings.indexOf("chunked");
  if (chunked >= 0 && chunked !== codings.length - 1) {
    throw new ProtocolError("chunked is not the last transfer coding");
  }
  const other = codings.find((c) => c !== "chunked");
  if (other !== undefined) {
    throw new ProtocolError(`unsupported transfer coding ${JSON.stringify(other.slice(0, 40))}`);
  }
  return chunked >= 0 ? { kind: "chunked" } : { kind: "close" };
}

const LENGTH = /^\d{1,15}$/;

/** Content-Length: digits only; repeated values must all be equal (RFC 9110 8.6). */
function parseContentLength(value: string): number {
  if (LENGTH.test(value)) return Number(value); // one value, the usual case
  const values = value.split(",").map((v) => v.trim());
  if (values.some((v) => v !== values[0])) throw new ProtocolError("conflicting Content-Length");
  if (!LENGTH.test(values[0])) {
    throw new ProtocolError(`invalid Content-Length ${JSON.stringify(values[0].slice(0, 40))}`);
  }
  return Number(values[0]);
}

/**
 * The LF that ends a head's last line in `bytes[from, to)`: the one followed by
 * the empty line (LF or CR LF), or -1 when that is not buffered yet.
 */
export function headEndLf(bytes: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to - 1; i++) {
    if (bytes[i] !== 10) continue;
    const next = bytes[i + 1];
    if (next === 10 || (next === 13 && i + 2 < to && bytes[i + 2] === 10)) return i;
  }
  return -1;
}

/** Parses a chunk-size line (`1a;ext=x`) into a size; throws on anything else. */
export function parseChunkSize(line: string): number {
  const semicolon = line.indexOf(";");
  const hex = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) {
    throw new ProtocolError(`invalid chunk size ${JSON.stringify(line.slice(0, 40))}`);
  }
  return parseInt(hex, 16);
}
