// The WebSocket relay's backend keep-alive, with both legs faked: a client leg whose send
// buffer the test sets, and a backend leg whose frames and writes the test releases.

import assert from "node:assert/strict";
import { BACKEND_KEEPALIVE_MS, startRelay } from "../../lib/proxy/ws_relay.ts";
import { WebSocketRegistry } from "../../lib/proxy/websockets.ts";
import { encodeFrame, OPCODE } from "../../lib/proxy/ws_frames.ts";
import type { Connection } from "../../lib/transport/http1/connection.ts";
import type { TrafficMetrics } from "../../lib/metrics/metrics.ts";
import { silentLogger } from "../../lib/log.ts";
import { ManualClock, nextTurn } from "../_helpers/clock.ts";

/** The client leg as the relay uses Deno's WebSocket. */
class FakeClient {
  readyState: number = WebSocket.CONNECTING;
  bufferedAmount = 0;
  binaryType = "blob";
  closed: { code: number; reason: string } | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string | ArrayBuffer }) => void) | null = null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: (() => void) | null = null;
  send(_data: unknown): void {}
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
    this.readyState = WebSocket.CLOSING;
  }
  open(): void {
    this.readyState = WebSocket.OPEN;
    this.onopen!();
  }
}

/** The backend leg: frames it sends are pushed by the test; writes wait while `hold` is set. */
class FakeBackend {
  readonly written: Uint8Array[] = [];
  /** What its kernel acknowledged of Strom's bytes, and what waits unsent; null: unknown. */
  progress: { acked: bigint; notSent: number } | null = null;
  hold = false;
  #held: (() => void)[] = [];
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly stream = new ReadableStream<Uint8Array>({
    start: (c) => {
      this.#controller = c;
    },
  });
  bodyStream(): ReadableStream<Uint8Array> {
    return this.stream;
  }
  write(frame: Uint8Array): Promise<void> {
    if (!this.hold) {
      this.written.push(frame);
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.#held.push(() => {
        this.written.push(frame);
        resolve();
      })
    );
  }
  release(): void {
    this.hold = false;
    for (const write of this.#held.splice(0)) write();
  }
  sends(opcode: number, payload = new Uint8Array(0)): void {
    this.#controller.enqueue(encodeFrame(opcode, payload, { mask: null }));
  }
  close(): void {}
  /** Whether a frame the backend sent waits to be read. */
  get unread(): boolean {
    return this.#controller.desiredSize! <= 0;
  }
  /** Opcodes of the frames written so far (Strom masks them; the opcode is the low nibble). */
  get opcodes(): number[] {
    return this.written.map((frame) => frame[0] & 0x0f);
  }
}

const metrics = { websocketOpened() {}, websocketClosed() {} } as unknown as TrafficMetrics;

function relay(): { client: FakeClient; backend: FakeBackend; clock: ManualClock } {
  const client = new FakeClient();
  const backend = new FakeBackend();
  const clock = new ManualClock();
  startRelay({
    socket: client as unknown as WebSocket,
    backend: backend as unknown as Connection,
    label: "backend b",
    openTimeoutMs: 1000,
    log: silentLogger,
    metrics,
    websockets: new WebSocketRegistry(),
    onEnd: () => {},
    clock,
    backendProgress: () => backend.progress && { ...backend.progress },
  });
  client.open();
  return { client, backend, clock };
}

async function tick(clock: ManualClock, ms: number): Promise<void> {
  clock.advance(ms);
  for (let i = 0; i < 5; i++) await nextTurn();
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition());
}

Deno.test("a backend unread while a slow client catches up is not taken for gone", async () => {
  const { client, backend, clock } = relay();
  client.bufferedAmount = 2 * 1024 * 1024; // the client is behind: backend reads pause
  backend.sends(OPCODE.binary, new Uint8Array(100));
  await nextTurn();
  await tick(clock, BACKEND_KEEPALIVE_MS); // nothing went to the backend: a ping
  assert.deepEqual(backend.opcodes, [OPCODE.ping]);
  backend.sends(OPCODE.pong); // not read while reads are paused
  await tick(clock, BACKEND_KEEPALIVE_MS);
  await tick(clock, BACKEND_KEEPALIVE_MS);
  assert.equal(client.closed, null, "the backend kept sending; only the client was slow");
  assert.ok(backend.unread);
  client.bufferedAmount = 0; // caught up: the pong is read
  await until(() => !backend.unread);
  await tick(clock, BACKEND_KEEPALIVE_MS); // answered: the next check pings again
  assert.deepEqual(backend.opcodes, [OPCODE.ping, OPCODE.ping]);
  assert.equal(client.closed, null);
});

Deno.test("a ping queued behind a message the backend is still reading starts no countdown", async () => {
  const { client, backend, clock } = relay();
  backend.hold = true; // the backend reads a large message slowly
  client.onmessage!({ data: new ArrayBuffer(1000) });
  await tick(clock, BACKEND_KEEPALIVE_MS); // a message went: no ping
  await tick(clock, BACKEND_KEEPALIVE_MS); // a ping, queued behind the message
  await tick(clock, BACKEND_KEEPALIVE_MS);
  await tick(clock, BACKEND_KEEPALIVE_MS);
  assert.equal(client.closed, null, "the ping has not even reached the backend");
  backend.release();
  await until(() => backend.opcodes.length === 2);
  assert.deepEqual(backend.opcodes, [OPCODE.binary, OPCODE.ping]);
  await tick(clock, BACKEND_KEEPALIVE_MS); // no pong an interval after the ping went out
  assert.deepEqual(client.closed, { code: 1011, reason: "backend gone" });
});

Deno.test("a backend that says nothing while its client talks is pinged, and let go without a pong", async () => {
  const { client, backend, clock } = relay();
  for (let i = 0; i < 3 && client.closed === null; i++) {
    client.onmessage!({ data: "still here?" });
    await tick(clock, BACKEND_KEEPALIVE_MS);
  }
  assert.ok(backend.opcodes.includes(OPCODE.ping), "pinged though the client talked");
  assert.deepEqual(client.closed, { code: 1011, reason: "backend gone" });
});

Deno.test("a backend that reads a large message slowly is not let go while its pong waits behind it", async () => {
  const { client, backend, clock } = relay();
  // Megabytes wait in the socket's buffers for its window; it reads them slowly.
  backend.progress = { acked: 0n, notSent: 3_000_000 };
  client.onmessage!({ data: new ArrayBuffer(1000) });
  for (let i = 0; i < 6; i++) {
    await tick(clock, BACKEND_KEEPALIVE_MS);
    backend.progress.acked += 100_000n; // its kernel acknowledges more each interval
  }
  assert.ok(backend.opcodes.includes(OPCODE.ping));
  assert.equal(client.closed, null, "no pong yet, but it reads");
});

Deno.test("a stopped backend is let go though its ping never got out behind a burst", async () => {
  const { client, backend, clock } = relay();
  backend.progress = { acked: 0n, notSent: 4_000_000 }; // stopped, its buffers full
  backend.hold = true; // so Strom's writes wait, the ping behind them
  client.onmessage!({ data: new ArrayBuffer(1000) });
  await tick(clock, BACKEND_KEEPALIVE_MS); // silent: a ping, queued
  assert.equal(client.closed, null);
  client.onmessage!({ data: "still chatting" });
  await tick(clock, BACKEND_KEEPALIVE_MS); // silent again, a ping out: gone
  assert.deepEqual(client.closed, { code: 1011, reason: "backend gone" });
});

Deno.test("a stopped backend whose kernel still takes bytes is let go: that is not reading", async () => {
  const { client, backend, clock } = relay();
  backend.progress = { acked: 0n, notSent: 0 };
  for (let i = 0; i < 3 && client.closed === null; i++) {
    client.onmessage!({ data: "chat" });
    backend.progress.acked += 10n; // into its receive buffer, which has room: nothing waits
    await tick(clock, BACKEND_KEEPALIVE_MS);
  }
  assert.deepEqual(client.closed, { code: 1011, reason: "backend gone" });
});
