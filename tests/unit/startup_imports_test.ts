// Optional clients (Redis, LDAP, bcrypt, ACME) cost tens of MB of memory each
// once imported, so Strom loads them only when a config uses them: none may be
// reachable from main.ts through static imports. The same holds for Node's
// heavier built-ins (node:crypto, node:http, node:zlib: ~6 MB each), which
// lib/node_builtins.ts loads on first use.

import assert from "node:assert/strict";

interface InfoModule {
  readonly specifier: string;
  readonly dependencies?: {
    readonly specifier: string;
    readonly code?: { readonly specifier: string };
    readonly isDynamic?: boolean;
  }[];
}

const LAZY = ["ioredis", "ldapts", "bcryptjs", "acme-client"];
/** The only Node built-ins start-up may load (small, or needed by every config). */
const EAGER_BUILTINS = ["node:path", "node:process", "node:util"];

Deno.test("main.ts does not load the optional clients at start-up", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const pending = [...info.roots];
  while (pending.length > 0) {
    const specifier = pending.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dep.code && !dep.isDynamic) pending.push(dep.code.specifier);
    }
  }
  assert.ok(seen.size > 50, `the walk found the module graph (${seen.size} modules)`);
  const eager = [...seen].filter((s) => LAZY.some((name) => s.includes(name)));
  assert.deepEqual(eager, [], "optional clients imported statically");
  const builtins = [...seen].filter((s) => s.startsWith("node:")).sort();
  assert.deepEqual(builtins, EAGER_BUILTINS, "Node built-ins imported statically");
  // The dynamic imports are there (the walk above would miss a renamed package).
  const dynamic = info.modules.flatMap((m) =>
    (m.dependencies ?? []).filter((d) => d.isDynamic).map((d) => d.specifier)
  );
  for (const expected of ["acme-client", "./ldap_directory.ts", "./rate_limit_redis.ts"]) {
    assert.ok(dynamic.includes(expected), `${expected} is imported dynamically (${dynamic})`);
  }
  // bcryptjs is loaded by BasicAuth's worker thread, whose module main.ts does not import.
  const worker = info.modules.find((m) => m.specifier.endsWith("/bcrypt_worker.ts"));
  assert.equal(worker, undefined, "the bcrypt worker is not in main.ts's graph");
  const thread = await Deno.readTextFile(
    new URL("../../lib/middleware/bcrypt_thread.ts", import.meta.url),
  );
  assert.match(thread, /new Worker\(new URL\("\.\/bcrypt_worker\.ts", import\.meta\.url\)/);
});
