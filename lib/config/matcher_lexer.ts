// Tokenizer for the matcher DSL (see matcher.ts) and its syntax error.
// Tokens are produced lazily, so the first error reported is the leftmost one.

/**
 * Thrown by compileMatcher for any bad input; `column` is 1-based and counts
 * code points. The message gives the column, or for a source of several lines
 * (a TOML multi-line string) the line and the column in that line.
 */
export class MatcherSyntaxError extends Error {
  /** 1-based column in `source` (code points, newlines count as one column each). */
  readonly column: number;
  /** 1-based line of `source` the column is on. */
  readonly line: number;
  /** 1-based column within that line (code points). */
  readonly lineColumn: number;
  /** The whole matcher source the error is about. */
  readonly source: string;

  constructor(reason: string, options: { column: number; source: string }) {
    const { line, lineColumn } = lineOf(options.source, options.column);
    const multiline = options.source.includes("\n");
    super(
      `${reason} at ${
        multiline ? `line ${line}, column ${lineColumn} of the matcher` : `column ${options.column}`
      }`,
    );
    this.name = "MatcherSyntaxError";
    this.column = options.column;
    this.line = line;
    this.lineColumn = lineColumn;
    this.source = options.source;
  }
}

/** The line (1-based) holding 1-based code-point `column` of `source`, and the column in it. */
function lineOf(source: string, column: number): { line: number; lineColumn: number } {
  let line = 1;
  let lineColumn = 1;
  let seen = 1;
  for (const c of source) {
    if (seen >= column) break;
    seen++;
    if (c === "\n") {
      line++;
      lineColumn = 1;
    } else {
      lineColumn++;
    }
  }
  return { line, lineColumn };
}

/**
 * Renders the line of the source holding `column` with a caret under it, two
 * lines, each indented by `indent` spaces (default 0).
 */
export function caretLines(source: string, column: number, indent = 0): string {
  const { line: number, lineColumn } = lineOf(source, column);
  const text = source.split("\n")[number - 1] ?? "";
  // Control characters (tabs, CR) become spaces so the caret stays under its column.
  const chars = Array.from(text, (c) => (c < " " || c === "\x7f" ? " " : c));
  let at = Math.min(Math.max(Math.trunc(lineColumn) || 1, 1), chars.length + 1) - 1;
  let line = chars.join("");
  if (chars.length > CARET_WINDOW) {
    // Long lines show a window around the column, elided with "..." on the cut sides.
    const start = Math.max(0, Math.min(at - CARET_WINDOW / 2, chars.length - CARET_WINDOW));
    const head = start > 0 ? "..." : "";
    const tail = start + CARET_WINDOW < chars.length ? "..." : "";
    line = head + chars.slice(start, start + CARET_WINDOW).join("") + tail;
    at = at - start + head.length;
  }
  const pad = " ".repeat(Math.max(0, indent));
  return `${pad}${line}\n${pad}${" ".repeat(at)}^`;
}

const CARET_WINDOW = 72;

/** Quotes a value for an error message: control characters escaped, long values cut. */
export function quote(value: string): string {
  let text = value;
  if (text.length > QUOTE_MAX) {
    text = text.slice(0, QUOTE_MAX);
    if (/[\ud800-\udbff]$/.test(text)) text = text.slice(0, -1);
    text += "...";
  }
  // deno-lint-ignore no-control-regex -- escaping control characters is the point
  const escaped = text.replace(/["\x00-\x1f\x7f]/g, (c) => {
    if (c === '"') return '\\"';
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  return `"${escaped}"`;
}

const QUOTE_MAX = 60;

/** The kinds of token; punctuation kinds are spelled as in the source. */
export type TokenKind = "name" | "string" | "(" | ")" | "," | "!" | "&&" | "||" | "end";

/** One token; `text` is the name, the unescaped string value, or the punctuation itself. */
export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  /** UTF-16 index of the token's first character in the source. */
  readonly index: number;
}

/** A lazy tokenizer over one matcher source with one token of lookahead. */
export class Lexer {
  readonly source: string;
  #index = 0;
  #peeked: Token | undefined;

  /** Receives remarks on terms that compile but cannot do what they seem to (load warnings). */
  readonly remark: (reason: string) => void;

  constructor(source: string, remark: (reason: string) => void = () => {}) {
    this.source = source;
    this.remark = remark;
  }

  /** Returns the next token without consuming it. */
  peek(): Token {
    this.#peeked ??= this.#scan();
    return this.#peeked;
  }

  /** Consumes and returns the next token. */
  next(): Token {
    const token = this.peek();
    this.#peeked = undefined;
    return token;
  }

  /** Throws a MatcherSyntaxError for the UTF-16 `index` in the source. */
  fail(reason: string, index: number): never {
    throw new MatcherSyntaxError(reason, {
      column: columnOf(this.source, index),
      source: this.source,
    });
  }

  #scan(): Token {
    const s = this.source;
    let i = this.#index;
    while (i < s.length && isSpace(s.charCodeAt(i))) i++;
    if (i >= s.length) return this.#emit("end", "", i, i);
    const c = s[i];
    if (c === "'") return this.#string(i);
    if (c === "(" || c === ")" || c === "," || c === "!") return this.#emit(c, c, i, i + 1);
    if ((c === "&" || c === "|") && s[i + 1] === c) {
      return this.#emit(c === "&" ? "&&" : "||", c + c, i, i + 2);
    }
    if (isNameStart(s.charCodeAt(i))) {
      let end = i + 1;
      while (end < s.length && isNamePart(s.charCodeAt(end))) end++;
      return this.#emit("name", s.slice(i, end), i, end);
    }
    return this.fail(`unexpected character ${quote(String.fromCodePoint(s.codePointAt(i)!))}`, i);
  }

  // RustStrom strings: `\'` is a quote, every other backslash stays (regexes need it).
  #string(open: number): Token {
    const s = this.source;
    let value = "";
    let start = open + 1;
    for (let i = start; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === QUOTE) return this.#emit("string", value + s.slice(start, i), open, i + 1);
      if (c === BACKSLASH && s.charCodeAt(i + 1) === QUOTE) {
        value += s.slice(start, i) + "'";
        start = ++i + 1;
      }
    }
    return this.fail("unterminated string", open);
  }

  #emit(kind: TokenKind, text: string, index: number, end: number): Token {
    this.#index = end;
    return { kind, text, index };
  }
}

const QUOTE = 0x27;
const BACKSLASH = 0x5c;

// RustStrom's WS: space, tab, CR, LF.
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

function isNameStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
}

function isNamePart(c: number): boolean {
  return isNameStart(c) || (c >= 0x30 && c <= 0x39);
}

/** Converts a UTF-16 index to a 1-based column counting code points. */
function columnOf(source: string, index: number): number {
  let column = 1;
  for (let i = 0; i < index && i < source.length; i++) {
    const c = source.charCodeAt(i);
    const low = c >= 0xdc00 && c <= 0xdfff;
    const prev = i > 0 ? source.charCodeAt(i - 1) : 0;
    if (!(low && prev >= 0xd800 && prev <= 0xdbff)) column++;
  }
  return column;
}
