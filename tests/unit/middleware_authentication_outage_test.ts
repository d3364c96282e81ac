// Authentication when the LDAP server is away, stalled or refuses the service
// account: every request gets an answer, and in bounded time.

import assert from "node:assert/strict";
import { authentication } from "../../lib/middleware/authentication.ts";
import {
  authenticationOptions,
  basicRequest,
  hasSlapd,
  LDAP_READER,
  LDAP_USERS,
  startSlapd,
} from "../_helpers/ldap.ts";
import { captureLog, nextTurn } from "../_helpers/clock.ts";
import { freePort } from "../_helpers/programs.ts";
import { createLogger } from "../../lib/log.ts";
import { build, run, testDeps } from "../_helpers/middleware.ts";

const ALICE = `alice:${LDAP_USERS.alice.password}`;
/** Requests sent at once in a burst. */
const BURST = 30;

const as = basicRequest;
// cache_ttl_sec = 0: every request goes to LDAP.
const options = (url: string, extra: Record<string, unknown> = {}) =>
  authenticationOptions(url, { cache_ttl_sec: 0, ...extra });

/** Starts `count` requests at once; their statuses, or throws naming how many got none in `ms`. */
async function burst(
  mw: Awaited<ReturnType<typeof build>>,
  count: number,
  ms: number,
  start = () => {},
): Promise<number[]> {
  const statuses: number[] = new Array(count).fill(0);
  let answered = 0;
  const requests = Array.from({ length: count }, (_, i) =>
    run(mw, as(ALICE)).then(async (r) => {
      await r.body?.cancel();
      statuses[i] = r.status;
      answered++;
    }));
  start();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  await Promise.race([Promise.all(requests), bound]);
  clearTimeout(timer);
  assert.equal(
    answered,
    count,
    `${count - answered} of ${count} requests unanswered after ${ms} ms`,
  );
  return statuses;
}

/** Polls `condition` (between event-loop turns) until it holds; throws `what` after 5 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await nextTurn();
  }
}

for (const scheme of ["ldap", "ldaps"]) {
  Deno.test(`authentication() answers ${BURST} concurrent requests with 503 when nothing listens at ${scheme}://`, async () => {
    const mw = await build(authentication, options(`${scheme}://127.0.0.1:${freePort()}`));
    try {
      // Before the fix 2-4 of them never got an answer (ldapts lost their connects).
      for (let round = 0; round < 3; round++) {
        assert.deepEqual(await burst(mw, BURST, 3000), new Array(BURST).fill(503));
      }
    } finally {
      await mw.close?.();
    }
  });
}

Deno.test({
  name:
    "authentication() answers concurrent requests against a slapd just started, speaking ldaps:// to it, and after it stopped",
  ignore: !hasSlapd,
  async fn() {
    const ldap = await startSlapd({ anonymousSearch: false });
    let stopped: PromiseLike<void> | null = null;
    const stop = () => stopped ??= ldap[Symbol.asyncDispose]();
    const bound = { bind_dn: LDAP_READER.dn, bind_password: LDAP_READER.password };
    const anonymous = await build(authentication, options(ldap.url));
    const withBindDn = await build(authentication, options(ldap.url, bound));
    const tls = await build(authentication, options(ldap.url.replace("ldap:", "ldaps:"), bound));
    try {
      // This slapd hides the directory from anonymous searches: 503, but an answer.
      assert.deepEqual(await burst(anonymous, BURST, 3000), new Array(BURST).fill(503));
      assert.deepEqual(await burst(withBindDn, BURST, 3000), new Array(BURST).fill(200));
      assert.deepEqual(await burst(tls, BURST, 3000), new Array(BURST).fill(503));
      await stop();
      for (const mw of [anonymous, withBindDn, tls]) {
        assert.deepEqual(await burst(mw, BURST, 3000), new Array(BURST).fill(503));
      }
    } finally {
      await stop();
      await anonymous.close?.();
      await withBindDn.close?.();
      await tls.close?.();
    }
  },
});

Deno.test("authentication() answers 503 after 5 s on its clock when LDAP accepts but never answers", async () => {
  const { lines, sink } = captureLog();
  const deps = testDeps({ log: createLogger("error", { sink }) });
  // A server like a SIGSTOPped slapd: the kernel accepts, nothing answers.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  const mw = await build(
    authentication,
    options(`ldap://127.0.0.1:${listener.addr.port}`),
    deps,
  );
  try {
    // One time limit per request, and one for opening the search connection.
    // Once `connections` were accepted and every request set its time limit (one
    // each, plus one for opening the search connection), the limits run out.
    const expire = (count: number, connections: number) => () =>
      until(
        // (At least: a count of failures to log may wait on the clock too.)
        () => deps.clock.pending >= count + 1 && accepted.length === connections,
        `${connections} connections and ${count + 1} time limits`,
      ).then(() => deps.clock.advance(5000));
    assert.deepEqual(await burst(mw, 10, 1000, expire(10, 1)), new Array(10).fill(503));
    assert.equal(lines.length, 1, "one line a second, the rest counted");
    assert.match(lines[0], /^error Cannot check user "alice" at ldap:\/\/127\.0\.0\.1:\d+: /);
    assert.match(lines[0], /no answer within 5000 ms$/);
    // The stalled connection was given up: the next request opens another.
    assert.deepEqual(await burst(mw, 1, 1000, expire(1, 2)), [503]);
    assert.match(lines[1], /^error 9 more like this in the last second, the last: Cannot check/);
  } finally {
    await mw.close?.();
    listener.close();
    await accepting;
    for (const conn of accepted) conn.close();
  }
});

Deno.test({
  name:
    "authentication() names a refused bind_dn in its error and tries it again only after a minute",
  ignore: !hasSlapd,
  async fn() {
    const { lines, sink } = captureLog();
    const deps = testDeps({ log: createLogger("error", { sink }) });
    await using ldap = await startSlapd({ anonymousSearch: false });
    const mw = await build(
      authentication,
      options(ldap.url, { bind_dn: LDAP_READER.dn, bind_password: "wrong-pw" }),
      deps,
    );
    try {
      assert.deepEqual(await burst(mw, 10, 3000), new Array(10).fill(503));
      assert.deepEqual(await burst(mw, 1, 3000), [503]);
      const expected = new RegExp(
        `^error Cannot bind as "cn=reader,dc=example,dc=com" \\(bind_dn and bind_password\\) ` +
          `at ldap://127\\.0\\.0\\.1:${ldap.port}: invalid credentials \\(tried again at most ` +
          `every 60 s\\)$`,
      );
      // One line a second: the other ten are counted in a line the clock has not come to yet.
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(lines[0], expected);
      // One bind for the eleven requests: a password policy counting failures is not hit.
      assert.deepEqual(await ldap.binds(), [LDAP_READER.dn]);
      deps.clock.advance(60_000);
      assert.deepEqual(await burst(mw, 1, 3000), [503]);
      assert.deepEqual(await ldap.binds(), [LDAP_READER.dn, LDAP_READER.dn]);
    } finally {
      await mw.close?.();
    }
  },
});

/**
 * A minimal LDAP server: answers each bind with the next of `bindCodes` (then 0, success), and
 * each search with no entry. Enough of BER for ldapts' one-byte message ids.
 */
function fakeLdap(bindCodes: number[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let binds = 0;
  const answer = (id: number, op: number, code: number) =>
    new Uint8Array([
      0x30,
      0x0c,
      0x02,
      0x01,
      id,
      op,
      0x07,
      0x0a,
      0x01,
      code,
      0x04,
      0x00,
      0x04,
      0x00,
    ]);
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) {
        // Each read holds whole messages here: SEQUENCE, length, INTEGER id, then the operation.
        for (let at = 0; at + 5 < n;) {
          const length = buf[at + 1];
          const id = buf[at + 4];
          const op = buf[at + 5];
          if (op === 0x60) await conn.write(answer(id, 0x61, bindCodes[binds++] ?? 0));
          if (op === 0x63) await conn.write(answer(id, 0x65, 0));
          at += 2 + length;
        }
      }
    } catch {
      /* closed */
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  (async () => {
    for await (const conn of listener) void serve(conn);
  })().catch(() => {});
  return {
    url: `ldap://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get binds() {
      return binds;
    },
    close: () => listener.close(),
  };
}

Deno.test("authentication() tries a bind_dn refused as busy again at the next request, without waiting a minute", async () => {
  const server = fakeLdap([51]); // busy, then success
  const { lines, sink } = captureLog();
  const deps = testDeps({ log: createLogger("error", { sink }) });
  const mw = await build(
    authentication,
    options(server.url, { bind_dn: "cn=svc", bind_password: "pw" }),
    deps,
  );
  try {
    assert.deepEqual(await burst(mw, 1, 3000), [503]);
    assert.match(lines[0], /Cannot bind as "cn=svc" .*: result code 51$/);
    // Busy passes: the next request binds again (and finds no such user: 401).
    assert.deepEqual(await burst(mw, 1, 3000), [401]);
    assert.ok(server.binds >= 2, `${server.binds} binds`); // and one as nobody, for even timing
  } finally {
    await mw.close?.();
    server.close();
  }
});
