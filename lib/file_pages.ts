// Dropping the clean file pages of the runtime's own binary from the process's
// resident set. Starting Deno touches much of its ~100 MB executable (V8's
// snapshot, the module loader, the TypeScript transpiler, npm resolution) and
// every page touched stays mapped, so it counts in RSS although Strom never
// needs it again: ~40 MB of an idle Strom's ~60 MB were such pages, against
// ~20 MB that serving traffic uses. `madvise(MADV_DONTNEED)` on the binary's
// read-only mappings unmaps them; they stay in the page cache, and the ones in
// use fault back in from it on their next use (a minor fault: no disk read unless
// memory pressure evicted them meanwhile).
//
// Only mappings that can hold nothing but the file's bytes are advised: not
// writable, and with no page copied on write (`Anonymous: 0 kB` in smaps). A
// private page that was written (relocations the loader made before it
// protected them, RELRO) would lose that write and turn back into the file's
// bytes, so a mapping with any such page is left alone.

import { PROC_READ_SYMBOLS, ProcReader } from "./net/proc_files.ts";

/** Drops the binary's clean file pages; resolves to the bytes of the ranges advised. */
export type DropPages = () => Promise<number>;

/** A part of the address space, as `madvise` takes it. */
export interface PageRange {
  readonly start: bigint;
  readonly length: bigint;
}

const MAPPING = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \S+ *(.*)$/;
const ANONYMOUS = /^Anonymous:\s+(\d+) kB$/;

/**
 * The mappings of `file`'s loaded image in `smaps` (the text of
 * /proc/<pid>/smaps) that are not writable and have no anonymous
 * (copied-on-write) page. The image is the run of mappings of `file` that
 * begins at file offset 0: it stays mapped as long as the process lives, so
 * its addresses cannot be given to other memory between this read and the
 * `madvise`. Other mappings of the file (V8 maps its built-ins' code again
 * elsewhere, for a worker's isolate too) may go away meanwhile and are left.
 */
export function cleanFileRanges(smaps: string, file: string): PageRange[] {
  const ranges: PageRange[] = [];
  let image: "before" | "in" | "after" = "before";
  let candidate: PageRange | null = null;
  for (const line of smaps.split("\n")) {
    const mapping = MAPPING.exec(line);
    if (mapping !== null) {
      const [, from, to, perms, offset, path] = mapping;
      if (image === "before" && path === file && /^0+$/.test(offset)) image = "in";
      else if (image === "in" && path !== file) image = "after";
      candidate = image === "in" && !perms.includes("w")
        ? { start: BigInt(`0x${from}`), length: BigInt(`0x${to}`) - BigInt(`0x${from}`) }
        : null;
      continue;
    }
    if (candidate === null) continue;
    const anonymous = ANONYMOUS.exec(line);
    if (anonymous === null) continue;
    if (anonymous[1] === "0") ranges.push(candidate);
    candidate = null; // one Anonymous line per mapping
  }
  return ranges;
}

const MADV_DONTNEED = 4;

let opened: DropPages | string | undefined;

/** The process's page drop (loaded once), or why there is none here. */
export function processPageDrop(): DropPages | string {
  return opened ??= openPageDrop();
}

const LIBC = {
  ...PROC_READ_SYMBOLS,
  // On a thread of the runtime's blocking pool: it unmaps tens of MB.
  madvise: { parameters: ["usize", "usize", "i32"], result: "i32", nonblocking: true },
} as const;

function openPageDrop(): DropPages | string {
  if (Deno.build.os !== "linux") return `it needs Linux (this is ${Deno.build.os})`;
  let libc: Deno.DynamicLibrary<typeof LIBC>["symbols"];
  try {
    libc = Deno.dlopen("libc.so.6", LIBC).symbols;
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return "it needs --allow-ffi";
    }
    return `madvise is not available: ${e instanceof Error ? e.message : e}`;
  }
  const binary = Deno.execPath();
  const proc = new ProcReader(libc);
  const decoder = new TextDecoder();
  return async () => {
    // Read each time: the loader's and V8's mappings are settled only after start.
    const smaps = await proc.read("/proc/self/smaps");
    if (smaps === null) throw new Error("cannot read /proc/self/smaps");
    let advised = 0;
    for (const { start, length } of cleanFileRanges(decoder.decode(smaps), binary)) {
      if ((await libc.madvise(start, length, MADV_DONTNEED)) === 0) advised += Number(length);
    }
    return advised;
  };
}
