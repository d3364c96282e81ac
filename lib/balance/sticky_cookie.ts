import { nodeCrypto } from "../node_builtins.ts";
import type { Candidate, Strategy } from "./strategy.ts";
import type { StrategyFactory } from "./registry.ts";
// RFC 6265 cookie-name is an RFC 9110 token.
import { TOKEN } from "../proxy/headers.ts";
import { isTable, type TableReader } from "../config/fields.ts";

const SAME_SITE = ["Strict", "Lax", "None"];

/**
 * A string, or the same word as a table of one empty table: RustStrom's TOML
 * reader takes `{ Strict = {} }` for the unit variant `Strict` (its example
 * configs write `same_site` so), as it does for `strategy = { RoundRobin = {} }`.
 */
function unitVariant(reader: TableReader, key: string): string | undefined {
  const value = reader.raw(key);
  if (isTable(value)) {
    const names = Object.keys(value);
    const inner = value[names[0]];
    if (names.length === 1 && isTable(inner) && Object.keys(inner).length === 0) return names[0];
  }
  return reader.string(key);
}

/**
 * `StickyCookie`: a client keeps its backend through a cookie. The value is an
 * HMAC of the backend's configured address (keyed by `secret`, default derived
 * from the cookie name), so it hides the internal address yet means the same
 * backend on every instance running the same config. A RustStrom cookie whose
 * value is the address itself is still honoured, unless `secret` is set.
 */
export const stickyCookie: StrategyFactory = {
  name: "StickyCookie",
  parse(reader, parseInner, context) {
    const cookieName = reader.string("cookie_name");
    if (cookieName !== undefined && !TOKEN.test(cookieName)) {
      reader.problem("cookie_name", `invalid cookie name ${JSON.stringify(cookieName)}`);
    }
    const httpOnly = reader.bool("http_only");
    const secure = reader.bool("secure");
    const sameSite = unitVariant(reader, "same_site");
    if (sameSite !== undefined && !SAME_SITE.includes(sameSite)) {
      reader.problem(
        "same_site",
        `invalid value ${JSON.stringify(sameSite)} (expected "Strict", "Lax" or "None")`,
      );
    }
    if (sameSite === "None" && secure === false) {
      // RustStrom sent it so; browsers drop such a cookie (SameSite=None needs Secure).
      context.warn?.(
        reader.at("same_site"),
        '"None" without secure = true: browsers refuse the cookie, so clients do not stick',
      );
    }
    const secret = reader.string("secret", "");
    // A missing `inner` is reported once, as missing (not also as an invalid strategy).
    const raw = reader.raw("inner", true);
    const inner = raw === undefined ? undefined : parseInner(raw, reader.at("inner"));
    return { cookieName, httpOnly, secure, sameSite, secret, inner };
  },
  create(options, deps, build): Strategy {
    const name = options.cookieName as string;
    const key = (options.secret as string) || `strom-sticky:${name}`;
    // RustStrom's cookies carry the address itself: honoured until a `secret` asks that values
    // be unguessable (a client could otherwise pick its backend by writing its address).
    const addressValues = !options.secret;
    const attributes = "; Path=/" + (options.httpOnly ? "; HttpOnly" : "") +
      (options.secure ? "; Secure" : "") + `; SameSite=${options.sameSite}`;
    const inner = build(options.inner as never, deps);
    const tokens = new Map<string, string>();
    const { createHmac } = nodeCrypto();
    const tokenOf = (c: Candidate) => {
      let t = tokens.get(c.id);
      if (t === undefined) {
        t = createHmac("sha256", key).update(c.id).digest("base64url").slice(0, 22);
        tokens.set(c.id, t);
      }
      return t;
    };
    const bound = <T extends Candidate>(backends: readonly T[], cookie: string | null) => {
      const value = cookie === null ? null : findCookie(cookie, name);
      if (value !== null) {
        for (const c of backends) {
          if (value === tokenOf(c) || (addressValues && value === c.id)) return c;
        }
      }
      return null;
    };
    return {
      pick(candidates, context) {
        const kept = bound(candidates, context.cookie);
        if (kept !== null) return kept;
        // An inner StickyCookie (RustStrom allows one) sets its own cookie too: both are sent.
        // A retry's pick replaces the cookies of the attempt before it.
        context.setCookie = null;
        const chosen = inner.pick(candidates, context);
        const own = `${name}=${tokenOf(chosen)}${attributes}`;
        context.setCookie = context.setCookie === null ? own : `${context.setCookie}\n${own}`;
        return chosen;
      },
      observe: inner.observe && ((id, ms, failed) => inner.observe!(id, ms, failed)),
      isBackup: inner.isBackup && ((id) => inner.isBackup!(id)),
      boundTo: (kept, context) => bound(kept, context.cookie),
    };
  },
};

/**
 * The value of cookie `name` in a Cookie header (RFC 6265 5.4), or null.
 * Pairs are separated by ";" (and "," when several headers were joined); the
 * name must match exactly, and surrounding double quotes are removed.
 */
export function findCookie(header: string, name: string): string | null {
  let start = 0;
  while (start < header.length) {
    let end = start;
    while (end < header.length && header[end] !== ";" && header[end] !== ",") end++;
    const eq = header.indexOf("=", start);
    if (eq > start && eq < end && header.slice(start, eq).trim() === name) {
      let value = header.slice(eq + 1, end).trim();
      if (value.length >= 2 && value[0] === '"' && value[value.length - 1] === '"') {
        value = value.slice(1, -1);
      }
      return value;
    }
    start = end + 1;
  }
  return null;
}
