// CustomErrorPages { location, errors }: answers with a status in `errors` get
// the body of `<location>/<status>.html` instead, read at config load and at
// each reload rather than RustStrom's blocking disk read per response (spec
// §2.10.6). `location` is relative to the config file's folder; a folder found
// only relative to the working directory, where RustStrom looked, is taken
// from there with a warning. A page that does not exist is a warning, and its
// status gets RustStrom's fallback body `<code> - <reason>`, so RustStrom's
// files load; a page that exists but cannot be read is a config error.

import { isAbsolute, resolve } from "node:path";
import { readConfigFile } from "./files.ts";
import { checkInt } from "../config/fields.ts";
import { type MiddlewareSpec, statusText } from "./middleware.ts";

/** Validated options: each page's HTML by status code, and the codes without a page. */
export type CustomErrorPagesOptions = {
  readonly location: string;
  readonly pages: Readonly<Record<string, string>>;
  /** Codes whose page file does not exist: they get `<code> - <reason>` as plain text. */
  readonly missing: readonly number[];
};

/** Representation headers of the replaced body, which must not describe the page. */
const BODY_HEADERS = [
  "content-length",
  "content-encoding",
  "content-range",
  "content-language",
  "content-location",
  "etag",
  "last-modified",
  "digest",
  "content-digest",
  "repr-digest",
];

/** The error pages middleware's spec. */
export const customErrorPages: MiddlewareSpec<CustomErrorPagesOptions> = {
  name: "CustomErrorPages",
  parse(r, { baseDir, warn }) {
    const location = r.string("location");
    const pages: Record<string, string> = {};
    const missing: number[] = [];
    const folder = location === undefined ? undefined : pageFolder(baseDir, location);
    if (location !== undefined && folder !== resolve(baseDir, location)) {
      warn?.(
        r.at("location"),
        `"${location}" is not in the config file's folder; using "${folder}" (relative to the working directory, as RustStrom did)`,
      );
    }
    r.array("errors", true)?.forEach((v, i) => {
      const path = r.at("errors") + `[${i}]`;
      const code = checkInt(v, path, r.problems, { min: 400, max: 599 });
      if (code === undefined || folder === undefined) return;
      // The file name is the status number only: nothing from a request reaches the path.
      const read = readConfigFile(folder, `${code}.html`, "error page");
      if (!("problem" in read)) pages[code] = read.text;
      else if (read.missing) {
        missing.push(code);
        warn?.(path, `${read.problem}: answers with ${code} get "${statusText(code)}"`);
      } else r.problems.push({ path, message: read.problem });
    });
    return { location: location!, pages, missing };
  },
  create(options) {
    const encoder = new TextEncoder();
    const pages = new Map<number, { body: Uint8Array<ArrayBuffer>; type: string }>();
    for (const [code, html] of Object.entries(options.pages)) {
      pages.set(Number(code), { body: encoder.encode(html), type: "text/html; charset=utf-8" });
    }
    for (const code of options.missing) {
      pages.set(code, {
        body: encoder.encode(`${statusText(code)}\n`), // RustStrom's body without a page
        type: "text/plain; charset=utf-8",
      });
    }
    return async (context, next) => {
      const response = await next();
      const page = pages.get(response.status);
      if (page === undefined) return response;
      await response.body?.cancel().catch(() => {});
      const headers = new Headers(response.headers);
      for (const name of BODY_HEADERS) headers.delete(name);
      headers.set("content-type", page.type);
      headers.set("content-length", String(page.body.length));
      return new Response(context.method === "HEAD" ? null : page.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    };
  },
};

/**
 * The folder of the pages: relative to the config file's folder, unless that
 * does not exist and the same path relative to the working directory does.
 */
function pageFolder(baseDir: string, location: string): string {
  const besideConfig = resolve(baseDir, location);
  if (isAbsolute(location) || isFolder(besideConfig)) return besideConfig;
  const fromCwd = resolve(location);
  return isFolder(fromCwd) ? fromCwd : besideConfig;
}

function isFolder(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
