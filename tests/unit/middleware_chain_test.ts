import assert from "node:assert/strict";
import {
  compose,
  HttpError,
  type Middleware,
  type MiddlewareContext,
} from "../../lib/middleware/middleware.ts";
import { errorResponse } from "../../lib/proxy/errors.ts";

const context = {} as MiddlewareContext;

function tracer(name: string, log: string[]): Middleware {
  return async (_c, next) => {
    log.push(`${name} in`);
    const r = await next();
    log.push(`${name} out ${r.status}`);
    return r;
  };
}

Deno.test("compose() runs middlewares in file order around the terminal, first outermost", async () => {
  const log: string[] = [];
  const chain = compose([tracer("a", log), tracer("b", log)], errorResponse);
  const r = await chain(context, () => {
    log.push("backend");
    return Promise.resolve(new Response("ok"));
  });
  assert.equal(await r.text(), "ok");
  assert.deepEqual(log, ["a in", "b in", "backend", "b out 200", "a out 200"]);
});

Deno.test("compose() passes an early answer back through the outer middlewares only", async () => {
  const log: string[] = [];
  const refuse: Middleware = () => {
    log.push("refuse");
    throw new HttpError(429, { headers: { "retry-after": "3" } });
  };
  const chain = compose([tracer("a", log), refuse, tracer("c", log)], errorResponse);
  const r = await chain(context, () => Promise.reject(new Error("backend must not run")));
  assert.equal(r.status, 429);
  assert.equal(r.headers.get("retry-after"), "3");
  assert.equal(r.headers.get("content-length"), "23", "its length, as an answer from a backend");
  assert.equal(await r.text(), "429 - Too Many Requests");
  assert.deepEqual(log, ["a in", "refuse", "a out 429"]);
});

Deno.test("errorResponse() answers 500 for anything that is not an HttpError", async () => {
  const r = errorResponse(new TypeError("bug"));
  assert.deepEqual([r.status, await r.text()], [500, "500 - Internal Server Error"]);
  const custom = errorResponse(new HttpError(413, { body: "" }));
  assert.deepEqual([custom.status, await custom.text()], [413, ""]);
});
