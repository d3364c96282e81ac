import assert from "node:assert/strict";
import { dial } from "../../lib/transport/dial.ts";
import { UpstreamError } from "../../lib/transport/transport.ts";
import { Deadlines, TICK_MS } from "../../lib/proxy/deadlines.ts";
import { createHttp1Transport } from "../../lib/transport/http1/transport.ts";
import type { Transport } from "../../lib/transport/transport.ts";
import type { BackendAddress } from "../../lib/config/types.ts";
import { ManualClock, nextTurn } from "../_helpers/clock.ts";
import { createCa, hasOpenssl, startTlsBackend, type TestCa } from "../_helpers/certs.ts";
import { hangingPort } from "../_helpers/hanging.ts";
import { onNoDelay } from "../_helpers/no_delay.ts";

/** A plain TCP target on loopback. */
function plain(port: number) {
  return { host: "127.0.0.1", port, tls: false };
}

/** Rejects with an UpstreamError of `kind` whose message matches `message`. */
async function rejectsWith(promise: Promise<unknown>, kind: string, message: RegExp) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof UpstreamError, String(e));
    assert.equal(e.kind, kind);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("dial() connects and leaves no timer behind", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const clock = new ManualClock();
  const signal = new AbortController().signal;
  const conn = await dial(plain(listener.addr.port), signal, 5000, clock);
  assert.equal(clock.pending, 0, "the connect timer outlived the connect");
  const server = await accepted;
  await conn.write(new TextEncoder().encode("hi"));
  const buf = new Uint8Array(2);
  assert.equal(await server.read(buf), 2);
  conn.close();
  server.close();
  listener.close();
});

Deno.test("dial() reports a refused connect as a connect failure", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const clock = new ManualClock();
  await rejectsWith(
    dial(plain(port), new AbortController().signal, 5000, clock),
    "connect",
    /refused/,
  );
  assert.equal(clock.pending, 0);
});

Deno.test("dial() does not connect for an already aborted request", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const abort = new AbortController();
  abort.abort();
  await rejectsWith(dial(plain(listener.addr.port), abort.signal, 5000), "aborted", /./);
  listener.close();
});

// The hanging port needs Linux's libc (the other tests run everywhere).
const linuxOnly = { ignore: Deno.build.os !== "linux" };

/** Checks that `dialing` (a 200 ms connect timeout on `clock`) fails at 200 ms, not before. */
async function timesOutAt200(dialing: Promise<unknown>, clock: ManualClock): Promise<void> {
  let settled = false;
  dialing.catch(() => {}).finally(() => settled = true);
  clock.advance(199);
  await nextTurn();
  assert.equal(settled, false, "gave up before its timeout");
  clock.advance(1);
  await rejectsWith(dialing, "connect", /^connect timed out after 200 ms$/);
}

Deno.test("dial() gives up after its connect timeout", linuxOnly, async () => {
  const hanging = hangingPort();
  try {
    const clock = new ManualClock();
    await timesOutAt200(dial(plain(hanging.port), new AbortController().signal, 200, clock), clock);
  } finally {
    hanging.close();
  }
});

Deno.test(
  "dial() with shared deadlines gives up after its connect timeout and leaves none armed",
  linuxOnly,
  async () => {
    const clock = new ManualClock();
    const deadlines = new Deadlines(clock);
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conn = await dial(
      plain(listener.addr.port),
      new AbortController().signal,
      5000,
      deadlines,
    );
    conn.close();
    listener.close();
    clock.advance(TICK_MS); // the tick that finds nothing armed schedules no other
    assert.equal(clock.pending, 0, "a connect deadline outlived the connect");
    const hanging = hangingPort();
    try {
      const dialing = dial(plain(hanging.port), new AbortController().signal, 200, deadlines);
      await timesOutAt200(dialing, clock);
      clock.advance(TICK_MS);
      assert.equal(clock.pending, 0);
    } finally {
      hanging.close();
    }
  },
);

Deno.test(
  "the http1 transport times its connects out on the clock it was given",
  linuxOnly,
  async () => {
    const hanging = hangingPort();
    const clock = new ManualClock();
    const client = {
      poolIdleTimeoutMs: null,
      poolMaxIdlePerHost: null,
      maxConnectionsPerHost: null,
      caCerts: [],
    };
    const transport = createHttp1Transport(client, clock);
    try {
      const sending = transport.send(
        backendAt(hanging.port),
        {
          method: "GET",
          target: "/",
          fields: [["host", "a"]],
          body: null,
          signal: new AbortController().signal,
          connectTimeoutMs: 60_000,
          onEnd: () => {},
        },
      );
      let settled = false;
      sending.catch(() => {}).finally(() => settled = true);
      clock.advance(60_000);
      // The connect is cancelled at once; a real 60 s timer would leave it pending far longer.
      const until = Date.now() + 5000;
      while (!settled && Date.now() < until) await nextTurn();
      assert.equal(settled, true, "the connect did not time out on the given clock");
      await rejectsWith(sending, "connect", /connect timed out after 60000 ms/);
    } finally {
      transport.close();
      hanging.close();
    }
  },
);

Deno.test("dial() stops connecting when the request is aborted", linuxOnly, async () => {
  const hanging = hangingPort();
  try {
    const abort = new AbortController();
    const clock = new ManualClock();
    const dialing = dial(plain(hanging.port), abort.signal, 60_000, clock);
    abort.abort();
    await rejectsWith(dialing, "aborted", /while connecting/);
    assert.equal(clock.pending, 0);
  } finally {
    hanging.close();
  }
});

/** A TLS server on loopback with a "localhost" certificate from a throwaway CA. */
async function tlsServer(ca: TestCa) {
  const backend = await startTlsBackend(ca, () => new Response("over tls"));
  return Object.assign(backend, { port: Number(new URL(backend.address).port) });
}

const withOpenssl = { ignore: !hasOpenssl };

Deno.test(
  "dial() speaks TLS to a backend whose certificate the pool's CA signed",
  withOpenssl,
  async () => {
    await using ca = await createCa();
    await using server = await tlsServer(ca);
    const clock = new ManualClock();
    const target = { host: "localhost", port: server.port, tls: true, caCerts: [ca.caPem] };
    const conn = await dial(target, new AbortController().signal, 5000, clock);
    assert.equal(clock.pending, 0);
    await conn.write(
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    );
    const answer = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    assert.match(answer, /^HTTP\/1\.1 200 [\s\S]*over tls$/);
  },
);

Deno.test(
  "dial() refuses a certificate it cannot verify, as a connect failure",
  withOpenssl,
  async () => {
    await using ca = await createCa();
    await using server = await tlsServer(ca);
    const clock = new ManualClock();
    await rejectsWith(
      dial(
        { host: "localhost", port: server.port, tls: true },
        new AbortController().signal,
        5000,
        clock,
      ),
      "connect",
      /^TLS handshake failed: .*(certificate|UnknownIssuer)/i,
    );
    assert.equal(clock.pending, 0);
  },
);

Deno.test(
  "dial() gives up on a TLS handshake that never ends, closing the connection",
  linuxOnly,
  async () => {
    // A server that accepts and then says nothing.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = listener.accept();
    const clock = new ManualClock();
    const target = { host: "localhost", port: listener.addr.port, tls: true };
    const dialing = dial(target, new AbortController().signal, 300, clock);
    const server = await accepted;
    // The client's hello arrives; no answer comes.
    const hello = new Uint8Array(4096);
    assert.ok(((await server.read(hello)) ?? 0) > 0, "a client hello");
    clock.advance(300);
    await rejectsWith(dialing, "connect", /^connect timed out after 300 ms$/);
    // The backend sees the connection end: nothing is left open.
    const guard = setTimeout(() => server.close(), 5000);
    let end: number | null | "error" = 0;
    try {
      while (end !== null) end = await server.read(hello);
    } catch {
      end = "error";
    }
    clearTimeout(guard);
    assert.notEqual(end, "error", "the connection stayed open until the guard closed it");
    server.close();
    listener.close();
  },
);

function backendAt(port: number): BackendAddress {
  const id = `127.0.0.1:${port}`;
  return { id, authority: id, host: "127.0.0.1", port, tls: false };
}

/** Counts `setNoDelay` calls on every TCP connection of this process until disposed. */
async function countNoDelay(): Promise<{ readonly calls: number } & Disposable> {
  const counter = { calls: 0 };
  const hook = await onNoDelay(() => counter.calls++);
  return Object.assign(counter, { [Symbol.dispose]: () => hook[Symbol.dispose]() });
}

Deno.test("dial() sets TCP_NODELAY at connect unless the caller takes it on", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  using counter = await countNoDelay();
  const signal = new AbortController().signal;
  (await dial(plain(port), signal, 5000)).close();
  assert.equal(counter.calls, 1);
  (await dial({ ...plain(port), noDelay: "later" }, signal, 5000)).close();
  assert.equal(counter.calls, 1, "set at connect although left to the caller");
  listener.close();
});

/**
 * A keep-alive backend on loopback that answers every request with `ok`,
 * reading a chunked body (if any) to its end first.
 */
function okBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      connections.push(conn);
      (async () => {
        const buf = new Uint8Array(64 * 1024);
        let text = "";
        while (true) {
          const n = await conn.read(buf).catch(() => null);
          if (n === null) return; // closed by the client, or by dispose
          text += new TextDecoder().decode(buf.subarray(0, n));
          const headEnd = text.indexOf("\r\n\r\n");
          if (headEnd < 0) continue;
          const chunked = /transfer-encoding: chunked/i.test(text.slice(0, headEnd));
          if (chunked && !text.endsWith("0\r\n\r\n")) continue;
          text = "";
          await conn.write(
            new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
          );
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    [Symbol.dispose]() {
      listener.close();
      for (const conn of connections) conn.close();
    },
  };
}

Deno.test(
  "the http1 transport sets TCP_NODELAY before a connection's second write, not its first",
  async () => {
    using backend = okBackend();
    const client = {
      poolIdleTimeoutMs: null,
      poolMaxIdlePerHost: null,
      maxConnectionsPerHost: 1,
      caCerts: [],
    };
    using counter = await countNoDelay();
    /** A request on a new transport's pool (`body`: streamed), answered "ok". */
    const request = (transport: Transport, body: ReadableStream<Uint8Array> | null = null) =>
      transport.send(backendAt(backend.port), {
        method: body === null ? "GET" : "POST",
        target: "/",
        fields: [["host", "a"]],
        body,
        signal: new AbortController().signal,
        connectTimeoutMs: 5000,
        onEnd: () => {},
      }).then((response) => response.text());
    const transport = createHttp1Transport(client);
    try {
      // One write on a new connection: a backend that closes every connection costs no setsockopt.
      assert.equal(await request(transport), "ok");
      assert.equal(counter.calls, 0, "set for a connection's first write");
      // The next request's head is the connection's second write.
      assert.equal(await request(transport), "ok");
      assert.equal(counter.calls, 1, "not set before the second write");
      assert.equal(await request(transport), "ok");
      assert.equal(counter.calls, 1, "set again");
    } finally {
      transport.close();
    }
    // A streamed body follows its head: set before the body's first write.
    const streaming = createHttp1Transport(client);
    try {
      const body = ReadableStream.from([new TextEncoder().encode("hello")]);
      assert.equal(await request(streaming, body), "ok");
      assert.equal(counter.calls, 2, "not set before a streamed body");
    } finally {
      streaming.close();
    }
  },
);
