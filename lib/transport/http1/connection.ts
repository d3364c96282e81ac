// One HTTP/1.1 connection to a backend: buffered reads, request writing and
// response bodies as streams that hand the connection back when they end.

import { headBody, UpstreamError } from "../transport.ts";
import { BackendBodyBroke, ReadTimer, type StallOptions, StallTimer } from "../stall.ts";
import type { Fields } from "../../proxy/headers.ts";
import {
  type Framing,
  headEndLf,
  latin1,
  MAX_HEAD_BYTES,
  parseChunkSize,
  parseResponseHeadCached,
  ProtocolError,
  type ResponseHead,
} from "./parse.ts";

/** Longest line of a chunked body (a chunk size with extensions, a trailer). */
const MAX_CHUNK_LINE = 4096;
/** Largest read of a body chunk. */
const READ_SIZE = 64 * 1024;
/**
 * First size of a connection's buffer: a response head fits in it; it grows
 * for bigger heads. Connections are opened per request for backends that do
 * not keep them alive, so a small start saves a 64 KiB allocation each time.
 */
const FIRST_BUFFER_SIZE = 8 * 1024;
/** The read of a parked connection: an answer's head usually fits. */
const PROBE_SIZE = 4 * 1024;
/** A Content-Length body up to this size is read whole with the head (no stream). */
export const SMALL_BODY_BYTES = 16 * 1024;
const utf8 = new TextEncoder();
/** How every status line starts. */
const STATUS_START = utf8.encode("HTTP/");

/** A TCP connection to one backend with its own read buffer. */
export class Connection {
  readonly #conn: Deno.Conn;
  #buf = new Uint8Array(FIRST_BUFFER_SIZE);
  #start = 0;
  #end = 0;
  #closed = false;
  /** Bytes of the current response received so far (0 means "nothing came back"). */
  received = 0;
  /** When it was last handed back to the pool. */
  idleSince = 0;
  /** Requests this connection carried. */
  uses = 0;
  /** In the pool, waiting for a request. */
  #parked = false;
  /**
   * Told when the backend closes (or resets) the connection while it waits in
   * the pool (since `idleSince`): what the pool learns the backend's keep-alive
   * timeout from.
   */
  onIdleClose: ((conn: Connection) => void) | null = null;
  /** The read started while parked: the next answer's first bytes, or the backend's close. */
  #pending: Promise<number | null | Error> | null = null;
  #probe: Uint8Array | null = null;

  /** The backend, as `host:port`, for messages. */
  readonly #backend: string;
  /**
   * TCP_NODELAY is still to be set, before the second write (see `noDelay` in
   * dial.ts): 0 no (set, or not ours to set), 1 yes, 2 yes and one write done.
   */
  #noDelayDue: 0 | 1 | 2;

  /**
   * `noDelayDue`: `conn` is a plain TCP connection without TCP_NODELAY yet,
   * which this connection sets before its second write.
   */
  constructor(conn: Deno.Conn, backend: string, noDelayDue = false) {
    this.#conn = conn;
    this.#backend = backend;
    this.#noDelayDue = noDelayDue ? 1 : 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /**
   * Parks it in the pool. A read is started at once, as nginx watches its idle
   * upstream connections: a backend that closes the connection while it waits
   * (a keep-alive timeout shorter than Strom's), or that sends bytes nobody
   * asked for, closes it here, so no request is sent on it. Otherwise the read
   * brings the next answer's first bytes.
   */
  park(): void {
    this.#parked = true;
    if (this.#pending !== null || this.#closed) return;
    this.#pending = this.#conn.read(this.#probe ??= new Uint8Array(PROBE_SIZE))
      .then(this.#parkedRead, this.#parkedFailure);
  }

  /** What a parked read gave: bytes of an answer (once unparked), else the end of it. */
  readonly #parkedRead = (n: number | null): number | null => {
    if (this.#parked) this.#closedWhileParked(n === null);
    return n;
  };

  /** A parked read failed (closed by the pool, or reset): ends the connection, rejects nobody. */
  readonly #parkedFailure = (error: unknown): Error => {
    if (this.#parked) this.#closedWhileParked(true);
    return error instanceof Error ? error : new Error(String(error));
  };

  /** Closes it; `byPeer`: the backend ended it (not bytes nobody asked for, not Strom). */
  #closedWhileParked(byPeer: boolean): void {
    if (byPeer && !this.#closed) this.onIdleClose?.(this);
    this.close();
  }

  /** Takes it out of the pool for a request (its read, if any, now reads the answer). */
  unpark(): void {
    this.#parked = false;
  }

  /** Writes all of `bytes` (one write nearly always: no async call of its own then). */
  write(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return Promise.resolve();
    if (this.#noDelayDue !== 0) this.#beforeWrite();
    return this.#conn.write(bytes).then((n) =>
      n < bytes.length ? this.#writeRest(bytes, n) : undefined
    );
  }

  /**
   * Counts the first write; sets TCP_NODELAY before any later one, which Nagle's
   * algorithm could hold back while earlier bytes are unacknowledged (up to a
   * delayed ACK, 40 ms on Linux).
   */
  #beforeWrite(): void {
    if (this.#noDelayDue === 1) {
      this.#noDelayDue = 2;
      return;
    }
    this.#noDelayDue = 0;
    try {
      (this.#conn as Deno.TcpConn).setNoDelay(true);
    } catch { /* closed: the write fails and says so */ }
  }

  async #writeRest(bytes: Uint8Array, offset: number): Promise<void> {
    if (this.#noDelayDue !== 0) this.#beforeWrite();
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /**
   * `text` encoded into this connection's read buffer when it is all ASCII and
   * fits, else null. Only while nothing is buffered, i.e. before a request is
   * written: the bytes stay untouched until the write completed, because the
   * buffer fills again only when the answer is read. That saves an ArrayBuffer
   * per request: on Deno 2.9, `TextEncoder.encode` of a 250-byte head costs
   * ~2.9 us, `encodeInto` an existing buffer ~0.09 us.
   */
  asciiBytes(text: string): Uint8Array | null {
    if (this.#start !== this.#end || text.length > this.#buf.length) return null;
    this.#start = this.#end = 0;
    // Every character outside ASCII takes more than one byte in UTF-8.
    const { read, written } = utf8.encodeInto(text, this.#buf);
    return read === text.length && written === text.length ? this.#buf.subarray(0, written) : null;
  }

  /** Reads more bytes into the buffer (compacting or growing it); false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      const pending = this.#end - this.#start;
      if (pending * 2 > this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = bigger;
      } else this.#buf.copyWithin(0, this.#start, this.#end);
      this.#start = 0;
      this.#end = pending;
    }
    let n: number | null;
    if (this.#pending === null) n = await this.#conn.read(this.#buf.subarray(this.#end));
    else {
      const pending = this.#pending;
      this.#pending = null;
      n = this.#takeParked(await pending);
    }
    if (n === null) return false;
    this.#end += n;
    this.received += n;
    return true;
  }

  /**
   * The parked read's bytes, copied into the buffer; throws its failure. It is
   * taken by the first read after the request, when nothing is buffered (a
   * connection with leftover bytes is never parked), so the buffer, never
   * smaller than FIRST_BUFFER_SIZE, has room for all PROBE_SIZE of them.
   */
  #takeParked(result: number | null | Error): number | null {
    if (result instanceof Error) throw result;
    if (result !== null) this.#buf.set(this.#probe!.subarray(0, result), this.#end);
    return result;
  }

  /**
   * Reads a response head, skipping 1xx interim answers (except 101). Lines
   * may end in a bare LF (RFC 9112 2.2 lets a recipient take one as a line
   * end, as nginx and hyper do). One async call per answer: the search runs
   * here, not in a helper awaited in turn.
   */
  async readHead(method: string): Promise<ResponseHead> {
    let scanned = 0;
    while (true) {
      // Two bytes back: the LF and the CR LF that end a head may come in different reads.
      const lf = headEndLf(this.#buf, this.#start + Math.max(0, scanned - 2), this.#end);
      scanned = (lf >= 0 ? lf : this.#end) - this.#start;
      if (scanned > MAX_HEAD_BYTES) throw new ProtocolError("response head too long");
      if (lf < 0) {
        // An answer without a status line (HTTP/0.9, another protocol) is refused at once, as
        // nginx refuses it, instead of waiting for a head end that may never come.
        if (!this.#mayStartStatusLine()) throw new ProtocolError("no HTTP/1.x status line");
        if (await this.#fill()) continue;
        throw this.received === 0
          ? new UpstreamError("reset", "connection closed before an answer")
          : new ProtocolError("connection closed inside the response head");
      }
      const head = parseResponseHeadCached(this.#takeHeadText(lf), method);
      if (head.status >= 200 || head.status === 101) return head;
      scanned = 0;
    }
  }

  /** Whether the buffered bytes could begin a status line: `HTTP/` so far. */
  #mayStartStatusLine(): boolean {
    const n = Math.min(this.#end - this.#start, STATUS_START.length);
    for (let i = 0; i < n; i++) {
      if (this.#buf[this.#start + i] !== STATUS_START[i]) return false;
    }
    return true;
  }

  /** The head whose last line ends at the LF at `lf`, taken out of the buffer with its empty line. */
  #takeHeadText(lf: number): string {
    const buf = this.#buf;
    const end = lf > this.#start && buf[lf - 1] === 13 ? lf - 1 : lf;
    const text = latin1(buf.subarray(this.#start, end));
    this.#start = buf[lf + 1] === 10 ? lf + 2 : lf + 3;
    return text;
  }

  /**
   * Buffers the rest of a small Content-Length body, so the answer needs no
   * stream (backends often send the head and the body in separate packets).
   * Null when nothing is missing (the common case: no await on the hot path);
   * larger and other bodies are left to `bodyStream`.
   */
  readSmallBody(head: ResponseHead): Promise<void> | null {
    const { framing } = head;
    if (framing.kind !== "length" || framing.length > SMALL_BODY_BYTES) return null;
    if (this.#end - this.#start >= framing.length) return null;
    return this.#fillTo(framing.length);
  }

  async #fillTo(length: number): Promise<void> {
    while (this.#end - this.#start < length) {
      if (!(await this.#fill())) {
        throw new ProtocolError("connection closed before the end of the body");
      }
    }
  }

  /** A line of a chunked body (a chunk size, a trailer), without its end: CR LF, or a bare LF (RFC 9112 2.2, as nginx). */
  async #readLine(): Promise<string> {
    let scanned = 0;
    while (true) {
      const at = findLf(this.#buf, this.#start + scanned, this.#end);
      scanned = (at >= 0 ? at : this.#end) - this.#start;
      if (scanned > MAX_CHUNK_LINE) throw new ProtocolError("chunk line too long");
      if (at >= 0) {
        const end = at > this.#start && this.#buf[at - 1] === 0x0d ? at - 1 : at;
        const line = latin1(this.#buf.subarray(this.#start, end));
        this.#start = at + 1;
        return line;
      }
      if (!(await this.#fill())) throw new ProtocolError("connection closed inside a chunked body");
    }
  }

  /**
   * Takes up to `max` buffered bytes as a copy, reading more first if none are
   * buffered. A read for the last `max` bytes asks for one byte more: a byte the
   * backend sent beyond them (a Content-Length too small for what it sent)
   * stays buffered, where `hasLeftover` sees it before the connection is
   * reused, as nginx peeks at a connection it keeps. `room`: the size of such
   * a read.
   */
  async #take(max: number, room = Math.min(max + 1, READ_SIZE)): Promise<Uint8Array | null> {
    if (this.#start === this.#end && this.#pending !== null && !(await this.#fill())) return null;
    if (this.#start === this.#end) {
      // Nothing buffered: read straight into a fresh chunk, no copy.
      const chunk = new Uint8Array(room);
      const n = await this.#conn.read(chunk);
      if (n === null) return null;
      this.received += n;
      if (n <= max) return chunk.subarray(0, n);
      this.#start = 0;
      this.#end = 1;
      this.#buf[0] = chunk[max];
      return chunk.subarray(0, max);
    }
    const n = Math.min(max, this.#end - this.#start);
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /**
   * The whole body when it is a Content-Length body already buffered; else
   * null. A view of the read buffer, valid until the next read or request:
   * only for `new Response`, which copies it (Fetch: a BufferSource body is
   * "a copy of the bytes").
   */
  #takeBufferedBody(framing: Framing): Uint8Array<ArrayBuffer> | null {
    if (framing.kind !== "length" || this.#end - this.#start < framing.length) return null;
    const body = this.#buf.subarray(this.#start, this.#start + framing.length);
    this.#start += framing.length;
    return body;
  }

  /**
   * The client's response for an answer `head` read on this connection: no body,
   * the body already buffered (the common small answer, no stream), or a stream.
   * `done(reusable, bytes, broke)` is called once, when the body is over (`broke`: why the
   * backend's body broke off, if it did).
   */
  response(
    head: ResponseHead,
    done: (reusable: boolean, bytes: number, broke?: string) => void,
    stall: StallOptions = {},
  ): Response {
    if (head.framing.kind === "none") {
      done(true, 0);
      const { status } = head;
      // RFC 9110 8.6: no Content-Length on a 204; an HTTP/2 client takes one as a protocol error.
      const fields = status === 204 ? withoutLength(head.fields) : head.fields;
      const hasLength = fields.some(([name]) => name === "content-length");
      return withFields(new Response(headBody(status, hasLength), { status }), fields);
    }
    if (head.status === 205) {
      // Reset Content has no content (RFC 9110 15.3.6) and a Response cannot carry any:
      // an empty one keeps the connection, anything else (a body, or one up to close) ends it.
      // Nor its Content-Length: an HTTP/2 client takes one above 0 without DATA as an error.
      const empty = head.framing.kind === "length" && head.framing.length === 0;
      done(empty, 0);
      return withFields(new Response(null, { status: 205 }), withoutLength(head.fields));
    }
    const buffered = this.#takeBufferedBody(head.framing);
    if (buffered !== null) {
      // Copied into the Response before the connection is released: the next
      // request on it reuses the buffer.
      const response = new Response(buffered, { status: head.status });
      done(true, buffered.length);
      return withFields(response, head.fields);
    }
    const body = this.bodyStream(head.framing, done, stall);
    return withFields(new Response(body, { status: head.status }), head.fields);
  }

  /**
   * The TCP connection's two ends (a TLS connection's too: Deno gives those no `transport`), or
   * null for another transport.
   */
  get ends(): { local: Deno.NetAddr; remote: Deno.NetAddr } | null {
    const { localAddr: local, remoteAddr: remote } = this.#conn;
    const ip = (a: Deno.Addr): a is Deno.NetAddr =>
      "hostname" in a && "port" in a && (a.transport === "tcp" || a.transport === undefined);
    return ip(local) && ip(remote) ? { local, remote } : null;
  }

  /** Whether bytes beyond the current response arrived (a broken backend). */
  get hasLeftover(): boolean {
    return this.#start !== this.#end;
  }

  /**
   * The body as a stream. `done(reusable, bytes, broke)` is called once: reusable
   * when the body ended cleanly and the connection can carry another request;
   * `broke` says why the backend's body broke off, if it did.
   */
  bodyStream(
    framing: Framing,
    done: (reusable: boolean, bytes: number, broke?: string) => void,
    { stallTimeoutMs, onStall, readTimeoutMs, readSize = READ_SIZE }: StallOptions & {
      /**
       * First read size of a body that ends at close; a read that fills it makes the next one
       * four times larger, up to 64 KiB, and a read that does not goes back to it. A
       * WebSocket leg's reads wait while it idles, each holding its buffer.
       */
      readSize?: number;
    } = {},
  ): ReadableStream<Uint8Array> {
    let remaining = framing.kind === "length" ? framing.length : Infinity;
    let chunkLeft = 0;
    let closeRead = readSize;
    let finished = false;
    let bytes = 0;
    const finish = (reusable: boolean, broke?: string) => {
      if (!finished) {
        finished = true;
        done(reusable, bytes, broke);
      }
    };
    const next = async (): Promise<Uint8Array | null> => {
      if (framing.kind === "length") {
        if (remaining === 0) return null;
        const chunk = await this.#take(remaining);
        if (chunk === null) throw new ProtocolError("connection closed before the end of the body");
        remaining -= chunk.length;
        return chunk;
      }
      if (framing.kind === "close") {
        // No boundary to look past: a read of exactly closeRead bytes, none kept back.
        const chunk = await this.#take(closeRead, closeRead);
        closeRead = chunk !== null && chunk.length >= closeRead
          ? Math.min(closeRead * 4, READ_SIZE)
          : readSize;
        return chunk;
      }
      // chunked
      if (chunkLeft === 0) {
        const size = parseChunkSize(await this.#readLine());
        if (size === 0) {
          while ((await this.#readLine()) !== "") { /* trailers are dropped */ }
          return null;
        }
        chunkLeft = size;
      }
      const chunk = await this.#take(chunkLeft);
      if (chunk === null) throw new ProtocolError("connection closed inside a chunked body");
      chunkLeft -= chunk.length;
      if (chunkLeft === 0 && (await this.#readLine()) !== "") {
        throw new ProtocolError("missing CRLF after a chunk");
      }
      return chunk;
    };
    // A client that stops reading fails the body, which closes this
    // connection and the client's.
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stall = new StallTimer(stallTimeoutMs, () => {
      finish(false);
      this.close();
      controller.error(stall.error);
      onStall?.();
    });
    const silent = new ReadTimer(readTimeoutMs, (error) => {
      finish(false, error.message);
      this.close(); // fails the read under way
      controller.error(new BackendBodyBroke(this.#backend, error.message));
    });
    return new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      pull: async (controller) => {
        stall.disarm();
        silent.arm();
        try {
          const chunk = await next();
          silent.disarm();
          if (chunk === null) {
            controller.close();
            finish(framing.kind !== "close");
          } else {
            bytes += chunk.length;
            controller.enqueue(chunk);
            stall.arm();
          }
        } catch (e) {
          silent.disarm();
          // Headers are sent by now: the client's connection is cut, and the listener logs it.
          const reason = e instanceof Error ? e.message : String(e);
          finish(false, reason);
          controller.error(new BackendBodyBroke(this.#backend, reason));
        }
      },
      cancel: () => {
        stall.disarm();
        silent.disarm();
        finish(false);
      },
    }, { highWaterMark: 0 });
  }
}

/**
 * Appends `fields` to a new response's headers. Measured on Deno 2.9: passing
 * the same seven fields as `init.headers` costs ~9.8 us per response (WebIDL
 * converts the nested arrays first), appending them afterwards ~2.3 us.
 */
function withoutLength(fields: Fields): Fields {
  return fields.filter(([name]) => name !== "content-length");
}

function withFields(response: Response, fields: Fields): Response {
  const headers = response.headers;
  for (let i = 0; i < fields.length; i++) headers.append(fields[i][0], fields[i][1]);
  return response;
}

/** Index of LF in bytes[from, to), or -1. */
function findLf(bytes: Uint8Array, from: number, to: number): number {
  const at = bytes.subarray(from, to).indexOf(0x0a);
  return at < 0 ? -1 : from + at;
}
