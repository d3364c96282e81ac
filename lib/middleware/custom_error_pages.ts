// CustomErrorPages { location, errors }: answers with a status in `errors` get
// the body of `<location>/<status>.html` instead, read once at config load
// (relative to the config file), so a missing page is a config error rather
// than RustStrom's per-response disk read and logged fallback (spec §2.10.6).

import { resolve } from "node:path";
import { readConfigFile } from "./files.ts";
import { checkInt } from "../config/fields.ts";
import type { MiddlewareSpec } from "./middleware.ts";

/** Validated options: each page's HTML by status code. */
export type CustomErrorPagesOptions = {
  readonly location: string;
  readonly pages: Readonly<Record<string, string>>;
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
  parse(r, { baseDir }) {
    const location = r.string("location");
    const pages: Record<string, string> = {};
    r.array("errors", true)?.forEach((v, i) => {
      const path = r.at("errors") + `[${i}]`;
      const code = checkInt(v, path, r.problems, { min: 400, max: 599 });
      if (code === undefined || location === undefined) return;
      // The file name is the status number only: nothing from a request reaches the path.
      const read = readConfigFile(resolve(baseDir, location), `${code}.html`, "error page");
      if ("problem" in read) r.problems.push({ path, message: read.problem });
      else pages[code] = read.text;
    });
    return { location: location!, pages };
  },
  create(options) {
    const encoder = new TextEncoder();
    const pages = new Map(
      Object.entries(options.pages).map(([code, html]) => [Number(code), encoder.encode(html)]),
    );
    return async (context, next) => {
      const response = await next();
      const page = pages.get(response.status);
      if (page === undefined) return response;
      await response.body?.cancel().catch(() => {});
      const headers = new Headers(response.headers);
      for (const name of BODY_HEADERS) headers.delete(name);
      headers.set("content-type", "text/html; charset=utf-8");
      headers.set("content-length", String(page.length));
      return new Response(context.method === "HEAD" ? null : page, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    };
  },
};
