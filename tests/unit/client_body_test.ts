// The client's streamed body once an exchange is over: what is left of it is
// given up, even where the transport stopped reading without a word (Deno's
// fetch does when a backend answers early), so Deno can let the client's
// connection go.

import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/load.ts";
import { defaultRuntimeDeps, Runtime } from "../../lib/runtime.ts";
import { proxyHandler } from "../../lib/listen.ts";
import { TrafficMetrics } from "../../lib/metrics/metrics.ts";
import { WebSocketRegistry } from "../../lib/proxy/websockets.ts";
import { ClientBody } from "../../lib/proxy/client_body.ts";
import { silentLogger } from "../../lib/log.ts";
import type { Transport } from "../../lib/transport/transport.ts";

/** A client's body of `chunks` chunks of `size` bytes; `cancelled` says whether it was given up. */
function upload(chunks: number, size = 64 * 1024) {
  const state = { cancelled: false, pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled++ === chunks) controller.close();
      else controller.enqueue(new Uint8Array(size));
    },
    cancel() {
      state.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

Deno.test("ClientBody.abandon() gives up a body whose reader stopped reading, and not an ended one", async () => {
  const partial = upload(10);
  const body = new ClientBody(partial.stream);
  const reader = body.stream.getReader(); // as fetch holds it: locked, not cancelled
  await reader.read();
  const next = reader.read(); // waiting for the client's next bytes
  body.abandon();
  assert.equal(partial.state.cancelled, true);
  // A reader still sending upstream sees an error, never an end: a cut body is not a whole one.
  await assert.rejects(next, /ended before the client's body did/);

  const whole = upload(1);
  const read = new ClientBody(whole.stream);
  for await (const _ of read.stream) { /* all of it */ }
  read.abandon();
  assert.equal(whole.state.cancelled, false);
});

Deno.test("ClientBody: a body that ends short of its Content-Length, or runs past it, is broken, not whole", async () => {
  const read = async (chunks: number, declared: number | null) => {
    const body = new ClientBody(upload(chunks).stream, declared);
    let bytes = 0;
    try {
      for await (const chunk of body.stream) bytes += chunk.length;
      return { bytes, failure: body.failure };
    } catch (e) {
      return { bytes, failure: e, recorded: body.failure === e };
    }
  };
  const size = 64 * 1024;
  assert.deepEqual(await read(3, 3 * size), { bytes: 3 * size, failure: null });
  assert.deepEqual(await read(3, null), { bytes: 3 * size, failure: null });
  const short = await read(2, 3 * size);
  assert.match(String(short.failure), /ended after 131072 of the 196608 bytes/);
  assert.equal(short.recorded, true);
  const long = await read(3, 2 * size + 10);
  assert.match(String(long.failure), /ended after 196608 of the 131082 bytes/);
  assert.equal(long.bytes, 2 * size, "nothing past the announced length goes upstream");
});

/** Strom's proxy handler over a pool whose transport is `transport`. */
async function handlerWith(transport: Transport) {
  const metrics = new TrafficMetrics();
  const config = parseConfig(
    `[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:9001"]
schemes = ["HTTP"]
strategy = "RoundRobin"
`,
    { source: "test", baseDir: "." },
  );
  const runtime = await Runtime.create(config, 1, {
    log: silentLogger,
    deps: { ...defaultRuntimeDeps, metrics, createTransport: () => transport },
  });
  const handler = proxyHandler("HTTP", { hostname: "127.0.0.1", port: 80 }, () => runtime, {
    log: silentLogger,
    observers: { metrics, accessLog: () => null },
    websockets: new WebSocketRegistry(),
  });
  return { handler, runtime };
}

Deno.test("a small body that ends short of its Content-Length gets 400 and never reaches a backend", async () => {
  // HTTP/2 lets a client end its stream early; Deno ends the body as if it were whole, and a
  // buffered body is sent upstream with the length it has: a cut upload would pass for a whole one.
  let sent = 0;
  const transport: Transport = {
    send() {
      sent++;
      return Promise.resolve(new Response("ok"));
    },
    close() {},
  };
  const { handler, runtime } = await handlerWith(transport);
  for (const chunks of [1, 3]) {
    const request = new Request("http://a.test/up", {
      method: "POST",
      headers: { host: "a.test", "content-length": "2000" },
      body: upload(chunks, 1000).stream,
    });
    const response = await handler(request, {
      remote: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
    });
    assert.equal(response.status, 400, `${chunks} chunks`);
    await response.body?.cancel();
  }
  assert.equal(sent, 0);
  runtime.close();
});

Deno.test("a backend that answers after part of a streamed upload: the rest of the client's body is given up", async () => {
  // Reads one chunk, answers, and never reads on nor cancels: what Deno's fetch does.
  const early: Transport = {
    async send(_backend, request) {
      const reader = (request.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      request.onEnd(3);
      return new Response("big", { status: 413 });
    },
    close() {},
  };
  const { handler, runtime } = await handlerWith(early);
  const { stream, state } = upload(100);
  const request = new Request("http://a.test/up", {
    method: "POST",
    headers: { host: "a.test", "content-length": String(100 * 64 * 1024) },
    body: stream,
  });
  const response = await handler(request, {
    remote: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
  });
  assert.equal(response.status, 413);
  assert.equal(await response.text(), "big");
  assert.equal(state.cancelled, true, "the client's body was given up");
  assert.ok(state.pulled < 100, `read ${state.pulled} chunks`);
  runtime.close();
});
