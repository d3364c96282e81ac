// ACME scheduling: the pure timing functions, and renewals driven by a manual
// clock with a fake CA (certificates made by openssl), so no test waits.

import assert from "node:assert/strict";
import {
  DEFAULT_TIMING,
  nextCheckDelayMs,
  renewalDue,
  retryDelayMs,
} from "../../lib/tls/acme_schedule.ts";
import { AcmeManager } from "../../lib/tls/acme.ts";
import { AcmeFiles } from "../../lib/tls/acme_files.ts";
import type { OrderCertificate, OrderRequest } from "../../lib/tls/acme_order.ts";
import { CertificateStore } from "../../lib/tls/store.ts";
import { ChallengeStore } from "../../lib/tls/challenges.ts";
import type { CertificateConfig } from "../../lib/config/types.ts";
import { silentLogger } from "../../lib/log.ts";
import { createCa, hasOpenssl, type TestCa } from "../_helpers/certs.ts";
import { ManualClock } from "../_helpers/clock.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

Deno.test("renewalDue() is true without a certificate or within renew_before_days", () => {
  const now = Date.UTC(2030, 0, 1);
  const notAfter = new Date(now + 40 * DAY_MS);
  assert.equal(renewalDue(null, { now, renewBeforeDays: 30 }), true);
  assert.equal(renewalDue(notAfter, { now, renewBeforeDays: 30 }), false);
  assert.equal(renewalDue(notAfter, { now: now + 10 * DAY_MS - 1, renewBeforeDays: 30 }), false);
  assert.equal(renewalDue(notAfter, { now: now + 10 * DAY_MS, renewBeforeDays: 30 }), true);
  assert.equal(renewalDue(notAfter, { now, renewBeforeDays: 41 }), true);
});

Deno.test("nextCheckDelayMs() waits a check interval at most, and exactly until due when sooner", () => {
  const now = Date.UTC(2030, 0, 1);
  const timing = DEFAULT_TIMING;
  const far = new Date(now + 90 * DAY_MS);
  assert.equal(nextCheckDelayMs(far, { now, renewBeforeDays: 30, timing }), 12 * HOUR_MS);
  const near = new Date(now + 30 * DAY_MS + HOUR_MS);
  assert.equal(nextCheckDelayMs(near, { now, renewBeforeDays: 30, timing }), HOUR_MS);
  assert.equal(nextCheckDelayMs(near, { now, renewBeforeDays: 31, timing }), 0);
});

Deno.test("a certificate that lasts less than renew_before_days is renewed after two thirds of its life", () => {
  const issued = Date.UTC(2030, 0, 1);
  const notBefore = new Date(issued);
  const notAfter = new Date(issued + 9 * DAY_MS); // a CA issuing 9-day certificates
  const timing = { ...DEFAULT_TIMING, checkEveryMs: 30 * DAY_MS };
  const options = { renewBeforeDays: 30, notBefore };
  assert.equal(renewalDue(notAfter, { now: issued, ...options }), false, "not at once again");
  assert.equal(nextCheckDelayMs(notAfter, { now: issued, timing, ...options }), 6 * DAY_MS);
  assert.equal(renewalDue(notAfter, { now: issued + 6 * DAY_MS, ...options }), true);
  // A usual 90-day certificate keeps renew_before_days.
  const usual = new Date(issued + 90 * DAY_MS);
  assert.equal(nextCheckDelayMs(usual, { now: issued, timing, ...options }), 30 * DAY_MS);
});

Deno.test("retryDelayMs() doubles from 5 minutes per failure up to 12 hours", () => {
  const delays = [1, 2, 3, 4, 8, 9, 50].map((n) => retryDelayMs(n, DEFAULT_TIMING) / 60_000);
  assert.deepEqual(delays, [5, 10, 20, 40, 640, 720, 720]);
});

Deno.test("AcmeFiles.accountKey() called at once for several names creates one key, shared by all", async () => {
  const dir = await Deno.makeTempDir({ prefix: "strom-acme-unit-" });
  try {
    // Two AcmeFiles, as two names' renewals each have their own.
    const [one, two] = [new AcmeFiles(dir), new AcmeFiles(dir)];
    const keys = await Promise.all([
      one.accountKey("https://ca.invalid/dir", "ops@example.com"),
      two.accountKey("https://ca.invalid/dir", "ops@example.com"),
      two.accountKey("https://ca.invalid/dir", "ops@example.com"),
    ]);
    assert.equal(new Set(keys).size, 1, "one key");
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.equal(files.length, 1, files.join(", "));
    assert.equal(Deno.readTextFileSync(`${dir}/${files[0]}`), keys[0]);
    assert.equal(Deno.statSync(`${dir}/${files[0]}`).mode! & 0o777, 0o600);
    // Settled, the file is the truth again: read back, or made anew once removed.
    assert.equal(await one.accountKey("https://ca.invalid/dir", "ops@example.com"), keys[0]);
    Deno.removeSync(`${dir}/${files[0]}`);
    assert.notEqual(await one.accountKey("https://ca.invalid/dir", "ops@example.com"), keys[0]);
    const other = await one.accountKey("https://ca.invalid/dir", "dev@example.com");
    assert.notEqual(other, keys[0], "another email, another account");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A fake CA: each order issues a certificate valid for `days` (or fails when told). */
function fakeCa(ca: TestCa, options: { days: number }) {
  const requests: OrderRequest[] = [];
  let failNext = 0;
  const order: OrderCertificate = async (request) => {
    requests.push(request);
    if (failNext > 0) {
      failNext--;
      throw new Error("urn:ietf:params:acme:error:connection: refused");
    }
    const files = await ca.issue(`order${requests.length}`, [request.name], options);
    return {
      certPem: await Deno.readTextFile(files.cert),
      keyPem: await Deno.readTextFile(files.key),
    };
  };
  return { order, requests, failNext: (n: number) => void (failNext = n) };
}

function acmeConfig(name: string, persistDir: string, renewBeforeDays = 1): CertificateConfig {
  return {
    type: "ACME",
    serverName: name,
    staging: false,
    email: "ops@example.com",
    persistDir,
    directoryUrl: "https://ca.invalid/dir",
    renewBeforeDays,
    caCerts: [],
  };
}

async function setup(days: number) {
  const ca = await createCa();
  const dir = await Deno.makeTempDir({ prefix: "strom-acme-unit-" });
  const fake = fakeCa(ca, { days });
  const clock = new ManualClock(Date.now());
  const store = new CertificateStore();
  const events: string[] = [];
  const manager = () =>
    new AcmeManager({
      store,
      challenges: new ChallengeStore(),
      log: silentLogger,
      clock,
      order: fake.order,
      onCertificate: (name) => events.push(`certificate ${name}`),
      onFailure: (name) => events.push(`failure ${name}`),
    });
  return {
    ca,
    dir,
    fake,
    clock,
    store,
    events,
    manager,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
      await ca[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name: "AcmeManager orders a missing certificate, persists it, and renews it on the timer",
  ignore: !hasOpenssl,
  async fn() {
    await using t = await setup(3);
    const acme = t.manager();
    acme.reconfigure([acmeConfig("a.test", t.dir)]);
    const renewal = acme.renewal("a.test")!;
    await renewal.settled();
    assert.equal(t.fake.requests.length, 1);
    assert.equal(t.fake.requests[0].email, "ops@example.com");
    const first = t.store.get("a.test")!;
    assert.ok(first);
    assert.deepEqual(t.events, ["certificate a.test"]);
    for (const entry of Deno.readDirSync(t.dir)) {
      const mode = Deno.statSync(`${t.dir}/${entry.name}`).mode! & 0o777;
      assert.equal(mode, entry.name.endsWith(".key") ? 0o600 : 0o644, entry.name);
    }
    assert.equal(t.clock.pending, 1, "the next check is scheduled");

    // Valid 3 days, renewed 1 day before: checks every 12 h, the order comes after 2 days.
    const dueAt = first.notAfter.getTime() - DAY_MS;
    t.clock.advance(dueAt - t.clock.now() - 1);
    await renewal.settled();
    assert.equal(t.fake.requests.length, 1, "not due yet");
    t.clock.advance(1);
    await renewal.settled();
    assert.equal(t.fake.requests.length, 2, "renewed once due");
    assert.notEqual(t.store.get("a.test"), first);
    assert.deepEqual(t.events, ["certificate a.test", "certificate a.test"]);
    await acme.stop();
    assert.equal(t.clock.pending, 0, "stop() clears the timer");
  },
});

Deno.test({
  name: "AcmeManager retries a failed order with exponential backoff and keeps the certificate",
  ignore: !hasOpenssl,
  async fn() {
    await using t = await setup(3);
    const acme = t.manager();
    acme.reconfigure([acmeConfig("a.test", t.dir, 2)]);
    const renewal = acme.renewal("a.test")!;
    await renewal.settled();
    const first = t.store.get("a.test");

    t.fake.failNext(3);
    t.clock.advance(first!.notAfter.getTime() - 2 * DAY_MS - t.clock.now());
    await renewal.settled();
    assert.equal(t.fake.requests.length, 2);
    assert.equal(renewal.failures, 1);
    assert.equal(t.store.get("a.test"), first, "a failure keeps the current certificate");

    const tries = async (ms: number) => {
      t.clock.advance(ms);
      await renewal.settled();
      return t.fake.requests.length;
    };
    assert.equal(await tries(5 * 60_000 - 1), 2, "first retry after 5 minutes");
    assert.equal(await tries(1), 3);
    assert.equal(await tries(10 * 60_000 - 1), 3, "then after 10 minutes");
    assert.equal(await tries(1), 4);
    assert.equal(await tries(20 * 60_000), 5, "then after 20 minutes, which succeeds");
    assert.equal(renewal.failures, 0);
    assert.notEqual(t.store.get("a.test"), first);
    assert.deepEqual(t.events.filter((e) => e.startsWith("failure")).length, 3);
    await acme.stop();
  },
});

Deno.test({
  name:
    "AcmeManager reuses a persisted certificate without an order, and reloads start and stop names",
  ignore: !hasOpenssl,
  async fn() {
    await using t = await setup(10);
    const first = t.manager();
    first.reconfigure([acmeConfig("a.test", t.dir)]);
    await first.renewal("a.test")!.settled();
    const obtained = t.store.get("a.test")!;
    await first.stop();
    t.clock.advance(8 * DAY_MS); // the persisted certificate has 2 of its 10 days left

    const store = new CertificateStore();
    const second = new AcmeManager({
      store,
      challenges: new ChallengeStore(),
      log: silentLogger,
      clock: t.clock,
      order: t.fake.order,
      onCertificate: () => {},
      onFailure: () => {},
    });
    second.reconfigure([acmeConfig("a.test", t.dir, 1)]);
    assert.equal(store.get("a.test")?.certPem, obtained.certPem, "loaded at once, synchronously");
    await second.renewal("a.test")!.settled();
    assert.equal(t.fake.requests.length, 1, "no new order");

    // A persisted certificate inside the renewal window (3 days) is served and renewed at once.
    second.reconfigure([acmeConfig("a.test", t.dir, 3)]);
    assert.equal(store.get("a.test")?.certPem, obtained.certPem);
    await second.renewal("a.test")!.settled();
    assert.equal(t.fake.requests.length, 2);

    second.reconfigure([acmeConfig("a.test", t.dir, 3), acmeConfig("b.test", t.dir)]);
    await second.renewal("b.test")!.settled();
    assert.equal(t.fake.requests.length, 3, "only the new name orders");
    second.reconfigure([]);
    assert.equal(second.renewal("a.test"), undefined);
    assert.equal(t.clock.pending, 0, "removed names stop their timers");
    await second.stop();
  },
});

Deno.test({
  name: "AcmeManager stops an order in progress: it is aborted and not counted",
  ignore: !hasOpenssl,
  async fn() {
    await using t = await setup(3);
    let signal: AbortSignal | undefined;
    const failures: string[] = [];
    const acme = new AcmeManager({
      store: t.store,
      challenges: new ChallengeStore(),
      log: silentLogger,
      clock: t.clock,
      order: (request) =>
        new Promise((_, reject) => {
          signal = request.signal;
          request.signal.addEventListener("abort", () => reject(new Error("aborted")));
        }),
      onCertificate: () => {},
      onFailure: (name) => failures.push(name),
    });
    acme.reconfigure([acmeConfig("a.test", t.dir)]);
    while (!signal) await new Promise((r) => setTimeout(r, 1));
    await acme.stop();
    assert.equal(signal?.aborted, true);
    assert.deepEqual(failures, []);
    assert.equal(t.clock.pending, 0);
  },
});
