import assert from "node:assert/strict";
import bcrypt from "bcryptjs";
import { basicAuth, dearestCost, parseHtpasswd } from "../../lib/middleware/basic_auth.ts";
import { CredentialCache, readBasic } from "../../lib/middleware/basic_credentials.ts";
import { BcryptBusy, MAX_WAITING, openBcrypt } from "../../lib/middleware/bcrypt_thread.ts";
import { ManualClock } from "../_helpers/clock.ts";
import { build, fakeContext, field, run, testDeps } from "../_helpers/middleware.ts";

const basic = (credentials: string) =>
  "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(credentials)));

async function withUsers<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    const lines = [
      `alice:${bcrypt.hashSync("wonder land", 4)}`,
      `jürgen:${bcrypt.hashSync("pa:ss", 4).replace("$2b$", "$2y$")}`, // Apache's prefix
    ];
    await Deno.writeTextFile(`${dir}/users.htpasswd`, lines.join("\n") + "\n");
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readBasic() decodes UTF-8 Basic credentials and rejects malformed ones", () => {
  assert.deepEqual(readBasic(basic("jürgen:pa:ss")), {
    user: "jürgen",
    password: "pa:ss",
    raw: "jürgen:pa:ss",
  });
  assert.equal(readBasic("bAsIc  " + btoa("a:b"))?.user, "a");
  for (
    const bad of [
      null,
      "Bearer x",
      "Basic",
      "Basic !!!",
      "Basic " + btoa("nocolon"),
      "Basic " + btoa(":p"),
    ]
  ) {
    assert.equal(readBasic(bad), null, String(bad));
  }
});

Deno.test("basicAuth() lets known users in, answers 401 with a challenge otherwise", async () => {
  await withUsers(async (dir) => {
    const mw = await build(
      basicAuth,
      { htpasswd: "users.htpasswd", realm: "Staff only" },
      testDeps({ baseDir: dir }),
    );
    const as = (authorization?: string) =>
      fakeContext("http://a.com/", { headers: authorization ? { authorization } : {} });
    const ok = await run(mw, as(basic("alice:wonder land")));
    assert.deepEqual([ok.status, await ok.text()], [200, "backend"]);
    const utf8 = await run(mw, as(basic("jürgen:pa:ss")));
    assert.equal(utf8.status, 200);
    await utf8.body?.cancel();
    for (const credentials of ["alice:wrong", "bob:wonder land", "alice:"]) {
      const r = await run(mw, as(basic(credentials)));
      assert.equal(r.status, 401, credentials);
      assert.equal(r.headers.get("www-authenticate"), 'Basic realm="Staff only", charset="UTF-8"');
      await r.body?.cancel();
    }
    const none = await run(mw, as());
    assert.equal(none.status, 401);
    await none.body?.cancel();
  });
});

Deno.test("basicAuth() strips Authorization before forwarding unless forward_authorization", async () => {
  await withUsers(async (dir) => {
    const deps = testDeps({ baseDir: dir });
    const authorization = basic("alice:wonder land");
    const strip = await build(basicAuth, { htpasswd: "users.htpasswd" }, deps);
    const stripped = fakeContext("http://a.com/", { headers: { authorization } });
    await (await run(strip, stripped)).body?.cancel();
    assert.equal(field(stripped, "authorization"), null);
    const keep = await build(
      basicAuth,
      { htpasswd: "users.htpasswd", forward_authorization: true },
      deps,
    );
    const kept = fakeContext("http://a.com/", { headers: { authorization } });
    await (await run(keep, kept)).body?.cancel();
    assert.equal(field(kept, "authorization"), authorization);
  });
});

Deno.test("CredentialCache remembers only the exact credentials, until the TTL passes", () => {
  const clock = new ManualClock();
  const cache = new CredentialCache(60, clock);
  const good = readBasic(basic("alice:secret"))!;
  cache.add(good);
  assert.ok(cache.has(readBasic(basic("alice:secret"))!));
  assert.ok(!cache.has(readBasic(basic("alice:Secret"))!));
  clock.advance(59_999);
  assert.ok(cache.has(good));
  clock.advance(1);
  assert.ok(!cache.has(good));
  const off = new CredentialCache(0, clock);
  off.add(good);
  assert.ok(!off.has(good));
});

Deno.test("parseHtpasswd() accepts bcrypt lines and comments", () => {
  const hash = "$2y$05$" + "a".repeat(53);
  assert.deepEqual(parseHtpasswd(`# comment\n\nann:${hash}\r\n`), {
    users: { ann: hash },
    problems: [],
  });
  assert.deepEqual(parseHtpasswd(`ann:${hash}\nann:${hash}\nbob:{SHA}abc=`).problems, [
    'line 2: user "ann" appears twice',
    'line 3: unsupported hash for user "bob" (expected bcrypt, "htpasswd -B")',
  ]);
});

Deno.test("dearestCost() is the highest bcrypt cost of the file (10 without users)", () => {
  const salt = "a".repeat(53);
  assert.equal(dearestCost([`$2b$05$${salt}`, `$2y$12$${salt}`, `$2a$10$${salt}`]), 12);
  assert.equal(dearestCost([`$2b$04$${salt}`]), 4);
  assert.equal(dearestCost([]), 10);
});

Deno.test("basicAuth() checks passwords off the JavaScript thread: other work goes on meanwhile", async () => {
  const dir = await Deno.makeTempDir();
  // Cost 12: about 230 ms of bcryptjs per check, which on this thread would stall the timers.
  await Deno.writeTextFile(`${dir}/users.htpasswd`, `bob:${bcrypt.hashSync("right", 12)}\n`);
  const mw = await build(basicAuth, { htpasswd: "users.htpasswd" }, testDeps({ baseDir: dir }));
  try {
    let ticks = 0;
    let longest = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      ticks++;
    }, 5);
    const denied = await run(
      mw,
      fakeContext("http://a.com/", { headers: { authorization: basic("bob:wrong") } }),
    );
    clearInterval(timer);
    assert.equal(denied.status, 401);
    assert.ok(ticks >= 5, `the timer ran ${ticks} times during the check`);
    assert.ok(longest < 150, `the thread was held for ${longest.toFixed(0)} ms at once`);
  } finally {
    await mw.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openBcrypt(): past MAX_WAITING checks in progress, one more is refused at once", async () => {
  const hash = bcrypt.hashSync("x", 4);
  const first = openBcrypt();
  const second = openBcrypt();
  try {
    const checks = Array.from({ length: MAX_WAITING }, () => first.compare("x", hash));
    await assert.rejects(second.compare("x", hash), BcryptBusy);
    assert.deepEqual(new Set(await Promise.all(checks)), new Set([true]));
    first.close();
    assert.equal(await second.compare("y", hash), false, "the thread stays for its other user");
  } finally {
    first.close();
    second.close();
  }
});
