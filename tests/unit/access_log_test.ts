import assert from "node:assert/strict";
import { AccessLog, basicUser, formatAccess, type RequestRecord } from "../../lib/access_log.ts";

const record: RequestRecord = {
  time: new Date(0),
  client: "127.0.0.1",
  method: "GET",
  path: "/",
  protocol: "HTTP/1.1",
  status: 200,
  bytesIn: 0,
  bytesOut: 2,
  durationMs: 1,
  pool: "p",
  backend: "b",
  attempts: 1,
  referer: null,
  userAgent: null,
};

Deno.test({
  name: "an access log that cannot be written says so once, not for every lost line",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const said: string[] = [];
    // /dev/full takes every open and fails every write (ENOSPC), as a full disk does.
    const log = await AccessLog.open({ format: "common", path: "/dev/full" }, (m) => said.push(m));
    for (let i = 0; i < 3; i++) {
      log.write(record);
      await log.flush();
    }
    await log.close();
    assert.equal(said.length, 1, said.join("\n"));
    assert.match(said[0], /^Cannot write the access log \/dev\/full \(.+\): its lines are lost/);
  },
});

Deno.test("header values past ASCII: UTF-8 text in JSON lines, \\xHH in CLF lines as nginx writes", () => {
  // Deno gives a header value one character per byte: UTF-8 "é" (C3 A9) arrives as "Ã©".
  const utf8 = { ...record, userAgent: "caf\u00c3\u00a9/1", referer: "\u00ff" };
  const json = JSON.parse(formatAccess("json", utf8));
  assert.equal(json.user_agent, "caf\u00e9/1");
  assert.equal(json.referer, "\u00ff", "bytes that are not UTF-8 stay as they came");
  assert.ok(
    formatAccess("combined", utf8).endsWith(' "\\xff" "caf\\xc3\\xa9/1"'),
    formatAccess("combined", utf8),
  );
});

Deno.test("the user of Basic credentials is logged, as nginx's $remote_user", () => {
  assert.equal(basicUser(`Basic ${btoa("alice:secret:more")}`), "alice");
  assert.equal(basicUser(`basic  ${btoa("bob:")}`), "bob");
  // Without a colon it may be a bare secret (an API key): never logged.
  for (
    const value of [
      null,
      "Bearer abc",
      "Basic !!!",
      `Basic ${btoa(":pw")}`,
      `Basic ${btoa("sk_live_1")}`,
    ]
  ) {
    assert.equal(basicUser(value), null, String(value));
  }
  const withUser = { ...record, user: 'al ice"' };
  assert.ok(
    formatAccess("common", withUser).startsWith("127.0.0.1 - al\\x20ice\\x22 [01/Jan/1970"),
    formatAccess("common", withUser),
  );
  assert.ok(formatAccess("common", record).startsWith("127.0.0.1 - - ["));
  assert.equal(JSON.parse(formatAccess("json", withUser)).user, 'al ice"');
  assert.equal(JSON.parse(formatAccess("json", record)).user, null);
});
