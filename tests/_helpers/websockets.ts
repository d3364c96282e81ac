// WebSocket test peers: an echo backend (Deno.serve + Deno.upgradeWebSocket),
// a client with a message queue, and raw handshakes for exact bytes.

import { startBackend, type TestBackend } from "./servers.ts";

/** A close as one side saw it. */
export interface SeenClose {
  readonly code: number;
  readonly reason: string;
}

/** An echo backend and what it saw. */
export interface WsBackend extends TestBackend {
  /** Headers of each upgrade request (read before upgrading). */
  readonly upgrades: Headers[];
  /** Closes its sockets saw, in order. */
  readonly closes: SeenClose[];
  /** Sockets currently open on the backend. */
  readonly open: Set<WebSocket>;
}

/**
 * Starts an echo backend. A text message "close <code> <reason>" makes it close
 * with that code; `protocol` picks a subprotocol from those offered.
 */
export function startWsBackend(
  options: { protocol?: (offered: string[]) => string | undefined } = {},
): WsBackend {
  const upgrades: Headers[] = [];
  const closes: SeenClose[] = [];
  const open = new Set<WebSocket>();
  const backend = startBackend((request) => {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("not a WebSocket", { status: 400 });
    }
    upgrades.push(new Headers(request.headers));
    const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",")
      .map((p) => p.trim()).filter((p) => p !== "");
    const protocol = options.protocol?.(offered);
    const { socket, response } = Deno.upgradeWebSocket(request, protocol ? { protocol } : {});
    socket.binaryType = "arraybuffer";
    socket.onopen = () => open.add(socket);
    socket.onmessage = (event) => {
      const match = typeof event.data === "string" && /^close (\d+) (.*)$/.exec(event.data);
      if (match) socket.close(Number(match[1]), match[2]);
      else socket.send(event.data);
    };
    socket.onclose = (event) => {
      open.delete(socket);
      closes.push({ code: event.code, reason: event.reason });
    };
    return response;
  });
  return Object.assign(backend, { upgrades, closes, open });
}

/** A WebSocket client whose messages queue up until read. */
export class TestClient {
  readonly socket: WebSocket;
  readonly #queue: (string | ArrayBuffer)[] = [];
  readonly #waiting: ((data: string | ArrayBuffer) => void)[] = [];
  /** Resolves with the close the client saw. */
  readonly closed: Promise<SeenClose>;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      const waiter = this.#waiting.shift();
      if (waiter) waiter(event.data);
      else this.#queue.push(event.data);
    };
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (e) => resolve({ code: e.code, reason: e.reason }));
    });
  }

  /** Connects; rejects when the handshake fails. */
  static async open(
    url: string,
    options: { protocols?: string[]; headers?: HeadersInit } = {},
  ): Promise<TestClient> {
    const socket = new WebSocket(url, {
      protocols: options.protocols ?? [],
      headers: options.headers ?? {},
    });
    const client = new TestClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = (e) =>
        reject(new Error(`WebSocket to ${url} failed: ${(e as ErrorEvent).message}`));
    });
    socket.onerror = () => {};
    return client;
  }

  /** The next message (waits for it, up to `timeoutMs`). */
  next(timeoutMs = 5000): Promise<string | ArrayBuffer> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(wrapped), 1);
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for a message`));
      }, timeoutMs);
      const wrapped = (data: string | ArrayBuffer) => {
        clearTimeout(timer);
        resolve(data);
      };
      this.#waiting.push(wrapped);
    });
  }

  /** Sends `data` and returns the echo. */
  async echo(data: string | Uint8Array<ArrayBuffer>): Promise<string | ArrayBuffer> {
    this.socket.send(data);
    return await this.next();
  }

  /** Closes (if still open) and waits for the close to complete. */
  async close(code?: number, reason?: string): Promise<SeenClose> {
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(code, reason);
    return await this.closed;
  }
}

/** Handshake fields a client sends (key from RFC 6455 section 1.3). */
export const HANDSHAKE =
  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/**
 * Sends a raw upgrade request and reads the answer's head and, when it has a
 * Content-Length, its body. The connection is returned open (a 101 keeps it).
 */
export async function rawUpgrade(
  port: number,
  request: string,
): Promise<{ head: string; body: string; conn: Deno.TcpConn }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(request));
  let text = "";
  const buf = new Uint8Array(65536);
  const decoder = new TextDecoder("latin1");
  while (true) {
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = text.slice(0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (text.length - end - 4 >= length) {
        return { head, body: text.slice(end + 4, end + 4 + length), conn };
      }
    }
    const n = await conn.read(buf);
    if (n === null) throw new Error(`connection closed after ${JSON.stringify(text)}`);
    text += decoder.decode(buf.subarray(0, n));
  }
}

/** The accept value for a key (RFC 6455 section 4.2.2). */
export async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Answers the upgrade request `head` on a raw backend connection with a valid 101. */
export async function acceptUpgrade(conn: Deno.Conn, head: string): Promise<void> {
  const key = /\r\nsec-websocket-key: *([^\r]+)/i.exec(head)![1];
  await conn.write(new TextEncoder().encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${await acceptFor(key)}\r\n\r\n`,
  ));
}

/** Reads the small frames a client (Strom) sends on a raw connection, unmasked. */
export class ClientFrames {
  readonly #conn: Deno.Conn;
  #bytes: number[] = [];

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** The next frame: opcode, whether it was masked, and the payload; null at end of stream. */
  async next(): Promise<{ opcode: number; masked: boolean; payload: Uint8Array } | null> {
    const buf = new Uint8Array(1024);
    while (this.#bytes.length < this.#need()) {
      const n = await this.#conn.read(buf);
      if (n === null) return null;
      this.#bytes.push(...buf.subarray(0, n));
    }
    const frame = this.#bytes.splice(0, this.#need());
    const masked = (frame[1] & 0x80) !== 0;
    const mask = masked ? frame.slice(2, 6) : [0, 0, 0, 0];
    const payload = new Uint8Array(frame.slice(masked ? 6 : 2));
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    return { opcode: frame[0] & 0x0f, masked, payload };
  }

  #need(): number {
    const bytes = this.#bytes;
    if (bytes.length < 2) return Infinity;
    const length = bytes[1] & 0x7f;
    if (length > 125) throw new Error("ClientFrames reads small frames only");
    return 2 + ((bytes[1] & 0x80) ? 4 : 0) + length;
  }
}
