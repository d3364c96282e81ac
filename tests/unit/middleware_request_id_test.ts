import assert from "node:assert/strict";
import { requestId } from "../../lib/middleware/request_id.ts";
import { build, fakeContext, optionProblems, run } from "../_helpers/middleware.ts";

Deno.test("requestId() sends a new ID upstream under its header and returns it", async () => {
  const mw = await build(requestId, { header: "X-Trace-Id" });
  const context = fakeContext("http://a.com/", { headers: { "x-trace-id": "client" } });
  const r = await run(mw, context);
  await r.body?.cancel();
  assert.deepEqual(context.fields.filter(([n]) => n === "x-trace-id"), [["x-trace-id", "id-1"]]);
  assert.equal(context.requestId, "id-1");
  assert.equal(r.headers.get("x-trace-id"), "id-1");
});

Deno.test("requestId() keeps a sane ID from a trusted peer, and can stay off the response", async () => {
  const mw = await build(requestId, { response: false });
  const trusted = (id: string) =>
    fakeContext("http://a.com/", { peerTrusted: true, headers: { "x-request-id": id } });
  const kept = trusted("lb-7");
  const r = await run(mw, kept);
  await r.body?.cancel();
  assert.equal(kept.requestId, "lb-7");
  assert.equal(r.headers.get("x-request-id"), null);
  const long = trusted("x".repeat(201));
  await (await run(mw, long)).body?.cancel();
  assert.equal(long.requestId, "id-1", "an over-long ID is replaced");
});

Deno.test("requestId() drops underscore spellings of its header, which CGI-style backends read as it", async () => {
  const mw = await build(requestId, {});
  for (const [peerTrusted, id] of [[false, "id-1"], [true, "id-2"]] as const) {
    const context = fakeContext("http://a.com/", {
      peerTrusted,
      headers: { "x_request_id": "forged", "x-request_id": "forged", "x-other": "kept" },
    });
    await (await run(mw, context)).body?.cancel();
    assert.deepEqual(context.fields.filter(([n]) => n !== "host"), [
      ["x-other", "kept"],
      ["x-request-id", id],
    ]);
  }
});

Deno.test("requestId() options: a valid header name", () => {
  assert.deepEqual(optionProblems(requestId, { header: "X Bad" }), [
    'RequestId.header: invalid header name "X Bad"',
  ]);
  assert.deepEqual(optionProblems(requestId, {}), []);
  for (const header of ["Content-Length", "transfer-encoding", "Host", "X-Forwarded-For"]) {
    assert.deepEqual(optionProblems(requestId, { header }), [
      `RequestId.header: cannot use header "${header}": Strom manages it`,
    ]);
  }
});
