// Rust `regex` syntax (what RustStrom's matchers take, spec §2.4) rewritten for
// JavaScript's RegExp in Unicode mode, so a pattern either means the same or is
// refused at load. Without this, Rust-only syntax such as `\A`, `\z`, `\pL`,
// `\x{41}` or `[[:alpha:]]` was read by JavaScript as other characters and the
// matcher silently never matched.
//
// Rewritten: `\A` `\z` (start and end of text), `\pL` `\p{Greek}` (one-letter
// and script property names), `\x{..}` `\U{..}` `\UXXXXXXXX`, `\a`, escaped
// punctuation JavaScript does not allow to escape (`\-` `\#` `\&` `\~` ...),
// POSIX classes, `(?P<name>`, inline flags anywhere (`a(?i)b` scopes to the
// end of its group), and verbose mode `(?x)`. Refused with a reason, as Rust
// refuses them or Strom cannot say them: backreferences, lookaround, `(?U)`,
// `(?R)`, `\b{...}` and class set operations (`&&`, `--`, `~~`).
//
// The output is also shaped for V8's linear-time engine, which finishes a
// match that backtracks too much (see linearFlags in matcher.ts) but takes no
// `u` or `i` flag, inline modifier or lookaround: `(?i)` is written out as
// classes (`a` as `[aA]`); Unicode properties, characters beyond U+FFFF and,
// under `(?i)`, letters beyond ASCII as the code points they match
// (code_points.ts); `\A` and `\z` are `^` and `$` (no multiline flag is
// used: under `(?m)`, `^` and `$` become lookaround on `\n` alone); and a
// leading `.*`, which cannot change whether an unanchored search finds a match
// but makes V8 scan the input once per start position, is left out.
// `\d` and `\w` (so `\b`) stay ASCII (Rust's are Unicode-aware), which only
// matters for non-ASCII paths and header values.

import {
  caseClosed,
  codePoint,
  type CodePoints,
  complement,
  property,
  range,
  source as setSource,
  union,
} from "./code_points.ts";

/**
 * A pattern ready for `new RegExp(source, flags)`, or why it cannot be.
 * `nested`: a group that repeats or alternates is itself repeated (`(a+)*`,
 * `(a|b){2,20}`), the shape that can backtrack exponentially.
 */
export type Translation =
  | { readonly source: string; readonly flags: string; readonly nested: boolean }
  | { readonly error: string };

const POSIX: Record<string, string> = {
  alnum: "0-9A-Za-z",
  alpha: "A-Za-z",
  ascii: "\\x00-\\x7F",
  blank: "\\t ",
  cntrl: "\\x00-\\x1F\\x7F",
  digit: "0-9",
  graph: "!-~",
  lower: "a-z",
  print: " -~",
  punct: "!-\\/:-@\\[-`{-~",
  space: "\\t\\n\\v\\f\\r ",
  upper: "A-Z",
  word: "0-9A-Za-z_",
  xdigit: "0-9A-Fa-f",
};

/**
 * Rewrites Rust regex `pattern`. `flags` may hold "i" (the whole pattern ignores
 * case, written out as `(?i)` is); the result's flags are "u".
 */
export function translateRustRegex(pattern: string, flags = ""): Translation {
  for (const flag of flags) {
    if (flag !== "i") throw new RangeError(`unsupported flag "${flag}"`);
  }
  const state = new Translator(pattern, flags.includes("i"));
  try {
    const source = state.run();
    return { source, flags: "u", nested: state.nested };
  } catch (e) {
    if (e instanceof Refusal) return { error: e.message };
    throw e;
  }
}

class Refusal extends Error {}

/**
 * One open group: the flags to restore when it closes (a mid-pattern `(?i)`
 * scopes to the end of its group), and what it holds so far.
 */
interface Group {
  readonly verbose: boolean;
  /** Whether `.` matched `\n` before it (flag `s`), restored when it closes. */
  readonly dotAll: boolean;
  /** Whether letters matched either case before it (flag `i`), restored when it closes. */
  readonly caseless: boolean;
  /** Whether `^` and `$` matched at line ends before it (flag `m`), restored when it closes. */
  readonly multiline: boolean;
  /** It holds a repetition or an alternation (so repeating it may backtrack exponentially). */
  branches: boolean;
}

class Translator {
  readonly #p: string;
  #i = 0;
  #out = "";
  #verbose = false;
  /** Flag `s`: `.` matches `\n` too. */
  #dotAll = false;
  /** Flag `i`: letters match either case. */
  #caseless: boolean;
  /** Flag `m`: `^` and `$` match at line ends too. */
  #multiline = false;
  /** Open groups, innermost last. */
  #groups: Group[] = [];
  /** Whether the pattern outside any group repeats or alternates (see Group.branches). */
  #topBranches = false;
  /** The group that closed just before the current position, or null. */
  #closed: Group | null = null;
  /** Right after a flag group `(?i)`, which is no expression: a repetition cannot follow. */
  #afterFlags = false;
  /** At the start of a top-level branch (flag scopes aside): a `.*` here may be left out. */
  #atStart = true;
  /** See Translation.nested. */
  nested = false;
  /** The last atom written, when it matches exactly one character (a literal, class, `.`). */
  #single: string | null = null;

  constructor(pattern: string, caseless: boolean) {
    this.#p = pattern;
    this.#caseless = caseless;
  }

  /** The state a group saves and restores on close. */
  #saved(): Group {
    return {
      verbose: this.#verbose,
      dotAll: this.#dotAll,
      caseless: this.#caseless,
      multiline: this.#multiline,
      branches: false,
    };
  }

  /** Notes that the innermost group (or the top level) repeats or alternates. */
  #branching(): void {
    const group = this.#groups.at(-1);
    if (group) group.branches = true;
    else this.#topBranches = true;
  }

  run(): string {
    const p = this.#p;
    while (this.#i < p.length) {
      const c = p[this.#i];
      if (this.#verbose && /\s/.test(c)) {
        this.#i++;
      } else if (this.#verbose && c === "#") {
        while (this.#i < p.length && p[this.#i] !== "\n") this.#i++;
      } else if (c === "(") {
        this.#open();
      } else if (c === ")") {
        this.#close();
      } else if (c === "|") {
        this.#alternate();
      } else if (c === "." && this.#atStart && this.#leadingDotStar()) {
        // Left out: `.*x` finds a match somewhere exactly when `x` does.
      } else {
        const closed = this.#closed;
        const afterFlags = this.#afterFlags;
        const single = this.#single;
        this.#closed = null;
        this.#afterFlags = false;
        this.#single = null;
        const start = this.#i;
        let atom = this.#atom(c);
        const repetition = QUANTIFIER.exec(atom);
        if (repetition) {
          if (afterFlags) throw new Refusal("a repetition must follow an expression, not flags");
          const [min, max] = bounds(repetition);
          // A group repeated without bound or beyond 16 (fixed counts such as `{3}` and
          // `?` cannot blow up) that itself repeats or alternates: see Translation.nested.
          if (closed?.branches && (max === null || max > LINEAR_COUNT)) this.nested = true;
          if (max !== min) this.#branching();
          const runs = Math.ceil((max ?? min) / LINEAR_COUNT) + 1;
          if (
            single !== null && (max ?? min) > LINEAR_COUNT && (max ?? min) <= MAX_CHUNKED &&
            single.length * runs <= MAX_CHUNKED_SOURCE
          ) {
            // One character repeated more than 16 times, which V8's linear-time engine
            // does not take, said as runs of at most 16 (`[0-9]{1,20}` as
            // `[0-9]{1,16}[0-9]{0,4}`): the same strings, and the engine takes it.
            this.#out = this.#out.slice(0, -single.length);
            atom = chunked(single, min, max);
          }
        } else if (singleCharacter(c, this.#p[start + 1])) {
          this.#single = atom;
        }
        this.#out += atom;
        this.#atStart = false;
      }
    }
    // An unclosed group is left for RegExp to report.
    return this.#out;
  }

  /** One atom (or quantifier) starting with `c` at `#i`, rewritten. */
  #atom(c: string): string {
    if (c === "\\") return this.#escape();
    if (c === "[") return this.#class();
    if (c === "{") return this.#repetition();
    this.#i++;
    if (c === ".") {
      // Rust's `.` is anything but `\n`; JavaScript's also leaves out `\r`, U+2028 and
      // U+2029, which a decoded path can hold (`/admin/x%0Dy` slipped past `^/admin/.+$`).
      return this.#dotAll ? "[\\s\\S]" : "[^\\n]";
    }
    if (c === "]" || c === "}") return `\\${c}`; // literal in Rust, an error unescaped in Unicode mode
    // Under (?m) Rust's `^` and `$` also match at a `\n`, and only there; JavaScript's
    // multiline flag would take `\r`, U+2028 and U+2029 as line ends too.
    if (c === "^") return this.#multiline ? "(?<![^\\n])" : c;
    if (c === "$") return this.#multiline ? "(?![^\\n])" : c;
    if (c === "*" || c === "+" || c === "?") return c;
    const cp = this.#p.codePointAt(this.#i - 1)!;
    if (cp > 0xffff) this.#i++;
    return this.#caseless ? anyCase(cp) : codePointSource(cp);
  }

  /**
   * At a `.` that starts a top-level branch: steps over `.*` or `.*?` when
   * nothing that could make it mean more follows (another repetition). Not in
   * verbose mode, where whitespace may stand between `.*` and its `?`.
   */
  #leadingDotStar(): boolean {
    if (this.#verbose) return false;
    const p = this.#p;
    if (p[this.#i + 1] !== "*") return false;
    const lazy = p[this.#i + 2] === "?";
    const next = p[this.#i + (lazy ? 3 : 2)];
    if (next === "*" || next === "+" || next === "?" || next === "{") return false;
    this.#i += lazy ? 3 : 2;
    return true;
  }

  /** `(`: a group, possibly with Rust's flags or `?P<name>`. */
  #open(): void {
    const p = this.#p;
    this.#closed = null;
    this.#afterFlags = false;
    this.#single = null;
    FLAGS.lastIndex = this.#i;
    const flags = FLAGS.exec(p);
    if (flags !== null) {
      this.#checkFlags(flags[1]);
      this.#i += flags[0].length;
      // `(?i:...)` is a group; `(?i)` scopes to the rest of the enclosing group, whose close
      // restores the flags (so nothing is written for it: the flags are written out).
      if (flags[2] === ":") {
        this.#groups.push(this.#saved());
        this.#out += "(?:";
        this.#atStart = false;
      } else {
        this.#afterFlags = true;
      }
      this.#verbose = this.#nextFlag("x", flags[1], this.#verbose);
      this.#dotAll = this.#nextFlag("s", flags[1], this.#dotAll);
      this.#caseless = this.#nextFlag("i", flags[1], this.#caseless);
      this.#multiline = this.#nextFlag("m", flags[1], this.#multiline);
      return;
    }
    LOOKAROUND.lastIndex = this.#i;
    if (LOOKAROUND.test(p)) {
      throw new Refusal("look-around, including look-ahead and look-behind, is not supported");
    }
    this.#groups.push(this.#saved());
    this.#atStart = false;
    // A named group, `(?P<name>` or `(?<name>`, is a plain group here: matchers use no
    // captures, and Rust's names (`a.b`, `x[0]`) are not all JavaScript's.
    NAMED.lastIndex = this.#i;
    const named = NAMED.exec(p);
    if (named !== null) {
      if (this.#names.has(named[1])) throw new Refusal(`duplicate group name "${named[1]}"`);
      this.#names.add(named[1]);
      this.#i += named[0].length;
    } else if (p.startsWith("(?", this.#i)) {
      throw new Refusal("invalid group: expected a name of letters, digits, _ . [ ] after (?<");
    } else {
      this.#i++;
    }
    this.#out += "(";
  }

  /** Group names seen, which Rust wants unique. */
  #names = new Set<string>();

  /**
   * `|`: in Rust it splits the enclosing group, not the scope of a mid-pattern
   * flag (`a(?i)b|c` is `a(?i:b)` or `c`, with the flag carried into `c` as in
   * Rust); flags are written out, so nothing else changes here.
   */
  #alternate(): void {
    this.#out += "|";
    this.#i++;
    this.#closed = null;
    this.#single = null;
    this.#afterFlags = false;
    this.#branching();
    this.#atStart = this.#groups.length === 0;
  }

  /** `)`: closes the group, restoring the flags set before it. */
  #close(): void {
    const group = this.#groups.pop();
    this.#out += ")"; // an unmatched one is left for RegExp to report
    this.#i++;
    this.#atStart = false;
    this.#afterFlags = false;
    this.#single = null;
    this.#closed = group ?? null;
    if (group === undefined) return;
    this.#verbose = group.verbose;
    this.#dotAll = group.dotAll;
    this.#caseless = group.caseless;
    this.#multiline = group.multiline;
    // What repeats inside a group makes the groups around it branch too.
    if (group.branches) this.#branching();
  }

  /** Checks Rust inline flags; all are written out by the translation, none is a JavaScript modifier. */
  #checkFlags(spec: string): void {
    for (const f of spec) {
      if (f === "U") throw new Refusal("the swap-greed flag (?U) is not supported");
      if (f === "R") throw new Refusal("the CRLF flag (?R) is not supported");
      if (!"-imsxu".includes(f)) throw new Refusal(`unknown flag "${f}"`);
    }
  }

  /** Whether flag `f` is on after the flag list `spec` (`is-x`), given it was `current`. */
  #nextFlag(f: string, spec: string, current: boolean): boolean {
    const minus = spec.indexOf("-");
    const on = minus < 0 ? spec : spec.slice(0, minus);
    const off = minus < 0 ? "" : spec.slice(minus);
    return off.includes(f) ? false : on.includes(f) ? true : current;
  }

  /** `{`: a counted repetition passes through; any other `{` is taken literally. */
  #repetition(): string {
    COUNTED.lastIndex = this.#i;
    const m = COUNTED.exec(this.#p);
    if (m === null) {
      this.#i++;
      return "\\{";
    }
    this.#i += m[0].length;
    return `{${m[1]}${m[2] ?? ""}${m[3] ?? ""}}`;
  }

  /** A backslash escape at `#i` outside a class, rewritten. */
  #escape(): string {
    const p = this.#p;
    const c = p[this.#i + 1];
    const single = this.#escapedChar();
    if (single !== null) return this.#caseless ? anyCase(single) : codePointSource(single);
    this.#i += 2;
    // No multiline flag is used (see #atom): `^` and `$` are the start and end of the text.
    if (c === "A") return "^";
    if (c === "z") return "$";
    if (c === "b" && p[this.#i] === "{") {
      throw new Refusal("word boundary assertions \\b{...} are not supported");
    }
    if (c === "p" || c === "P") {
      const { set, negated } = this.#property(c);
      // Rust folds case, then negates: `(?i)\P{Ll}` matches no letter that has a lower case.
      const folded = this.#caseless ? caseClosed(set) : set;
      return setSource(negated ? complement(folded) : folded);
    }
    // Under (?i), JavaScript's `\w` took in what folds onto its letters; it still does.
    if (this.#caseless && (c === "w" || c === "W")) return `[${c === "W" ? "^" : ""}\\w${FOLDED}]`;
    return `\\${c}`; // \d \D \w \W \s \S \b \B, checked by #escapedChar
  }

  /**
   * The character a backslash escape at `#i` stands for, consumed; null (not
   * consumed) for an escape that is a class or an assertion. Refuses what Rust
   * refuses.
   */
  #escapedChar(): number | null {
    const p = this.#p;
    const c = p[this.#i + 1];
    if (c === undefined) throw new Refusal("a pattern cannot end in a backslash");
    if (/[0-9]/.test(c)) throw new Refusal("backreferences are not supported");
    if (CLASS_ESCAPES.has(c) || c === "p" || c === "P" || c === "A" || c === "z") return null;
    this.#i += 2;
    const control = CONTROL_ESCAPES[c];
    if (control !== undefined) return control;
    if (c === "x" || c === "u" || c === "U") return this.#hex(c);
    if (/[\x21-\x7e]/.test(c) && !/[A-Za-z0-9<>]/.test(c)) return c.charCodeAt(0);
    if (c === " " || c === "\t" || c === "\n") return c.charCodeAt(0); // verbose mode
    throw new Refusal(`unknown escape \\${c}`);
  }

  /**
   * `\pL`, `\p{Name}`, `\P{...}`: a property JavaScript knows, or a script of
   * that name, as its code points (not negated) and whether it is negated.
   */
  #property(c: string): { set: CodePoints; negated: boolean } {
    const p = this.#p;
    let name: string;
    if (p[this.#i] === "{") {
      const end = p.indexOf("}", this.#i);
      if (end < 0) throw new Refusal("unclosed \\p{...}");
      name = p.slice(this.#i + 1, end).trim();
      this.#i = end + 1;
    } else {
      name = p[this.#i] ?? "";
      this.#i++;
    }
    const caret = name.startsWith("^");
    if (caret) name = name.slice(1);
    for (const spelling of spellings(name)) {
      for (const candidate of [spelling, `Script=${spelling}`]) {
        try {
          new RegExp(`\\p{${candidate}}`, "u");
        } catch {
          continue; // try the next spelling
        }
        return { set: property(candidate), negated: caret !== (c === "P") };
      }
    }
    throw new Refusal(`unknown Unicode property "${name}"`);
  }

  /** The code point of `\xHH`, `\x{H..}`, `\uHHHH`, `\u{H..}`, `\UHHHHHHHH` or `\U{H..}`. */
  #hex(kind: string): number {
    const p = this.#p;
    let digits: string;
    if (p[this.#i] === "{") {
      const end = p.indexOf("}", this.#i);
      if (end < 0) throw new Refusal(`unclosed \\${kind}{...}`);
      digits = p.slice(this.#i + 1, end);
      this.#i = end + 1;
    } else {
      const width = kind === "x" ? 2 : kind === "u" ? 4 : 8;
      digits = p.slice(this.#i, this.#i + width);
      this.#i += width;
    }
    const cp = parseInt(digits, 16);
    if (!/^[0-9A-Fa-f]{1,8}$/.test(digits) || cp > 0x10ffff) {
      throw new Refusal(`invalid hexadecimal escape \\${kind}${digits}`);
    }
    return cp;
  }

  /**
   * A bracketed class from `#i`, with POSIX classes and escapes rewritten.
   * Under `(?i)` ASCII letters gain their other case. A class with a Unicode
   * property, a character beyond U+FFFF, or under `(?i)` a letter beyond
   * ASCII is written out as the code points it matches (see code_points.ts).
   */
  #class(): string {
    const p = this.#p;
    POSIX_WHOLE.lastIndex = this.#i;
    const whole = POSIX_WHOLE.exec(p);
    if (whole !== null) {
      // `[[:^digit:]]`, the one place a negated POSIX class can be said in JavaScript.
      this.#i += whole[0].length;
      return `[${whole[1]}${posix(whole[2], this.#caseless)}]`;
    }
    let plain = "";
    let folded = "";
    let beyondAscii = false;
    // What it matches, for the written-out form: each item's code points.
    const sets: CodePoints[] = [];
    let writtenOut = false;
    this.#i++;
    // Verbose mode skips whitespace and comments anywhere in a class: `[ ^a]` is negated.
    this.#skipSpace();
    const negated = p[this.#i] === "^";
    if (negated) this.#i++;
    const done = () => {
      if (writtenOut || (this.#caseless && beyondAscii)) {
        // Rust folds the class's case, then negates it.
        const all = union(...sets);
        const folded = this.#caseless ? caseClosed(all) : all;
        return setSource(negated ? complement(folded) : folded);
      }
      return `[${negated ? "^" : ""}${this.#caseless ? folded : plain}]`;
    };
    // A `]` first is a literal in Rust.
    let first = true;
    while (this.#i < p.length) {
      const c = p[this.#i];
      if (c === "]" && !first) {
        this.#i++;
        return done();
      }
      first = false;
      // Verbose mode ignores whitespace and comments inside classes too (write `\ ` for a space).
      if (this.#verbose && /\s/.test(c)) {
        this.#i++;
        continue;
      }
      if (this.#verbose && c === "#") {
        while (this.#i < p.length && p[this.#i] !== "\n") this.#i++;
        continue;
      }
      POSIX_NAMED.lastIndex = this.#i;
      const named = POSIX_NAMED.exec(p);
      if (named !== null) {
        if (named[1] === "^") {
          throw new Refusal("a negated POSIX class is supported only alone: [[:^name:]]");
        }
        plain += posix(named[2], false);
        folded += posix(named[2], true);
        sets.push(asciiClass(posix(named[2], false)));
        this.#i += named[0].length;
        continue;
      }
      if (c === "[") throw new Refusal("nested classes and class set operations are not supported");
      const pair = p.slice(this.#i, this.#i + 2);
      if (pair === "&&" || pair === "--" || pair === "~~") {
        throw new Refusal(`class set operation "${pair}" is not supported`);
      }
      const low = this.#classChar();
      if (low === null) {
        // \d \w \s and their negations: kept as they are; \p{..}: written out.
        const letter = p[this.#i + 1];
        this.#i += 2;
        if (letter === "p" || letter === "P") {
          const { set, negated } = this.#property(letter);
          const folded = this.#caseless ? caseClosed(set) : set;
          sets.push(negated ? complement(folded) : folded);
          writtenOut = true;
          continue;
        }
        plain += `\\${letter}`;
        folded += letter === "w" ? `\\w${FOLDED}` : `\\${letter}`;
        sets.push(escapeClass(letter, this.#caseless));
        continue;
      }
      let high = low;
      const afterLow = this.#i;
      this.#skipSpace(); // `[a - z]` is a range in verbose mode
      const dash = this.#i;
      if (p[dash] === "-") {
        this.#i++;
        this.#skipSpace();
      }
      if (p[dash] !== "-" || this.#i >= p.length || p[this.#i] === "]") {
        this.#i = afterLow; // no range: a `-` before `]` is a literal, read next
      } else {
        const end = this.#classChar();
        if (end === null) throw new Refusal("a class range must end in a single character");
        if (end < low) throw new Refusal("a class range must not run backwards");
        high = end;
      }
      if (high >= 0x80) beyondAscii = true;
      if (high > 0xffff) writtenOut = true;
      sets.push(range(low, high));
      if (writtenOut) continue; // classRange() writes only code points up to U+FFFF
      const written = classRange(low, high);
      plain += written;
      folded += written + otherCase(low, high);
    }
    return `[${negated ? "^" : ""}${plain}`; // unclosed: left for RegExp to report
  }

  /** In verbose mode, steps over whitespace and `#` comments. */
  #skipSpace(): void {
    if (!this.#verbose) return;
    const p = this.#p;
    while (this.#i < p.length) {
      if (/\s/.test(p[this.#i])) this.#i++;
      else if (p[this.#i] === "#") {
        while (this.#i < p.length && p[this.#i] !== "\n") this.#i++;
      } else break;
    }
  }

  /** One character of a class at `#i`, consumed; null (not consumed) for a class escape. */
  #classChar(): number | null {
    const p = this.#p;
    if (p[this.#i] === "\\") {
      const next = p[this.#i + 1];
      if (next === "A" || next === "z") throw new Refusal(`\\${next} cannot stand in a class`);
      return this.#escapedChar();
    }
    const cp = p.codePointAt(this.#i)!;
    this.#i += cp > 0xffff ? 2 : 1;
    return cp;
  }
}

// Sticky patterns, run at a position of the pattern (no copy of its rest per group).
const FLAGS = /\(\?([a-zA-Z-]*)(:|\))/y;
const LOOKAROUND = /\(\?(?:[=!]|<[=!])/y;
const NAMED = /\(\?P?<([A-Za-z0-9_.[\]]+)>/y;
const COUNTED = /\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/y;
const POSIX_WHOLE = /\[\[:(\^?)([a-z]+):\]\]/y;
const POSIX_NAMED = /\[:(\^?)([a-z]+):\]/y;
/** A translated atom that is a repetition operator (or a lazy mark after one). */
const QUANTIFIER = /^(?:[*+?]|\{(\d+)(,?)(\d*)\})$/;

/** The most times V8's linear-time engine repeats one thing. */
const LINEAR_COUNT = 16;
/** The largest count of one character split into runs of LINEAR_COUNT (the pattern grows). */
const MAX_CHUNKED = 4096;
/**
 * The most source such runs may take: a written-out property (`\p{L}`, ~8 KB)
 * repeated 4096 times would otherwise make megabytes of pattern.
 */
const MAX_CHUNKED_SOURCE = 64 * 1024;

/** Minimum and maximum (null: no bound) of a repetition matched by QUANTIFIER. */
function bounds(m: RegExpExecArray): [number, number | null] {
  if (m[0] === "*") return [0, null];
  if (m[0] === "+") return [1, null];
  if (m[0] === "?") return [0, 1];
  const min = Number(m[1]);
  return [min, m[2] === "" ? min : m[3] === "" ? null : Number(m[3])];
}

/** `atom{min,max}` as runs of at most LINEAR_COUNT (max null: any number more). */
function chunked(atom: string, min: number, max: number | null): string {
  let out = "";
  for (let left = min; left > 0; left -= LINEAR_COUNT) {
    out += `${atom}{${Math.min(left, LINEAR_COUNT)}}`;
  }
  if (max === null) return out + `${atom}*`;
  for (let left = max - min; left > 0; left -= LINEAR_COUNT) {
    out += `${atom}{0,${Math.min(left, LINEAR_COUNT)}}`;
  }
  return out;
}

/**
 * Whether the atom starting with `c` (and `next` after a backslash) matches
 * exactly one character: not an assertion (`^`, `$`, `\b`, `\A`...).
 */
function singleCharacter(c: string, next: string | undefined): boolean {
  if (c === "^" || c === "$" || c === "{") return false;
  if (c === "\\") return next !== undefined && !"bBAz".includes(next);
  return true;
}

/**
 * Ways JavaScript may spell a property name Rust matches loosely (UTS #18:
 * case, spaces, `_` and `-` do not count, nor an `is` prefix): as written,
 * words in title case joined by `_` (`lowercase letter` → `Lowercase_Letter`,
 * `greek` → `Greek`), and a two-letter category (`lu` → `Lu`).
 */
function spellings(name: string): string[] {
  // `sc=Greek`, `gc:Lu`, `scx=Grek`: a property and its value, each read loosely.
  const pair = /^([^=:]+)[=:](.+)$/.exec(name);
  if (pair) {
    const key = PROPERTY_KEYS[loose(pair[1])];
    return key === undefined ? [name] : spellings(pair[2]).map((value) => `${key}=${value}`);
  }
  const alias = PROPERTY_ALIASES[loose(name)];
  if (alias !== undefined) return [alias];
  const words = name.split(/[\s_-]+/).filter((w) => w !== "");
  const title = words.map((w) => w[0].toUpperCase() + w.slice(1).toLowerCase()).join("_");
  const out = [name, title];
  if (/^[a-z]{2}$/i.test(name)) out.push(name[0].toUpperCase() + name[1].toLowerCase());
  if (/^is/i.test(title) && title.length > 2) out.push(...spellings(name.replace(/^is/i, "")));
  return out;
}

/** A property name as UTS #18 compares it loosely: lower case, no spaces, `_` or `-`. */
function loose(name: string): string {
  return name.toLowerCase().replace(/[\s_-]+/g, "");
}

/** Rust's property keys (loosely), as JavaScript names them. */
const PROPERTY_KEYS: Record<string, string> = {
  sc: "Script",
  script: "Script",
  scx: "Script_Extensions",
  scriptextensions: "Script_Extensions",
  gc: "General_Category",
  generalcategory: "General_Category",
};

/** Names Rust takes whose JavaScript spelling no rule above finds. */
const PROPERTY_ALIASES: Record<string, string> = {
  ascii: "ASCII",
  whitespace: "White_Space",
  space: "White_Space",
  wspace: "White_Space",
  punct: "P",
  lc: "LC",
  casedletter: "LC",
  any: "Any",
  assigned: "Assigned",
};

/** Escapes that stand for a class of characters or an assertion, read alike by both dialects. */
const CLASS_ESCAPES = new Set([..."dDwWsSbB"]);

/** Escapes of one control character. */
const CONTROL_ESCAPES: Record<string, number> = {
  a: 0x07,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
};

/** Outside ASCII, what folds onto an ASCII letter under Unicode's simple case folding. */
const FOLDS_TO_ASCII: Record<string, string> = { k: "\\u212A", s: "\\u017F" };

/** Both of them, inside a class. */
const FOLDED = Object.values(FOLDS_TO_ASCII).join("");

/** A pattern for code point `cp` in either case. */
function anyCase(cp: number): string {
  if (cp >= 0x80) {
    const folded = caseClosed(range(cp));
    return folded.length === 2 && folded[0] === folded[1] ? codePointSource(cp) : setSource(folded);
  }
  const c = String.fromCharCode(cp);
  const lower = c.toLowerCase();
  const upper = c.toUpperCase();
  if (lower === upper) return codePointSource(cp);
  return `[${lower}${upper}${FOLDS_TO_ASCII[lower] ?? ""}]`;
}

/** The ASCII letters of `low`-`high` in their other case, as class ranges ("" for none). */
function otherCase(low: number, high: number): string {
  let out = "";
  const lowerFrom = Math.max(low, 0x61), lowerTo = Math.min(high, 0x7a);
  if (lowerFrom <= lowerTo) out += classRange(lowerFrom - 0x20, lowerTo - 0x20);
  const upperFrom = Math.max(low, 0x41), upperTo = Math.min(high, 0x5a);
  if (upperFrom <= upperTo) out += classRange(upperFrom + 0x20, upperTo + 0x20);
  for (const [letter, fold] of Object.entries(FOLDS_TO_ASCII)) {
    const lower = letter.charCodeAt(0);
    if ((lower >= low && lower <= high) || (lower - 0x20 >= low && lower - 0x20 <= high)) {
      out += fold;
    }
  }
  return out;
}

/** `low`-`high` inside a class. */
function classRange(low: number, high: number): string {
  const from = codePointSource(low, true);
  return low === high ? from : `${from}-${codePointSource(high, true)}`;
}

/**
 * Code point `cp` as pattern source that means that one character with or
 * without the `u` flag (letters and digits as they are, the rest escaped);
 * `inClass` for inside brackets (up to U+FFFF only: a class with more is
 * written out by code_points.ts).
 */
function codePointSource(cp: number, inClass = false): string {
  const printable = cp >= 0x20 && cp < 0x7f && !(inClass ? CLASS_SYNTAX : SYNTAX).has(cp);
  if (printable || (cp >= 0x80 && cp <= 0xffff && (cp < 0xd800 || cp > 0xdfff))) {
    return String.fromCharCode(cp);
  }
  if (cp <= 0xff) return `\\x${cp.toString(16).padStart(2, "0")}`;
  if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, "0")}`;
  return codePoint(cp); // a surrogate pair in a group, which means the same without the `u` flag
}

/** Characters that mean something in a pattern outside a class. */
const SYNTAX = new Set([..."^$\\.*+?()[]{}|/"].map((c) => c.charCodeAt(0)));
/** Characters that mean something (or that Unicode mode refuses unescaped) inside a class. */
const CLASS_SYNTAX = new Set([..."\\]^-[/{}|()"].map((c) => c.charCodeAt(0)));

/** The code points of an ASCII class body such as `0-9A-Fa-f`. */
function asciiClass(body: string): CodePoints {
  const pattern = new RegExp(`[${body}]`);
  const out: CodePoints[] = [];
  for (let cp = 0; cp < 0x80; cp++) if (pattern.test(String.fromCharCode(cp))) out.push(range(cp));
  return union(...out);
}

const ESCAPE_CLASSES = new Map<string, CodePoints>();

/**
 * The code points of `\d`, `\w`, `\s` (JavaScript's: see the top) or their
 * negations. Under `(?i)`, `\w` also holds what folds onto its letters (the
 * Kelvin sign, long s), as elsewhere: else `\W` held them, and folding the
 * class brought in `k` and `s`.
 */
function escapeClass(letter: string, caseless: boolean): CodePoints {
  const key = caseless ? `i${letter}` : letter;
  let set = ESCAPE_CLASSES.get(key);
  if (set === undefined) {
    const lower = letter.toLowerCase();
    set = lower === "s"
      ? union(
        ...[..."\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"].map((c) =>
          range(c.charCodeAt(0))
        ),
        range(0x2000, 0x200a),
      )
      : lower === "d"
      ? asciiClass("0-9")
      : union(asciiClass("0-9A-Za-z_"), caseless ? [0x17f, 0x17f, 0x212a, 0x212a] : []);
    if (letter !== lower) set = complement(set);
    ESCAPE_CLASSES.set(key, set);
  }
  return set;
}

/** The ranges of POSIX class `name`; `caseless` adds what `(?i)` folds onto its letters. */
function posix(name: string, caseless: boolean): string {
  const ranges = POSIX[name];
  if (ranges === undefined) throw new Refusal(`unknown POSIX class [:${name}:]`);
  if (!caseless) return ranges;
  if (name === "lower") return ranges + otherCase(0x61, 0x7a);
  if (name === "upper") return ranges + otherCase(0x41, 0x5a);
  return ["alpha", "alnum", "word"].includes(name) ? ranges + otherCase(0x61, 0x7a) : ranges;
}
