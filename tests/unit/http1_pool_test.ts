// The HTTP/1.1 transport's connection pool and connects when requests are
// aborted at awkward moments: no connection, descriptor or pool slot may be
// lost, whatever turn the abort comes in.

import assert from "node:assert/strict";
import { dial } from "../../lib/transport/dial.ts";
import { HostPool, type Lease } from "../../lib/transport/http1/pool.ts";
import { Connection } from "../../lib/transport/http1/connection.ts";
import { createHttp1Transport } from "../../lib/transport/http1/transport.ts";
import { UpstreamError } from "../../lib/transport/transport.ts";
import type { BackendAddress } from "../../lib/config/types.ts";
import { waitFor } from "../_helpers/servers.ts";
import { hangingPort } from "../_helpers/hanging.ts";
import { onNoDelay } from "../_helpers/no_delay.ts";
import { ManualClock } from "../_helpers/clock.ts";

/** Accepts connections and counts those still open (the client has not closed them). */
function countingServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  let closed = 0;
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.push(conn);
      (async () => {
        const buf = new Uint8Array(1024);
        try {
          while ((await conn.read(buf)) !== null) { /* drop */ }
        } catch { /* reset */ }
        closed++;
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    get open() {
      return accepted - closed;
    },
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Spins for `ms` (a connect completes meanwhile, and a timer falls due in the same turn). */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* spin */ }
}

Deno.test("dial() leaves no connection open when its request is aborted as the connect completes", async () => {
  const server = countingServer();
  try {
    let rejected = 0;
    for (let i = 0; i < 150; i++) {
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 1);
      const dialing = dial(
        { host: "127.0.0.1", port: server.port, tls: false },
        abort.signal,
        5000,
      );
      busy(4);
      try {
        (await dialing).close();
      } catch (e) {
        assert.ok(e instanceof UpstreamError && e.kind === "aborted", String(e));
        rejected++;
      }
    }
    assert.ok(rejected > 0, "some aborts came first");
    // Deno 2.9.6's Deno.connect, given the signal, left some of these open for good.
    await waitFor(() => server.open === 0, "every connection closed");
  } finally {
    server.close();
  }
});

Deno.test("a pool with a cap loses no slot to a waiter aborted as its connection arrives", async () => {
  const server = countingServer();
  const pool = new HostPool(
    { host: "127.0.0.1", port: server.port, tls: false },
    { maxConnections: 1, maxIdle: 1, idleTimeoutMs: 60_000 },
  );
  try {
    const first = await pool.acquire(new AbortController().signal, 5000);
    const abort = new AbortController();
    const waiting = pool.acquire(abort.signal, 5000) as Promise<Lease>;
    {
      // The waiter's request is aborted once its connect has completed, before it has the
      // connection (here: while dial() sets TCP_NODELAY on it).
      using _hook = await onNoDelay(() => abort.abort());
      pool.release(first.conn, false); // the slot frees: a connect starts for the waiter
      await assert.rejects(waiting, (e) => e instanceof UpstreamError && e.kind === "aborted");
    }
    // The one slot is still there: a request gets a connection (it was lost, and this waited
    // for ever).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const lease = await Promise.race([
      pool.acquire(new AbortController().signal, 5000),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no connection within 5 s")), 5000);
      }),
    ]);
    clearTimeout(timer);
    pool.release(lease.conn, false);
    assert.equal(pool.open, 0);
    await waitFor(() => server.open === 0, "every connection closed");
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test({
  name: "a connect given up on keeps its pool slot until its socket is closed",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const hanging = hangingPort();
    const pool = new HostPool(
      { host: "127.0.0.1", port: hanging.port, tls: false },
      { maxConnections: 1, maxIdle: 1, idleTimeoutMs: 60_000 },
    );
    try {
      const abort = new AbortController();
      const first = pool.acquire(abort.signal, 60_000) as Promise<Lease>;
      abort.abort();
      await assert.rejects(first, (e) => e instanceof UpstreamError && e.kind === "aborted");
      // Its SYNs still go out: the cap of one counts it (it was freed at once, and each client
      // leaving made another connect to a backend the cap was to protect).
      assert.equal(pool.open, 1);
      const later = new AbortController();
      let settled = false;
      const second = pool.acquire(later.signal, 60_000) as Promise<Lease>;
      second.then(() => settled = true, () => settled = true);
      for (let i = 0; i < 10; i++) await new Promise((r) => queueMicrotask(() => r(null)));
      assert.equal(settled, false, "waits for the slot");
      later.abort();
      await assert.rejects(second);
      // Once the connect ends (the backend's port closes: refused at its next SYN, within the
      // 2 s after which it would be cancelled anyway), the slot is free.
      hanging.close();
      await waitFor(() => pool.open === 0, "the slot to be freed");
    } finally {
      pool.close();
    }
  },
});

function backendAt(port: number): BackendAddress {
  const id = `127.0.0.1:${port}`;
  return { id, authority: id, host: "127.0.0.1", port, tls: false };
}

const CLIENT = {
  poolIdleTimeoutMs: null,
  poolMaxIdlePerHost: null,
  maxConnectionsPerHost: null,
  caCerts: [],
};

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/**
 * A backend answering each request on a connection with `answer`; counts requests. With
 * `perConnection`, a connection that answered that many closes at its next request without an
 * answer (`dropped`): the keep-alive race (the backend closed the idle connection as the request
 * came), made certain.
 */
function answering(answer: string, perConnection = Infinity) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let requests = 0;
  let dropped = 0;
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(4096);
        let text = "";
        let served = 0;
        try {
          reading: while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            while (text.includes("\r\n\r\n")) {
              if (served === perConnection) {
                dropped++;
                break reading;
              }
              text = text.slice(text.indexOf("\r\n\r\n") + 4);
              requests++;
              served++;
              await conn.write(new TextEncoder().encode(answer));
            }
          }
        } catch { /* closed */ }
        conn.close();
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    get requests() {
      return requests;
    },
    get counts() {
      return { answered: requests, dropped };
    },
    close: () => listener.close(),
  };
}

function request(signal: AbortSignal) {
  return {
    method: "GET",
    target: "/",
    fields: [["host", "a"]] as [string, string][],
    body: null,
    signal,
    connectTimeoutMs: 5000,
    onEnd: () => {},
  };
}

Deno.test("the http1 transport sends nothing for a request aborted before it got its pooled connection", async () => {
  const backend = answering(OK);
  const transport = createHttp1Transport(CLIENT);
  try {
    const first = await transport.send(
      backendAt(backend.port),
      request(new AbortController().signal),
    );
    assert.equal(await first.text(), "ok");
    // An idle connection waits in the pool; this request's signal fired before it took it.
    const abort = new AbortController();
    abort.abort();
    await assert.rejects(
      transport.send(backendAt(backend.port), request(abort.signal)),
      (e) => e instanceof UpstreamError && e.kind === "aborted",
    );
    assert.equal(backend.requests, 1, "no request sent for the aborted one");
  } finally {
    transport.close();
    backend.close();
  }
});

Deno.test("the http1 transport passes a 205 on without its Content-Length", async () => {
  const backend = answering("HTTP/1.1 205 Reset Content\r\nContent-Length: 5\r\n\r\nhello");
  const transport = createHttp1Transport(CLIENT);
  try {
    const response = await transport.send(
      backendAt(backend.port),
      request(new AbortController().signal),
    );
    assert.equal(response.status, 205);
    // An HTTP/2 client takes a length above 0 without content as a protocol error.
    assert.equal(response.headers.get("content-length"), null);
  } finally {
    transport.close();
    backend.close();
  }
});

Deno.test("the http1 transport resends an idempotent request written to a closed connection on a new one", async () => {
  const backend = answering(OK, 1);
  const transport = createHttp1Transport(CLIENT);
  try {
    // Two connections wait in the pool, each of which the backend will close at its next request.
    const two = await Promise.all(
      [0, 1].map(() =>
        transport.send(backendAt(backend.port), request(new AbortController().signal))
      ),
    );
    for (const response of two) assert.equal(await response.text(), "ok");
    // The first try meets a closed connection after its head went out; the resend must not
    // take the other pooled one, closed too (that gave 502), but a new connection.
    const third = await transport.send(
      backendAt(backend.port),
      request(new AbortController().signal),
    );
    assert.equal(await third.text(), "ok");
    assert.deepEqual(backend.counts, { answered: 3, dropped: 1 });
  } finally {
    transport.close();
    backend.close();
  }
});

Deno.test("HostPool.acquire() reuses only a connection idle for less than reuseWithinMs", async () => {
  const server = countingServer();
  const pool = new HostPool(
    { host: "127.0.0.1", port: server.port, tls: false },
    { maxConnections: 1, maxIdle: 4, idleTimeoutMs: 60_000 },
  );
  const signal = new AbortController().signal;
  try {
    const first = await pool.acquire(signal, 5000);
    pool.release(first.conn, true);
    // Idle for less than a minute: reused within 60 s, not within 0 ms; at the cap of one,
    // the idle connection makes room for the new one.
    const fresh = await pool.acquire(signal, 5000, 0);
    assert.equal(fresh.reused, false);
    assert.equal(pool.open, 1);
    pool.release(fresh.conn, true);
    const reused = await pool.acquire(signal, 5000, 60_000);
    assert.deepEqual([reused.reused, reused.conn], [true, fresh.conn]);
    pool.release(reused.conn, false);
    assert.equal(pool.open, 0);
    // Below a cap too, the connection too old for the request goes: no pile of them.
    const roomy = new HostPool(
      { host: "127.0.0.1", port: server.port, tls: false },
      { maxConnections: 10, maxIdle: 10, idleTimeoutMs: 60_000 },
    );
    for (let i = 0; i < 5; i++) {
      const lease = await roomy.acquire(signal, 5000, 0);
      roomy.release(lease.conn, true);
    }
    assert.equal(roomy.open, 1);
    roomy.close();
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("HostPool learns the backend's keep-alive timeout from an idle connection it closed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) accepted.push(conn);
  })().catch(() => {});
  const clock = new ManualClock();
  const pool = new HostPool(
    { host: "127.0.0.1", port: listener.addr.port, tls: false },
    { maxConnections: 4, maxIdle: 4, idleTimeoutMs: 600_000 },
    undefined,
    clock,
  );
  const signal = new AbortController().signal;
  const idleFor = async (ms: number, reuseWithinMs: number) => {
    const lease = await pool.acquire(signal, 5000);
    pool.release(lease.conn, true);
    clock.advance(ms);
    const next = await pool.acquire(signal, 5000, reuseWithinMs);
    pool.release(next.conn, true);
    return next.reused;
  };
  try {
    assert.equal(await idleFor(160, 1000), true, "nothing learned yet: reused within 1 s");
    // The backend closes the idle connection after 200 ms.
    const first = await pool.acquire(signal, 5000);
    pool.release(first.conn, true);
    clock.advance(200);
    await waitFor(() => accepted.length === 1, "the connection accepted");
    accepted[0].close();
    await waitFor(() => first.conn.closed, "the close seen by the pool");
    // 160 ms is beyond three quarters of 200 ms: a new connection for what cannot go again.
    assert.equal(await idleFor(160, 1000), false);
    assert.equal(await idleFor(100, 1000), true);
    assert.equal(await idleFor(160, Infinity), true, "a request that can go again still reuses");
    clock.advance(60_000); // what was learned holds for a minute
    assert.equal(await idleFor(160, 1000), true);
  } finally {
    pool.close();
    listener.close();
    for (const conn of accepted) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
});

Deno.test("the http1 transport sends a POST on a connection idle for a second or more only anew", async () => {
  const backend = answering(OK, 1);
  const clock = new ManualClock();
  const transport = createHttp1Transport(CLIENT, clock);
  try {
    const two = await Promise.all(
      [0, 1].map(() =>
        transport.send(backendAt(backend.port), request(new AbortController().signal))
      ),
    );
    for (const response of two) assert.equal(await response.text(), "ok");
    clock.advance(1500); // both pooled connections idle for 1.5 s, below the idle timeout of 4 s
    const post = { ...request(new AbortController().signal), method: "POST" };
    const answer = await transport.send(backendAt(backend.port), post);
    assert.equal(await answer.text(), "ok", "sent on a new connection, not lost on a closed one");
    assert.deepEqual(backend.counts, { answered: 3, dropped: 0 });
  } finally {
    transport.close();
    backend.close();
  }
});

Deno.test("a connection names its two ends for TCP and TLS alike (Deno gives TLS ones no transport)", () => {
  const tls = {
    localAddr: { hostname: "127.0.0.1", port: 40000 },
    remoteAddr: { hostname: "127.0.0.1", port: 443 },
  } as unknown as Deno.Conn;
  assert.deepEqual(new Connection(tls, "b").ends, {
    local: { hostname: "127.0.0.1", port: 40000 },
    remote: { hostname: "127.0.0.1", port: 443 },
  });
  const unix = {
    localAddr: { transport: "unix", path: "/s" },
    remoteAddr: { transport: "unix", path: "/s" },
  } as unknown as Deno.Conn;
  assert.equal(new Connection(unix, "b").ends, null);
});

Deno.test("a body up to close is read in small pieces while they do not fill, larger while they do", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = new Connection(
    await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    "b",
  );
  const server = await accepted;
  try {
    const reader = conn.bodyStream({ kind: "close" }, () => {}, { readSize: 4096 }).getReader();
    await server.write(new Uint8Array(10));
    assert.equal((await reader.read()).value?.length, 10, "a small message");
    // A burst: 4 KiB, then 16 KiB, then 64 KiB reads (a WebSocket leg idles with 4 KiB).
    await server.write(new Uint8Array(200_000));
    const sizes: number[] = [];
    let total = 0;
    while (total < 200_000) {
      const { value } = await reader.read();
      sizes.push(value!.length);
      total += value!.length;
    }
    assert.equal(sizes[0], 4096);
    assert.ok(Math.max(...sizes) > 16_384, sizes.join(" "));
    assert.ok(Math.max(...sizes) <= 65_536, sizes.join(" "));
    await reader.cancel();
  } finally {
    conn.close();
    server.close();
    listener.close();
  }
});
