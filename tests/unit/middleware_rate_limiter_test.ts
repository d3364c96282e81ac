import assert from "node:assert/strict";
import { rateLimiter } from "../../lib/middleware/rate_limiter.ts";
import { MemoryWindow } from "../../lib/middleware/rate_limit_window.ts";
import { withPasswordHidden } from "../../lib/net/address.ts";
import { StoreBreaker, StoreSkipped } from "../../lib/middleware/store_breaker.ts";
import { ManualClock } from "../_helpers/clock.ts";
import { build, fakeContext, run, testDeps } from "../_helpers/middleware.ts";
import { createLogger, silentLogger } from "../../lib/log.ts";
import { RedisWindow } from "../../lib/middleware/rate_limit_redis.ts";
import { hasRedis, startRedis } from "../_helpers/redis.ts";

const from = (clientIp: string) => fakeContext("http://a.com/", { clientIp });

Deno.test("rateLimiter() lets `limit` requests per client through, then 429 with Retry-After and RateLimit-*", async () => {
  const deps = testDeps();
  const limited: string[] = [];
  const mw = await build(rateLimiter, { limit: 3, window_sec: 10 }, {
    ...deps,
    onRateLimited: (pool) => limited.push(pool),
  });
  const statuses = [];
  for (let i = 0; i < 3; i++) {
    const r = await run(mw, from("10.0.0.1"));
    await r.body?.cancel();
    statuses.push([r.status, r.headers.get("ratelimit-remaining")]);
    deps.clock.advance(1000);
  }
  assert.deepEqual(statuses, [[200, "2"], [200, "1"], [200, "0"]]);
  const refused = await run(mw, from("10.0.0.1"));
  assert.equal(refused.status, 429);
  assert.equal(await refused.text(), "429 - Too Many Requests");
  // The first request (at t=0) leaves the window at t=10 s; now is t=3 s.
  assert.equal(refused.headers.get("retry-after"), "7");
  assert.equal(refused.headers.get("ratelimit-limit"), "3");
  assert.equal(refused.headers.get("ratelimit-remaining"), "0");
  assert.equal(refused.headers.get("ratelimit-reset"), "7");
  assert.deepEqual(limited, ["pool-0"]);
  // Another client has its own window.
  assert.equal((await run(mw, from("10.0.0.2"))).status, 200);
});

Deno.test("rateLimiter() keys on the client IP, not the connection (RustStrom keyed on IP and port)", async () => {
  const mw = await build(rateLimiter, { limit: 1, window_sec: 60 });
  const first = await run(mw, from("2001:db8::7"));
  await first.body?.cancel();
  // A new connection from the same client is the same client.
  const second = await run(mw, from("2001:db8::7"));
  assert.equal(second.status, 429);
  await second.body?.cancel();
});

Deno.test("rateLimiter() slides: a client retrying while refused gets in once its oldest request leaves the window", async () => {
  const deps = testDeps();
  const mw = await build(rateLimiter, { limit: 2, window_sec: 10 }, deps);
  const status = async () => {
    const r = await run(mw, from("10.0.0.1"));
    await r.body?.cancel();
    return r.status;
  };
  assert.equal(await status(), 200); // t=0
  deps.clock.advance(5000);
  assert.equal(await status(), 200); // t=5
  for (let t = 0; t < 4; t++) {
    deps.clock.advance(1000);
    assert.equal(await status(), 429); // t=6..9: refusals are not counted
  }
  deps.clock.advance(999);
  assert.equal(await status(), 429); // t=9.999: the t=0 request is still inside
  deps.clock.advance(1);
  assert.equal(await status(), 200); // t=10: it left; RustStrom would still refuse
  assert.equal(await status(), 429); // and the window is full again (t=5, t=10)
});

Deno.test("rateLimiter() with limit 0 refuses everything", async () => {
  const mw = await build(rateLimiter, { limit: 0, window_sec: 1 });
  const r = await run(mw, from("10.0.0.1"));
  assert.deepEqual([r.status, r.headers.get("retry-after")], [429, "1"]);
  await r.body?.cancel();
});

Deno.test("MemoryWindow forgets idle clients and never tracks more than maxClients", () => {
  const window = new MemoryWindow({ limit: 5, windowMs: 1000, maxClients: 100 });
  for (let i = 0; i < 1000; i++) window.hit(`client-${i}`, i);
  assert.equal(window.size, 100);
  // An old client still active does not keep later idle ones alive (RustStrom's leak).
  const fresh = new MemoryWindow({ limit: 5, windowMs: 1000, maxClients: 100 });
  fresh.hit("active", 0);
  for (let i = 0; i < 50; i++) fresh.hit(`idle-${i}`, 10);
  fresh.hit("active", 900);
  assert.equal(fresh.size, 51);
  fresh.hit("active", 1500); // the idle ones' last requests left the window
  assert.equal(fresh.size, 1);
  fresh.hit("other", 5000);
  assert.equal(fresh.size, 1);
});

Deno.test("rateLimiter() falls back per on_store_error when the store is unreachable", async () => {
  // Port 1 on loopback refuses connections: the store is down from the start.
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  const open = await build(
    rateLimiter,
    { limit: 1, window_sec: 1, store: "redis://:hunter2@127.0.0.1:1" },
    testDeps({ log }),
  );
  const closed = await build(rateLimiter, {
    limit: 1,
    window_sec: 1,
    store: "redis://127.0.0.1:1",
    on_store_error: "deny",
  });
  try {
    const allowed = await run(open, from("10.0.0.1"));
    assert.deepEqual([allowed.status, await allowed.text()], [200, "backend"]);
    for (let i = 0; i < 2; i++) await (await run(open, from("10.0.0.1"))).body?.cancel();
    const denied = await run(closed, from("10.0.0.1"));
    assert.deepEqual([denied.status, await denied.text()], [503, "503 - Service Unavailable"]);
    const said = lines.filter((l) => l.startsWith("warn Rate limit store of pool"));
    assert.equal(said.length, 1, "said once, not per request:\n" + lines.join("\n"));
    assert.match(said[0], /\(requests pass unlimited until it answers\)/);
    // Logs are readable without the admin token: the store's password is not in them.
    assert.ok(lines.some((l) => l.startsWith("warn Rate limit store redis://:***@127.0.0.1:1: ")));
    assert.deepEqual(lines.filter((l) => l.includes("hunter2")), []);
  } finally {
    await open.close?.();
    await closed.close?.();
  }
});

Deno.test("withPasswordHidden() hides the password up to the last @, so no part of it is logged", () => {
  const cases: [string, string][] = [
    ["redis://:s3cr3t-p@ss@127.0.0.1:6379", "redis://:***@127.0.0.1:6379"],
    ["redis://user:a@b@c@127.0.0.1:6379/2", "redis://user:***@127.0.0.1:6379/2"],
    ["rediss://:hunter2@redis.example:6380", "rediss://:***@redis.example:6380"],
    ["redis://:p:w@host", "redis://:***@host"],
    // Unescaped "/", "?" or "#" in a password: not a valid URL, hidden all the same.
    ["redis://:pa/ss@host:6379", "redis://:***@host:6379"],
    ["redis://:pa#ss@host:6379", "redis://:***@host:6379"],
    // Without "//", from the first colon: `user:` is no scheme (a backend address).
    ["redis::pw@host", "redis:***@host"],
    ["user:hunter2@127.0.0.1:8080", "user:***@127.0.0.1:8080"],
    ["user:sec:ret@127.0.0.1:8080", "user:***@127.0.0.1:8080"],
    ["admin:p@ss:w@host", "admin:***@host"],
    // Nothing to hide.
    ["redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"],
    ["redis://user@host:6379", "redis://user@host:6379"],
    ["redis:nohost", "redis:nohost"],
  ];
  for (const [url, shown] of cases) assert.equal(withPasswordHidden(url), shown, url);
});

Deno.test({
  name:
    "RedisWindow refuses a database that is no number, instead of a rejection nothing handles, and uses the one given",
  ignore: !hasRedis,
  async fn() {
    await using redis = await startRedis();
    const options = { limit: 1, windowMs: 60_000, prefix: "test:", log: silentLogger };
    const unhandled: string[] = [];
    const onUnhandled = (event: PromiseRejectionEvent) => {
      event.preventDefault();
      unhandled.push(String(event.reason));
    };
    globalThis.addEventListener("unhandledrejection", onUnhandled);
    const refused: string[] = [];
    try {
      for (const url of [`${redis.url}/notadb`, `${redis.url}?db=notadb`]) {
        let window: RedisWindow;
        try {
          window = new RedisWindow(url, options);
        } catch (e) {
          refused.push((e as Error).message);
          continue;
        }
        // Without the check, the client answered these from database 0 and left its
        // failed SELECT unhandled.
        try {
          for (let i = 0; i < 3; i++) await window.hit("10.0.0.1", 0);
        } finally {
          await window.close();
        }
      }
    } finally {
      globalThis.removeEventListener("unhandledrejection", onUnhandled);
    }
    assert.deepEqual(unhandled, []);
    assert.deepEqual(refused, [
      `invalid store "${redis.url}/notadb": expected a database number (0 or more) after the host, found "notadb"`,
      `invalid store "${redis.url}?db=notadb": expected no "?" or "#" part`,
    ]);

    // A database beyond the server's (16 by default): hits fail, so on_store_error applies;
    // the client's SELECT was refused once and every hit then counted in database 0.
    const beyond = new RedisWindow(`${redis.url}/16`, options);
    try {
      await assert.rejects(beyond.hit("10.0.0.1", 0), /DB index is out of range/);
      await assert.rejects(beyond.hit("10.0.0.1", 0), /DB index is out of range/);
    } finally {
      await beyond.close();
    }
    const zero = new RedisWindow(redis.url, options);
    try {
      assert.equal((await zero.hit("10.0.0.1", 0)).allowed, true, "nothing counted in database 0");
    } finally {
      await zero.close();
    }

    // Database 0 needs no SELECT: a user the server does not allow one still counts.
    await redisCommand(redis.port, "ACL SETUSER limiter on >pw ~* +@all -select");
    const restricted = new RedisWindow(`redis://limiter:pw@127.0.0.1:${redis.port}`, options);
    try {
      assert.equal((await restricted.hit("10.0.0.9", 0)).allowed, true);
      assert.equal((await restricted.hit("10.0.0.9", 0)).allowed, false, "counted");
    } finally {
      await restricted.close();
    }

    // Databases 1 and 2 keep apart windows.
    const one = new RedisWindow(`${redis.url}/1`, options);
    const two = new RedisWindow(`${redis.url}/2`, options);
    try {
      assert.equal((await one.hit("10.0.0.1", 0)).allowed, true);
      assert.equal((await two.hit("10.0.0.1", 0)).allowed, true, "another database");
      assert.equal((await one.hit("10.0.0.1", 0)).allowed, false);
    } finally {
      await one.close();
      await two.close();
    }
  },
});

Deno.test("StoreBreaker: after a failure, hits fail at once; one hit per retry interval tries the store", async () => {
  let calls = 0;
  let failing = true;
  // A store that fails at once: the failure comes at the hit's time.
  const clock = { t: 0, now: () => clock.t };
  const inner = {
    hit(_key: string, now: number) {
      clock.t = now;
      calls++;
      if (failing) return Promise.reject(new Error("command timed out"));
      return Promise.resolve({ allowed: true, remaining: 1, resetMs: now });
    },
  };
  const breaker = new StoreBreaker(inner, clock, 1000);
  await assert.rejects(breaker.hit("a", 0), /command timed out/);
  await assert.rejects(breaker.hit("a", 10), StoreSkipped);
  await assert.rejects(
    breaker.hit("a", 999),
    /not asked: it failed recently \(command timed out\)/,
  );
  assert.equal(calls, 1);
  await assert.rejects(breaker.hit("a", 1000), /command timed out/); // the trial fails: open again
  await assert.rejects(breaker.hit("a", 1500), StoreSkipped);
  assert.equal(calls, 2);
  failing = false;
  const trial = breaker.hit("a", 2000);
  await assert.rejects(breaker.hit("b", 2001), StoreSkipped, "no second trial while one runs");
  assert.equal((await trial).allowed, true);
  for (let i = 0; i < 3; i++) await breaker.hit("a", 2002 + i);
  assert.equal(calls, 6, "closed again: every hit asks the store");
});

Deno.test("StoreBreaker: the retry interval runs from the failure, not from the hit's start", async () => {
  const clock = { t: 0, now: () => clock.t };
  let calls = 0;
  const hung = {
    hit() {
      calls++;
      clock.t += 2000; // a hung store fails after its command timeout
      return Promise.reject(new Error("command timed out"));
    },
  };
  const breaker = new StoreBreaker(hung, clock, 1000);
  await assert.rejects(breaker.hit("a", 0), /command timed out/);
  // Failed at 2000: left alone until 3000. Before, the retry was due at 1000, so the next
  // request waited for the command timeout again, and every one after it.
  await assert.rejects(breaker.hit("a", 2500), StoreSkipped);
  assert.equal(calls, 1);
});

Deno.test("rateLimiter() with a hung store: one request waits for the command timeout, the next ones do not", async () => {
  // Accepts connections and reads forever without answering: Redis hung.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  let accepted: () => void = () => {};
  const serving = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      conn.readable.pipeTo(new WritableStream()).catch(() => {});
      accepted();
    }
  })();
  const clock = new ManualClock();
  const limiter = await build(rateLimiter, {
    limit: 1,
    window_sec: 1,
    store: `redis://127.0.0.1:${listener.addr.port}`,
  }, testDeps({ clock }));
  try {
    const first = performance.now();
    await (await run(limiter, from("10.0.0.1"))).body?.cancel();
    assert.ok(performance.now() - first >= 1500, "the first request waited for the timeout");
    // The client gives up on that connection and connects again, as hung as before.
    await new Promise<void>((resolve) => {
      accepted = resolve;
      if (held.length >= 2) resolve();
    });
    const rest = performance.now();
    for (let i = 0; i < 3; i++) {
      const response = await run(limiter, from("10.0.0.1"));
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    assert.ok(performance.now() - rest < 1000, "the next ones did not wait for the store");
  } finally {
    await limiter.close?.();
    listener.close();
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await serving.catch(() => {});
  }
});

/** Sends one inline command to the Redis at `port` and returns its one-line reply. */
async function redisCommand(port: number, command: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`${command}\r\n`));
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf);
    const reply = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    assert.match(reply, /^\+OK/, reply);
    return reply;
  } finally {
    conn.close();
  }
}
