// A config's bytes, read up to a bound, as text: TOML is UTF-8, and nothing
// else is taken. Kept apart so the file watcher can use it without the whole
// config loader.

import type { Problem } from "./errors.ts";
import { concatBytes } from "../bytes.ts";
import { MAX_CONFIG_FILE_BYTES } from "./files.ts";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The largest config file read, the bound of the files a config names: `-c
 * /dev/zero`, or a huge file saved in place, would otherwise grow the process
 * until the machine ran out of memory. Reading stops one byte past it.
 */
const MAX_CONFIG_BYTES = MAX_CONFIG_FILE_BYTES;

/** Up to MAX_CONFIG_BYTES + 1 bytes of `path` (a pipe works too); throws as reading would. */
export async function readConfigBytes(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const parts = new Parts();
  while (!parts.full) {
    const buffer = new Uint8Array(CHUNK);
    const n = await file.read(buffer);
    if (n === null) break;
    parts.add(buffer, n);
  }
  return parts.bytes();
}

/** readConfigBytes without waiting (the file watcher's first look). */
export function readConfigBytesSync(path: string): Uint8Array {
  using file = Deno.openSync(path, { read: true });
  const parts = new Parts();
  while (!parts.full) {
    const buffer = new Uint8Array(CHUNK);
    const n = file.readSync(buffer);
    if (n === null) break;
    parts.add(buffer, n);
  }
  return parts.bytes();
}

const CHUNK = 64 * 1024;

/** Chunks read so far, until one byte past MAX_CONFIG_BYTES. */
class Parts {
  #chunks: Uint8Array[] = [];
  #length = 0;

  get full(): boolean {
    return this.#length > MAX_CONFIG_BYTES;
  }

  add(buffer: Uint8Array, n: number): void {
    this.#chunks.push(buffer.subarray(0, n));
    this.#length += n;
  }

  bytes(): Uint8Array {
    return concatBytes(this.#chunks);
  }
}

/**
 * A config's bytes as text, or the problem that they are not UTF-8 (a TOML
 * document must be: a lenient decoder would put U+FFFD in place of the bytes
 * and go on silently, and PUT /api/config would save that).
 */
export function decodeConfig(bytes: Uint8Array): string | Problem {
  if (bytes.length > MAX_CONFIG_BYTES) {
    return {
      path: "",
      message: `larger than ${
        MAX_CONFIG_BYTES / 1024 / 1024
      } MiB: no config is (is it the right file?)`,
    };
  }
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
