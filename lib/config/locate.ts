// Finds the file line of a problem's dotted path in TOML text. The validator
// works on the parsed tree, which has no positions (smol-toml keeps none), so
// this scans the text once more: table headers (counting `[[...]]` elements),
// dotted keys, inline tables and arrays, skipping strings and comments.

import { childPath, type Problem } from "./errors.ts";

type Segment = string | number;

/** Thrown inside the scanner on text it does not understand. */
class Unsure extends Error {}

/**
 * The 1-based line of the key at `path` (as the validator writes it:
 * `backend_pools[1].strategy`, `certificates."a.com".type`). A path absent
 * from the text (a missing key) gets the line of its nearest ancestor that is
 * written, such as the `[[backend_pools]]` header. Undefined when unsure: the
 * root path, or text the scanner could not follow before reaching the key.
 */
export function locateLine(text: string, path: string): number | undefined {
  return withLines(text, [{ path, message: "" }])[0].line;
}

/** The problems with `line` added, where missing, from the text they were found in. */
export function withLines(text: string, problems: readonly Problem[]): Problem[] {
  if (problems.every((p) => p.line !== undefined || p.path === "")) return [...problems];
  const { lines, complete } = keyLines(text);
  return problems.map((p) => {
    if (p.line !== undefined) return p;
    const segments = parsePath(p.path) ?? [];
    for (let n = segments.length; n > 0; n--) {
      const line = lines.get(joinPath(segments.slice(0, n)));
      if (line !== undefined) return { ...p, line };
      // A key the scan never reached may be written later: no guessing from its ancestors.
      if (!complete) break;
    }
    return p;
  });
}

/**
 * Every key, table and array element written in `text`, by dotted path, with
 * the line where it first appears. `complete` is false when the scan stopped
 * early at text it could not follow.
 */
export function keyLines(text: string): { lines: Map<string, number>; complete: boolean } {
  const scan = new Scanner(text);
  try {
    scan.document();
    return { lines: scan.lines, complete: true };
  } catch (e) {
    if (e instanceof Unsure) return { lines: scan.lines, complete: false };
    throw e;
  }
}

/** Splits a validator path into keys and indexes; null when it is not one. */
function parsePath(path: string): Segment[] | null {
  const out: Segment[] = [];
  const token = /\[(\d+)\]|"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+)|(\.)/y;
  let expectKey = true;
  while (token.lastIndex < path.length) {
    const m = token.exec(path);
    if (m === null) return null;
    if (m[1] !== undefined) out.push(Number(m[1]));
    else if (m[4] !== undefined) {
      if (expectKey) return null;
      expectKey = true;
      continue;
    } else out.push(m[2] !== undefined ? JSON.parse(`"${m[2]}"`) : m[3]);
    expectKey = false;
  }
  return out;
}

function joinPath(segments: readonly Segment[]): string {
  return segments.reduce<string>((path, s) => childPath(path, s), "");
}

/** The longest dotted path the scanner records (RustStrom's are a few dozen characters). */
const MAX_PATH_LENGTH = 1024;

const BARE = /[A-Za-z0-9_-]/;
const ATOM = /^[+-]?[0-9A-Za-z_.:+-]+(?:[ T][0-9:.+Z-]+)?$/;

class Scanner {
  readonly lines = new Map<string, number>();
  readonly #text: string;
  #i = 0;
  #line = 1;
  /** Array-of-tables paths and the index of their last element. */
  readonly #arrays = new Map<string, number>();

  constructor(text: string) {
    this.#text = text;
  }

  document(): void {
    let table = "";
    while (true) {
      this.#blank(true);
      if (this.#i >= this.#text.length) return;
      const line = this.#line;
      if (this.#peek() === "[") table = this.#header(line);
      else this.#keyValue(table);
      this.#blank(false);
      const c = this.#peek();
      if (c !== undefined && c !== "\n" && c !== "\r") throw new Unsure();
    }
  }

  /** `[a.b]` or `[[a.b]]`: the path it opens, e.g. `backend_pools[2].client`. */
  #header(line: number): string {
    const array = this.#text[this.#i + 1] === "[";
    this.#i += array ? 2 : 1;
    const keys = this.#keys();
    this.#expect(array ? "]]" : "]");
    let path = "";
    keys.forEach((key, n) => {
      path = childPath(path, key);
      if (array && n === keys.length - 1) {
        this.#record(path, line);
        const index = (this.#arrays.get(path) ?? -1) + 1;
        this.#arrays.set(path, index);
        path = `${path}[${index}]`;
      } else if (this.#arrays.has(path)) path = `${path}[${this.#arrays.get(path)}]`;
      this.#record(path, line);
    });
    return path;
  }

  /** `a.b = value` under `base`. */
  #keyValue(base: string): void {
    const line = this.#line;
    let path = base;
    for (const key of this.#keys()) {
      path = childPath(path, key);
      this.#record(path, line);
    }
    this.#blank(false);
    this.#expect("=");
    this.#blank(false);
    this.#value(path);
  }

  #value(path: string): void {
    const c = this.#peek();
    if (c === '"' || c === "'") this.#string();
    else if (c === "[") this.#array(path);
    else if (c === "{") this.#inlineTable(path);
    else {
      const start = this.#i;
      while (this.#i < this.#text.length && !/[,\]}\r\n#]/.test(this.#text[this.#i])) this.#i++;
      // Numbers, booleans, dates and times, inf and nan.
      if (!ATOM.test(this.#text.slice(start, this.#i).trim())) throw new Unsure();
    }
  }

  #array(path: string): void {
    this.#i++;
    for (let index = 0;; index++) {
      this.#blank(true);
      if (this.#peek() === "]") break;
      const element = `${path}[${index}]`;
      this.#record(element, this.#line);
      this.#value(element);
      this.#blank(true);
      if (this.#peek() !== ",") break;
      this.#i++;
    }
    this.#expect("]");
  }

  #inlineTable(path: string): void {
    this.#i++;
    while (true) {
      this.#blank(true);
      if (this.#peek() === "}") break;
      this.#keyValue(path);
      this.#blank(true);
      if (this.#peek() !== ",") break;
      this.#i++;
    }
    this.#blank(true);
    this.#expect("}");
  }

  /** A dotted key: bare or quoted parts separated by dots. */
  #keys(): string[] {
    const keys: string[] = [];
    while (true) {
      this.#blank(false);
      const c = this.#peek();
      if (c === '"' || c === "'") keys.push(this.#string());
      else {
        const start = this.#i;
        while (this.#i < this.#text.length && BARE.test(this.#text[this.#i])) this.#i++;
        if (start === this.#i) throw new Unsure();
        keys.push(this.#text.slice(start, this.#i));
      }
      this.#blank(false);
      if (this.#peek() !== ".") return keys;
      this.#i++;
    }
  }

  /** Any of TOML's four string forms; returns its value (escapes of basic strings decoded). */
  #string(): string {
    const quote = this.#peek()!;
    const triple = this.#text.startsWith(quote.repeat(3), this.#i);
    const start = this.#i + (triple ? 3 : 1);
    let i = start;
    while (true) {
      if (i >= this.#text.length) throw new Unsure();
      const c = this.#text[i];
      if (c === "\\" && quote === '"') i += 2;
      else if (triple ? this.#text.startsWith(quote.repeat(3), i) : c === quote) break;
      else if (c === "\n" && !triple) throw new Unsure();
      else i++;
    }
    let end = i + (triple ? 3 : 1);
    // A multi-line string may end with up to two more quotes inside it.
    while (triple && this.#text[end] === quote && end - i < 5) end++;
    const raw = this.#text.slice(start, end - (triple ? 3 : 1));
    this.#advanceTo(end);
    return quote === "'" ? raw : decodeEscapes(raw);
  }

  /** Skips spaces and tabs and a comment; with `newlines`, line ends too. */
  #blank(newlines: boolean): void {
    while (this.#i < this.#text.length) {
      const c = this.#text[this.#i];
      if (c === " " || c === "\t") this.#i++;
      else if (c === "#") {
        while (this.#i < this.#text.length && this.#text[this.#i] !== "\n") this.#i++;
      } else if (newlines && (c === "\n" || c === "\r")) this.#advanceTo(this.#i + 1);
      else return;
    }
  }

  #expect(token: string): void {
    if (!this.#text.startsWith(token, this.#i)) throw new Unsure();
    this.#i += token.length;
  }

  #peek(): string | undefined {
    return this.#text[this.#i];
  }

  #advanceTo(end: number): void {
    for (; this.#i < end; this.#i++) if (this.#text[this.#i] === "\n") this.#line++;
  }

  /**
   * Notes where `path` first appears. A path longer than any a config needs
   * stops the scan: every prefix of a key is recorded, so a dotted key of n
   * parts (`a.a.a…`, 100,000 of them in 200 KB) would cost memory in n².
   */
  #record(path: string, line: number): void {
    if (path.length > MAX_PATH_LENGTH) throw new Unsure();
    if (!this.lines.has(path)) this.lines.set(path, line);
  }
}

const ESCAPES: Record<string, string> = {
  b: "\b",
  t: "\t",
  n: "\n",
  f: "\f",
  r: "\r",
  e: "\x1b",
};

/** Decodes the escapes of a basic string (TOML 1.1: \\uXXXX, \\UXXXXXXXX, \\xXX, \\e). */
function decodeEscapes(raw: string): string {
  return raw.replace(
    /\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|x([0-9A-Fa-f]{2})|([\s\S]))/g,
    (_, u, U, x, c) => {
      const hex = u ?? U ?? x;
      if (hex !== undefined) return String.fromCodePoint(parseInt(hex, 16));
      return ESCAPES[c] ?? c;
    },
  );
}
