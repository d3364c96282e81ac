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

/** A client's body of `chunks` chunks of 64 KiB; `cancelled` says whether it was given up. */
function upload(chunks: number) {
  const state = { cancelled: false, pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled++ === chunks) controller.close();
      else controller.enqueue(new Uint8Array(64 * 1024));
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
    deps: { ...defaultRuntimeDeps, metrics, createTransport: () => early },
  });
  const handler = proxyHandler("HTTP", { hostname: "127.0.0.1", port: 80 }, () => runtime, {
    log: silentLogger,
    observers: { metrics, accessLog: () => null },
    websockets: new WebSocketRegistry(),
  });
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
