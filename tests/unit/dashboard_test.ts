import assert from "node:assert/strict";
import { ASSETS } from "../../lib/admin/dashboard/assets.ts";
import { dashboardFiles } from "../../lib/admin/dashboard/build.ts";
import { createAdminApp } from "../../lib/admin/app.ts";
import type { Strom } from "../../lib/server.ts";

Deno.test("the generated assets module matches web/ and uPlot's package (run `make dashboard`)", async () => {
  const files = await dashboardFiles();
  assert.deepEqual(Object.keys(ASSETS).sort(), [...files.keys()].sort());
  for (const [name, body] of files) {
    assert.ok(ASSETS[name].body === body, `${name} is up to date in assets.ts`);
  }
});

/** The admin app of a Strom whose admin listener is not on loopback (no listener needed). */
function remoteAdminApp() {
  const strom = {
    runtime: {
      config: { adminToken: "a-token-of-16-chars-or-more", adminAddress: { hostname: "10.0.0.1" } },
    },
  } as unknown as Strom;
  return createAdminApp(strom);
}

Deno.test("the dashboard's page and files need no token where every API call does", async () => {
  const app = remoteAdminApp();
  const page = await app.request("/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(page.headers.get("content-security-policy")!, /script-src 'self'/);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.match(await page.text(), /<script src="\/assets\/main.js" type="module">/);
  const script = await app.request("/assets/uPlot.iife.min.js");
  assert.equal(script.status, 200);
  assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.match(await script.text(), /^\/\*! https:\/\/github.com\/leeoniya\/uPlot/);
  const api = await app.request("/api/pools");
  assert.equal(api.status, 401);
  await api.body?.cancel();
});

Deno.test("dashboard files are revalidated by ETag and unknown names are 404", async () => {
  const app = remoteAdminApp();
  const first = await app.request("/assets/main.js");
  const etag = first.headers.get("etag")!;
  assert.equal(etag, ASSETS["main.js"].etag);
  await first.body?.cancel();
  const again = await app.request("/assets/main.js", { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");
  for (const name of ["nope.js", "constructor", "index.html", "..%2Fapp.ts"]) {
    const missing = await app.request(`/assets/${name}`);
    assert.equal(missing.status, 404, name);
    await missing.body?.cancel();
  }
});
