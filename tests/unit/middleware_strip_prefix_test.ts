import assert from "node:assert/strict";
import { stripPrefix } from "../../lib/middleware/strip_prefix.ts";
import { build, fakeContext, field, optionProblems, run } from "../_helpers/middleware.ts";

async function upstream(prefixes: string[], url: string, headers: Record<string, string> = {}) {
  const mw = await build(stripPrefix, { prefixes });
  const context = fakeContext(url, { headers });
  await (await run(mw, context)).body?.cancel();
  return { target: context.target, prefix: field(context, "x-forwarded-prefix") };
}

Deno.test("stripPrefix() removes whole leading segments and keeps the query", async () => {
  assert.deepEqual(await upstream(["/api"], "http://a.com/api/users?id=7"), {
    target: "/users?id=7",
    prefix: "/api",
  });
  assert.deepEqual(await upstream(["/api"], "http://a.com/api"), { target: "/", prefix: "/api" });
  assert.deepEqual(await upstream(["/api/"], "http://a.com/api/?q"), {
    target: "/?q",
    prefix: "/api",
  });
  assert.deepEqual(await upstream(["/api"], "http://a.com/apis/x"), {
    target: "/apis/x",
    prefix: null,
  });
  assert.deepEqual(await upstream(["/api"], "http://a.com/other"), {
    target: "/other",
    prefix: null,
  });
});

Deno.test("stripPrefix() strips a path the pool was chosen by only once decoded", async () => {
  const stripped = async (url: string) => (await upstream(["/api"], url)).target;
  assert.equal(await stripped("http://a.com/%61pi/users?id=7"), "/users?id=7");
  assert.equal(await stripped("http://a.com//api/users"), "/users");
  assert.equal(await stripped("http://a.com/%61pi/a%20b%3Fc%25d"), "/a%20b%3Fc%25d");
  // A rest that would read as a link to another host goes with one slash.
  assert.equal(await stripped("http://a.com/api//evil.example/x"), "/evil.example/x");
  assert.equal(await stripped("http://a.com/api/%2F%2fevil.example/x"), "/evil.example/x");
  assert.equal(await stripped("http://a.com/api/%2F/evil.example/x"), "/evil.example/x");
  assert.equal(await stripped("http://a.com/api/ok%2F%2Fx"), "/ok%2F%2Fx");
  assert.equal(await stripped("http://a.com/api/ok//x"), "/ok//x");
  // Escapes that are not UTF-8: the decoded form cannot be encoded back, so nothing is stripped.
  assert.equal(await stripped("http://a.com/%61pi/%FF"), "/%61pi/%FF");
  // The prefix's parameters go with it; the rest keeps its own (a session id in the URL).
  assert.equal(await stripped("http://a.com/api;v=2/users;jsessionid=1"), "/users;jsessionid=1");
  assert.equal(await stripped("http://a.com/api;v=2"), "/");
  assert.equal(await stripped("http://a.com/api;x/caf%E9"), "/caf%E9");
});

Deno.test("stripPrefix() takes the longest matching prefix and replaces a client's X-Forwarded-Prefix", async () => {
  assert.deepEqual(
    await upstream(["/a", "/a/b"], "http://a.com/a/b/c", { "x-forwarded-prefix": "/evil" }),
    { target: "/c", prefix: "/a/b" },
  );
});

Deno.test("stripPrefix() options: at least one prefix, each a path that strips something", () => {
  const problems = (table: Record<string, unknown>) => optionProblems(stripPrefix, table);
  assert.deepEqual(problems({ prefixes: [] }), [
    "StripPrefix.prefixes: expected at least one prefix",
  ]);
  assert.deepEqual(problems({ prefixes: ["api", "/", "/a?b", 3] }), [
    'StripPrefix.prefixes[0]: invalid prefix "api": expected a path such as "/api" (visible ASCII, no "?" or "#")',
    'StripPrefix.prefixes[1]: the prefix "/" would strip nothing',
    'StripPrefix.prefixes[2]: invalid prefix "/a?b": expected a path such as "/api" (visible ASCII, no "?" or "#")',
    'StripPrefix.prefixes[3]: invalid prefix 3: expected a path such as "/api" (visible ASCII, no "?" or "#")',
  ]);
});
