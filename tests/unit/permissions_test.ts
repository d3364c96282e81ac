// `make start`, `deno task start` and the compiled binaries run Strom with the
// same permissions (scripts/build.ts), which the process tests use too.

import assert from "node:assert/strict";
import { COMMON_FLAGS, PERMISSIONS, RUN_FLAGS } from "../../scripts/build.ts";

const root = new URL("../../", import.meta.url);

Deno.test("the Makefile and deno.json start Strom with the binaries' flags and permissions", async () => {
  const makefile = await Deno.readTextFile(new URL("Makefile", root));
  const perms = makefile.match(/^PERMS := (.*)$/m)?.[1].split(/\s+/);
  assert.deepEqual(perms, PERMISSIONS);
  const flags = makefile.match(/^FLAGS := (.*)$/m)?.[1].split(/\s+/);
  assert.deepEqual(flags, COMMON_FLAGS);
  const runOnly = makefile.match(/^RUN_ONLY := (.*)$/m)?.[1].split(/\s+/) ?? [];
  assert.deepEqual([...COMMON_FLAGS, ...runOnly], RUN_FLAGS);
  assert.match(
    makefile,
    /^\t\$\(DENO\) run \$\(FLAGS\) \$\(RUN_ONLY\) \$\(PERMS\) main\.ts demo$/m,
  );
  const deno = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const start = (deno.tasks.start as string).split(/\s+/);
  for (const flag of [...RUN_FLAGS, ...PERMISSIONS]) assert.ok(start.includes(flag), flag);
  assert.ok(!start.some((f) => f === "-A" || f === "--allow-all"));
});
