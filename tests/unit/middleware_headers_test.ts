import assert from "node:assert/strict";
import { headers } from "../../lib/middleware/headers.ts";
import { build, fakeContext, field, run } from "../_helpers/middleware.ts";

Deno.test("headers() removes, then sets, then adds request fields sent upstream", async () => {
  const mw = await build(headers, {
    request: {
      remove: ["X-Debug"],
      set: { "X-Env": "prod" },
      add: { "X-Tag": "strom" },
    },
  });
  const context = fakeContext("http://a.com/", {
    headers: { "x-debug": "1", "x-env": "dev", "x-tag": "client" },
  });
  await (await run(mw, context)).body?.cancel();
  assert.equal(field(context, "x-debug"), null);
  assert.deepEqual(context.fields.filter(([n]) => n === "x-env"), [["x-env", "prod"]]);
  assert.deepEqual(context.fields.filter(([n]) => n === "x-tag"), [
    ["x-tag", "client"],
    ["x-tag", "strom"],
  ]);
  // The client's request itself is not changed, only what goes upstream.
  assert.equal(context.request.headers.get("x-debug"), "1");
});

Deno.test("headers() removes and replaces underscore spellings, which CGI-style backends read as the name", async () => {
  const mw = await build(headers, {
    request: { remove: ["X-Debug"], set: { "X-Env": "prod" } },
  });
  const context = fakeContext("http://a.com/", {
    headers: { "x_debug": "1", "x_env": "dev", "x_kept": "yes" },
  });
  await (await run(mw, context)).body?.cancel();
  assert.equal(field(context, "x_debug"), null);
  assert.equal(field(context, "x_env"), null);
  assert.equal(field(context, "x-env"), "prod");
  assert.equal(field(context, "x_kept"), "yes");
});

Deno.test("headers() edits response headers the same way", async () => {
  const mw = await build(headers, {
    response: {
      remove: ["Server"],
      set: { "Strict-Transport-Security": "max-age=63072000" },
      add: { "Set-Cookie": "b=2" },
    },
  });
  const r = await run(mw, fakeContext("http://a.com/"), () =>
    new Response("x", {
      headers: {
        server: "backend/1.0",
        "set-cookie": "a=1",
        "strict-transport-security": "max-age=1",
      },
    }));
  await r.body?.cancel();
  assert.equal(r.headers.get("server"), null);
  assert.equal(r.headers.get("strict-transport-security"), "max-age=63072000");
  assert.deepEqual(r.headers.getSetCookie(), ["a=1", "b=2"]);
});
