// Files middlewares read at config load (error pages, htpasswd), resolved
// against the config file's folder, with short reasons for config messages.

import { resolve } from "node:path";

/** Reads a text file relative to `baseDir`: its text, or a problem message naming the full path. */
export function readConfigFile(
  baseDir: string,
  file: string,
  what: string,
): { text: string; path: string } | { problem: string; missing: boolean } {
  const path = resolve(baseDir, file);
  try {
    return { text: Deno.readTextFileSync(path), path };
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : e instanceof Error
      ? e.message
      : String(e);
    return {
      problem: `cannot read ${what} "${path}": ${reason}`,
      missing: e instanceof Deno.errors.NotFound,
    };
  }
}
