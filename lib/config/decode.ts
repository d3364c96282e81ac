// A config's bytes as text: TOML is UTF-8, and nothing else is taken. Kept
// apart (no imports but types) so the file watcher can use it without the
// whole config loader.

import type { Problem } from "./errors.ts";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A config's bytes as text, or the problem that they are not UTF-8 (a TOML
 * document must be: a lenient decoder would put U+FFFD in place of the bytes
 * and go on silently, and PUT /api/config would save that).
 */
export function decodeConfig(bytes: Uint8Array): string | Problem {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // A newline byte is never part of a longer UTF-8 sequence: the first bad line is found alone.
    let start = 0;
    let line = 1;
    for (let i = 0; i <= bytes.length; i++) {
      if (i < bytes.length && bytes[i] !== 10) continue;
      try {
        strictUtf8.decode(bytes.subarray(start, i));
      } catch {
        break;
      }
      start = i + 1;
      line++;
    }
    return { path: "", message: "not UTF-8 text (a TOML file must be)", line };
  }
}
