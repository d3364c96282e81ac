// Dropping the binary's clean file pages: which mappings qualify (from smaps
// text), and the real drop through FFI where this machine has it.

import assert from "node:assert/strict";
import { cleanFileRanges, type DropPages, processPageDrop } from "../../lib/file_pages.ts";

const BIN = "/opt/deno dir/deno";

/** A mapping's smaps entry with its Anonymous field. */
function entry(range: string, perms: string, path: string, anonymousKb: number): string {
  return [
    `${range} ${perms} 00000000 fe:00 5308748                    ${path}`,
    "Size:              41496 kB",
    "Rss:               20000 kB",
    `Anonymous:         ${anonymousKb} kB`,
    "VmFlags: rd mr mw me",
  ].join("\n");
}

Deno.test("cleanFileRanges takes the binary's read-only mappings with no page copied on write", () => {
  const smaps = [
    entry("55cf3e6b2000-55cf40240000", "r--p", BIN, 0), // read-only data
    entry("55cf404b6000-55cf441aa000", "r-xp", BIN, 0), // code
    entry("55cf441aa000-55cf4441c000", "rw-p", BIN, 0), // writable data: never
    entry("55cf4442c000-55cf4442d000", "r--p", BIN, 4), // RELRO: written before it was protected
    entry("7f48e3dc0000-7f48e3fe6000", "r-xp", "/usr/lib/libc.so.6", 0), // another file
    entry("7f48e4000000-7f48e4001000", "r--p", `${BIN} (deleted)`, 0), // a replaced binary
    entry("7f48e5000000-7f48e5021000", "rw-p", "", 0), // anonymous memory
    entry("7f48e6000000-7f48e6002000", "r-xp", BIN, 0), // code remapped elsewhere
  ].join("\n");
  assert.deepEqual(cleanFileRanges(smaps, BIN), [
    { start: 0x55cf3e6b2000n, length: 0x55cf40240000n - 0x55cf3e6b2000n },
    { start: 0x55cf404b6000n, length: 0x55cf441aa000n - 0x55cf404b6000n },
    { start: 0x7f48e6000000n, length: 0x2000n },
  ]);
  // A mapping whose entry has no Anonymous field is not taken.
  const truncated = `55cf3e6b2000-55cf40240000 r--p 00000000 fe:00 1 ${BIN}\nSize: 4 kB\n` +
    entry("55cf404b6000-55cf441aa000", "rw-p", BIN, 0);
  assert.deepEqual(cleanFileRanges(truncated, BIN), []);
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
