// Watches the config file's folder (editors that save by renaming replace the
// file, which a watch on the file itself would miss), debounces bursts, and
// reloads only when the text really changed: one save, one reload.

import { basename, dirname, resolve } from "node:path";

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

/** Starts watching; returns a function that stops it. */
export function watchConfig(path: string, options: WatchOptions): () => void {
  const file = resolve(path);
  const name = basename(file);
  const watcher = Deno.watchFs(dirname(file), { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settle = async () => {
    timer = undefined;
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      return; // removed for now; a later create brings it back
    }
    if (text !== options.currentText()) options.onChange(text);
  };
  (async () => {
    for await (const event of watcher) {
      if (!event.paths.some((p) => basename(p) === name)) continue;
      clearTimeout(timer);
      timer = setTimeout(settle, options.debounceMs ?? 200);
    }
  })().catch((e) => options.onError?.(e));
  return () => {
    clearTimeout(timer);
    try {
      watcher.close();
    } catch { /* closed */ }
  };
}
