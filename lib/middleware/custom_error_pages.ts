// CustomErrorPages { location, errors }: answers with a status in `errors` get
// the body of `<location>/<status>.html` instead. RustStrom read the file from
// disk on every such response (spec §2.10.6), so an edited page showed at
// once; Strom reads the pages at config load and watches their folder, reading
// a page again when it changes (a page deleted meanwhile gets the fallback
// below), without blocking a response on the disk. `location` is relative to
// the config file's folder; a folder found only relative to the working
// directory, where RustStrom looked, is taken from there with a warning. A page
// that does not exist is a warning, and its status gets RustStrom's fallback
// body `<code> - <reason>`, so RustStrom's files load; a page that exists but
// cannot be read is a config error. Codes from 200 work as in RustStrom; codes
// whose answers have no body (1xx, 204, 205, 304) are ignored with a warning.

import { isAbsolute, resolve } from "node:path";
import { watchFolder } from "../config/watch.ts";
import { readConfigFile } from "./files.ts";
import { checkInt } from "../config/fields.ts";
import {
  type Middleware,
  type MiddlewareDeps,
  type MiddlewareSpec,
  statusText,
} from "./middleware.ts";

/** Validated options: each page's HTML by status code, and the codes without a page. */
export type CustomErrorPagesOptions = {
  readonly location: string;
  /** The folder the pages are read from (location resolved). */
  readonly folder: string;
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

/** Statuses whose answers carry no body (1xx never reach middlewares). */
const BODYLESS = new Set([204, 205, 304]);

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
      const code = checkInt(v, path, r.problems, { min: 100, max: 599 });
      if (code === undefined || folder === undefined) return;
      // RustStrom took any code; answers of these have no body to replace (RFC 9110 6.4.1).
      if (code < 200 || BODYLESS.has(code)) {
        warn?.(path, `ignored: a ${code} answer has no body to replace`);
        return;
      }
      // The file name is the status number only: nothing from a request reaches the path.
      const read = readConfigFile(folder, `${code}.html`, "error page");
      if (!("problem" in read)) pages[code] = read.text;
      else if (read.missing) {
        missing.push(code);
        warn?.(path, `${read.problem}: answers with ${code} get "${statusText(code)}"`);
      } else r.problems.push({ path, message: read.problem });
    });
    return { location: location!, folder: folder!, pages, missing };
  },
  create(options, deps) {
    const pages = new Map<number, Page>();
    for (const [code, html] of Object.entries(options.pages)) pages.set(Number(code), page(html));
    for (const code of options.missing) pages.set(code, fallbackPage(code));
    const reread = (code: number) => {
      const read = readConfigFile(options.folder, `${code}.html`, "error page");
      const before = pages.get(code)!;
      if (!("problem" in read)) {
        if (read.text === before.html) return;
        pages.set(code, page(read.text));
        deps.log.info(`Error page for ${code} read again from ${read.path}`);
      } else if (read.missing) {
        if (before.html === null) return;
        pages.set(code, fallbackPage(code));
        deps.log.warn(`${read.problem}: answers with ${code} get "${statusText(code)}"`);
      } else deps.log.warn(`${read.problem}: answers with ${code} keep the page read before`);
    };
    const stop = watchPages(options.folder, [...pages.keys()], reread, deps);
    const handler: Middleware = async (context, next) => {
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
    return Object.assign(handler, { close: () => Promise.resolve(stop()) });
  },
};

/** A page as served: its bytes and type, and the HTML it came from (null: the fallback). */
interface Page {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly type: string;
  readonly html: string | null;
}

const encoder = new TextEncoder();

function page(html: string): Page {
  return { body: encoder.encode(html), type: "text/html; charset=utf-8", html };
}

/** RustStrom's body for a listed status without a page. */
function fallbackPage(code: number): Page {
  return {
    body: encoder.encode(`${statusText(code)}\n`),
    type: "text/plain; charset=utf-8",
    html: null,
  };
}

/** Quiet time after the last change to a page before it is read (editors write in bursts). */
const SETTLE_MS = 100;

/**
 * Watches the pages of `codes` in `folder` and calls `changed(code)` once one
 * was written, created or removed and then left alone for SETTLE_MS. Returns
 * the function that stops watching.
 */
function watchPages(
  folder: string,
  codes: readonly number[],
  changed: (code: number) => void,
  { clock, log }: MiddlewareDeps,
): () => void {
  // No folder: every page was missing at load (and warned about); nothing to watch.
  if (!isFolder(folder)) return () => {};
  try {
    return watchFolder(
      folder,
      codes.map((code) => `${code}.html`),
      (name) => changed(parseInt(name)),
      {
        debounceMs: SETTLE_MS,
        clock,
        onError: (e) => log.warn(`Watching the error pages in ${folder} stopped: ${e}`),
      },
    );
  } catch (e) {
    log.warn(
      `Cannot watch the error pages in ${folder} (${e instanceof Error ? e.message : e}): ` +
        "an edited page is read at the next config reload",
    );
    return () => {};
  }
}

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
