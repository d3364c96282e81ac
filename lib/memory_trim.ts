// Memory trimming: returns to the operating system what malloc keeps after it
// was freed. Under load, V8's compiler threads and the runtime's I/O threads
// allocate and free megabytes through glibc's malloc, which keeps the freed
// pages resident in its arenas (measured: one malloc_trim(0) under load gave
// back 13 MB of 98 MB, and RSS grew back by 3 MB in the next 10 s). HAProxy
// trims the same way (its `no-memory-trimming` turns it off). The call runs on
// a thread of the runtime's blocking pool, not on the JavaScript thread: it
// took 0.9-2.7 ms on average under load.

import type { Clock } from "./clock.ts";
import type { DropPages } from "./file_pages.ts";
import type { Logger } from "./log.ts";

/** Returns freed malloc memory to the operating system; resolves when done. */
export type Trim = () => Promise<void>;

let opened: Trim | string | undefined;

/** The process's `malloc_trim` (loaded once), or why there is none here. */
export function processMallocTrim(): Trim | string {
  return opened ??= openMallocTrim();
}

/** glibc's `malloc_trim(0)` through FFI, or why there is none here. */
function openMallocTrim(): Trim | string {
  if (Deno.build.os !== "linux") return `it needs Linux with glibc (this is ${Deno.build.os})`;
  try {
    const { symbols } = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
    });
    return async () => {
      await symbols.malloc_trim(0n);
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return "it needs --allow-ffi";
    }
    return `glibc's malloc_trim is not available: ${e instanceof Error ? e.message : e}`;
  }
}

export interface MemoryTrimmerOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly trim: Trim;
  /**
   * Drops the runtime binary's clean file pages (lib/file_pages.ts): at start
   * (once start-up is over, before load comes), then with a trim every
   * PAGE_DROP_EVERY_MS. None: not done.
   */
  readonly dropPages?: DropPages;
  /** The live `memory_trim_interval` (read before every wait); 0: off for now. */
  readonly intervalMs: () => number;
}

/**
 * How often the binary's pages are dropped again. Pages touched since (by V8
 * optimizing the hot code when load begins, or by a reload) are not needed
 * again; the ones in use come back at the cost of a minor fault each, so not
 * every second.
 */
export const PAGE_DROP_EVERY_MS = 60_000;

/** While off, how often the interval is looked at again (a reload may turn trimming on). */
const OFF_RECHECK_MS = 1000;

/** Calls `trim` every `intervalMs()` until stop(); one call at a time. */
export class MemoryTrimmer {
  readonly #o: MemoryTrimmerOptions;
  #timer: number | undefined;
  #running: Promise<void> | null = null;
  #stopped = false;
  /** When the pages were last dropped (null: not yet; dropping stopped: Infinity). */
  #droppedAt: number | null = null;

  constructor(options: MemoryTrimmerOptions) {
    this.#o = options;
  }

  /** Starts: the binary's pages are dropped at once (start-up is over), then trims follow. */
  start(): void {
    if (this.#o.dropPages === undefined || !(this.#o.intervalMs() > 0)) return this.#schedule();
    this.#running = this.#dropPages().finally(() => {
      this.#running = null;
      this.#schedule();
    });
  }

  /** Stops; resolves once a trim in progress has returned. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    const interval = this.#o.intervalMs();
    this.#timer = this.#o.clock.setTimeout(async () => {
      this.#timer = undefined;
      if (interval > 0 && this.#o.intervalMs() > 0) {
        this.#running = this.#o.trim();
        try {
          await this.#running;
        } catch (e) {
          this.#o.log.warn(`Memory trimming stopped: ${e instanceof Error ? e.message : e}`);
          this.#stopped = true;
          return;
        } finally {
          this.#running = null;
        }
        this.#running = this.#dropPages();
        await this.#running;
        this.#running = null;
      }
      this.#schedule();
    }, interval > 0 ? interval : OFF_RECHECK_MS);
  }

  /** Drops the binary's file pages when due; a failure stops that, not trimming. */
  async #dropPages(): Promise<void> {
    const { dropPages, clock } = this.#o;
    if (dropPages === undefined || this.#stopped) return;
    const now = clock.now();
    if (this.#droppedAt !== null && now - this.#droppedAt < PAGE_DROP_EVERY_MS) return;
    this.#droppedAt = now;
    try {
      await dropPages();
    } catch (e) {
      this.#droppedAt = Infinity;
      this.#o.log.warn(
        `Dropping the binary's unused pages stopped: ${e instanceof Error ? e.message : e}`,
      );
    }
  }
}
