import assert from "node:assert/strict";
import { findMiddleware, MIDDLEWARES } from "../../lib/middleware/registry.ts";
import { TableReader } from "../../lib/config/fields.ts";
import type { Problem } from "../../lib/config/errors.ts";

function problems(name: string, table: Record<string, unknown>): string[] {
  const spec = findMiddleware(name);
  assert.ok(typeof spec !== "string", spec as string);
  const found: Problem[] = [];
  const reader = new TableReader(table, name, found);
  spec.parse(reader, { baseDir: Deno.cwd() });
  reader.finish();
  return found.map((p) => `${p.path}: ${p.message}`);
}

for (const { name } of MIDDLEWARES) {
  Deno.test(`${name}: an empty table reports only missing required keys, and unknown keys are errors`, () => {
    for (const problem of problems(name, {})) {
      assert.match(problem, new RegExp(`^${name}\\.\\w+: missing required key( \\(.*\\))?$`));
    }
    assert.ok(problems(name, { bogus_key: 1 }).includes(`${name}.bogus_key: unknown key`));
  });
}

Deno.test("the registry lists RustStrom's six middlewares and Strom's own, each once", () => {
  assert.deepEqual(MIDDLEWARES.map((m) => m.name), [
    "HttpsRedirector",
    "RateLimiter",
    "Compression",
    "MaxBodySize",
    "Authentication",
    "CustomErrorPages",
    "Headers",
    "BasicAuth",
    "StripPrefix",
    "IpFilter",
    "RequestId",
  ]);
  assert.equal(
    findMiddleware("Ratelimiter"),
    'unknown middleware "Ratelimiter" (did you mean "RateLimiter"?)',
  );
});
