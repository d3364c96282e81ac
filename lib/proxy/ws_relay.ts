// An open WebSocket relay: the client leg is Deno's WebSocket (from
// Deno.upgradeWebSocket), the backend leg a raw connection that Strom frames
// itself (ws_frames.ts). Messages are re-framed, not copied byte for byte, so
// each leg negotiates (and answers) its own control frames. A relay holds only
// its two sockets: a config reload does not touch it.

import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { TrafficMetrics } from "../metrics/metrics.ts";
import { describeNetError } from "../net/errors.ts";
import type { Connection } from "../transport/http1/connection.ts";
import type { TcpProgress } from "../net/sockets.ts";
import type { WebSocketRegistry } from "./websockets.ts";
import {
  closePayload,
  encodeFrame,
  FrameDecoder,
  isSendableCloseCode,
  OPCODE,
  truncateReason,
  WebSocketProtocolError,
  type WsEvent,
} from "./ws_frames.ts";

/** What a relay needs: both legs and where to report. */
export interface RelayOptions {
  /** The client leg, not open yet (it opens once the 101 is sent). */
  readonly socket: WebSocket;
  /** The backend leg, right after its 101 head (bytes already buffered are frames). */
  readonly backend: Connection;
  /** Names the backend in log lines. */
  readonly label: string;
  /** How long the client leg may take to open before the backend is let go, in ms. */
  readonly openTimeoutMs: number;
  readonly log: Logger;
  readonly metrics: TrafficMetrics;
  readonly websockets: WebSocketRegistry;
  /** Called once when both legs are closed: message bytes from and to the client. */
  readonly onEnd: (bytesIn: number, bytesOut: number) => void;
  /**
   * Times the backend leg's keep-alive checks: a timer per relay every 30 s,
   * not the pool's Deadlines, whose 10 ms tick would run as long as any
   * WebSocket is open.
   */
  readonly clock: Clock;
  /**
   * How far the backend's kernel has taken what Strom sent it (`tcpProgress`
   * in lib/net/sockets.ts), or null where that is unknown.
   */
  readonly backendProgress?: () => TcpProgress | null;
}

/**
 * A backend leg that carried no message for this long gets a ping: pings from
 * the client are answered by Deno, not relayed, so without them a quiet
 * WebSocket looks idle to the backend and whatever stands between (nginx's
 * 60 s `proxy_read_timeout`, a NAT, a cloud load balancer), which may cut it.
 * A backend that then sends nothing at all for another interval after the ping
 * went out, not even the pong, is taken for gone (a host that vanished leaves
 * no TCP reset). Not while Strom stops reading it for a slow client: the pong
 * may wait unread then.
 */
export const BACKEND_KEEPALIVE_MS = 30_000;

/** A ping Strom sends: two header bytes and a four-byte mask, no payload. */
const PING_FRAME_BYTES = 6n;
/** How long a closing leg may take to finish its close handshake, in ms. */
const CLOSE_TIMEOUT_MS = 5_000;
/** Backend reads pause while more than this waits to go out to the client (bytes). */
const CLIENT_HIGH_WATER = 1024 * 1024;
/**
 * Bytes from the client that may wait for the backend behind a message still
 * being written (one message alone may be larger: the runtime hands it over
 * whole). Deno's WebSocket cannot stop reading from a client, so a backend
 * that reads more slowly than its client writes ends the relay instead of
 * growing the queue: a client could otherwise park 64 MiB per socket.
 */
export const MAX_QUEUED_TO_BACKEND = 4 * 1024 * 1024;
/** All relays of this isolate together: past it, the relay that adds more is ended (1013). */
export const MAX_QUEUED_TO_BACKENDS = 256 * 1024 * 1024;
/** Bytes waiting for backends in every relay of this isolate. */
let queuedInIsolate = 0;

/**
 * First read size from a WebSocket's backend (larger while reads fill it). The
 * read waits while the socket is idle, holding its buffer: with 64 KiB, 1,000
 * idle WebSockets took 188 kB of memory each (a probe; nginx 18 kB), 113 kB with
 * this.
 */
export const BACKEND_READ_SIZE = 4 * 1024;
const utf8 = new TextEncoder();

/** Starts relaying once the client leg opens; runs until both legs are closed. */
export function startRelay(options: RelayOptions): void {
  new Relay(options).start();
}

class Relay {
  readonly #o: RelayOptions;
  readonly #socket: WebSocket;
  readonly #conn: Connection;
  readonly #decoder = new FrameDecoder();
  #writes: Promise<void> = Promise.resolve();
  /** Bytes waiting for the backend, and in how many frames. */
  #queued = 0;
  #queuedFrames = 0;
  #opened = false;
  /** A close frame went to the backend: nothing else may follow it. */
  #closeSent = false;
  #clientDone = false;
  #backendDone = false;
  #ended = false;
  #unregister: () => void = () => {};
  #openTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #keepAlive: number | null = null;
  /** Since the last keep-alive check: a message went to the backend; anything came from it. */
  #sentSinceCheck = false;
  #heardSinceCheck = false;
  /** A ping is queued behind frames not yet written to the backend. */
  #pinging = false;
  /** A ping went out (at `#pingSentAt`) and nothing came back since. */
  #awaitingPong = false;
  #pingSentAt = 0;
  /** Backend reads are paused until the client takes what waits for it. */
  #readsPaused = false;
  /** At the last check: a ping was out (written or queued), and the backend's TCP progress. */
  #pingOut = false;
  #progress: TcpProgress | null = null;
  /** Bytes of pings written since the last check (their acknowledgement shows no reading). */
  #pingBytes = 0n;
  #bytesIn = 0;
  #bytesOut = 0;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#socket = options.socket;
    this.#conn = options.backend;
  }

  start(): void {
    const socket = this.#socket;
    socket.binaryType = "arraybuffer";
    // A middleware may replace the 101 (the client is never upgraded): let the backend go.
    this.#openTimer = setTimeout(() => {
      this.#o.log.debug(`A WebSocket to ${this.#o.label} never opened on the client side`);
      this.#clientDone = true;
      this.#closeBackendNow();
    }, this.#o.openTimeoutMs);
    socket.onopen = () => {
      clearTimeout(this.#openTimer);
      if (this.#ended) return this.#socket.close(1011, "backend gone");
      this.#opened = true;
      this.#o.metrics.websocketOpened();
      this.#unregister = this.#o.websockets.add((code, reason) => this.#closeBoth(code, reason));
      this.#readBackend();
      this.#scheduleKeepAlive();
    };
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => this.#fromClient(event.data);
    socket.onclose = (event) => this.#clientClosed(event.code, event.reason, event.wasClean);
    socket.onerror = () => {}; // a close event follows
  }

  // Client → backend.

  #fromClient(data: string | ArrayBuffer): void {
    if (this.#closeSent) return;
    const bytes = typeof data === "string" ? utf8.encode(data) : new Uint8Array(data);
    this.#bytesIn += bytes.length;
    this.#sentSinceCheck = true;
    this.#send(typeof data === "string" ? OPCODE.text : OPCODE.binary, bytes);
  }

  #clientClosed(code: number, reason: string, clean: boolean): void {
    this.#clientDone = true;
    // Deno reports a vanished client as code 0 (not clean): the backend hears "going away".
    if (!clean || !(code === 1005 || isSendableCloseCode(code))) {
      this.#closeBackend(1001, "client went away");
    } else this.#closeBackend(code, reason);
    this.#maybeEnd();
  }

  // Backend → client.

  async #readBackend(): Promise<void> {
    const reader = this.#conn.bodyStream({ kind: "close" }, () => {}, {
      readSize: BACKEND_READ_SIZE,
    }).getReader();
    let why = "backend gone";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#heardSinceCheck = true;
        this.#awaitingPong = false;
        for (const event of this.#decoder.push(value)) this.#fromBackend(event);
        this.#decoder.throwPending();
        if (this.#socket.bufferedAmount > CLIENT_HIGH_WATER) {
          this.#readsPaused = true;
          await this.#drained();
          this.#readsPaused = false;
          this.#heardSinceCheck = true; // it had more to say than the client could take
        }
      }
    } catch (e) {
      if (e instanceof WebSocketProtocolError) {
        this.#o.log.warn(`Closing a WebSocket: ${this.#o.label} broke the protocol: ${e.message}`);
        this.#send(OPCODE.close, closePayload(e.code, e.message));
        this.#closeSent = true;
        why = e.code === 1009 ? "message too big" : "backend protocol error";
        this.#closeClient(e.code === 1009 ? 1009 : 1011, why);
      } else if (!this.#backendDone) {
        this.#o.log.info(`Closing a WebSocket: ${this.#o.label}: ${describeNetError(e)}`);
      }
    }
    reader.cancel().catch(() => {});
    this.#writes.finally(() => this.#closeBackendNow());
    // The backend vanished without a close frame (1006 in RFC terms): 1011 to the client,
    // whose reason names no backend (the log line above does).
    this.#closeClient(1011, why);
  }

  #fromBackend(event: WsEvent): void {
    switch (event.type) {
      case "text":
      case "binary":
        if (this.#clientDone || this.#socket.readyState !== WebSocket.OPEN) return;
        this.#bytesOut += event.type === "text"
          ? utf8.encode(event.data).length
          : event.data.length;
        this.#socket.send(event.data);
        return;
      case "ping":
        // Deno's WebSocket API neither shows nor sends pings (it answers the
        // client's own), so pings cannot be relayed: each leg answers its own.
        if (!this.#closeSent) this.#send(OPCODE.pong, event.data);
        return;
      case "pong":
        return;
      case "close": {
        // Echo the close (RFC 6455 5.5.1); the backend then ends the TCP connection.
        this.#closeBackend(event.code, event.reason);
        const code = event.code === 1005 ? 1000 : isForClient(event.code) ? event.code : 1011;
        this.#closeClient(code, event.reason);
        return;
      }
    }
  }

  /** Resolves once the client leg's send buffer has drained below the mark (or it closed). */
  async #drained(): Promise<void> {
    // WebSocket has no "drain" event; poll while (and only while) the client is slow.
    const socket = this.#socket;
    while (socket.bufferedAmount > CLIENT_HIGH_WATER / 4 && socket.readyState === WebSocket.OPEN) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  // Keeping the backend leg alive.

  #scheduleKeepAlive(): void {
    this.#keepAlive = this.#o.clock.setTimeout(() => this.#keepAliveCheck(), BACKEND_KEEPALIVE_MS);
  }

  #keepAliveCheck(): void {
    this.#keepAlive = null;
    if (this.#ended || this.#closeSent || this.#backendDone) return;
    // Signs of life since the last check: anything heard; reads paused for a slow client (the
    // backend had more to say than the client could take); or, where the kernel tells, more of
    // what Strom sent acknowledged than the pings while bytes waited for the backend's window
    // (it reads, however slowly: a ping may wait behind megabytes of a message, in Strom's
    // queue or the socket's). With nothing waiting, acknowledgements say only that its kernel
    // took the bytes, as the kernel of a stopped process does until its buffers are full.
    const progress = this.#o.backendProgress?.() ?? null;
    const before = this.#progress;
    // (Strom's own queue waits only while the socket's is full, and then bytes wait unsent.)
    const backlog = (progress?.notSent ?? 0) > 0 || (before?.notSent ?? 0) > 0;
    const reading = progress !== null && before !== null && backlog &&
      progress.acked - before.acked > this.#pingBytes;
    this.#progress = progress;
    this.#pingBytes = 0n;
    const alive = this.#heardSinceCheck || this.#readsPaused || reading;
    // Gone: silent for a whole interval with a ping out since the last check (written or still
    // queued: a backend that reads nothing never gets it). Where the kernel cannot tell what the
    // backend read, the ping must have been written half an interval ago at least (a check comes
    // every interval, and the ping goes out some milliseconds after the check that sent it).
    const waited = this.#o.clock.now() - this.#pingSentAt;
    const gone = !alive &&
      (progress !== null
        ? this.#pingOut
        : this.#awaitingPong && waited >= BACKEND_KEEPALIVE_MS / 2);
    if (gone) {
      this.#o.log.info(
        `Closing a WebSocket: ${this.#o.label} sent nothing, not even a pong, ${
          progress !== null
            ? `and took nothing of what it was sent, in the ${
              BACKEND_KEEPALIVE_MS / 1000
            } s after a ping`
            : `in the ${Math.round(waited / 1000)} s since a ping`
        }`,
      );
      this.#closeClient(1011, "backend gone");
      this.#clientDone = true; // the client's close handshake is not waited for
      this.#closeBackendNow();
      return;
    }
    // A quiet leg gets a ping (for whatever stands between), and so does a backend that said
    // nothing while its client talked (it may have vanished: writes go on into the void).
    const quiet = !this.#sentSinceCheck || !this.#heardSinceCheck;
    if (quiet && !this.#awaitingPong && !this.#pinging) this.#ping();
    this.#pingOut = this.#awaitingPong || this.#pinging;
    this.#sentSinceCheck = this.#heardSinceCheck = false;
    this.#scheduleKeepAlive();
  }

  /** Pings the backend; its answer is awaited from when the ping is written, not queued. */
  #ping(): void {
    this.#pinging = true;
    this.#send(OPCODE.ping, new Uint8Array(0));
    this.#writes.then(() => {
      this.#pingBytes += PING_FRAME_BYTES;
      this.#pinging = false;
      this.#awaitingPong = true;
      this.#pingSentAt = this.#o.clock.now();
    });
  }

  // Closing.

  /** Registry closer (shutdown): both legs get the code and reason. */
  #closeBoth(code: number, reason: string): void {
    this.#closeClient(code, reason);
    this.#closeBackend(code, reason);
  }

  #closeClient(code: number, reason: string): void {
    const state = this.#socket.readyState;
    if (state === WebSocket.CLOSING || state === WebSocket.CLOSED) return;
    try {
      this.#socket.close(code, truncateReason(reason));
    } catch {
      this.#clientDone = true;
    }
    this.#armCloseTimer();
  }

  /** Sends a close frame to the backend (once) and waits for its end. */
  #closeBackend(code: number, reason: string): void {
    if (!this.#closeSent) {
      this.#send(OPCODE.close, closePayload(code, reason));
      this.#closeSent = true;
    }
    this.#armCloseTimer();
  }

  #closeBackendNow(): void {
    this.#backendDone = true;
    this.#conn.close();
    this.#maybeEnd();
  }

  /** A leg that does not finish its close handshake in time is cut. */
  #armCloseTimer(): void {
    if (this.#closeTimer !== undefined || this.#ended) return;
    this.#closeTimer = setTimeout(() => {
      this.#clientDone = true;
      this.#closeBackendNow();
    }, CLOSE_TIMEOUT_MS);
  }

  #send(opcode: number, payload: Uint8Array): void {
    if (this.#closeSent || this.#backendDone) return;
    const frame = encodeFrame(opcode, payload);
    if (this.#queuedFrames > 0 && this.#queued + frame.length > MAX_QUEUED_TO_BACKEND) {
      this.#o.log.warn(`Closing a WebSocket: ${this.#o.label} reads too slowly`);
      this.#closeClient(1011, "backend too slow");
      this.#closeBackendNow();
      return;
    }
    if (queuedInIsolate + frame.length > MAX_QUEUED_TO_BACKENDS) {
      this.#o.log.warn(
        `Closing a WebSocket to ${this.#o.label}: ${MAX_QUEUED_TO_BACKENDS} bytes already wait for backends`,
      );
      this.#closeClient(1013, "try again later");
      this.#closeBackendNow();
      return;
    }
    this.#queue(frame.length);
    this.#writes = this.#writes.then(
      () => this.#backendDone ? undefined : this.#conn.write(frame),
    ).then(
      () => this.#queue(-frame.length),
      () => {
        this.#queue(-frame.length);
        this.#closeBackendNow();
      },
    );
  }

  /** Counts `bytes` more (or fewer) waiting for the backend, here and in the isolate. */
  #queue(bytes: number): void {
    this.#queued += bytes;
    this.#queuedFrames += Math.sign(bytes);
    queuedInIsolate += bytes;
  }

  #maybeEnd(): void {
    if (this.#ended || !this.#clientDone || !this.#backendDone) return;
    this.#ended = true;
    clearTimeout(this.#openTimer);
    clearTimeout(this.#closeTimer);
    if (this.#keepAlive !== null) this.#o.clock.clearTimeout(this.#keepAlive);
    this.#unregister();
    if (this.#opened) this.#o.metrics.websocketClosed();
    this.#o.onEnd(this.#bytesIn, this.#bytesOut);
  }
}

/** Close codes a browser's WebSocket accepts in a close frame from the server (measured with Deno). */
function isForClient(code: number): boolean {
  return isSendableCloseCode(code) && code !== 1014;
}
