// CustomErrorPages { location, errors }: answers with a status in `errors` get
// the body of `<location>/<status>.html` instead. RustStrom read the file from
// disk on every such response (spec §2.10.6), so an edited page showed at
// once; Strom reads the pages at config load and watches their folder, reading
// a page again when it changes (a page deleted meanwhile gets the fallback
// below), and the folder's parent, reading every page again when the folder
// appears, is replaced or goes away, without blocking a response on the disk. `location` is relative to
// the config file's folder; a folder found only relative to the working
// directory, where RustStrom looked, is taken from there with a warning. A page
// that does not exist is a warning, and its status gets RustStrom's fallback
// body `<code> - <reason>`, so RustStrom's files load; a page that exists but
// cannot be read is a config error. Codes from 200 work as in RustStrom; codes
// whose answers have no body (1xx, 204, 205, 304) are ignored with a warning.

import { basename, dirname, isAbsolute, resolve } from "node:path";
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
  "content-md5",
  // A download's name for the backend's body: the page is shown, not saved as `x.bin`.
  "content-disposition",
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
    const errors = r.array("errors", true);
    if (errors?.length === 0) warn?.(r.at("errors"), "an empty list: no answer gets a page");
    errors?.forEach((v, i) => {
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
    const stop = watchPages(options.folder, (name) => {
      if (name === null) {
        for (const code of pages.keys()) reread(code);
        return;
      }
      const code = parseInt(name);
      if (name === `${code}.html` && pages.has(code)) reread(code);
    }, deps);
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

/** Told a page file's name once it settled, or null when the folder itself changed. */
type FolderListener = (name: string | null) => void;

/** One watch per page folder, shared by the middlewares (pools, generations) using it. */
const folders = new Map<string, { listeners: Set<FolderListener>; stop: () => void }>();

/**
 * Calls `listener` with a file's name once it was written, created or removed
 * in `folder` and then left alone for SETTLE_MS, and with null when the folder
 * appears (missing at load), is replaced (a deploy that swaps directories) or
 * goes away, which its parent's watch tells. Returns the function that stops.
 */
function watchPages(folder: string, listener: FolderListener, deps: MiddlewareDeps): () => void {
  let entry = folders.get(folder);
  if (entry === undefined) {
    const listeners = new Set<FolderListener>();
    const stop = openPageWatch(folder, (name) => {
      for (const l of listeners) l(name);
    }, deps);
    folders.set(folder, entry = { listeners, stop });
  }
  const { listeners, stop } = entry;
  listeners.add(listener);
  return () => {
    if (!listeners.delete(listener) || listeners.size > 0) return;
    folders.delete(folder);
    stop();
  };
}

function openPageWatch(
  folder: string,
  emit: FolderListener,
  { clock, log }: MiddlewareDeps,
): () => void {
  const options = (what: string) => ({
    debounceMs: SETTLE_MS,
    clock,
    onError: (e: unknown) => log.warn(`Watching ${what} stopped: ${e}`),
  });
  const cannot = (what: string, e: unknown) =>
    log.warn(
      `Cannot watch ${what} (${e instanceof Error ? e.message : e}): ` +
        "an edited page is read at the next config reload",
    );
  let stopped = false;
  let files: (() => Promise<void>) | null = null;
  /** (Re)starts the watch of the folder's files, once the runtime let go of the previous one. */
  const watchFiles = async () => {
    const previous = files;
    files = null;
    await previous?.();
    if (stopped || !isFolder(folder)) return;
    try {
      files = watchFolder(folder, null, emit, options(`the error pages in ${folder}`));
    } catch (e) {
      cannot(`the error pages in ${folder}`, e);
    }
  };
  let restarts = watchFiles();
  let parent: () => Promise<void> = () => Promise.resolve();
  try {
    parent = watchFolder(dirname(folder), [basename(folder)], () => {
      restarts = restarts.then(watchFiles).then(() => {
        if (!stopped) emit(null);
      });
    }, options(`the folder of ${folder}`));
  } catch (e) {
    // No parent either: a folder missing at load stays unwatched.
    if (!isFolder(folder)) cannot(`for the error page folder ${folder}`, e);
  }
  return () => {
    stopped = true;
    void parent();
    void restarts.then(() => files?.());
  };
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
