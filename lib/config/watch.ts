// Watches a folder for changes to named files (editors that save by renaming
// replace the file, which a watch on the file itself would miss), debounces
// bursts per file, and for the config file reloads only when the text really
// changed: one save, one reload.

import { basename, dirname, resolve } from "node:path";
import { type Clock, systemClock } from "../clock.ts";
import { decodeConfig, readConfigBytes, readConfigBytesSync } from "./decode.ts";
import type { Problem } from "./errors.ts";

/** Options for watchFolder. */
export interface FolderWatchOptions {
  /** Quiet time after a file's last event before `onSettled` is called for it. */
  readonly debounceMs: number;
  readonly clock?: Clock;
  /** The watch ended with an error (it was running). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Watches `folder` (not its subfolders) and calls `onSettled(name)` once a file
 * of `names` (null: any) was written, created, renamed or removed and then left
 * alone for `debounceMs`. Throws when the folder cannot be watched; returns the
 * function that stops watching, whose promise settles once the runtime let go
 * of the watch. (Deno 2.9.6 shares one OS watch per path among its watchers and
 * drops it only then: a watch made on the same path before that joins the old
 * one, which stays on the old folder if the path now names another.)
 */
export function watchFolder(
  folder: string,
  names: readonly string[] | null,
  onSettled: (name: string) => void,
  { debounceMs, clock = systemClock, onError }: FolderWatchOptions,
): () => Promise<void> {
  const watched = names === null ? null : new Set(names);
  const watcher = Deno.watchFs(folder, { recursive: false });
  const timers = new Map<string, number>();
  const loop = (async () => {
    for await (const event of watcher) {
      for (const path of event.paths) {
        const name = basename(path);
        if (watched !== null && !watched.has(name)) continue;
        const pending = timers.get(name);
        if (pending !== undefined) clock.clearTimeout(pending);
        timers.set(
          name,
          clock.setTimeout(() => {
            timers.delete(name);
            onSettled(name);
          }, debounceMs),
        );
      }
    }
  })().catch((e) => onError?.(e));
  return () => {
    for (const timer of timers.values()) clock.clearTimeout(timer);
    timers.clear();
    try {
      watcher.close();
    } catch { /* closed */ }
    return loop;
  };
}

/** Options for watchConfig. */
export interface WatchOptions {
  /** Quiet time after the last event before reading the file. Default 200 ms. */
  readonly debounceMs?: number;
  /** The text Strom was started from, read once: the file is compared with it at once. */
  readonly currentText: () => string | null;
  /**
   * Called with the file's new text, once per change of what the file says
   * (the receiver decides whether it differs from what runs by then). It may
   * resolve to whether the text was taken: a refused one is offered again when
   * the file is saved again, even unchanged (the fault may have been outside it).
   */
  readonly onChange: (text: string) => void | Promise<boolean>;
  /** The file changed to bytes that are not UTF-8 text (so no TOML either). */
  readonly onInvalid?: (problem: Problem) => void;
  readonly onError?: (error: unknown) => void;
  /** How often the folder is checked for having been replaced. Default 1000 ms. */
  readonly recheckMs?: number;
  readonly clock?: Clock;
}

/**
 * Whether `path` can be watched as a config file: a regular file (or a link to
 * one), or none yet. A pipe (`--config <(envsubst < tmpl)`, /dev/stdin) was
 * read once at start and cannot be read again.
 */
export function watchable(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return true; // missing for now: a later create brings it
  }
}

/**
 * Starts watching the config file; returns a function that stops it. The file
 * is read once at once, so a save made while Strom started is not missed.
 * A config that is a symbolic link changes without an event on its own name
 * (Kubernetes mounts a ConfigMap as `strom.toml -> ..data/strom.toml` and swaps
 * the `..data` link): then any change in its folder counts, and the folder of
 * the link's target is watched too, followed when the link is pointed elsewhere.
 * A change is a text unlike the last one read (not unlike the one applied: a
 * save undone while the reload of the first one is still being built must
 * still be reloaded). A path that is not a regular file is not watched.
 */
export function watchConfig(path: string, options: WatchOptions): () => void {
  const file = resolve(path);
  if (!watchable(file)) return () => {};
  const name = basename(file);
  const watchOptions = { debounceMs: options.debounceMs ?? 200, onError: options.onError };
  /** The last text read and offered (null: none, or it was not text). */
  let last = options.currentText();
  /** The last text offered and refused: saving it again offers it again. */
  let refused: string | null = null;
  let target: { readonly path: string; readonly stop: () => Promise<void> } | null = null;
  let stopped = false;
  let invalid = false;
  const follow = () => {
    let now: string | null = null;
    if (isSymlink(file)) {
      try {
        now = Deno.realPathSync(file);
      } catch { /* a dangling link: its folder is watched */ }
    }
    if (now !== null && dirname(now) === dirname(file)) now = null; // seen by the folder's watch
    if (now === (target?.path ?? null)) return;
    void target?.stop();
    target = now === null
      ? null
      : { path: now, stop: watchFolder(dirname(now), [basename(now)], onSaved, watchOptions) };
  };
  /** `saved`: the event was on the file itself (a save), not elsewhere in its folder. */
  const consider = (bytes: Uint8Array, saved: boolean) => {
    const text = decodeConfig(bytes);
    if (typeof text !== "string") {
      last = null; // whatever comes next is a change
      if (!invalid) options.onInvalid?.(text); // once, until it is text again
      invalid = true;
      return;
    }
    invalid = false;
    if (text === last && !(saved && text === refused)) return;
    last = text;
    refused = null;
    const taken = options.onChange(text);
    if (taken instanceof Promise) {
      void taken.then((ok) => {
        if (!ok && last === text) refused = text;
      }, () => {});
    }
  };
  const settle = async (saved: boolean) => {
    if (stopped) return;
    follow();
    let bytes: Uint8Array;
    try {
      bytes = await readConfigBytes(file);
    } catch {
      return; // removed for now; a later create brings it back
    }
    if (!stopped) consider(bytes, saved);
  };
  const onSaved = () => void settle(true);
  // The folder's watch follows the folder it named when made: one replaced (a deploy renaming
  // a new folder into place, `rm -rf` and a new one, a swapped `current` link above the
  // file) would leave it on the old one, or on none, and saves unseen for good. So the
  // folder's identity is checked every recheckMs, and the watch made anew when it changed.
  const folder = dirname(file);
  let own: (() => Promise<void>) | null = null;
  let ownIdentity: string | null = null;
  const arm = () => {
    ownIdentity = identity(folder);
    try {
      own = watchFolder(folder, null, (changed) => {
        if (changed === name) void settle(true);
        else if (isSymlink(file)) void settle(false);
      }, watchOptions);
    } catch {
      own = null; // gone for now: the next check tries again
    }
  };
  /** Runs only from `schedule`, one at a time. */
  const recheck = async () => {
    if (stopped || identity(folder) === ownIdentity) return;
    const old = own;
    own = null;
    await old?.(); // Deno would join a new watch on the same path to the old one
    if (stopped) return;
    arm();
    void settle(false);
  };
  const clock = options.clock ?? systemClock;
  let timer: number | undefined;
  const schedule = () => {
    timer = clock.setTimeout(() => void recheck().finally(schedule), options.recheckMs ?? 1000);
  };
  arm();
  schedule();
  // At once, before the watch's first event: what the file says now.
  follow();
  try {
    consider(readConfigBytesSync(file), false);
  } catch { /* removed for now */ }
  return () => {
    stopped = true;
    clock.clearTimeout(timer!);
    void own?.();
    void target?.stop();
  };
}

/**
 * What a folder is now, through links, or null when it is missing: device,
 * inode and birth time (a folder removed and made again often gets the same
 * inode at once).
 */
function identity(folder: string): string | null {
  try {
    const info = Deno.statSync(folder);
    return `${info.dev}:${info.ino}:${info.birthtime?.getTime()}`;
  } catch {
    return null;
  }
}

function isSymlink(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSymlink;
  } catch {
    return false;
  }
}
