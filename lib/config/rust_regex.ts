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
// end of its group), and verbose mode `(?x)`. Refused with a reason: `(?U)`,
// `(?R)`, `\b{...}` and class set operations (`&&`, `--`, `~~`). Kept as
// JavaScript reads them (Rust refuses them): backreferences and lookaround.
// `\d` and `\w` (so `\b`) stay ASCII (Rust's are Unicode-aware), which only
// matters for non-ASCII paths and header values.

/** A pattern ready for `new RegExp(source, flags)`, or why it cannot be. */
export type Translation =
  | { readonly source: string; readonly flags: string }
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

/** Characters JavaScript's Unicode mode lets a backslash escape (outside and inside classes). */
const JS_ESCAPABLE = new Set([..."^$\\.*+?()[]{}|/"]);

/** Single-character escapes both dialects read alike. */
const SAME_ESCAPES = new Set([..."dDwWsSbBfnrtv"]);

/** Rewrites Rust regex `pattern`; `flags` are added to every result (e.g. "i"). */
export function translateRustRegex(pattern: string, flags = ""): Translation {
  const state = new Translator(pattern);
  try {
    return { source: state.run(), flags: [...new Set(flags + "u")].join("") };
  } catch (e) {
    if (e instanceof Refusal) return { error: e.message };
    throw e;
  }
}

class Refusal extends Error {}

/** One open group: whether it was opened by us for a mid-pattern flag, and the verbose flag. */
interface Group {
  readonly synthetic: boolean;
  readonly verbose: boolean;
  /** Whether `.` matched `\n` before it (flag `s`), restored when it closes. */
  readonly dotAll: boolean;
  /** What opened it in the output, e.g. `(?i:`: a synthetic one is reopened after a `|`. */
  readonly opening: string;
}

class Translator {
  readonly #p: string;
  #i = 0;
  #out = "";
  #verbose = false;
  /** Flag `s`: `.` matches `\n` too. */
  #dotAll = false;
  /** Open groups, innermost last; synthetic ones close with their enclosing group. */
  #groups: Group[] = [];

  constructor(pattern: string) {
    this.#p = pattern;
  }

  run(): string {
    const p = this.#p;
    while (this.#i < p.length) {
      const c = p[this.#i];
      if (this.#verbose && /\s/.test(c)) {
        this.#i++;
      } else if (this.#verbose && c === "#") {
        while (this.#i < p.length && p[this.#i] !== "\n") this.#i++;
      } else if (c === "\\") {
        this.#out += this.#escape(false);
      } else if (c === "[") {
        this.#out += this.#class();
      } else if (c === "(") {
        this.#open();
      } else if (c === ")") {
        this.#close();
      } else if (c === "|") {
        this.#alternate();
      } else if (c === ".") {
        // Rust's `.` is anything but `\n`; JavaScript's also leaves out `\r`, U+2028 and
        // U+2029, which a decoded path can hold (`/admin/x%0Dy` slipped past `^/admin/.+$`).
        this.#out += this.#dotAll ? "[\\s\\S]" : "[^\\n]";
        this.#i++;
      } else if (c === "{") {
        this.#repetition();
      } else if (c === "]" || c === "}") {
        this.#out += `\\${c}`; // literal in Rust, an error unescaped in Unicode mode
        this.#i++;
      } else {
        this.#out += c;
        this.#i++;
      }
    }
    // Flag scopes opened here end with the pattern; an unclosed group of the
    // pattern's own is left for RegExp to report.
    while (this.#groups.at(-1)?.synthetic) {
      this.#groups.pop();
      this.#out += ")";
    }
    return this.#out;
  }

  /** `(`: a group, possibly with Rust's flags or `?P<name>`. */
  #open(): void {
    const p = this.#p;
    const rest = p.slice(this.#i);
    const flags = /^\(\?([a-zA-Z-]*)(:|\))/.exec(rest);
    if (flags !== null) {
      const js = this.#flags(flags[1]);
      this.#i += flags[0].length;
      // `(?i:...)` is a group; `(?i)` scopes to the rest of the enclosing group.
      const opening = js === "" ? "(?:" : `(?${js}:`;
      this.#groups.push({
        synthetic: flags[2] === ")",
        verbose: this.#verbose,
        dotAll: this.#dotAll,
        opening,
      });
      this.#verbose = this.#nextVerbose(flags[1], this.#verbose);
      this.#dotAll = this.#nextFlag("s", flags[1], this.#dotAll);
      this.#out += opening;
      return;
    }
    this.#groups.push({
      synthetic: false,
      verbose: this.#verbose,
      dotAll: this.#dotAll,
      opening: "(",
    });
    if (rest.startsWith("(?P<")) {
      this.#out += "(?<";
      this.#i += 4;
    } else {
      this.#out += "(";
      this.#i++;
    }
  }

  /**
   * `|`: in Rust it splits the enclosing group, not the scope of a mid-pattern
   * flag (`a(?i)b|c` is `a(?i:b)` or `c`, with the flag carried into `c` as in
   * Rust): the synthetic groups close before it and open again after it.
   */
  #alternate(): void {
    let open = 0;
    while (this.#groups.at(-1 - open)?.synthetic) open++;
    const reopened = this.#groups.slice(this.#groups.length - open);
    this.#out += ")".repeat(open) + "|" + reopened.map((g) => g.opening).join("");
    this.#i++;
  }

  /** `)`: closes the synthetic groups of mid-pattern flags, then the group itself. */
  #close(): void {
    while (true) {
      const group = this.#groups.pop();
      this.#out += ")"; // an unmatched one is left for RegExp to report
      if (group === undefined) break;
      this.#verbose = group.verbose;
      this.#dotAll = group.dotAll;
      if (!group.synthetic) break;
    }
    this.#i++;
  }

  /** Rust inline flags as a JavaScript modifier list ("i-m"); `u`, `x` and `s` need none. */
  #flags(spec: string): string {
    let on = "";
    let off = "";
    let negate = false;
    for (const f of spec) {
      if (f === "-") negate = true;
      else if ("im".includes(f)) {
        if (negate) off += f;
        else on += f;
      } else if (f === "x" || f === "u" || f === "s") continue; // `s`: `.` is written out
      else if (f === "U") throw new Refusal("the swap-greed flag (?U) is not supported");
      else if (f === "R") throw new Refusal("the CRLF flag (?R) is not supported");
      else throw new Refusal(`unknown flag "${f}"`);
    }
    return off === "" ? on : `${on}-${off}`;
  }

  #nextVerbose(spec: string, current: boolean): boolean {
    return this.#nextFlag("x", spec, current);
  }

  /** Whether flag `f` is on after the flag list `spec` (`is-x`), given it was `current`. */
  #nextFlag(f: string, spec: string, current: boolean): boolean {
    const minus = spec.indexOf("-");
    const on = minus < 0 ? spec : spec.slice(0, minus);
    const off = minus < 0 ? "" : spec.slice(minus);
    return off.includes(f) ? false : on.includes(f) ? true : current;
  }

  /** `{`: a counted repetition passes through; any other `{` is taken literally. */
  #repetition(): void {
    const rest = this.#p.slice(this.#i);
    const m = /^\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/.exec(rest);
    if (m === null) {
      this.#out += "\\{";
      this.#i++;
      return;
    }
    this.#out += `{${m[1]}${m[2] ?? ""}${m[3] ?? ""}}`;
    this.#i += m[0].length;
  }

  /** A backslash escape at `#i`, rewritten; `inClass` inside brackets. */
  #escape(inClass: boolean): string {
    const p = this.#p;
    const c = p[this.#i + 1];
    if (c === undefined) throw new Refusal("a pattern cannot end in a backslash");
    this.#i += 2;
    if (c === "A" && !inClass) return "(?<![\\s\\S])";
    if (c === "z" && !inClass) return "(?![\\s\\S])";
    if (c === "a") return "\\x07";
    if (c === "b" && p[this.#i] === "{" && !inClass) {
      throw new Refusal("word boundary assertions \\b{...} are not supported");
    }
    if (c === "p" || c === "P") return this.#property(c);
    if (c === "x") return this.#hex("x");
    if (c === "u" || c === "U") return this.#hex(c);
    if (SAME_ESCAPES.has(c) || JS_ESCAPABLE.has(c) || /[0-9]/.test(c)) return `\\${c}`;
    if (c === "-" && inClass) return "\\-";
    if (/[\x21-\x7e]/.test(c) && !/[A-Za-z0-9<>]/.test(c)) return hexEscape(c);
    if (c === " " || c === "#" || c === "\t" || c === "\n") return hexEscape(c); // verbose mode
    throw new Refusal(`unknown escape \\${c}`);
  }

  /** `\pL`, `\p{Name}`, `\P{...}`: a property JavaScript knows, or a script of that name. */
  #property(c: string): string {
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
    const negated = name.startsWith("^");
    if (negated) name = name.slice(1);
    const letter = negated !== (c === "P") ? "P" : "p";
    for (const candidate of [name, `Script=${name}`]) {
      try {
        new RegExp(`\\p{${candidate}}`, "u");
        return `\\${letter}{${candidate}}`;
      } catch { /* try the next spelling */ }
    }
    throw new Refusal(`unknown Unicode property "${name}"`);
  }

  /** `\xHH`, `\x{H..}`, `\uHHHH`, `\u{H..}`, `\UHHHHHHHH`, `\U{H..}` as `\u{...}`. */
  #hex(kind: string): string {
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
    if (!/^[0-9A-Fa-f]{1,8}$/.test(digits) || parseInt(digits, 16) > 0x10ffff) {
      throw new Refusal(`invalid hexadecimal escape \\${kind}${digits}`);
    }
    return `\\u{${digits}}`;
  }

  /** A bracketed class from `#i`, with POSIX classes and escapes rewritten. */
  #class(): string {
    const p = this.#p;
    const whole = /^\[\[:(\^?)([a-z]+):\]\]/.exec(p.slice(this.#i));
    if (whole !== null) {
      // `[[:^digit:]]`, the one place a negated POSIX class can be said in JavaScript.
      this.#i += whole[0].length;
      return `[${whole[1]}${posix(whole[2])}]`;
    }
    let out = "[";
    this.#i++;
    if (p[this.#i] === "^") {
      out += "^";
      this.#i++;
    }
    // A `]` first is a literal in Rust.
    if (p[this.#i] === "]") {
      out += "\\]";
      this.#i++;
    }
    while (this.#i < p.length) {
      const c = p[this.#i];
      if (c === "]") {
        this.#i++;
        return out + "]";
      }
      if (c === "\\") {
        out += this.#escape(true);
        continue;
      }
      // Verbose mode ignores whitespace and comments inside classes too (write `\ ` for a space).
      if (this.#verbose && /\s/.test(c)) {
        this.#i++;
        continue;
      }
      if (this.#verbose && c === "#") {
        while (this.#i < p.length && p[this.#i] !== "\n") this.#i++;
        continue;
      }
      const named = /^\[:(\^?)([a-z]+):\]/.exec(p.slice(this.#i));
      if (named !== null) {
        if (named[1] === "^") {
          throw new Refusal("a negated POSIX class is supported only alone: [[:^name:]]");
        }
        out += posix(named[2]);
        this.#i += named[0].length;
        continue;
      }
      if (c === "[") throw new Refusal("nested classes and class set operations are not supported");
      const pair = p.slice(this.#i, this.#i + 2);
      if (pair === "&&" || pair === "--" || pair === "~~") {
        throw new Refusal(`class set operation "${pair}" is not supported`);
      }
      // Characters Unicode mode would refuse unescaped in a class.
      out += c === "/" || c === "{" || c === "}" || c === "|" || c === "(" || c === ")"
        ? `\\${c}`
        : c;
      this.#i++;
    }
    return out; // unclosed: left for RegExp to report
  }
}

function posix(name: string): string {
  const ranges = POSIX[name];
  if (ranges === undefined) throw new Refusal(`unknown POSIX class [:${name}:]`);
  return ranges;
}

function hexEscape(c: string): string {
  return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
}
