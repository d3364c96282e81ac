// Files middlewares read at config load (error pages, htpasswd), resolved
// against the config file's folder, with short reasons for config messages.

import { resolve } from "node:path";
import { readConfigText, readFailure } from "../config/files.ts";

/** Reads a text file relative to `baseDir`: its text, or a problem message naming the full path. */
export function readConfigFile(
  baseDir: string,
  file: string,
  what: string,
): { text: string; path: string } | { problem: string; missing: boolean } {
  const path = resolve(baseDir, file);
  try {
    return { text: readConfigText(path), path };
  } catch (e) {
    return {
      problem: `cannot read ${what} "${path}": ${readFailure(e)}`,
      missing: e instanceof Deno.errors.NotFound,
    };
  }
}
