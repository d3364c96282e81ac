// Dropping the binary's clean file pages: which mappings qualify (from smaps
// text), and the real drop through FFI where this machine has it.

import assert from "node:assert/strict";
import { cleanFileRanges, type DropPages, processPageDrop } from "../../lib/file_pages.ts";
import { PERMISSIONS } from "../../scripts/build.ts";

const BIN = "/opt/deno dir/deno";

/** A mapping's smaps entry with its Anonymous field. */
function entry(
  range: string,
  perms: string,
  path: string,
  anonymousKb: number,
  offset = 0,
): string {
  return [
    `${range} ${perms} ${
      offset.toString(16).padStart(8, "0")
    } fe:00 5308748                    ${path}`,
    "Size:              41496 kB",
    "Rss:               20000 kB",
    `Anonymous:         ${anonymousKb} kB`,
    "VmFlags: rd mr mw me",
  ].join("\n");
}

Deno.test("cleanFileRanges takes the binary's image's read-only mappings with no page copied on write", () => {
  const smaps = [
    entry("55cf3e6b1000-55cf3e6b2000", "r--p", "/usr/lib/other.so", 0), // another file, before
    entry("55cf3e6b2000-55cf40240000", "r--p", BIN, 0), // the image begins: read-only data
    entry("55cf404b6000-55cf441aa000", "r-xp", BIN, 0, 0x1b8e000), // code
    entry("55cf441aa000-55cf4441c000", "rw-p", BIN, 0, 0x5881000), // writable data: never
    entry("55cf4442c000-55cf4442d000", "r--p", BIN, 4, 0x5b02000), // RELRO: written before it was protected
    entry("55cf4442d000-55cf4442e000", "r--p", BIN, 0, 0x5b03000), // the image's last mapping
    entry("55cf4442e000-55cf44456000", "rw-p", "", 0), // its .bss: anonymous
    entry("7f48e3dc0000-7f48e3fe6000", "r-xp", "/usr/lib/libc.so.6", 0), // another file
    entry("7f48e4000000-7f48e4001000", "r--p", `${BIN} (deleted)`, 0), // a replaced binary
    entry("7f48e6000000-7f48e6002000", "r-xp", BIN, 0, 0x35cf000), // code V8 mapped again: may go
    entry("7f48e7000000-7f48e7002000", "r--p", BIN, 0), // not the image either (after it)
  ].join("\n");
  assert.deepEqual(cleanFileRanges(smaps, BIN), [
    { start: 0x55cf3e6b2000n, length: 0x55cf40240000n - 0x55cf3e6b2000n },
    { start: 0x55cf404b6000n, length: 0x55cf441aa000n - 0x55cf404b6000n },
    { start: 0x55cf4442d000n, length: 0x1000n },
  ]);
  // A mapping whose entry has no Anonymous field is not taken.
  const truncated = `55cf3e6b2000-55cf40240000 r--p 00000000 fe:00 1 ${BIN}\nSize: 4 kB\n` +
    entry("55cf404b6000-55cf441aa000", "rw-p", BIN, 0, 0x1000);
  assert.deepEqual(cleanFileRanges(truncated, BIN), []);
  // No image (the binary mapped only elsewhere): nothing.
  assert.deepEqual(
    cleanFileRanges(entry("7f48e6000000-7f48e6002000", "r-xp", BIN, 0, 0x1000), BIN),
    [],
  );
  assert.deepEqual(cleanFileRanges("", BIN), []);
});

/** This process's resident file pages, in KiB. */
function rssFileKb(): number {
  const match = Deno.readTextFileSync("/proc/self/status").match(/^RssFile:\s+(\d+) kB/m);
  return Number(match?.[1]);
}

Deno.test({
  name: "processPageDrop() unmaps the binary's clean pages, and the process runs on",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const drop = processPageDrop();
    assert.equal(processPageDrop(), drop);
    assert.equal(typeof drop, "function", String(drop));
    const before = rssFileKb();
    const advised = await (drop as DropPages)();
    const after = rssFileKb();
    assert.ok(advised > 10 * 1024 * 1024, `advised ${advised} bytes`);
    // The test runner has touched far more of the binary than this test needs again.
    assert.ok(after < before - 4096, `RssFile ${before} kB before, ${after} kB after`);
    // Code and read-only data of the binary fault back in as they are used.
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("still here"));
    assert.equal(new Uint8Array(digest).length, 32);
    assert.equal(JSON.parse(JSON.stringify({ a: [1, 2] })).a[1], 2);
  },
});

const MODULE = new URL("../../lib/file_pages.ts", import.meta.url).href;

/** Runs a script (after a line that sets `drop` to processPageDrop()) with `perms`; its output. */
async function runDropScript(lines: string[], perms: string[]): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/drop.ts`;
    const first = `const drop = (await import(${JSON.stringify(MODULE)})).processPageDrop();`;
    await Deno.writeTextFile(script, [first, ...lines].join("\n"));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", ...perms, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("processPageDrop() says why it cannot drop without FFI permission, instead of throwing", async () => {
  for (const perms of [[], ["--allow-read"], ["--allow-ffi"], ["--allow-read", "--allow-ffi"]]) {
    const said = await runDropScript(
      ['console.log(typeof drop === "string" ? drop : "a function");'],
      perms,
    );
    const expected = perms.includes("--allow-ffi") ? "a function" : "it needs --allow-ffi";
    if (Deno.build.os === "linux") assert.equal(said, expected, `${perms}`);
  }
});

Deno.test({
  name: "processPageDrop() works with the permissions Strom runs with (not --allow-all)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // The script reads its RssFile through `cat`: Deno lets only --allow-all read /proc/self.
    const said = await runDropScript([
      "async function rss() {",
      '  const out = await new Deno.Command("cat", { args: [`/proc/${Deno.pid}/status`] }).output();',
      "  return Number(/^RssFile:\\s+(\\d+)/m.exec(new TextDecoder().decode(out.stdout))?.[1]);",
      "}",
      "const before = await rss();",
      "const advised = await drop();",
      "console.log(JSON.stringify({ advised, before, after: await rss() }));",
    ], [...PERMISSIONS, "--allow-run"]);
    const { advised, before, after } = JSON.parse(said);
    assert.ok(advised > 10 * 1024 * 1024, `advised ${advised} bytes`);
    assert.ok(after < before - 4096, `RssFile ${before} kB before, ${after} kB after`);
  },
});
