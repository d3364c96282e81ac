import assert from "node:assert/strict";
import { authentication } from "../../lib/middleware/authentication.ts";
import { escapeFilterValue } from "../../lib/middleware/ldap_directory.ts";
import {
  authenticationOptions,
  basicRequest,
  hasSlapd,
  LDAP_READER,
  LDAP_USERS,
  startSlapd,
} from "../_helpers/ldap.ts";
import { captureLog } from "../_helpers/clock.ts";
import { createLogger } from "../../lib/log.ts";
import { build, field, run, testDeps } from "../_helpers/middleware.ts";

const as = basicRequest;

/** The status for each credential string, in order. */
async function statuses(
  mw: Awaited<ReturnType<typeof build>>,
  credentials: string[],
): Promise<number[]> {
  const out = [];
  for (const c of credentials) {
    const r = await run(mw, as(c));
    await r.body?.cancel();
    out.push(r.status);
  }
  return out;
}

const options = authenticationOptions;

Deno.test("escapeFilterValue() escapes what RFC 4515 requires", () => {
  assert.equal(escapeFilterValue("alice"), "alice");
  assert.equal(escapeFilterValue("*"), "\\2a");
  assert.equal(escapeFilterValue("a)(uid=*"), "a\\29\\28uid=\\2a");
  assert.equal(escapeFilterValue("back\\slash\x00"), "back\\5cslash\\00");
  assert.equal(escapeFilterValue("jürgen"), "jürgen");
});

Deno.test({
  name: "authentication() checks users by search then bind against a real slapd",
  ignore: !hasSlapd,
  async fn() {
    await using ldap = await startSlapd();
    const mw = await build(authentication, options(ldap.url));
    try {
      assert.deepEqual(
        await statuses(mw, [
          `alice:${LDAP_USERS.alice.password}`,
          `bob:${LDAP_USERS.bob.password}`,
          "alice:wrong",
          "alice:",
          "nobody:alice-pw",
          `carol:${LDAP_USERS.carol.password}`, // one level down: not found without recursive
        ]),
        [200, 200, 401, 401, 401, 401],
      );
      const refused = await run(mw, as("alice:wrong"));
      assert.equal(
        refused.headers.get("www-authenticate"),
        'Basic realm="Restricted", charset="UTF-8"',
      );
      await refused.body?.cancel();
    } finally {
      await mw.close?.();
    }
  },
});

Deno.test({
  name: "authentication() binds for an unknown user too, so timing does not tell who exists",
  ignore: !hasSlapd,
  async fn() {
    await using ldap = await startSlapd();
    const mw = await build(authentication, options(ldap.url));
    try {
      assert.deepEqual(await statuses(mw, ["nobody:some-pw", "alice:wrong"]), [401, 401]);
      const binds = await ldap.binds();
      assert.equal(binds.length, 2, binds.join("\n"));
      assert.match(binds[0], /^uid=strom-nobody-[0-9a-f-]{36},ou=people,dc=example,dc=com$/);
      assert.equal(binds[1], LDAP_USERS.alice.dn);
    } finally {
      await mw.close?.();
    }
  },
});

Deno.test({
  name: "authentication() is not open to LDAP filter injection (RustStrom's was)",
  ignore: !hasSlapd,
  async fn() {
    await using ldap = await startSlapd();
    const mw = await build(authentication, options(ldap.url));
    try {
      // Unescaped, `*` matches every user and alice's password then binds as alice.
      const { password } = LDAP_USERS.alice;
      assert.deepEqual(
        await statuses(mw, [`*:${password}`, `al*:${password}`, `x)(uid=alice:${password}`]),
        [401, 401, 401],
      );
    } finally {
      await mw.close?.();
    }
  },
});

Deno.test({
  name: "authentication() searches recursively, with bind_dn, and strips Authorization",
  ignore: !hasSlapd,
  async fn() {
    await using ldap = await startSlapd({ anonymousSearch: false });
    const anonymous = await build(authentication, options(ldap.url, { recursive: true }));
    const bound = await build(
      authentication,
      options(ldap.url, {
        recursive: true,
        bind_dn: LDAP_READER.dn,
        bind_password: LDAP_READER.password,
      }),
    );
    try {
      const carol = `carol:${LDAP_USERS.carol.password}`;
      // This server hides the directory from anonymous searches (slapd answers "no such
      // object"): a setup problem, so 503 and an error log, not a 401 asking again.
      assert.deepEqual(await statuses(anonymous, [carol]), [503]);
      assert.deepEqual(await statuses(bound, [carol, carol, "carol:nope"]), [200, 200, 401]);
      const context = as(carol);
      await (await run(bound, context)).body?.cancel();
      assert.equal(field(context, "authorization"), null);
    } finally {
      await anonymous.close?.();
      await bound.close?.();
    }
  },
});

Deno.test({
  name:
    "authentication() caches good credentials for cache_ttl_sec and answers 503 while LDAP is down",
  ignore: !hasSlapd,
  async fn() {
    const { lines, sink } = captureLog();
    const deps = testDeps({ log: createLogger("error", { sink }) });
    const ldap = await startSlapd();
    const mw = await build(authentication, options(ldap.url, { cache_ttl_sec: 30 }), deps);
    try {
      const alice = `alice:${LDAP_USERS.alice.password}`;
      assert.deepEqual(await statuses(mw, [alice]), [200]);
      await ldap[Symbol.asyncDispose]();
      // Within the TTL the cache answers; a wrong password is never cached.
      assert.deepEqual(await statuses(mw, [alice, "alice:wrong"]), [200, 503]);
      deps.clock.advance(30_000);
      assert.deepEqual(await statuses(mw, [alice]), [503]);
      assert.match(lines[0], /^error Cannot check user "alice" at ldap:\/\/127\.0\.0\.1:\d+: /);
    } finally {
      await mw.close?.();
    }
  },
});
