// Headers (Strom's own): set, add and remove request and response headers.
//
//   [backend_pools.middlewares.Headers]
//   request = { set = { "X-Env" = "prod" }, add = { "Via" = "strom" }, remove = ["X-Debug"] }
//   response = { set = { "Strict-Transport-Security" = "max-age=63072000" }, remove = ["Server"] }
//
// Removals run first, then `set` (replaces every value), then `add` (appends).

import { shownValue, type TableReader } from "../config/fields.ts";
import { cgiSpelling, isHopByHop, TOKEN } from "../proxy/headers.ts";
import type { MiddlewareSpec } from "./middleware.ts";

/** Edits for one direction; names are lower-case. */
export type HeaderEdits = {
  readonly set: readonly [string, string][];
  readonly add: readonly [string, string][];
  readonly remove: readonly string[];
};

/** Validated options: edits of the request (upstream) and the response (to the client). */
export type HeadersOptions = { readonly request: HeaderEdits; readonly response: HeaderEdits };

/** Field values: visible ASCII, spaces, tabs and obs-text, without CR, LF or NUL (RFC 9110 §5.5). */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Fields whose change would break message framing; Strom manages them. */
const FRAMING = new Set(["content-length", "transfer-encoding", "host"]);

/** Whether a middleware must leave this field (lower-case) to Strom: framing or hop-by-hop. */
export function managedField(lower: string): boolean {
  return FRAMING.has(lower) || isHopByHop(lower, null);
}

function checkName(r: TableReader, path: string, name: string): string | null {
  const lower = name.toLowerCase();
  let problem: string | null = null;
  if (!TOKEN.test(name)) problem = `invalid header name ${JSON.stringify(name)}`;
  else if (managedField(lower)) {
    problem = `cannot change header ${JSON.stringify(name)}: Strom manages it`;
  }
  if (problem !== null) r.problems.push({ path, message: problem });
  return problem === null ? lower : null;
}

function readPairs(r: TableReader, key: "set" | "add"): [string, string][] {
  const table = r.subtable(key);
  if (table === null) return [];
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(table.table)) {
    table.raw(name);
    const path = table.at(name);
    const lower = checkName(r, path, name);
    if (typeof value !== "string" || !VALUE.test(value)) {
      r.problems.push({
        path,
        message: `invalid header value: expected a string without CR, LF or NUL`,
      });
    } else if (lower !== null) out.push([lower, value.trim()]);
  }
  return out;
}

function readEdits(r: TableReader, key: string): HeaderEdits {
  const table = r.subtable(key);
  if (table === null) return { set: [], add: [], remove: [] };
  const remove: string[] = [];
  table.array("remove")?.forEach((v, i) => {
    const path = table.at("remove") + `[${i}]`;
    if (typeof v !== "string") {
      r.problems.push({ path, message: `expected a header name, found ${shownValue(v)}` });
    } else {
      const lower = checkName(r, path, v);
      if (lower !== null) remove.push(lower);
    }
  });
  const edits = { set: readPairs(table, "set"), add: readPairs(table, "add"), remove };
  table.finish();
  return edits;
}

/** The header-editing middleware's spec. */
export const headers: MiddlewareSpec<HeadersOptions> = {
  name: "Headers",
  parse: (r) => ({ request: readEdits(r, "request"), response: readEdits(r, "response") }),
  create({ request, response }) {
    // By CGI spelling: X_Debug is X-Debug to a backend that reads fields CGI-style.
    const drop = new Set(
      [...request.remove, ...request.set.map(([name]) => name)].map(cgiSpelling),
    );
    return async (context, next) => {
      if (drop.size > 0) {
        context.fields = context.fields.filter(([name]) => !drop.has(cgiSpelling(name)));
      }
      context.fields.push(...request.set, ...request.add);
      const answer = await next();
      const h = answer.headers;
      for (const name of response.remove) h.delete(name);
      for (const [name, value] of response.set) h.set(name, value);
      for (const [name, value] of response.add) h.append(name, value);
      return answer;
    };
  },
};
