import { describe, isTable, TableReader } from "./fields.ts";
import type { Problem } from "./errors.ts";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Reads a duration in milliseconds (see readDurationMs), at most
 * MAX_DURATION_MS: a longer one is a problem.
 */
export function parseDurationMs(
  value: unknown,
  path: string,
  problems: Problem[],
): number | undefined {
  const ms = readDurationMs(value, path, problems);
  if (ms === undefined || ms <= MAX_DURATION_MS) return ms;
  problems.push({
    path,
    message: `a duration of at most ${MAX_DURATION_MS} ms (24.8 days): timers cannot wait longer`,
  });
  return undefined;
}

/**
 * The longest duration: JavaScript's timers take a signed 32-bit number of
 * milliseconds, and a longer one fires after about 1 ms (`connect_timeout =
 * "600h"` failed every connect at once).
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Reads a duration in milliseconds, of any length. Accepted forms: a number of
 * seconds (`30`, `0.5`), a string with units (`"500ms"`, `"30s"`, `"1m30s"`),
 * or RustStrom's serde form `{ secs = 30, nanos = 0 }`.
 */
export function readDurationMs(
  value: unknown,
  path: string,
  problems: Problem[],
): number | undefined {
  const exact = exactMs(value, path, problems);
  if (exact === null) return undefined;
  if (exact !== undefined) {
    const ms = Math.round(exact);
    if (ms > 0 || exact === 0) return ms;
    // Rounded to 0, which turns timeouts and intervals off: not what a positive value meant.
    problems.push({ path, message: "expected 0 or a duration of at least 1 ms" });
    return undefined;
  }
  problems.push({
    path,
    message: `expected a duration such as 30, "30s", "500ms" or { secs = 30, nanos = 0 }, found ${
      describe(value)
    }`,
  });
  return undefined;
}

/** Milliseconds, unrounded; undefined for no duration at all, null when the table said why. */
function exactMs(value: unknown, path: string, problems: Problem[]): number | undefined | null {
  if (typeof value === "number" || typeof value === "bigint") {
    const n = Number(value);
    if (Number.isFinite(n) && n >= 0) return n * 1000;
  } else if (typeof value === "string") {
    return parseDurationText(value);
  } else if (isTable(value)) {
    const reader = new TableReader(value, path, problems);
    const before = problems.length;
    const secs = reader.int("secs");
    // serde's Duration takes any u32 and carries whole seconds over (Duration::new).
    const nanos = reader.int("nanos", { max: 4_294_967_295 });
    reader.finish();
    if (problems.length > before || secs === undefined || nanos === undefined) return null;
    return secs * 1000 + nanos / 1e6;
  }
  return undefined;
}

function parseDurationText(text: string): number | undefined {
  if (text === "") return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const m = PART.exec(text);
    if (!m || m.index !== start) return undefined;
    total += Number(m[1]) * UNITS[m[2]];
  }
  return total;
}
