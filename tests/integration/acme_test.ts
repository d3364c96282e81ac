// ACME end to end against a real pebble: obtain, serve, persist, reuse after a
// restart, renew on the timer (a manual clock), keep the certificate when an
// order fails, and start HTTPS before any certificate exists.

import assert from "node:assert/strict";
import { presentedCertificate } from "../_helpers/certs.ts";
import { hasPebble, startPebble, type TestPebble } from "../_helpers/pebble.ts";
import { freePort } from "../_helpers/programs.ts";
import { captureLog, ManualClock } from "../_helpers/clock.ts";
import { get, poolToml, startBackend, startStrom, waitFor } from "../_helpers/servers.ts";
import { createLogger } from "../../lib/log.ts";
import type { Strom } from "../../lib/server.ts";

const NAME = "acme.test";
const DAY_MS = 86_400_000;
// Pebble answers at once; poll its pending objects quickly.
const POLL = { pollMinMs: 50, pollMaxMs: 200 };

function acmeToml(
  options: { httpPort: number; backend: string; directoryUrl: string; caFile: string; dir: string },
  extra = "",
): string {
  return `http_address = "127.0.0.1:${options.httpPort}"
https_address = "127.0.0.1:0"
${poolToml([options.backend], { schemes: '["HTTP", "HTTPS"]' })}
[certificates."${NAME}"]
type = "ACME"
staging = false
email = "ops@example.com"
persist_dir = "${options.dir}"
directory_url = "${options.directoryUrl}"
ca_file = "${options.caFile}"
${extra}`;
}

async function failures(adminUrl: string): Promise<number> {
  const { text } = await get(`${adminUrl}/metrics`);
  const match = new RegExp(`^strom_acme_failures_total\\{name="${NAME}"\\} (\\d+)`, "m").exec(text);
  return match ? Number(match[1]) : -1;
}

async function served(strom: Strom) {
  return await presentedCertificate(strom.port("https_address"), NAME);
}

async function withPebble(
  fn: (pebble: TestPebble, httpPort: number, dir: string) => Promise<void>,
): Promise<void> {
  const httpPort = freePort();
  await using pebble = await startPebble({ httpPort });
  const dir = await Deno.makeTempDir({ prefix: "strom-acme-" });
  try {
    await fn(pebble, httpPort, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "Strom obtains a certificate from pebble, serves it, and reuses it after a restart",
  ignore: !hasPebble,
  async fn() {
    await withPebble(async (pebble, httpPort, dir) => {
      await using backend = startBackend(() => new Response("hello"));
      const toml = acmeToml({ httpPort, backend: backend.address, dir, ...pebble });
      let first: string;
      {
        await using lb = await startStrom(toml, { acme: POLL });
        await waitFor(() => lb.strom.certificates.get(NAME) !== undefined, "a certificate", 20_000);
        const cert = await served(lb.strom);
        assert.ok(cert, "the HTTPS listener presents a certificate");
        assert.match(cert.issuer, /CN=Pebble Intermediate CA/);
        assert.match(cert.subjectAltName ?? "", /DNS:acme\.test/);
        first = cert.serialNumber;
        assert.equal(pebble.orders(), 1);
        assert.equal(await failures(lb.adminUrl), 0);
        assert.equal((await get(`${lb.url}/`)).text, "hello", "HTTP keeps serving");

        const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
        assert.equal(files.length, 3, files.join(", "));
        for (const file of files) {
          const mode = Deno.statSync(`${dir}/${file}`).mode! & 0o777;
          if (file.endsWith(".key")) assert.equal(mode, 0o600, `${file} mode`);
        }
        assert.ok(files.some((f) => /^account-[0-9a-f]{16}\.key$/.test(f)));
        assert.ok(files.some((f) => /^acme\.test-[0-9a-f]{16}\.crt$/.test(f)));
      }
      const lines: string[] = [];
      const log = createLogger("info", { sink: (r) => lines.push(r.message) });
      await using again = await startStrom(toml, { acme: POLL, log });
      assert.ok(again.strom.certificates.get(NAME), "the persisted certificate is loaded at start");
      assert.equal((await served(again.strom))?.serialNumber, first);
      assert.equal(pebble.orders(), 1, "no new order after the restart");
      assert.ok(lines.some((l) => l.startsWith(`Using the persisted certificate of "${NAME}"`)));
    });
  },
});

Deno.test({
  name:
    "Strom renews when renew_before_days says so, and keeps its certificate when an order fails",
  ignore: !hasPebble,
  async fn() {
    await withPebble(async (pebble, httpPort, dir) => {
      await using backend = startBackend();
      const clock = new ManualClock(Date.now());
      await using lb = await startStrom(
        acmeToml(
          { httpPort, backend: backend.address, dir, ...pebble },
          "renew_before_days = 30\n",
        ),
        { acme: { ...POLL, clock } },
      );
      const { strom } = lb;
      await waitFor(() => strom.certificates.get(NAME) !== undefined, "a certificate", 20_000);
      const first = strom.certificates.get(NAME)!;
      const firstSerial = (await served(strom))!.serialNumber;

      // Not due yet: a day passes, checks run, nothing is ordered.
      clock.advance(DAY_MS);
      assert.equal(pebble.orders(), 1);

      // Due, but pebble's validation now reaches a port where Strom is not.
      // Pebble may give an order a valid authorization of the same account
      // without validating (PEBBLE_AUTHZREUSE=0 leaves a small chance), and this
      // order must be validated: a new account has no authorization to reuse.
      for (const file of Deno.readDirSync(dir)) {
        if (file.name.startsWith("account-")) Deno.removeSync(`${dir}/${file.name}`);
      }
      await pebble.pointName(NAME, "127.0.0.2");
      clock.advance(first.notAfter.getTime() - 30 * DAY_MS - clock.now());
      await waitFor(async () => await failures(lb.adminUrl) === 1, "a failed renewal", 20_000);
      await strom.acme.renewal(NAME)!.settled();
      assert.equal(pebble.orders(), 2);
      assert.equal(strom.certificates.get(NAME), first, "the current certificate is kept");
      assert.equal((await served(strom))?.serialNumber, firstSerial);

      // The retry after the backoff (5 minutes) succeeds.
      await pebble.pointName(NAME, "127.0.0.1");
      clock.advance(4 * 60_000);
      assert.equal(pebble.orders(), 2, "no retry before the backoff");
      clock.advance(60_000);
      await waitFor(
        () => strom.certificates.get(NAME) !== first,
        "the renewed certificate",
        20_000,
      );
      assert.equal(pebble.orders(), 3);
      const renewed = await served(strom);
      assert.ok(renewed);
      assert.notEqual(renewed.serialNumber, firstSerial, "new handshakes get the renewed one");
      assert.match(renewed.issuer, /CN=Pebble Intermediate CA/);
      assert.equal(await failures(lb.adminUrl), 1);
      assert.equal(strom.acme.renewal(NAME)!.failures, 0);
    });
  },
});

Deno.test({
  name: "HTTPS starts before an ACME certificate exists, and a reload to a working CA obtains one",
  ignore: !hasPebble,
  async fn() {
    await withPebble(async (pebble, httpPort, dir) => {
      await using backend = startBackend(() => new Response("hello"));
      const options = { httpPort, backend: backend.address, dir, ...pebble };
      const deadDirectory = `https://127.0.0.1:${freePort()}/dir`;
      const log = captureLog();
      await using lb = await startStrom(
        acmeToml({ ...options, directoryUrl: deadDirectory }),
        {
          acme: { ...POLL, clock: new ManualClock(Date.now()) },
          log: createLogger("info", { sink: log.sink }),
        },
      );
      await waitFor(async () => await failures(lb.adminUrl) === 1, "a failed order", 20_000);
      const failure = log.lines.find((l) => l.includes("Could not obtain a certificate"));
      assert.match(failure ?? "", /ECONNREFUSED/, "the CA's refusal, named");
      assert.equal(await served(lb.strom), null, "a handshake without certificate fails");
      assert.equal((await get(`${lb.url}/`)).text, "hello", "HTTP is unaffected");

      const result = await lb.strom.reload(acmeToml(options));
      assert.ok(result.ok);
      await waitFor(() => lb.strom.certificates.get(NAME) !== undefined, "a certificate", 20_000);
      assert.match((await served(lb.strom))?.issuer ?? "", /CN=Pebble Intermediate CA/);
      assert.equal(pebble.orders(), 1);

      // Back to the other directory: the certificate from this one is not served any more.
      assert.ok((await lb.strom.reload(acmeToml({ ...options, directoryUrl: deadDirectory }))).ok);
      assert.equal(lb.strom.certificates.get(NAME), undefined);
      assert.equal(await served(lb.strom), null);
    });
  },
});

Deno.test({
  name:
    "three ACME names sharing an email and an empty persist_dir all get certificates with one account key",
  ignore: !hasPebble,
  async fn() {
    await withPebble(async (pebble, httpPort, dir) => {
      await using backend = startBackend();
      const names = ["a.test", "b.test", "c.test"];
      const log = captureLog();
      const entries = names.map((name) =>
        `[certificates."${name}"]
type = "ACME"
staging = false
email = "ops@example.com"
persist_dir = "${dir}"
directory_url = "${pebble.directoryUrl}"
ca_file = "${pebble.caFile}"
`
      );
      await using lb = await startStrom(
        `http_address = "127.0.0.1:${httpPort}"\nhttps_address = "127.0.0.1:0"\n` +
          poolToml([backend.address], { schemes: '["HTTP", "HTTPS"]' }) + entries.join(""),
        {
          acme: { ...POLL, clock: new ManualClock(Date.now()) },
          log: createLogger("info", { sink: log.sink }),
        },
      );
      // All three order at once; each either obtains or fails (the retry waits 5 minutes
      // on the manual clock, so a failure stays one).
      await waitFor(
        () =>
          names.every((n) =>
            lb.strom.acme.renewal(n)!.failures > 0 || lb.strom.certificates.get(n)
          ),
        "every name to obtain a certificate or fail",
        20_000,
      );
      const failed = log.lines.filter((l) => l.includes("Could not obtain a certificate"));
      assert.deepEqual(failed, []);
      for (const name of names) {
        const cert = await presentedCertificate(lb.strom.port("https_address"), name);
        assert.match(cert?.subjectAltName ?? "", new RegExp(`DNS:${name.replace(".", "\\.")}`));
      }
      assert.equal(pebble.orders(), 3);
      const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.equal(files.filter((f) => f.startsWith("account-")).length, 1, files.join(", "));
      assert.equal(files.length, 7, files.join(", "));
    });
  },
});

Deno.test("an order from a CA that takes the connection and never answers fails, and is counted", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const holding = (async () => {
    for await (const conn of silent) held.push(conn);
  })().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: "strom-acme-" });
  try {
    await using backend = startBackend();
    const log = captureLog();
    await using lb = await startStrom(
      `http_address = "127.0.0.1:0"\nhttps_address = "127.0.0.1:0"\n` +
        poolToml([backend.address], { schemes: '["HTTP", "HTTPS"]' }) +
        `[certificates."${NAME}"]
type = "ACME"
staging = false
email = "ops@example.com"
persist_dir = "${dir}"
directory_url = "https://127.0.0.1:${(silent.addr as Deno.NetAddr).port}/dir"
`,
      {
        acme: { ...POLL, requestTimeoutMs: 300, clock: new ManualClock(Date.now()) },
        log: createLogger("info", { sink: log.sink }),
      },
    );
    await waitFor(async () => await failures(lb.adminUrl) === 1, "the order to fail", 10_000);
    const failure = log.lines.find((l) => l.includes("Could not obtain a certificate"));
    assert.match(failure ?? "", /timeout/i, failure);
  } finally {
    for (const conn of held) conn.close();
    silent.close();
    await holding;
    await Deno.remove(dir, { recursive: true });
  }
});
