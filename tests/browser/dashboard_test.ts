// The dashboard in a real browser (Debian's chromium through playwright-core)
// against a real Strom with real backends. Screenshots go to tests/output/dashboard/.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { CHROMIUM, heapSize, openBrowser, screenshotPath } from "../_helpers/browser.ts";
import { get, poolToml, startBackend, startStrom, type TestStrom } from "../_helpers/servers.ts";
import { createLogger } from "../../lib/log.ts";
import { LogRing } from "../../lib/log_ring.ts";
import { createAdminApp } from "../../lib/admin/app.ts";
import type { Strom } from "../../lib/server.ts";

const TOKEN = "dashboard-token-0123456789";
/** Seconds of live updates the memory test watches (a minute: STROM_DASHBOARD_SOAK_S=60). */
const SOAK_SECONDS = Number(Deno.env.get("STROM_DASHBOARD_SOAK_S") ?? 15);

// playwright-core keeps a pipe and timers to the browser process between
// calls, which Deno's op and resource sanitizers would count against each test.
const browserTest = { ignore: CHROMIUM === null, sanitizeOps: false, sanitizeResources: false };

/** What the functions run in the page use of its DOM (Deno's own types have no DOM). */
interface PageElement {
  hasAttribute(name: string): boolean;
  readonly dataset: Record<string, string | undefined>;
  readonly textContent: string;
  readonly innerText: string;
  readonly value: string;
  readonly classList: { contains(name: string): boolean };
  toDataURL(): string;
}
declare const document: {
  getElementById(id: string): PageElement;
  querySelector(selector: string): PageElement;
  querySelectorAll(selector: string): Iterable<PageElement>;
  readonly documentElement: { readonly scrollWidth: number; readonly clientWidth: number };
};
declare function scrollTo(x: number, y: number): void;

/** A Strom whose config lives in a file, with an admin token, and logs kept for /api/logs. */
async function fileStrom(text: string): Promise<TestStrom & { path: string; text: string }> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  const full =
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nadmin_token = "${TOKEN}"\n${text}`;
  await Deno.writeTextFile(path, full);
  const ring = new LogRing();
  const lb = await startStrom(full, {
    source: { source: path, baseDir: dir },
    log: createLogger("info", { sink: (r) => ring.push(r) }),
    logRing: ring,
  });
  return Object.assign(lb, {
    path,
    text: full,
    async [Symbol.asyncDispose]() {
      await lb.strom.shutdown(1000);
      await Deno.remove(dir, { recursive: true });
    },
  });
}

/**
 * Requests in a loop until disposed; `failures` lists /app requests that did
 * not get 200 (but /app/fail, which the backends answer with 500).
 */
function traffic(url: string, paths: readonly string[], concurrency = 4) {
  let running = true;
  const failures: string[] = [];
  const worker = async (n: number) => {
    for (let i = n; running; i++) {
      const path = paths[i % paths.length];
      try {
        const r = await get(`${url}${path}`);
        const expected = path.startsWith("/app/fail") ? 500 : path.startsWith("/app") ? 200 : null;
        if (expected !== null && r.status !== expected) failures.push(`${path}: ${r.status}`);
      } catch (e) {
        failures.push(`${path}: ${e}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  const workers = Array.from({ length: concurrency }, (_, n) => worker(n));
  return {
    failures,
    async [Symbol.asyncDispose]() {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** Console errors and uncaught exceptions of a page (the expected 401 excepted). */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (401|412|422)/.test(m.text())) errors.push(m.text());
  });
  return errors;
}

async function view(page: Page, name: string): Promise<void> {
  await page.click(`nav a[data-view="${name}"]`);
  await page.waitForSelector(`section#${name}:not([hidden])`);
}

Deno.test({
  name: "the dashboard shows live traffic, a backend going down, config problems at their lines",
  ...browserTest,
  async fn() {
    const answer = (request: Request) =>
      new URL(request.url).pathname.startsWith("/app/fail")
        ? new Response("failed", { status: 500 })
        : new Response("ok");
    await using a = startBackend(answer);
    await using b = startBackend(answer);
    const closed = startBackend();
    const dead = closed.address;
    await closed.close();
    await using lb = await fileStrom(
      poolToml([a.address, b.address], {
        matcher: "PathPrefix('/app')",
        extra: "[backend_pools.health_config]\nunhealthy_after = 1",
      }) + poolToml([dead], { matcher: "PathPrefix('/broken')", extra: "retries = 0" }),
    );
    await lb.strom.health.checkAll();
    await using browser = await openBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = watchErrors(page);

    // Overview: a page with history, then the rate and the charts move with traffic.
    await page.goto(`${lb.adminUrl}/`);
    await page.waitForSelector("#link[data-state=live]");
    await page.waitForSelector("#c-rps canvas");
    const canvas = () => document.querySelector("#c-rps canvas").toDataURL();
    const before = await page.evaluate(canvas);
    const paths = ["/app/a", "/app/b", "/app/c", "/app/d", "/app/e", "/missing", "/app/fail"];
    await using load = traffic(lb.url, paths);
    await page.waitForFunction(() => Number(document.getElementById("t-rps").dataset.value) > 0);
    const shown = Number(await page.getAttribute("#t-rps", "data-value"));
    const served = lb.strom.live.samples.map((s) => s.requestsPerSecond);
    assert.ok(served.includes(shown), `requests/s ${shown} is one the server reported`);
    await page.waitForFunction(
      (old) => document.querySelector("#c-rps canvas").toDataURL() !== old,
      before,
    );
    await page.waitForFunction(() =>
      Number(document.getElementById("t-p50").dataset.value) > 0 &&
      Number(document.getElementById("t-err").dataset.value) > 0 &&
      Number(document.getElementById("t-lag").dataset.value) > 0
    );
    assert.match(await page.innerText("#t-lag"), /^[\d.]+ ms$/);
    await page.waitForTimeout(3000); // a few more points, for the screenshot only
    await page.screenshot({ path: await screenshotPath("overview"), fullPage: true });

    // Backends: all up; a stopped one is red after one health round.
    await view(page, "backends");
    const card = (backend: string) => page.locator(`[data-backend="${backend}"]`);
    assert.equal(await card(b.address).getAttribute("data-tone"), "ok");
    await b.close();
    await lb.strom.health.checkAll();
    await page.waitForSelector(`[data-backend="${b.address}"][data-tone="bad"]`, {
      timeout: 3000,
    });
    assert.match(await card(b.address).innerText(), /Unresponsive/);
    assert.equal(await card(a.address).getAttribute("data-tone"), "ok");
    assert.equal(await card(dead).getAttribute("data-tone"), "bad", "the dead backend is red");
    await page.screenshot({ path: await screenshotPath("backends"), fullPage: true });

    // Config: the file holds secrets, so reading it asks for the token.
    await view(page, "config");
    await page.waitForSelector("#token-dialog[open]");
    await page.fill("#token-input", TOKEN);
    await page.click('#token-dialog button[value="ok"]');
    // A broken save is refused at its line while traffic keeps flowing.
    await page.waitForFunction(
      (text) => document.getElementById("cfg-text").value === text,
      lb.text,
    );
    const failuresBefore = load.failures.length;
    const broken = lb.text
      .replace("strategy = { RoundRobin = {} }", 'strategy = "Fastest"')
      .replace(`matcher = "PathPrefix('/app')"`, `matcher = "PathPrefix('/app')"\nretires = 2`);
    const lines = broken.split("\n");
    const strategyLine = lines.indexOf('strategy = "Fastest"') + 1;
    const typoLine = lines.indexOf("retires = 2") + 1;
    await page.fill("#cfg-text", broken);
    await page.click("#cfg-save");
    await page.locator("#cfg-problems li").first().waitFor();
    assert.deepEqual(await page.locator("#cfg-problems li").allInnerTexts(), [
      `line ${typoLine} backend_pools[0].retires: unknown key (did you mean "retries"?)`,
      `line ${strategyLine} backend_pools[0].strategy: unknown strategy "Fastest" ` +
      `(expected one of "RoundRobin", "Random", "IPHash", "LeastConnection", "StickyCookie", "WeightedRoundRobin", "PowerOfTwoChoices", "PeakEWMA")`,
    ]);
    for (const line of [typoLine, strategyLine]) {
      assert.equal(
        await page.getAttribute(`#cfg-gutter div[data-line="${line}"]`, "class"),
        "problem",
      );
    }
    assert.equal(await page.locator("#cfg-gutter div.problem").count(), 2);
    assert.equal(await page.innerText("#cfg-state"), "Not applied: 2 problems");
    assert.equal(await Deno.readTextFile(lb.path), lb.text, "the file is unchanged");
    assert.equal(lb.strom.runtime.generation, 1);
    await page.screenshot({ path: await screenshotPath("config-problem"), fullPage: true });

    // Fixed: saved, applied, the new generation shown.
    const fixed = lb.text + "\n# edited in the dashboard\n";
    await page.fill("#cfg-text", fixed);
    await page.click("#cfg-save");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent === "Saved and applied: generation 2"
    );
    assert.equal(lb.strom.runtime.generation, 2);
    assert.equal(await Deno.readTextFile(lb.path), fixed);
    assert.equal(await page.locator("#cfg-problems").isHidden(), true);
    assert.equal(await page.getAttribute("#generation", "data-value"), "2");
    await page.click("#cfg-reload");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent === "Reloaded from the file: generation 3"
    );
    assert.equal(lb.strom.runtime.generation, 3);
    // Applied with a warning: said, and listed like a problem, without failing the save.
    await page.fill("#cfg-text", `https_address = "127.0.0.1:1"\n${fixed}`);
    await page.click("#cfg-save");
    // (The file watch may see the written file first and apply it as a generation of its own.)
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent.startsWith("Saved and applied: generation")
    );
    assert.match(
      await page.innerText("#cfg-state"),
      /^Saved and applied: generation [45], with 1 warning$/,
    );
    assert.deepEqual(await page.locator("#cfg-problems li").allInnerTexts(), [
      "https_address: no certificates are configured, so Strom does not listen there " +
      "(an HttpsRedirector sends clients to port 443 of their host)",
    ]);
    assert.equal(await page.getAttribute("#cfg-state", "class"), "state warn");
    assert.equal(await page.getAttribute("#cfg-problems", "class"), "problems warnings");
    // A generation applied elsewhere: the unedited view follows it, without the old list.
    assert.ok((await lb.strom.reload()).ok);
    await page.waitForFunction(() =>
      document.getElementById("cfg-problems").hasAttribute("hidden")
    );
    await page.screenshot({ path: await screenshotPath("config-saved"), fullPage: true });
    assert.deepEqual(load.failures.slice(failuresBefore), [], "no request failed meanwhile");

    // Logs: the live tail, filtered by level and text on the server.
    await view(page, "logs");
    await page.waitForSelector("#log-lines li[data-level]");
    await page.waitForFunction(() =>
      document.getElementById("log-lines").innerText.includes(
        "Reloaded configuration (generation 3)",
      )
    );
    await page.screenshot({ path: await screenshotPath("logs"), fullPage: true });
    await page.fill("#log-q", "Unresponsive");
    await page.waitForFunction(() => {
      const items = [...document.querySelectorAll("#log-lines li[data-level]")];
      return items.length > 0 && items.every((i) => i.textContent.includes("Unresponsive"));
    });
    await page.fill("#log-q", "");
    await page.selectOption("#log-level", "error");
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#log-lines li")].every((i) =>
        i.dataset.level === "error" || i.classList.contains("empty")
      )
    );

    // After a while of traffic; then the dark theme and a phone.
    await view(page, "overview");
    await page.screenshot({ path: await screenshotPath("overview-end"), fullPage: true });
    await page.click("#theme"); // auto -> light
    await page.click("#theme"); // light -> dark
    assert.equal(await page.getAttribute("html", "data-theme"), "dark");
    await view(page, "overview");
    await page.screenshot({ path: await screenshotPath("overview-dark"), fullPage: true });
    await view(page, "backends");
    await page.screenshot({ path: await screenshotPath("backends-dark"), fullPage: true });
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const phoneErrors = watchErrors(phone);
    await phone.goto(`${lb.adminUrl}/#backends`);
    await phone.waitForSelector(`[data-backend="${b.address}"][data-tone="bad"]`);
    const overflow = await phone.evaluate(() =>
      document.documentElement.scrollWidth - document.documentElement.clientWidth
    );
    assert.equal(overflow, 0, "nothing wider than a phone's screen");
    await phone.screenshot({ path: await screenshotPath("phone-backends"), fullPage: true });
    await phone.goto(`${lb.adminUrl}/#overview`);
    await phone.waitForSelector("#c-lag canvas");
    await phone.evaluate(() => scrollTo(0, 0));
    await phone.screenshot({ path: await screenshotPath("phone-overview"), fullPage: true });

    assert.deepEqual([...errors, ...phoneErrors], [], "no errors in the page");
  },
});

/**
 * The Strom an admin app sees when its listener is not on loopback: only the
 * admin address (bound and configured) differs, so every API call needs the token. (Tests
 * stay on loopback; the app is then served on 127.0.0.1 as if it were remote.)
 */
function asRemote(strom: Strom): Strom {
  const read = (target: object, key: string | symbol) => {
    const value = Reflect.get(target, key);
    return typeof value === "function" ? value.bind(target) : value;
  };
  const runtime = () =>
    new Proxy(strom.runtime, {
      get: (target, key) =>
        key === "config"
          ? {
            ...target.config,
            adminAddress: { ...target.config.adminAddress, hostname: "10.0.0.1" },
          }
          : read(target, key),
    });
  return new Proxy(strom, {
    get: (target, key) =>
      key === "runtime" ? runtime() : key === "adminOnLoopback" ? false : read(target, key),
  });
}

Deno.test({
  name: "where every API call needs the token, the dashboard asks once and then shows everything",
  ...browserTest,
  async fn() {
    await using backend = startBackend();
    await using lb = await fileStrom(poolToml([backend.address]));
    await using remote = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      createAdminApp(asRemote(lb.strom)).fetch,
    );
    const url = `http://127.0.0.1:${remote.addr.port}/`;
    const refused = await fetch(`${url}api/status`);
    assert.equal(refused.status, 401, "the API needs the token");
    await refused.body?.cancel();
    await using browser = await openBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(url);
    await page.waitForSelector("#token-dialog[open]");
    await page.fill("#token-input", TOKEN);
    await page.click('#token-dialog button[value="ok"]');
    await page.waitForSelector("#link[data-state=live]");
    await page.waitForSelector(`[data-backend="${backend.address}"]`, { state: "attached" });
    await page.waitForFunction(() => document.getElementById("t-rps").dataset.value !== undefined);
    assert.equal(await page.getAttribute("#generation", "data-value"), "1");
    // The token stays for the tab: a reload asks no more.
    await page.reload();
    await page.waitForSelector("#link[data-state=live]");
    assert.equal(await page.locator("#token-dialog[open]").count(), 0);
    assert.deepEqual(errors, []);
  },
});

Deno.test({
  name: "a page load and live updates do not grow the page's JS heap or DOM without bound",
  ...browserTest,
  async fn() {
    await using backend = startBackend();
    await using lb = await fileStrom(
      poolToml([backend.address], { matcher: "PathPrefix('/app')" }),
    );
    await using browser = await openBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = watchErrors(page);
    const cdp = await page.context().newCDPSession(page);
    const measure = async () => {
      const heap = await heapSize(cdp);
      const dom = await cdp.send("Memory.getDOMCounters");
      return { ...heap, nodes: dom.nodes, listeners: dom.jsEventListeners };
    };
    // The server's 15 minutes of history, filled before any traffic (so every
    // sample is a true zero, only backdated): the page holds as many points from
    // its first load as it ever will, and any growth after the warm-up is a leak.
    const metrics = lb.strom.traffic.registry.snapshot();
    const now = Date.now();
    for (let t = now - 900_000; t < now - 2000; t += 1000) lb.strom.live.record(metrics, t);
    await using _traffic = traffic(lb.url, ["/app/x", "/missing"], 2);
    await page.goto(`${lb.adminUrl}/`);
    // The Config view reads the file, which needs the token.
    await page.evaluate((token) => sessionStorage.setItem("strom.adminToken", token), TOKEN);
    await page.waitForSelector("#link[data-state=live]");
    // Warm up: every view once, so first-use allocations are not counted as growth.
    for (const name of ["backends", "config", "logs", "overview"]) await view(page, name);
    await page.waitForTimeout(2000);
    const start = await measure();
    const end = Date.now() + SOAK_SECONDS * 1000;
    const views = ["backends", "logs", "overview"];
    for (let i = 0; Date.now() < end; i++) {
      await view(page, views[i % views.length]);
      await page.waitForTimeout(Math.min(3000, Math.max(0, end - Date.now())));
    }
    await view(page, "overview");
    const after = await measure();
    const grown = after.js - start.js;
    console.log(
      `dashboard over ${SOAK_SECONDS} s, in bytes: JS ${start.js} -> ${after.js}, ` +
        `compiled code ${start.code} -> ${after.code}, browser objects ${start.native} -> ${after.native}; ` +
        `DOM nodes ${start.nodes} -> ${after.nodes}, listeners ${start.listeners} -> ${after.listeners}`,
    );
    // What the dashboard's code keeps is measured; compiled code (growing while
    // V8 optimizes hot paths) and the browser's own records (one history entry
    // per view switch, timeline entries) are not. A leak of one chart, page of
    // log lines or pools payload per update is far more than this bound; the
    // steady state measured is within a few kilobytes of zero.
    assert.ok(grown < 50_000, `the page's JS objects grew by ${grown} bytes`);
    assert.ok(after.nodes <= start.nodes + 50, `DOM nodes ${start.nodes} -> ${after.nodes}`);
    assert.ok(
      after.listeners <= start.listeners,
      `listeners ${start.listeners} -> ${after.listeners}`,
    );
    assert.deepEqual(errors, []);
  },
});

Deno.test({
  name:
    "the Config view never saves over a newer config, follows reloads, keeps CRLF, shows a broken file",
  ...browserTest,
  async fn() {
    await using backend = startBackend();
    await using lb = await fileStrom(poolToml([backend.address]));
    // Written with Windows line ends, as some editors save it.
    const crlfText = lb.text.replaceAll("\n", "\r\n");
    await Deno.writeTextFile(lb.path, crlfText);
    assert.ok((await lb.strom.reload()).ok);
    await using browser = await openBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(`${lb.adminUrl}/`);
    await page.evaluate((token) => sessionStorage.setItem("strom.adminToken", token), TOKEN);
    await page.waitForSelector("#link[data-state=live]");
    await view(page, "config");
    const editor = () => document.getElementById("cfg-text").value;
    await page.waitForFunction(
      (text) => document.getElementById("cfg-text").value === text,
      lb.text,
    );
    // Typing and undoing leaves it unedited, though the file has CRLF.
    await page.type("#cfg-text", "x");
    await page.keyboard.press("Backspace");
    assert.equal(await page.innerText("#cfg-state"), "");

    // Another operator changes the config: the unedited view follows.
    const other = crlfText + "# by another operator\r\n";
    await Deno.writeTextFile(lb.path, other);
    assert.ok((await lb.strom.reload()).ok);
    await page.waitForFunction(
      (text) => document.getElementById("cfg-text").value === text,
      other.replaceAll("\r\n", "\n"),
    );

    // An edit begun, then someone else saves: this save is refused, nothing overwritten.
    await page.fill("#cfg-text", (await page.evaluate(editor)) + "# mine\n");
    const theirs = other + "# theirs\r\n";
    await Deno.writeTextFile(lb.path, theirs);
    assert.ok((await lb.strom.reload()).ok);
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent.startsWith("The running config changed")
    );
    await page.click("#cfg-save");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent ===
        "Not applied: the config changed since it was loaded (Revert loads it)"
    );
    assert.equal(await Deno.readTextFile(lb.path), theirs, "their save stands");
    // Revert loads theirs; an edit saved then keeps the file's CRLF line ends.
    await page.click("#cfg-revert");
    await page.waitForFunction(
      (text) => document.getElementById("cfg-text").value === text,
      theirs.replaceAll("\r\n", "\n"),
    );
    await page.fill("#cfg-text", (await page.evaluate(editor)) + "# mine again\n");
    await page.click("#cfg-save");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent.startsWith("Saved and applied")
    );
    assert.equal(await Deno.readTextFile(lb.path), theirs + "# mine again\r\n");

    // A broken file: Reload from file never replaces unsaved edits...
    const broken = "# one\n# two\n" + lb.text.replace("RoundRobin = {}", "Bogus = {}");
    await Deno.writeTextFile(lb.path, broken);
    const edits = (await page.evaluate(editor)) + "# unsaved\n";
    await page.fill("#cfg-text", edits);
    await page.click("#cfg-reload");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent.endsWith("(not shown: your edits are kept)")
    );
    assert.equal(await page.evaluate(editor), edits);
    // ...and without edits shows the file, with its problem at its line.
    await page.click("#cfg-revert");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent === "Showing the running config"
    );
    await page.click("#cfg-reload");
    await page.waitForFunction(
      (text) => document.getElementById("cfg-text").value === text,
      broken,
    );
    const line = broken.split("\n").findIndex((l) => l.includes("Bogus")) + 1;
    assert.equal(
      await page.getAttribute(`#cfg-gutter div[data-line="${line}"]`, "class"),
      "problem",
    );
    assert.match(await page.innerText("#cfg-state"), /the file is shown, not the running config/);
    assert.deepEqual(errors, []);
  },
});

Deno.test({
  name: "a save applied but for what needs a restart says so in the Config view",
  ...browserTest,
  async fn() {
    await using backend = startBackend();
    await using lb = await fileStrom(poolToml([backend.address]));
    await using browser = await openBrowser();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = watchErrors(page);
    await page.goto(`${lb.adminUrl}/`);
    await view(page, "config");
    await page.waitForSelector("#token-dialog[open]");
    await page.fill("#token-input", TOKEN);
    await page.click('#token-dialog button[value="ok"]');
    await page.waitForFunction(() =>
      document.getElementById("cfg-text").value.includes("admin_token")
    );
    await page.fill("#cfg-text", `workers = 2\n${lb.text}`);
    await page.click("#cfg-save");
    await page.waitForFunction(() =>
      document.getElementById("cfg-state").textContent.startsWith("Saved and applied")
    );
    assert.equal(
      await page.innerText("#cfg-state"),
      "Saved and applied: generation 2, except workers",
    );
    assert.deepEqual(await page.locator("#cfg-problems li").allInnerTexts(), [
      "workers: a restart is required for workers = 2 to take effect (running 1)",
    ]);
    assert.equal(await page.getAttribute("#cfg-state", "class"), "state warn");
    assert.deepEqual(errors, []);
  },
});
