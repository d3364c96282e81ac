import assert from "node:assert/strict";
import { maxBodySize } from "../../lib/middleware/max_body_size.ts";
import { HttpError } from "../../lib/middleware/middleware.ts";
import { build, fakeContext, run } from "../_helpers/middleware.ts";

/** A body of `sizes` chunks without a Content-Length, as a chunked upload arrives. */
function chunked(sizes: number[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull(controller) {
      const size = sizes.shift();
      if (size === undefined) controller.close();
      else controller.enqueue(new Uint8Array(size));
    },
  });
}

Deno.test("maxBodySize() refuses a Content-Length over the limit with 413 before the backend", async () => {
  const mw = await build(maxBodySize, { limit: 10 });
  let called = false;
  const post = (n: number) =>
    fakeContext("http://a.com/", {
      method: "POST",
      body: "x".repeat(n),
      headers: { "content-length": String(n) },
    });
  const context = post(11);
  const r = await run(mw, context, () => {
    called = true;
    return new Response("backend");
  });
  assert.deepEqual([r.status, await r.text(), called], [413, "413 - Payload Too Large", false]);
  const ok = await run(mw, post(10));
  assert.deepEqual([ok.status, await ok.text()], [200, "backend"]);
});

Deno.test("maxBodySize() counts a chunked body as it streams and cuts it off past the limit", async () => {
  const mw = await build(maxBodySize, { limit: 100 });
  const context = fakeContext("http://a.com/", { method: "POST" });
  context.body = chunked([40, 40, 40, 40]);
  let received = 0;
  const r = await run(mw, context, async (c) => {
    // The backend reads what it is sent; the stream fails at the chunk that passes 100 bytes.
    for await (const chunk of c.body!) received += chunk.length;
    return new Response("backend saw it all");
  });
  assert.deepEqual([r.status, received], [413, 80]);
  await r.body?.cancel();
  assert.ok(context.bodyError instanceof HttpError && context.bodyError.status === 413);
});

Deno.test("maxBodySize() passes a chunked body up to the limit untouched", async () => {
  const mw = await build(maxBodySize, { limit: 100 });
  const context = fakeContext("http://a.com/", { method: "POST" });
  context.body = chunked([50, 50]);
  const r = await run(mw, context, async (c) => {
    const bytes = await new Response(c.body).arrayBuffer();
    return new Response(`got ${bytes.byteLength}`);
  });
  assert.deepEqual([r.status, await r.text(), context.bodyError], [200, "got 100", undefined]);
});
