// Request-target helpers: split the raw target and resolve dot-segments.

/**
 * Removes dot-segments from an absolute path (RFC 3986 5.2.4), leaving every
 * other byte as received: percent-encoding and empty segments (`//`) stay.
 * Segments spelled with `%2e` count as dots too (RFC 3986 6.2.2.2 makes them
 * equivalent, and URL parsers in backends resolve them), so a matcher can never
 * see a different path than the backend does.
 */
export function removeDotSegments(path: string): string {
  if (!mayHaveDotSegment(path)) return path;
  const segments = path.split("/");
  const out: string[] = [];
  const last = segments.length - 1;
  for (let i = 1; i <= last; i++) {
    const seg = segments[i];
    const dots = dotCount(seg);
    if (dots === 0) out.push(seg);
    else {
      if (dots === 2) out.pop();
      if (i === last) out.push("");
    }
  }
  return "/" + out.join("/");
}

function mayHaveDotSegment(path: string): boolean {
  return path.includes("/.") || path.includes("/%2");
}

/** 1 for ".", 2 for "..", 0 otherwise (percent-encoded dots included). */
function dotCount(segment: string): number {
  const s = segment.length > 2 ? segment.toLowerCase().replaceAll("%2e", ".") : segment;
  return s === "." ? 1 : s === ".." ? 2 : 0;
}

/**
 * The path the matchers see: `path` (dot-segments already resolved, as the
 * backend receives it) with percent-encoding decoded once and repeated slashes
 * merged, as nginx matches its locations. A backend that decodes `/%61dmin` or
 * merges `//admin` into `/admin` then serves the pool the matchers chose for
 * `/admin`, never another one. When the decoded bytes are no valid UTF-8, only
 * the ASCII escapes are decoded and the others (`%FF`) stay as written.
 *
 * Null when backends may resolve the path to different places, so no pool is
 * safe to pick (the client gets 400): a dot-segment that only decoding made
 * (`/admin/..%2Fx` is `/x` to a backend that decodes `%2F` first, and stays
 * under `/admin/` for one that does not), or a dot-segment with a path
 * parameter (`/x/..;/admin` is `/admin` to Tomcat and Jetty, which drop path
 * parameters, as the matchers do), or a dot-segment between backslashes
 * (`/x/..\\admin` is `/admin` to `new URL` and to IIS). A `%2e` that decoding
 * left (`%252e`) is no dot: decoding twice is the backend's bug.
 */
export function matchingPath(path: string): string | null {
  if (
    !path.includes("%") && !path.includes("//") && !path.includes("/.") && !path.includes(";") &&
    !path.includes("\\")
  ) return path;
  let out = path.includes("%") ? decodePercent(path) : path;
  // A backslash is a slash to WHATWG URL parsers (Node's `new URL`) and Windows servers: `..\`
  // climbs there, and stays a name to the matchers. Checked before and after the parameters
  // go: `/x;a\..\b` climbs to `/b` there, and `/a\.;x\b` is `/a\.\b` once they are gone.
  if (backslashDotSegment(out)) return null;
  // Path parameters are not part of the path to Java servlet containers (Tomcat, Jetty):
  // `/admin;x/secret` is their `/admin/secret`, so it is matched as that.
  if (out.includes(";")) out = out.replace(PARAMETERS, "");
  if (out.includes("//")) out = out.replace(/\/{2,}/g, "/");
  if (out.includes("/.") && hasDotSegment(out)) return null;
  if (backslashDotSegment(out)) return null;
  return out;
}

/** Whether `path` has a dot-segment once its backslashes are taken for slashes. */
function backslashDotSegment(path: string): boolean {
  return path.includes("\\") && hasDotSegment(path.replaceAll("\\", "/"));
}

/** A segment's path parameters: from a ";" up to the next "/". */
const PARAMETERS = /;[^/]*/g;

/** Whether a segment of `path` is "." or "..". */
function hasDotSegment(path: string): boolean {
  for (let start = path.indexOf("/."); start >= 0; start = path.indexOf("/.", start + 1)) {
    let end = start + 2;
    if (path.charCodeAt(end) === DOT) end++;
    if (end === path.length || path.charCodeAt(end) === SLASH) return true;
  }
  return false;
}

const DOT = 0x2e;
const SLASH = 0x2f;

function decodePercent(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    // Not UTF-8 throughout: decode the ASCII escapes, keep the others as written.
    return path.replace(/%([0-7][0-9A-Fa-f])/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
  }
}

/**
 * Longest client-given text (a request target, or an error that quotes it) a log line
 * quotes: Deno takes targets of up to about 64 KiB, and the log ring keeps 2,000 lines.
 */
const LOGGED_CHARS = 256;

/** `text` for a log line: cut after LOGGED_CHARS, saying how long it was. */
export function loggable(text: string): string {
  if (text.length <= LOGGED_CHARS) return text;
  return `${text.slice(0, LOGGED_CHARS)}… (${text.length} characters)`;
}
