import assert from "node:assert/strict";
import { dialTcp } from "../../lib/transport/dial.ts";
import { UpstreamError } from "../../lib/transport/transport.ts";
import { ManualClock } from "../_helpers/clock.ts";

/** Rejects with an UpstreamError of `kind` whose message matches `message`. */
async function rejectsWith(promise: Promise<unknown>, kind: string, message: RegExp) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof UpstreamError, String(e));
    assert.equal(e.kind, kind);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("dialTcp connects and leaves no timer behind", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const clock = new ManualClock();
  const signal = new AbortController().signal;
  const conn = await dialTcp("127.0.0.1", listener.addr.port, signal, 5000, clock);
  assert.equal(clock.pending, 0, "the connect timer outlived the connect");
  const server = await accepted;
  await conn.write(new TextEncoder().encode("hi"));
  const buf = new Uint8Array(2);
  assert.equal(await server.read(buf), 2);
  conn.close();
  server.close();
  listener.close();
});

Deno.test("dialTcp reports a refused connect as a connect failure", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const clock = new ManualClock();
  await rejectsWith(
    dialTcp("127.0.0.1", port, new AbortController().signal, 5000, clock),
    "connect",
    /refused/,
  );
  assert.equal(clock.pending, 0);
});

Deno.test("dialTcp does not connect for an already aborted request", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const abort = new AbortController();
  abort.abort();
  await rejectsWith(dialTcp("127.0.0.1", listener.addr.port, abort.signal, 5000), "aborted", /./);
  listener.close();
});

/**
 * A loopback port whose connects hang: a socket listening with a backlog of 0
 * and a first connection filling its accept queue, so the kernel drops the
 * next SYNs. Linux only (libc through FFI).
 */
function hangingPort(): { port: number; close(): void } {
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    listen: { parameters: ["i32", "i32"], result: "i32" },
    getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  const { socket, bind, listen, getsockname, connect, close } = libc.symbols;
  const AF_INET = 2, SOCK_STREAM = 1;
  // struct sockaddr_in: family (host order), port (network order), 127.0.0.1, zero padding.
  const address = new Uint8Array(16);
  new DataView(address.buffer).setUint16(0, AF_INET, true);
  address.set([127, 0, 0, 1], 4);
  const listening = socket(AF_INET, SOCK_STREAM, 0);
  assert.equal(bind(listening, address, 16), 0);
  assert.equal(listen(listening, 0), 0);
  const length = new Uint32Array([16]);
  assert.equal(getsockname(listening, address, new Uint8Array(length.buffer)), 0);
  const port = new DataView(address.buffer).getUint16(2, false);
  const filler = socket(AF_INET, SOCK_STREAM, 0);
  assert.equal(connect(filler, address, 16), 0);
  return {
    port,
    close() {
      close(filler);
      close(listening);
      libc.close();
    },
  };
}

// The hanging port needs Linux's libc (the other tests run everywhere).
const linuxOnly = { ignore: Deno.build.os !== "linux" };

Deno.test("dialTcp gives up after its connect timeout", linuxOnly, async () => {
  const hanging = hangingPort();
  try {
    const clock = new ManualClock();
    const dialing = dialTcp("127.0.0.1", hanging.port, new AbortController().signal, 200, clock);
    let settled = false;
    dialing.catch(() => {}).finally(() => settled = true);
    clock.advance(199);
    await new Promise((r) => setTimeout(r, 0)); // one turn of the event loop
    assert.equal(settled, false, "gave up before its timeout");
    clock.advance(1);
    await rejectsWith(dialing, "connect", /^connect timed out after 200 ms$/);
  } finally {
    hanging.close();
  }
});

Deno.test("dialTcp stops connecting when the request is aborted", linuxOnly, async () => {
  const hanging = hangingPort();
  try {
    const abort = new AbortController();
    const clock = new ManualClock();
    const dialing = dialTcp("127.0.0.1", hanging.port, abort.signal, 60_000, clock);
    abort.abort();
    await rejectsWith(dialing, "aborted", /while connecting/);
    assert.equal(clock.pending, 0);
  } finally {
    hanging.close();
  }
});
