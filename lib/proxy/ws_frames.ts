// RFC 6455 framing for the backend leg of a relayed WebSocket. Strom is the
// client on that leg: what it sends is masked (section 5.3), and a masked frame
// from the server is a protocol error (section 5.1). No extension is ever
// negotiated, so any reserved bit set is an error too (section 5.2).

import { concatBytes } from "../bytes.ts";

/** Frame opcodes (RFC 6455 section 5.2). */
export const OPCODE = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** Default largest message accepted from a backend: 16 MiB. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** A whole message or control frame, as the decoder yields it. */
export type WsEvent =
  | { readonly type: "text"; readonly data: string }
  | { readonly type: "binary"; readonly data: Uint8Array<ArrayBuffer> }
  | { readonly type: "ping"; readonly data: Uint8Array<ArrayBuffer> }
  | { readonly type: "pong"; readonly data: Uint8Array<ArrayBuffer> }
  /** `code` is 1005 when the frame carried none (RFC 6455 section 7.1.5). */
  | { readonly type: "close"; readonly code: number; readonly reason: string };

/** A peer broke the protocol; `code` is the close code to fail the connection with. */
export class WebSocketProtocolError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = "WebSocketProtocolError";
    this.code = code;
  }
}

/**
 * Whether a close code may appear in a close frame: the defined codes other
 * than the reserved 1004, 1005, 1006 and 1015, and 3000-4999 (section 7.4).
 */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Control frame payloads are at most 125 bytes, so a close reason at most 123 (section 5.5). */
const MAX_REASON_BYTES = 123;

/**
 * `reason` cut to what a close frame can carry (123 UTF-8 bytes), never inside
 * a character.
 */
export function truncateReason(reason: string): string {
  if (reason.length * 3 <= MAX_REASON_BYTES) return reason;
  let out = "";
  let bytes = 0;
  for (const char of reason) {
    const size = utf8.encode(char).length;
    if (bytes + size > MAX_REASON_BYTES) break;
    out += char;
    bytes += size;
  }
  return out;
}

/** A close frame's payload: empty for 1005 ("no status"), else the code and the reason. */
export function closePayload(code: number, reason = ""): Uint8Array<ArrayBuffer> {
  if (code === 1005) return new Uint8Array(0);
  const text = utf8.encode(truncateReason(reason));
  const out = new Uint8Array(2 + text.length);
  out[0] = code >> 8;
  out[1] = code & 0xff;
  out.set(text, 2);
  return out;
}

/**
 * One frame as bytes. Masked with a fresh random key by default (client to
 * server); `mask: null` sends it unmasked (server to client, for tests); a
 * given 4-byte mask makes the output deterministic.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options: { readonly mask?: Uint8Array | null; readonly fin?: boolean } = {},
): Uint8Array<ArrayBuffer> {
  const mask = options.mask === undefined
    ? crypto.getRandomValues(new Uint8Array(4))
    : options.mask;
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (mask === null ? 0 : 4);
  const out = new Uint8Array(headerLength + length);
  out[0] = (options.fin === false ? 0 : 0x80) | opcode;
  const maskBit = mask === null ? 0 : 0x80;
  if (lengthBytes === 0) out[1] = maskBit | length;
  else if (lengthBytes === 2) {
    out[1] = maskBit | 126;
    out[2] = length >> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = maskBit | 127;
    const view = new DataView(out.buffer);
    view.setUint32(2, Math.floor(length / 2 ** 32));
    view.setUint32(6, length >>> 0);
  }
  if (mask === null) {
    out.set(payload, headerLength);
    return out;
  }
  out.set(mask, headerLength - 4);
  for (let i = 0; i < length; i++) out[headerLength + i] = payload[i] ^ mask[i & 3];
  return out;
}

/**
 * Decodes the frames a server sends into messages and control frames:
 * fragmented messages are reassembled (control frames may come between their
 * fragments), text is checked to be UTF-8, and a message over
 * `maxMessageBytes` fails with 1009 before its bytes are buffered. Bytes after
 * a close frame are ignored (section 5.5.1).
 */
export class FrameDecoder {
  readonly #max: number;
  #buf = new Uint8Array(0);
  #start = 0;
  #end = 0;
  /** Opcode of the fragmented message in progress, or -1. */
  #messageOpcode = -1;
  #parts: Uint8Array[] = [];
  #partsBytes = 0;
  #closed = false;
  /** A protocol error found after events push() returned, for throwPending(). */
  #pending: unknown = null;

  constructor(options: { readonly maxMessageBytes?: number } = {}) {
    this.#max = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  }

  /**
   * Adds received bytes; returns the events they completed. Throws
   * WebSocketProtocolError, but only once the events before the bad frame are
   * out: with some, they are returned and the error waits for `throwPending`
   * (or the next push), so valid messages that came in the same read as the
   * protocol error still reach the client.
   */
  push(chunk: Uint8Array): WsEvent[] {
    this.throwPending();
    const events: WsEvent[] = [];
    if (this.#closed) return events;
    this.#append(chunk);
    try {
      while (!this.#closed) {
        const event = this.#next();
        if (event === undefined) break;
        if (event !== null) events.push(event);
      }
    } catch (e) {
      if (events.length === 0) throw e;
      this.#pending = e;
    }
    return events;
  }

  /** Throws the protocol error the last push found after the events it returned, if any. */
  throwPending(): void {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    throw pending;
  }

  /** One frame: an event, null for a non-final fragment, undefined when more bytes are needed. */
  #next(): WsEvent | null | undefined {
    const available = this.#end - this.#start;
    if (available < 2) return undefined;
    const b0 = this.#buf[this.#start];
    const b1 = this.#buf[this.#start + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) throw new WebSocketProtocolError(1002, "reserved bits set in a frame");
    if ((b1 & 0x80) !== 0) {
      throw new WebSocketProtocolError(1002, "masked frame from the server");
    }
    const control = opcode >= 0x8;
    if (!isKnownOpcode(opcode)) {
      throw new WebSocketProtocolError(1002, `invalid opcode ${opcode}`);
    }
    let length = b1 & 0x7f;
    let headerLength = 2;
    if (length === 126) {
      if (available < 4) return undefined;
      length = (this.#buf[this.#start + 2] << 8) | this.#buf[this.#start + 3];
      headerLength = 4;
    } else if (length === 127) {
      if (available < 10) return undefined;
      const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start + 2, 8);
      const high = view.getUint32(0);
      if (high & 0x80000000) {
        throw new WebSocketProtocolError(1002, "frame length with the top bit set");
      }
      length = high * 2 ** 32 + view.getUint32(4);
      headerLength = 10;
    }
    if (control && (!fin || length > 125)) {
      throw new WebSocketProtocolError(1002, "fragmented or oversized control frame");
    }
    if (opcode === OPCODE.continuation && this.#messageOpcode < 0) {
      throw new WebSocketProtocolError(1002, "continuation frame without a message to continue");
    }
    if ((opcode === OPCODE.text || opcode === OPCODE.binary) && this.#messageOpcode >= 0) {
      throw new WebSocketProtocolError(1002, "new message inside a fragmented message");
    }
    if (!control && this.#partsBytes + length > this.#max) {
      throw new WebSocketProtocolError(1009, `message over ${this.#max} bytes`);
    }
    if (available < headerLength + length) return undefined;
    const from = this.#start + headerLength;
    const payload = this.#buf.slice(from, from + length);
    this.#start = from + length;
    if (control) return this.#control(opcode, payload);
    if (opcode !== OPCODE.continuation) this.#messageOpcode = opcode;
    this.#parts.push(payload);
    this.#partsBytes += length;
    if (!fin) return null;
    const data = this.#parts.length === 1
      ? this.#parts[0]
      : concatBytes(this.#parts, this.#partsBytes);
    const type = this.#messageOpcode === OPCODE.text ? "text" : "binary";
    this.#messageOpcode = -1;
    this.#parts = [];
    this.#partsBytes = 0;
    if (type === "binary") return { type, data: data as Uint8Array<ArrayBuffer> };
    return { type, data: decodeUtf8(data, "text message") };
  }

  #control(opcode: number, payload: Uint8Array<ArrayBuffer>): WsEvent {
    if (opcode === OPCODE.ping) return { type: "ping", data: payload };
    if (opcode === OPCODE.pong) return { type: "pong", data: payload };
    this.#closed = true;
    if (payload.length === 0) return { type: "close", code: 1005, reason: "" };
    if (payload.length === 1) throw new WebSocketProtocolError(1002, "close frame of one byte");
    const code = (payload[0] << 8) | payload[1];
    if (!isSendableCloseCode(code)) {
      throw new WebSocketProtocolError(1002, `invalid close code ${code}`);
    }
    return { type: "close", code, reason: decodeUtf8(payload.subarray(2), "close reason") };
  }

  /** Appends bytes, compacting or growing the buffer as needed. */
  /** Bytes of buffer this decoder holds (its memory, between frames). */
  get capacity(): number {
    return this.#buf.length;
  }

  #append(chunk: Uint8Array): void {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // Everything was taken: a buffer grown for one large frame goes, not kept for the
      // socket's lifetime (16 MiB per idle socket after one big message).
      if (this.#buf.length > KEEP_BUFFER) this.#buf = new Uint8Array(0);
    }
    const pending = this.#end - this.#start;
    if (this.#end + chunk.length > this.#buf.length) {
      if (pending + chunk.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const size = Math.max(pending + chunk.length, this.#buf.length * 2, 4096);
        const bigger = new Uint8Array(size);
        bigger.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = bigger;
      }
      this.#start = 0;
      this.#end = pending;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}

/** A decoder keeps a buffer up to this size between frames; a larger one is let go once empty. */
const KEEP_BUFFER = 64 * 1024;

function isKnownOpcode(opcode: number): boolean {
  return opcode <= OPCODE.binary || (opcode >= OPCODE.close && opcode <= OPCODE.pong);
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new WebSocketProtocolError(1007, `${what} is not valid UTF-8`);
  }
}
