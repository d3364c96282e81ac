// `[certificates]` entries that load but will not work as meant are warned about.

import assert from "node:assert/strict";
import { validateCertificates } from "../../lib/config/certificates.ts";
import type { Problem } from "../../lib/config/errors.ts";
import { createCa, hasOpenssl } from "../_helpers/certs.ts";

Deno.test({
  name:
    "a Local certificate that is expired or not yet valid, for other names, or under an IP is warned about",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    await ca.issue("a", ["a.test"]); // ${ca.dir}/a.crt and a.key
    await Deno.writeTextFile(
      `${ca.dir}/bad.crt`,
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    const local = (cert: string) => ({
      type: "Local",
      certificate_path: `${cert}.crt`,
      private_key_path: "a.key",
    });
    const check = (table: Record<string, unknown>, now = Date.now()) => {
      const problems: Problem[] = [];
      const warnings: string[] = [];
      validateCertificates(table, ca.dir, problems, warnings, now);
      return { problems: problems.map((p) => `${p.path}: ${p.message}`), warnings };
    };
    assert.deepEqual(check({ "a.test": local("a") }), { problems: [], warnings: [] });
    const later = Date.now() + 30 * 86_400_000; // the test CA's certificates last 2 days
    assert.match(
      check({ "a.test": local("a") }, later).warnings[0],
      /expired on .*; clients refuse it/,
    );
    const earlier = Date.now() - 86_400_000; // a day before the certificate was made
    assert.match(
      check({ "a.test": local("a") }, earlier).warnings[0],
      /valid only from .*; clients refuse it until then/,
    );
    assert.deepEqual(check({ "b.test": local("a") }).warnings, [
      'certificates."b.test": the certificate is for a.test, not b.test; clients asking for b.test refuse it',
    ]);
    assert.deepEqual(check({ "127.0.0.1": local("a") }).warnings, [
      'certificates."127.0.0.1": clients send no server name for an IP address, so this certificate is served only as the default one',
    ]);
    // An IPv6 literal loads too (rustls' ServerName took it in RustStrom), with the same warning.
    assert.deepEqual(check({ "::1": local("a") }), {
      problems: [],
      warnings: [
        'certificates."::1": clients send no server name for an IP address, so this certificate is served only as the default one',
      ],
    });
    const bad = check({ "a.test": local("bad") }).problems;
    assert.equal(bad.length, 1);
    assert.match(
      bad[0],
      new RegExp(`\\(certificate "${ca.dir}/bad.crt", key "${ca.dir}/a.key"\\)$`),
    );
  },
});

Deno.test("two certificate entries for one server name in different case are refused", () => {
  const problems: Problem[] = [];
  const acme = { type: "ACME", email: "a@b.test", staging: true, persist_dir: "/tmp/acme" };
  validateCertificates({ "a.test": acme, "A.Test": acme }, "/", problems);
  assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), [
    'certificates."A.Test": "A.Test" is the same server name as "a.test" (names ignore case)',
  ]);
});
