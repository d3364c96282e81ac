// The only entry point from raw text to Config: read → TOML → validate.

import { dirname, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { ConfigError, type Problem } from "./errors.ts";
import { decodeConfig, readConfigBytes } from "./decode.ts";
import { withLines } from "./locate.ts";
import { type Origin, validateConfig } from "./validate.ts";
import type { Config } from "./types.ts";

/** Parses and validates config text; throws ConfigError listing every problem, with its line when found. */
export function parseConfig(source: string, origin: Origin): Config {
  // A byte order mark (Windows editors write one) is no part of the TOML, nor of its lines.
  const text = source.startsWith("\ufeff") ? source.slice(1) : source;
  let doc: Record<string, unknown>;
  try {
    // Integers beyond 2^53 (a u64 `secs`) come as bigint; validators refuse what is out of range.
    doc = parseToml(text, { integersAsBigInt: "asNeeded" }) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(origin.source, [tomlProblem(e)]);
  }
  let result: ReturnType<typeof validateConfig>;
  try {
    result = validateConfig(doc, origin);
  } catch (e) {
    // A validator's own bug must not pass for a crash (at start) or an unhandled error (at a
    // reload, which then counted nothing): the config is refused with the error as its problem.
    const reason = e instanceof Error ? e.message : String(e);
    throw new ConfigError(origin.source, [
      { path: "", message: `the config could not be checked (a bug in Strom): ${reason}` },
    ]);
  }
  if (!result.ok) {
    throw new ConfigError(origin.source, inLineOrder(withLines(text, result.problems)));
  }
  return result.config;
}

/**
 * Problems in the order of their lines, as an editor shows the file; those
 * without a line (about the file as a whole) first. The sort is stable: one
 * line's problems keep the order they were found in.
 */
function inLineOrder(problems: Problem[]): Problem[] {
  return problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** A config with the text and origin it came from (workers and reloads rebuild from them). */
export interface LoadedConfig extends Origin {
  readonly config: Config;
  readonly text: string;
}

/**
 * Whether a config text holds nothing but blank lines and comments. Such a
 * text is a valid config (every default, no pool), but as a reload it is
 * almost always a file caught mid-write or an empty upload, and applying it
 * would rebind to the default addresses and drop every pool: reloads refuse it.
 */
export function isBlankConfig(text: string): boolean {
  return text.split("\n").every((line) => /^\s*(#[^\n]*)?$/.test(line));
}

/** The problem a reload to a blank config reports. */
export const BLANK_CONFIG_PROBLEM = {
  path: "",
  message: "the new config is empty (only blank lines and comments): keeping the current one",
} as const;

/**
 * Reads a config file as text; throws ConfigError (naming the file as `shownAs`)
 * when it cannot be read or is not UTF-8.
 */
export async function readConfigText(path: string, shownAs = path): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readConfigBytes(path);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new ConfigError(shownAs, [{ path: "", message: `cannot read file: ${reason}` }]);
  }
  const text = decodeConfig(bytes);
  if (typeof text !== "string") throw new ConfigError(shownAs, [text]);
  return text;
}

/** Reads, parses and validates a config file; relative paths in it resolve against its folder. */
export async function loadConfigFile(path: string): Promise<LoadedConfig> {
  // resolve("") is the working directory, which it would then try to read.
  if (path === "") throw new ConfigError(path, [{ path: "", message: "the config path is empty" }]);
  const absolute = resolve(path);
  const text = await readConfigText(absolute, path); // named as given on the command line
  const origin = { source: path, baseDir: dirname(absolute) };
  return { config: parseConfig(text, origin), text, ...origin };
}

function tomlProblem(e: unknown) {
  if (e instanceof TomlError) {
    const first = e.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    return { path: "", message: `invalid TOML: ${first} at column ${e.column}`, line: e.line };
  }
  return { path: "", message: `invalid TOML: ${e instanceof Error ? e.message : String(e)}` };
}
