import assert from "node:assert/strict";
import { CertificateStore } from "../../lib/tls/store.ts";
import type { LoadedCertificate } from "../../lib/tls/pem.ts";

const A: LoadedCertificate = {
  certPem: "cert",
  keyPem: "key",
  notAfter: new Date(Date.UTC(2030, 0, 1)),
  notBefore: new Date(Date.UTC(2029, 0, 1)),
  names: ["a.test"],
};

Deno.test("CertificateStore asks for a new listener once it resolved its limit of server names", async () => {
  const store = new CertificateStore({ resolvedLimit: 3 });
  store.put("a.test", A);
  let asked = 0;
  store.onResolvedLimit = () => asked++;
  store.listenerBound();
  for (const name of ["x1.test", "x2.test"]) assert.equal(store.resolve(name).cert, "cert");
  await Promise.resolve();
  assert.equal(asked, 0);
  store.resolve("x3.test");
  await Promise.resolve();
  assert.equal(asked, 1, "made-up names would grow Deno's per-name cache without end");
  store.resolve("x4.test");
  await Promise.resolve();
  assert.equal(asked, 1, "once per listener");
  const version = store.version;
  store.renewListener();
  assert.equal(store.version, version + 1);
  store.listenerBound();
  for (const name of ["y1.test", "y2.test", "y3.test"]) store.resolve(name);
  await Promise.resolve();
  assert.equal(asked, 2, "counted again for the new listener");
});
