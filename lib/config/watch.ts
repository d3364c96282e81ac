// Watches a folder for changes to named files (editors that save by renaming
// replace the file, which a watch on the file itself would miss), debounces
// bursts per file, and for the config file reloads only when the text really
// changed: one save, one reload.

import { basename, dirname, resolve } from "node:path";
import { type Clock, systemClock } from "../clock.ts";

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
  /** The text currently in use (a change to the same text is ignored). */
  readonly currentText: () => string | null;
  /** Called with the file's new text. */
  readonly onChange: (text: string) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * Starts watching the config file; returns a function that stops it. A config
 * that is a symbolic link changes without an event on its own name (Kubernetes
 * mounts a ConfigMap as `strom.toml -> ..data/strom.toml` and swaps the `..data`
 * link): its folder is watched for any change, and the link's target folder for
 * the target, and the text read again decides.
 */
export function watchConfig(path: string, options: WatchOptions): () => void {
  const file = resolve(path);
  const settle = async () => {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      return; // removed for now; a later create brings it back
    }
    if (text !== options.currentText()) options.onChange(text);
  };
  const watchOptions = { debounceMs: options.debounceMs ?? 200, onError: options.onError };
  if (!isSymlink(file)) {
    return watchFolder(dirname(file), [basename(file)], () => void settle(), watchOptions);
  }
  const stops = [watchFolder(dirname(file), null, () => void settle(), watchOptions)];
  try {
    const target = Deno.realPathSync(file);
    if (dirname(target) !== dirname(file)) {
      stops.push(
        watchFolder(dirname(target), [basename(target)], () => void settle(), watchOptions),
      );
    }
  } catch { /* a dangling link: its folder is watched */ }
  return () => stops.forEach((stop) => stop());
}

function isSymlink(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSymlink;
  } catch {
    return false;
  }
}
