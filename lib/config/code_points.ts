// Sets of code points as sorted ranges, and their pattern source without
// JavaScript's `u` and `i` flags. V8's linear-time engine (which finishes a
// match that backtracks too much, see linearFlags in matcher.ts) takes neither
// flag, so the regex translation (rust_regex.ts) writes Unicode properties
// (`\p{L}`), classes under `(?i)` with letters beyond ASCII, and characters
// beyond U+FFFF out as such sets: a class of UTF-16 units for the Basic
// Multilingual Plane and surrogate pairs for the rest.

/** Code points as `[low0, high0, low1, high1, ...]`: sorted, inclusive, disjoint, not adjacent. */
export type CodePoints = readonly number[];

const MAX = 0x10ffff;
const SURROGATES: CodePoints = [0xd800, 0xdfff];

/** The set of `low`-`high`. */
export function range(low: number, high = low): CodePoints {
  return [low, high];
}

/** Every code point in `a` or `b`. */
export function union(...sets: CodePoints[]): CodePoints {
  const pairs: [number, number][] = [];
  for (const set of sets) for (let i = 0; i < set.length; i += 2) pairs.push([set[i], set[i + 1]]);
  pairs.sort((x, y) => x[0] - y[0]);
  const out: number[] = [];
  for (const [low, high] of pairs) {
    const last = out.length - 1;
    if (last > 0 && low <= out[last] + 1) out[last] = Math.max(out[last], high);
    else out.push(low, high);
  }
  return out;
}

/** Every code point up to U+10FFFF not in `set`. */
export function complement(set: CodePoints): CodePoints {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < set.length; i += 2) {
    if (set[i] > next) out.push(next, set[i] - 1);
    next = set[i + 1] + 1;
  }
  if (next <= MAX) out.push(next, MAX);
  return out;
}

/** `set` without `other`. */
export function minus(set: CodePoints, other: CodePoints): CodePoints {
  return complement(union(complement(set), other));
}

/** Whether `cp` is in `set`. */
export function has(set: CodePoints, cp: number): boolean {
  let lo = 0, hi = set.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < set[2 * mid]) hi = mid - 1;
    else if (cp > set[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

const properties = new Map<string, CodePoints>();

/**
 * The code points of `\p{name}` (a name JavaScript takes in Unicode mode),
 * found by V8 itself: runs of matches over every code point in order (~50 ms
 * the first time a name is asked for; remembered).
 */
export function property(name: string): CodePoints {
  let set = properties.get(name);
  if (set === undefined) {
    set = scan(new RegExp(`\\p{${name}}+`, "gu"));
    properties.set(name, set);
  }
  return set;
}

/** Runs of `pattern` (global, Unicode) over every code point but the surrogates. */
function scan(pattern: RegExp): CodePoints {
  const out: number[] = [];
  for (const { from, text } of planes()) {
    const unit = from >= 0x10000 ? 2 : 1;
    for (const m of text.matchAll(pattern)) {
      out.push(from + m.index / unit, from + (m.index + m[0].length) / unit - 1);
    }
  }
  return union(out);
}

/** Every code point but the surrogates, in order, as three strings (~4 MB), kept while in use. */
let planeTexts: { from: number; text: string }[] | null = null;
let planeTimer: ReturnType<typeof setTimeout> | undefined;

function planes(): { from: number; text: string }[] {
  planeTexts ??= [[0, 0xd7ff], [0xe000, 0xffff], [0x10000, MAX]].map(([from, to]) => ({
    from,
    text: every(from, to),
  }));
  // A config names its properties at load: the texts go a second after the last one.
  clearTimeout(planeTimer);
  planeTimer = setTimeout(() => planeTexts = null, 1000);
  Deno.unrefTimer(planeTimer);
  return planeTexts;
}

/** Every code point from `from` to `to`, in order, as one string. */
function every(from: number, to: number): string {
  let text = "";
  const chunk: number[] = [];
  for (let cp = from; cp <= to; cp++) {
    chunk.push(cp);
    if (chunk.length === 8192 || cp === to) {
      text += String.fromCodePoint(...chunk);
      chunk.length = 0;
    }
  }
  return text;
}

/** Code points that share a simple case folding with another, each to the others of its group. */
let partners: Map<number, number[]> | null = null;

/**
 * The case-folding groups (`k`, `K` and the Kelvin sign U+212A; `ΐ` U+0390 and
 * U+1FD3): what V8's `iu` flags take as the same letter, which is Unicode's
 * simple case folding, as Rust's `(?i)`. Asked of V8 for each character whose
 * case mapping or folding changes it (~3,000): which of them its `^c$` matches
 * under `gimu`, in one text of them all (~60 ms, once).
 */
function caseGroups(): Map<number, number[]> {
  if (partners !== null) return partners;
  const changing = union(
    property("Changes_When_Casemapped"),
    property("Changes_When_Casefolded"),
  );
  const all: number[] = [];
  for (let i = 0; i < changing.length; i += 2) {
    for (let cp = changing[i]; cp <= changing[i + 1]; cp++) all.push(cp);
  }
  const text = all.map((cp) => String.fromCodePoint(cp)).join("\n");
  partners = new Map();
  for (const cp of all) {
    const pattern = new RegExp(`^\\u{${cp.toString(16)}}$`, "gimu");
    const group = [...text.matchAll(pattern)].map((m) => m[0].codePointAt(0)!);
    if (group.length > 1) partners.set(cp, group);
  }
  return partners;
}

/** `set` with every code point that folds to the same as one of its own (Rust's `(?i)`). */
export function caseClosed(set: CodePoints): CodePoints {
  const extra: number[] = [];
  for (const [cp, group] of caseGroups()) {
    if (has(set, cp)) { for (const other of group) extra.push(other, other); }
  }
  return union(set, extra);
}

/**
 * Pattern source matching one code point of `set`, without the `u` and `i`
 * flags: a class of units for the BMP (surrogates left out: the strings
 * matched, decoded paths and header values, hold none alone), and surrogate
 * pairs beyond it. An empty set gives `[]`, which matches nothing.
 */
export function source(set: CodePoints): string {
  const units = minus(set, SURROGATES);
  let bmp = "";
  // Beyond U+FFFF: the low surrogates each high one takes, as class source.
  const lows = new Map<number, string>();
  for (let i = 0; i < units.length; i += 2) {
    const low = units[i], high = units[i + 1];
    if (low <= 0xffff) bmp += classRange(low, Math.min(high, 0xffff));
    if (high < 0x10000) continue;
    const [fromHigh, fromLow] = surrogates(Math.max(low, 0x10000));
    const [toHigh, toLow] = surrogates(high);
    for (let h = fromHigh; h <= toHigh; h++) {
      const a = h === fromHigh ? fromLow : 0xdc00, b = h === toHigh ? toLow : 0xdfff;
      lows.set(h, (lows.get(h) ?? "") + classRange(a, b));
    }
  }
  // One alternative per set of low surrogates, with every high surrogate that takes it: V8's
  // linear-time engine spends time on each alternative at each position.
  const highs = new Map<string, number[]>();
  for (const [h, low] of lows) highs.set(low, [...(highs.get(low) ?? []), h]);
  const astral = [...highs].map(([low, hs]) => `${highClass(hs)}[${low}]`);
  if (astral.length === 0) return `[${bmp}]`;
  return `(?:${bmp === "" ? "" : `[${bmp}]|`}${astral.join("|")})`;
}

/** High surrogates (ascending) as one unit or a class. */
function highClass(highs: number[]): string {
  if (highs.length === 1) return escapeUnit(highs[0]);
  let body = "";
  for (let i = 0; i < highs.length;) {
    let j = i;
    while (j + 1 < highs.length && highs[j + 1] === highs[j] + 1) j++;
    body += classRange(highs[i], highs[j]);
    i = j + 1;
  }
  return `[${body}]`;
}

/** `low`-`high` (both BMP) inside a class. */
function classRange(low: number, high: number): string {
  return low === high ? escapeUnit(low) : `${escapeUnit(low)}-${escapeUnit(high)}`;
}

/** A BMP code point as `\uXXXX` (or as itself when a letter or digit). */
function escapeUnit(cp: number): string {
  if (cp > 0xffff) {
    const [high, low] = surrogates(cp);
    return escapeUnit(high) + escapeUnit(low);
  }
  if (/[0-9A-Za-z]/.test(String.fromCharCode(cp))) return String.fromCharCode(cp);
  return `\\u${cp.toString(16).padStart(4, "0")}`;
}

function surrogates(cp: number): [number, number] {
  const v = cp - 0x10000;
  return [0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff)];
}

/** Pattern source for code point `cp` alone, without the `u` flag (a pair in a group beyond U+FFFF). */
export function codePoint(cp: number): string {
  return cp > 0xffff ? `(?:${escapeUnit(cp)})` : escapeUnit(cp);
}
