// A reader for one TOML table: typed getters that record problems instead of
// throwing, and a `finish()` that reports every key nobody asked for.

import { childPath, type Problem } from "./errors.ts";

/** Describes a TOML value for messages: `a string ("x")`, `an integer (5)`, `a table`. */
export function describe(value: unknown): string {
  if (typeof value === "string") return `a string (${JSON.stringify(value)})`;
  if (typeof value === "boolean") return `a boolean (${value})`;
  if (typeof value === "bigint") return `an integer (${value})`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `an integer (${value})` : `a float (${value})`;
  }
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (value !== null && typeof value === "object") return "a table";
  return String(value);
}

/**
 * A value inside a message, as JSON (a string quoted); an integer beyond 2^53
 * is a bigint, on which JSON.stringify throws, and shows as its digits.
 */
export function shownValue(value: unknown): string {
  if (typeof value === "bigint") return String(value);
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? String(v) : v) ?? "null";
}

/** Whether a value is a plain TOML table. */
export function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    !(value instanceof Date);
}

/** Keys whose values are secrets (admin_token, bind_password, a StickyCookie secret...). */
const SECRET_KEY = /token|password|secret/i;

/** Reads keys of one table, collecting problems under `path`. */
export class TableReader {
  readonly path: string;
  readonly problems: Problem[];
  readonly table: Record<string, unknown>;
  #seen = new Set<string>();

  constructor(table: Record<string, unknown>, path: string, problems: Problem[]) {
    this.table = table;
    this.path = path;
    this.problems = problems;
  }

  /** A reader for `value`, or null (with a problem recorded) when it is not a table. */
  static of(value: unknown, path: string, problems: Problem[]): TableReader | null {
    if (!isTable(value)) {
      problems.push({ path, message: `expected a table, found ${describe(value)}` });
      return null;
    }
    return new TableReader(value, path, problems);
  }

  /** The path of a key of this table. */
  at(key: string | number): string {
    return childPath(this.path, key);
  }

  /** Records a problem at a key of this table (or the table itself when key is ""). */
  problem(key: string, message: string): void {
    this.problems.push({ path: key === "" ? this.path : this.at(key), message });
  }

  has(key: string): boolean {
    return Object.hasOwn(this.table, key);
  }

  /** The raw value of a key (marked as used); a problem when required and missing. */
  raw(key: string, required = false): unknown {
    this.#seen.add(key);
    if (!this.has(key)) {
      if (required) this.problem(key, "missing required key");
      return undefined;
    }
    return this.table[key];
  }

  /** A string; `fallback` when missing (required when fallback is undefined). */
  string(key: string, fallback?: string): string | undefined {
    const v = this.raw(key, fallback === undefined);
    if (v === undefined) return fallback;
    if (typeof v !== "string") return this.#wrong(key, "a string", v);
    return v;
  }

  /** A boolean; `fallback` when missing (required when fallback is undefined). */
  bool(key: string, fallback?: boolean): boolean | undefined {
    const v = this.raw(key, fallback === undefined);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") return this.#wrong(key, "a boolean", v);
    return v;
  }

  /** An integer within [min, max]; `fallback` when missing (required when undefined). */
  int(key: string, options: { fallback?: number; min?: number; max?: number } = {}) {
    const v = this.raw(key, options.fallback === undefined);
    if (v === undefined) return options.fallback;
    return checkInt(v, this.at(key), this.problems, options);
  }

  /** A nested table reader; null when missing (problem if required) or not a table. */
  subtable(key: string, required = false): TableReader | null {
    const v = this.raw(key, required);
    if (v === undefined) return null;
    return TableReader.of(v, this.at(key), this.problems);
  }

  /** An array; null when missing (problem if required) or not an array. */
  array(key: string, required = false): unknown[] | null {
    const v = this.raw(key, required);
    if (v === undefined) return null;
    if (!Array.isArray(v)) return this.#wrong(key, "an array", v) ?? null;
    return v;
  }

  /** Reports every key of the table that no getter asked for. */
  finish(): void {
    const known = [...this.#seen];
    for (const key of Object.keys(this.table)) {
      if (this.#seen.has(key)) continue;
      const hint = suggest(key, known);
      this.problem(key, `unknown key${hint ? ` (did you mean "${hint}"?)` : ""}`);
    }
  }

  #wrong(key: string, expected: string, value: unknown): undefined {
    // A secret written with the wrong type (a token without quotes) is not shown: problems
    // reach the log, `--check`'s output and GET /api/logs.
    const found = SECRET_KEY.test(key) ? describe(value).replace(/ \(.*\)$/s, "") : describe(value);
    this.problem(key, `expected ${expected}, found ${found}`);
    return undefined;
  }
}

/** Checks that `v` is an integer within bounds; records a problem at `path` otherwise. */
export function checkInt(
  v: unknown,
  path: string,
  problems: Problem[],
  options: { min?: number; max?: number } = {},
): number | undefined {
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n)) {
    problems.push({ path, message: `expected an integer, found ${describe(v)}` });
    return undefined;
  }
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = options;
  if (n < min || n > max) {
    problems.push({
      path,
      message: `expected an integer from ${min} to ${max}, found ${String(v)}`,
    });
    return undefined;
  }
  return n;
}

/**
 * The closest known name, for "did you mean" hints: within edit distance 2 (or
 * 40 % of its length), else one sharing its first word (`health_check` →
 * `health_config`).
 */
export function suggest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length * 0.4)) + 1;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  const word = name.split("_")[0];
  return best ??
    (word.length >= 4 && name.includes("_")
      ? known.find((k) => k.split("_")[0] === word)
      : undefined);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
