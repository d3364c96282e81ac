// Matcher DSL: RustStrom's pool matcher language (spec §2.4), compiled once into a predicate.
//
//   matcher := or <end>                       whitespace (space, tab, CR, LF) between any tokens
//   or      := and ("||" and)*                && binds tighter than ||, both short-circuit
//   and     := unary ("&&" unary)*
//   unary   := "!" unary | primary
//   primary := "(" or ")" | NAME "(" STR ("," STR)* ")"
//   STR     := '...'                          \' is a quote; any other backslash stays as is
//
// A superset of RustStrom, which allows one binary operator per bracket level, no "!",
// no whitespace inside calls, and only Host, HostRegexp, Method, Path, PathRegexp, Query.

import { Lexer, quote, type Token } from "./matcher_lexer.ts";
import { translateRustRegex } from "./rust_regex.ts";

export { caretLines, MatcherSyntaxError } from "./matcher_lexer.ts";

/** What a matcher looks at, built once per request by the router. */
export interface MatchRequest {
  /** Request method as received, e.g. "GET". */
  readonly method: string;
  /** Host header (or HTTP/2 :authority) as received, e.g. "Example.com:8080"; "" when absent. */
  readonly host: string;
  /** The port a Host without one means: "80" for http, "443" for https (RFC 9110 4.2). */
  readonly defaultPort: string;
  /** Path in the normal form of lib/proxy/path.ts (decoded, slashes merged, dot-segments resolved). */
  readonly path: string;
  /** Raw query string without the leading "?"; "" when none. */
  readonly query: string;
  /** Request headers. */
  readonly headers: Headers;
}

/** A compiled matcher: a pure predicate over one request. */
export type Matcher = (request: MatchRequest) => boolean;

/**
 * The host names a compiled matcher can match at most, as `hostKey` writes
 * them, for matchers that need one (`Host('a.com') && ...`, `Host('a') ||
 * Host('b')`); matchers that may match any host have no entry. Lets the router
 * skip the pools of other hosts without running their matchers (lib/routing.ts).
 */
const HOSTS = new WeakMap<Matcher, ReadonlySet<string>>();

/** The host names `matcher` can match at most (see `hostKey`), or null: any host. */
export function hostsOf(matcher: Matcher): ReadonlySet<string> | null {
  return HOSTS.get(matcher) ?? null;
}

/**
 * The name a `Host(...)` term compares a request's Host value by: up to the
 * port, a final dot dropped, lower-cased. A matcher with `hostsOf` never
 * matches a request whose key is not in that set.
 */
export function hostKey(host: string): string {
  return host.slice(0, nameEnd(host, hostEnd(host))).toLowerCase();
}

function withHosts(matcher: Matcher, hosts: ReadonlySet<string> | null): Matcher {
  if (hosts !== null) HOSTS.set(matcher, hosts);
  return matcher;
}

/**
 * Compiles matcher source text; throws MatcherSyntaxError (and nothing else) on bad input.
 * `remark` hears of terms that are valid but can never match (`Path('api')`).
 *
 * Terms, all checked at compile time, regexes compiled once:
 * - `Host('h')`, `Host('h:port')`, `Host('[::1]')`: ASCII case-insensitive host match; without a
 *   port any request port matches, with one only that port (a Host without a port has the
 *   scheme's, so `Host('h:80')` matches `Host: h` on http); no Host never matches.
 * - `HostRegexp('re')`: case-insensitive unanchored search on the Host value, port included.
 * - `Path('/p')`: exact equality with the raw path.
 * - `PathPrefix('/p')`: plain string prefix, like Traefik's: `/api` also matches `/apis`.
 * - `PathRegexp('re')`: unanchored search on the raw path; `PathRegexp('')` matches everything.
 * - `Method('GET')`: exact, case-sensitive; the argument must be an RFC 9110 token.
 * - `Query('k', 'v')`: the last form-decoded value of `k` equals `v`.
 * - `Header('name', 'v')`, `HeaderRegexp('name', 're')`: the header value (repeats joined
 *   with ", ") equals `v` / contains a match of `re`; an absent header never matches.
 *
 * Regexes use Rust's syntax, translated to JavaScript by lib/config/rust_regex.ts and
 * compiled with the flags `linearFlags` picks (see there).
 */
export function compileMatcher(source: string, remark?: (reason: string) => void): Matcher {
  const lexer = new Lexer(source, remark);
  if (lexer.peek().kind === "end") lexer.fail("empty matcher", 0);
  const matcher = parseOr(lexer, 0);
  const rest = lexer.peek();
  if (rest.kind !== "end") lexer.fail('expected "&&", "||" or end of input', rest.index);
  return matcher;
}

// Bounds recursion, so no input can overflow the stack; "!" is parsed by a loop instead.
const MAX_DEPTH = 64;

function parseOr(lexer: Lexer, depth: number): Matcher {
  const parts = [parseAnd(lexer, depth)];
  while (lexer.peek().kind === "||") {
    lexer.next();
    parts.push(parseAnd(lexer, depth));
  }
  if (parts.length === 1) return parts[0];
  // Any of the parts: the union of their hosts, unless one may match any host.
  const sets = parts.map(hostsOf);
  const union = sets.every((set) => set !== null)
    ? new Set(sets.flatMap((set) => [...set!]))
    : null;
  return withHosts(anyOf(parts), union);
}

function parseAnd(lexer: Lexer, depth: number): Matcher {
  const parts = [parseUnary(lexer, depth)];
  while (lexer.peek().kind === "&&") {
    lexer.next();
    parts.push(parseUnary(lexer, depth));
  }
  if (parts.length === 1) return parts[0];
  // All of the parts: the hosts every part that names hosts allows.
  const sets = parts.map(hostsOf).filter((set) => set !== null);
  const both = sets.length === 0
    ? null
    : sets.reduce((a, b) => new Set([...a].filter((h) => b.has(h))));
  return withHosts(allOf(parts), both);
}

function parseUnary(lexer: Lexer, depth: number): Matcher {
  let negate = false;
  while (lexer.peek().kind === "!") {
    lexer.next();
    negate = !negate;
  }
  const inner = parsePrimary(lexer, depth);
  return negate ? (request) => !inner(request) : inner;
}

function parsePrimary(lexer: Lexer, depth: number): Matcher {
  const token = lexer.next();
  if (token.kind === "name") return parseTerm(lexer, token);
  if (token.kind !== "(") return lexer.fail('expected a term, "(" or "!"', token.index);
  if (depth >= MAX_DEPTH) lexer.fail(`brackets nested deeper than ${MAX_DEPTH}`, token.index);
  const inner = parseOr(lexer, depth + 1);
  const close = lexer.next();
  if (close.kind !== ")") lexer.fail('expected "&&", "||" or ")"', close.index);
  return inner;
}

function parseTerm(lexer: Lexer, name: Token): Matcher {
  const term = TERMS.get(name.text);
  if (term === undefined) return lexer.fail(`unknown term ${quote(name.text)}`, name.index);
  const open = lexer.next();
  if (open.kind !== "(") lexer.fail(`expected "(" after ${quote(name.text)}`, open.index);
  const args: Token[] = [];
  for (let separator = open; separator.kind !== ")";) {
    const arg = lexer.next();
    if (arg.kind !== "string") {
      lexer.fail(`expected a string argument to ${quote(name.text)}`, arg.index);
    }
    args.push(arg);
    separator = lexer.next();
    if (separator.kind !== "," && separator.kind !== ")") {
      lexer.fail('expected "," or ")"', separator.index);
    }
  }
  if (args.length !== term.arity) {
    const expected = term.arity === 1 ? "1 argument" : `${term.arity} arguments`;
    const reason = `wrong number of arguments to ${quote(name.text)}`;
    lexer.fail(`${reason}: expected ${expected}, found ${args.length}`, name.index);
  }
  return term.compile(args, lexer);
}

function anyOf(parts: readonly Matcher[]): Matcher {
  if (parts.length === 2) {
    const [a, b] = parts;
    return (request) => a(request) || b(request);
  }
  return (request) => {
    for (let i = 0; i < parts.length; i++) if (parts[i](request)) return true;
    return false;
  };
}

function allOf(parts: readonly Matcher[]): Matcher {
  if (parts.length === 2) {
    const [a, b] = parts;
    return (request) => a(request) && b(request);
  }
  return (request) => {
    for (let i = 0; i < parts.length; i++) if (!parts[i](request)) return false;
    return true;
  };
}

interface Term {
  readonly arity: number;
  readonly compile: (args: readonly Token[], lexer: Lexer) => Matcher;
}

/** Every request path begins with "/" (Deno gives `OPTIONS *` as "/*"): others never match. */
function remarkOnPath(term: string, text: string, lexer: Lexer): void {
  if ((text !== "" || term === "Path") && !text.startsWith("/")) {
    lexer.remark(`${term}(${quote(text)}) never matches: request paths begin with "/"`);
  } else if (text.includes(";")) {
    lexer.remark(
      `${term}(${quote(text)}) never matches: path parameters (";" up to the next "/") are ` +
        "left out of the path matchers see",
    );
  } else if (
    text.includes("//") || /\/\.\.?\//.test(text) || (term === "Path" && /\/\.\.?$/.test(text))
  ) {
    lexer.remark(
      `${term}(${quote(text)}) never matches: matchers see paths with repeated slashes merged ` +
        "and dot-segments resolved",
    );
  } else if (/%[0-9A-Fa-f]{2}/.test(text)) {
    lexer.remark(
      `${term}(${quote(text)}) matches only paths sent with "%25" (an escaped "%"): matchers ` +
        "see paths percent-decoded, so write the character itself",
    );
  }
}

// A Map, not an object literal, so names like "constructor" are unknown terms.
const TERMS = new Map<string, Term>([
  ["Host", { arity: 1, compile: ([host], lexer) => hostTerm(host, lexer) }],
  ["HostRegexp", {
    arity: 1,
    compile: ([pattern], lexer) => {
      // Hosts compare case-insensitively: the pattern is translated as under `(?i)`, letters
      // written out as classes (`[aA]`), since V8's linear-time engine (see linearFlags)
      // cannot take the `i` flag. Upper case said otherwise (`\x4A`, `[[:upper:]]`) counts too.
      const regex = compileRegex(pattern, { term: "HostRegexp", lexer, flags: "i" });
      return (request) => request.host !== "" && regex.test(request.host);
    },
  }],
  ["Path", {
    arity: 1,
    compile: ([{ text }], lexer) => {
      remarkOnPath("Path", text, lexer);
      return (request) => request.path === text;
    },
  }],
  ["PathPrefix", {
    arity: 1,
    compile: ([{ text }], lexer) => {
      remarkOnPath("PathPrefix", text, lexer);
      return (request) => request.path.startsWith(text);
    },
  }],
  ["PathRegexp", {
    arity: 1,
    compile: ([pattern], lexer) => {
      const regex = compileRegex(pattern, { term: "PathRegexp", lexer });
      return (request) => regex.test(request.path);
    },
  }],
  ["Method", {
    arity: 1,
    compile: ([{ text, index }], lexer) => {
      if (!TOKEN.test(text)) lexer.fail(`invalid method ${quote(text)}`, index);
      if (/[a-z]/.test(text)) {
        lexer.remark(
          `Method(${
            quote(text)
          }) never matches: Strom answers 400 to methods with lower-case letters`,
        );
      }
      return (request) => request.method === text;
    },
  }],
  ["Query", { arity: 2, compile: ([key, value]) => queryTerm(key.text, value.text) }],
  ["Header", {
    arity: 2,
    compile: ([name, { text }], lexer) => {
      const header = headerName(name, lexer);
      return (request) => request.headers.get(header) === text;
    },
  }],
  ["HeaderRegexp", {
    arity: 2,
    compile: ([name, pattern], lexer) => {
      const header = headerName(name, lexer);
      const regex = compileRegex(pattern, { term: "HeaderRegexp", lexer });
      return (request) => {
        const value = request.headers.get(header);
        return value !== null && regex.test(value);
      };
    },
  }],
]);

// RFC 9110 §5.6.2 token, used for methods (§9.1) and field names (§5.1).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// RFC 3986 §3.2.2: "[" IPv6 "]" or reg-name, then an optional port; IPv6 needs brackets.
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::([0-9]{1,5}))?$/;

const COLON = 0x3a;
const DOT = 0x2e;
const QUESTION_MARK = 0x3f;

function hostTerm(arg: Token, lexer: Lexer): Matcher {
  const parts = HOST.exec(arg.text);
  if (parts === null || Number(parts[2] ?? 0) > 65535) {
    return lexer.fail(`invalid host ${quote(arg.text)}`, arg.index);
  }
  // RFC 9110 §4.2.3: hosts compare case-insensitively; non-ASCII names arrive as punycode. A
  // fully qualified `a.com.` names the same host as `a.com`, as the request's Host does below.
  const written = parts[1].replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
  const name = written.length > 1 && written.endsWith(".") ? written.slice(0, -1) : written;
  // Ports compare as numbers: `a.com:08080` is port 8080 to URL parsers, and must not slip past.
  const port = parts[2] === undefined ? "" : String(Number(parts[2]));
  if (name === ".") lexer.remark(`Host(${quote(arg.text)}) never matches: a Host names a host`);
  if (/[!$&'()*+,;=]/.test(name)) {
    lexer.remark(`Host(${quote(arg.text)}) never matches: Strom answers 400 to such a Host`);
  }
  return withHosts((request) => {
    const host = request.host;
    const end = hostEnd(host);
    if (nameEnd(host, end) !== name.length || !startsWithLowercase(host, name)) return false;
    if (end === host.length) return port === "" || port === request.defaultPort;
    if (host.charCodeAt(end) !== COLON) return false;
    return port === "" || portAt(host, end + 1) === Number(port);
  }, new Set([name]));
}

/** The port the digits from `start` to the end of `text` make, or -1 (not digits, or too big). */
function portAt(text: string, start: number): number {
  if (start === text.length) return -1;
  let n = 0;
  for (let i = start; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    n = n * 10 + digit;
    if (n > 65535) return -1;
  }
  return n;
}

/**
 * Where the name of a Host value whose host part ends at `end` ends: before a
 * final dot, since a fully qualified `example.com.` names the same host (nginx
 * strips the dot too).
 */
function nameEnd(host: string, end: number): number {
  return end > 0 && host.charCodeAt(end - 1) === DOT ? end - 1 : end;
}

/** The index where the host name of a Host value ends: at the port colon, or its length. */
function hostEnd(host: string): number {
  if (host.charCodeAt(0) === 0x5b) {
    const close = host.indexOf("]");
    return close === -1 ? host.length : close + 1;
  }
  const colon = host.indexOf(":");
  return colon === -1 ? host.length : colon;
}

/** Whether `text` starts with `lower` (ASCII lowercase), ignoring ASCII case, without allocating. */
function startsWithLowercase(text: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function queryTerm(key: string, value: string): Matcher {
  return (request) => {
    const query = request.query;
    if (query === "") return false;
    // URLSearchParams drops one leading "?", which form_urlencoded would keep as part of a key.
    const init = query.charCodeAt(0) === QUESTION_MARK ? `?${query}` : query;
    const values = new URLSearchParams(init).getAll(key);
    return values.length > 0 && values[values.length - 1] === value;
  };
}

function headerName(arg: Token, lexer: Lexer): string {
  if (!TOKEN.test(arg.text)) lexer.fail(`invalid header name ${quote(arg.text)}`, arg.index);
  return arg.text.toLowerCase();
}

/**
 * The flags to compile a translated pattern with. JavaScript's regex engine
 * backtracks: a pattern such as `^/files/([\w-]+/?)*$` takes seconds on a
 * 30-character path (Rust's engine, which RustStrom used, is linear). Strom
 * runs V8 with `--enable-experimental-regexp-engine-on-excessive-backtracks`,
 * which finishes such a match in V8's linear-time engine, but only for a
 * pattern without the `u` and `i` flags, inline modifiers and lookaround. The
 * translation writes `(?i)` out (`a` as `[aA]`), and Unicode properties,
 * characters beyond U+FFFF and non-ASCII letters under `(?i)` as the code
 * points they match (surrogate pairs beyond U+FFFF, see code_points.ts), and
 * refuses lookaround (as Rust does); so `u` is left out here (kept only for
 * a source that still needs it). Then `.` and `[^..]` step over UTF-16
 * units, so an emoji in a path counts as two characters for them. Strom also
 * sets `--regexp-backtracks-before-fallback=1000` (V8's default is 50,000): a
 * match switches to the linear engine sooner. What that engine still cannot
 * run is a group repeated more than 16 times and `(?m)`'s `$` (a lookahead).
 */
export function linearFlags(source: string, flags: string): string {
  if (flags.includes("i")) return flags;
  if (/\\[pPu]\{|\(\?[-a-zA-Z]+:/.test(source)) return flags;
  if (/[\u{10000}-\u{10FFFF}]/u.test(source)) return flags;
  return flags.replace("u", "");
}

/**
 * Whether V8 runs with `--enable-experimental-regexp-engine` (Strom's flags):
 * then the `l` flag tells whether the linear-time engine can run a pattern.
 */
export const LINEAR_ENGINE_CHECKS = (() => {
  try {
    new RegExp("", "l");
    return true;
  } catch {
    return false;
  }
})();

function compileRegex(
  arg: Token,
  options: { term: string; lexer: Lexer; flags?: string },
): RegExp {
  const what = `invalid regular expression ${quote(arg.text)} in ${quote(options.term)}`;
  const translated = translateRustRegex(arg.text, options.flags);
  if ("error" in translated) return options.lexer.fail(`${what}: ${translated.error}`, arg.index);
  let compiled: RegExp | null = null;
  const flags = linearFlags(translated.source, translated.flags);
  if (flags !== translated.flags) {
    try {
      compiled = new RegExp(translated.source, flags);
    } catch { /* not valid without `u` after all: compiled as translated */ }
  }
  try {
    compiled ??= new RegExp(translated.source, translated.flags);
  } catch (error) {
    // V8 says "Invalid regular expression: /<pattern>/<flags>: <reason>"; keep the reason.
    const message = error instanceof Error ? error.message : String(error);
    const reason = message.slice(message.lastIndexOf(": ") + 1).trim();
    return options.lexer.fail(`${what}: ${reason}`, arg.index);
  }
  if (LINEAR_ENGINE_CHECKS && !linearRunnable(compiled)) {
    const why = "V8's linear-time engine cannot take it over (it does not take a group " +
      "repeated more than 16 times, or $ under (?m))";
    if (translated.nested) {
      // Any client could stall every request for seconds with a crafted path or header.
      return options.lexer.fail(
        `${what}: it repeats a group that itself repeats or alternates (as in (a+)*), which ` +
          `can take exponential time on some inputs, and ${why}: make the group simpler`,
        arg.index,
      );
    }
    options.lexer.remark(
      `${options.term}(${quote(arg.text)}) runs in V8's backtracking engine, since ${why}: ` +
        "a crafted long path or header can make one match take seconds, and every request waits",
    );
  }
  return compiled;
}

/** Whether V8's linear-time engine can run `regex` (so it takes over a match that backtracks). */
function linearRunnable(regex: RegExp): boolean {
  try {
    new RegExp(regex.source, regex.flags + "l");
    return true;
  } catch {
    return false;
  }
}
