// Serves the dashboard's files from the generated assets module: index.html at
// `/`, the rest under `/assets/`. Revalidated by ETag; a strict CSP (every
// script and style is one of these files, and the page talks only to its origin).

import type { Context, Hono } from "hono";
import { type Asset, ASSETS } from "./assets.ts";

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/** Adds the dashboard's GET routes to the admin app. */
export function serveDashboard(app: Hono): void {
  app.get("/", (c) => send(c, ASSETS["index.html"]));
  app.get("/assets/:name", (c) => {
    const name = c.req.param("name");
    const asset = name !== "index.html" && Object.hasOwn(ASSETS, name) ? ASSETS[name] : null;
    return asset ? send(c, asset) : c.text("404 - page not found", 404);
  });
}

function send(c: Context, asset: Asset): Response {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
  c.header("etag", asset.etag);
  if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304);
  c.header("content-type", asset.type);
  return c.body(asset.body);
}
