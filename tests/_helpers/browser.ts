// A real browser for the dashboard tests: Debian's chromium driven by
// playwright-core, headless, with a fresh profile, and nothing off loopback.

import { type Browser, type CDPSession, chromium } from "playwright-core";
import { findProgram } from "./programs.ts";

/** Path of Debian's chromium, or null (the tests then skip, naming the package). */
export const CHROMIUM = findProgram("chromium");

if (CHROMIUM === null) {
  console.log('Skipping the dashboard browser tests: install the Debian package "chromium"');
}

/** Where the browser tests put their screenshots (git-ignored). */
export const OUTPUT_DIR = new URL("../output/dashboard/", import.meta.url);

/** Starts headless chromium; closed on dispose. */
export async function openBrowser(): Promise<Browser & AsyncDisposable> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM!,
    headless: true,
    // Chromium's own sandbox cannot start as root; the machine has no network
    // beyond loopback, so its background services only add refused connections.
    args: [
      ...(Deno.uid() === 0 ? ["--no-sandbox"] : []),
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  return Object.assign(browser, { [Symbol.asyncDispose]: () => browser.close() });
}

/** The screenshot file `name`.png in OUTPUT_DIR (created on first use). */
export async function screenshotPath(name: string): Promise<string> {
  await Deno.mkdir(OUTPUT_DIR, { recursive: true });
  return new URL(`${name}.png`, OUTPUT_DIR).pathname;
}

/** What a page's heap holds after a full GC, in bytes, from a heap snapshot. */
export interface HeapSize {
  /** JavaScript objects, arrays, strings and closures: what the page's own code keeps. */
  readonly js: number;
  /** Compiled code and its feedback: grows as V8 optimizes hot functions, then levels off. */
  readonly code: number;
  /**
   * The browser's own objects: DOM and layout, and bookkeeping such as history
   * entries, performance timeline entries and DevTools' network records.
   */
  readonly native: number;
}

/** Collects garbage, takes a heap snapshot over CDP and sums its nodes' own sizes by kind. */
export async function heapSize(cdp: CDPSession): Promise<HeapSize> {
  await cdp.send("HeapProfiler.collectGarbage");
  const chunks: string[] = [];
  const onChunk = (e: { chunk: string }) => chunks.push(e.chunk);
  cdp.on("HeapProfiler.addHeapSnapshotChunk", onChunk);
  await cdp.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  cdp.off("HeapProfiler.addHeapSnapshotChunk", onChunk);
  const snapshot = JSON.parse(chunks.join(""));
  const fields: string[] = snapshot.snapshot.meta.node_fields;
  const typeNames: string[] = snapshot.snapshot.meta.node_types[0];
  const type = fields.indexOf("type");
  const size = fields.indexOf("self_size");
  const sizes = { js: 0, code: 0, native: 0 };
  const nodes: number[] = snapshot.nodes;
  for (let i = 0; i < nodes.length; i += fields.length) {
    const kind = typeNames[nodes[i + type]];
    sizes[kind === "code" ? "code" : kind === "native" ? "native" : "js"] += nodes[i + size];
  }
  return sizes;
}
