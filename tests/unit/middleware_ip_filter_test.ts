import assert from "node:assert/strict";
import { ipFilter } from "../../lib/middleware/ip_filter.ts";
import { build, fakeContext, optionProblems, run } from "../_helpers/middleware.ts";

async function statuses(table: Record<string, unknown>, clients: string[]): Promise<number[]> {
  const mw = await build(ipFilter, table);
  const out = [];
  for (const clientIp of clients) {
    const r = await run(mw, fakeContext("http://a.com/", { clientIp }));
    await r.body?.cancel();
    out.push(r.status);
  }
  return out;
}

Deno.test("ipFilter() admits only allowed networks, and deny wins over allow", async () => {
  const table = { allow: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], deny: ["10.0.0.13"] };
  assert.deepEqual(
    await statuses(table, [
      "10.1.2.3",
      "10.0.0.13",
      "192.0.2.7",
      "192.0.2.8",
      "2001:db8::1",
      "::1",
    ]),
    [200, 403, 200, 403, 200, 403],
  );
});

Deno.test("ipFilter() with deny only refuses those and admits everyone else", async () => {
  assert.deepEqual(
    await statuses({ deny: ["198.51.100.0/24"] }, ["198.51.100.9", "203.0.113.1", "::1"]),
    [403, 200, 200],
  );
});

Deno.test("ipFilter() answers 403 with a short text body", async () => {
  const mw = await build(ipFilter, { allow: ["10.0.0.0/8"] });
  const r = await run(mw, fakeContext("http://a.com/", { clientIp: "192.0.2.1" }));
  assert.deepEqual([r.status, await r.text()], [403, "403 - Forbidden"]);
});

Deno.test("ipFilter() options: allow, deny or both, each a list of IPs or CIDRs", () => {
  const problems = (table: Record<string, unknown>) => optionProblems(ipFilter, table);
  assert.deepEqual(problems({}), [
    'IpFilter.allow: missing required key (give "allow", "deny" or both)',
  ]);
  assert.deepEqual(problems({ allow: ["10.0.0.0/33", 7], deny: ["nope"] }), [
    'IpFilter.allow[0]: invalid network "10.0.0.0/33": invalid prefix length "33"',
    'IpFilter.allow[1]: expected a string such as "10.0.0.0/8"',
    'IpFilter.deny[0]: invalid network "nope": expected an IP address or CIDR, e.g. "10.0.0.0/8"',
  ]);
  assert.deepEqual(problems({ deny: [] }), []);
  assert.deepEqual(problems({ allow: [], deny: ["10.0.0.1"] }), [
    "IpFilter.allow: an empty list refuses every client (to do that on purpose, write deny = " +
    '["0.0.0.0/0", "::/0"]; to allow everyone, leave "allow" out)',
  ]);
});
