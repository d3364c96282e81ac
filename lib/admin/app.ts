// The admin listener's Hono app: metrics, status, pools, config, reload, logs
// and a live event stream, behind the admin guard.

import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { COMMIT, VERSION } from "../version.ts";
import type { Strom } from "../server.ts";
import { METRICS_CONTENT_TYPE } from "../metrics/metrics.ts";
import { decodeConfig, readConfigBytes } from "../config/decode.ts";
import { nodeCrypto } from "../node_builtins.ts";
import { adminGuard, secretRoute } from "./auth.ts";
import { concatBytes } from "../bytes.ts";
import { poolsView } from "./views.ts";
import { LEVELS, parseLevel } from "../log.ts";
import { MAX_CONFIG_FILE_BYTES } from "../config/files.ts";
import { serveDashboard } from "./dashboard/serve.ts";

/** Largest config accepted by PUT /api/config: as large as a config file may be. */
const MAX_CONFIG_BYTES = MAX_CONFIG_FILE_BYTES;

/** Builds the admin app for a running Strom. */
export function createAdminApp(strom: Strom): Hono {
  const app = new Hono();
  // A handler that throws is Strom's bug: logged through Strom's log (Hono's
  // default prints to stderr), answered 500 without details.
  app.onError((error, c) => {
    strom.log.error(
      `Admin ${c.req.method} ${c.req.path} failed: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
    return c.text("500 - Internal Server Error", 500);
  });
  // The dashboard's page and files come before the guard: they hold no data
  // (the same bytes as in every copy of Strom), and a browser must get the page
  // to prompt for the token that the API calls it makes then carry.
  serveDashboard(app);
  // A path the app serves, asked with a method it does not take: 405 before any token is
  // asked for, as the README says (the paths and their methods are no secret).
  let allowed = new Map<string, Allowed>();
  app.use("*", async (c, next) => {
    const allow = allowed.get(c.req.path);
    if (allow !== undefined && !allow.methods.has(c.req.method)) {
      c.header("allow", allow.header);
      return c.text("405 - method not allowed", 405);
    }
    await next();
  });
  app.use(
    "*",
    adminGuard({
      token: () => strom.runtime.config.adminToken,
      loopback: () => strom.adminOnLoopback,
    }),
  );

  app.get("/metrics", async (c) => {
    c.header("content-type", METRICS_CONTENT_TYPE);
    return c.body(await strom.metricsText());
  });

  app.get("/api/status", (c) =>
    c.json({
      version: VERSION,
      commit: COMMIT,
      uptimeSeconds: Math.round((Date.now() - strom.startedAt) / 1000),
      config: strom.configPath,
      generation: strom.runtime.generation,
      listeners: strom.listeners(),
    }));

  app.get("/api/pools", async (c) => {
    await strom.refreshWorkerCounts(); // a drain's caller waits for in_flight 0: not a second old
    return c.json(poolsView(strom.runtime, strom.workerCount));
  });

  app.get("/api/config", secretRoute({ token: () => strom.runtime.config.adminToken }), (c) => {
    const text = strom.configText;
    if (text === null) return c.text("404 - this config has no file", 404);
    c.header("content-type", "application/toml; charset=utf-8");
    c.header("etag", etagOf(text));
    return c.body(text);
  });

  let saving: Promise<unknown> = Promise.resolve();
  /** Runs `task` once every PUT /api/config before it has applied and saved its config. */
  const inTurn = <T>(task: () => Promise<T>): Promise<T> => {
    const run = saving.then(task);
    saving = run.catch(() => {});
    return run;
  };
  app.put("/api/config", async (c) => {
    const path = strom.configText === null ? null : strom.configPath;
    if (path === null) return c.text("404 - this config has no file", 404);
    const bytes = await readBytes(c.req.raw, MAX_CONFIG_BYTES);
    if (bytes === null) return c.text("413 - config too large", 413);
    const text = decodeConfig(bytes);
    if (typeof text !== "string") return c.json(strom.refuse([text]), 422);
    // Applied first, saved after: a config that is invalid (blank, unparsable) or cannot be
    // applied (an access log that cannot be opened) must not replace the file Strom would
    // start from next time. A refusal is logged and counted as any failed reload. One PUT at
    // a time applies and saves: otherwise concurrent ones could be applied in one order and
    // written in another, the file then naming another config than the one running.
    const ifMatch = c.req.header("if-match");
    return await inTurn(async () => {
      // With If-Match (the dashboard sends the ETag of the text it edited): a config another
      // operator, a save of the file or a reload changed meanwhile is not overwritten.
      const current = strom.configText;
      if (ifMatch !== undefined && ifMatch.trim() !== "*" && current !== null) {
        if (!ifMatch.split(",").some((tag) => tag.trim() === etagOf(current))) {
          return c.json({
            ok: false,
            problems: [{
              path: "",
              message:
                `the config changed since it was read (now generation ${strom.runtime.generation}): read it again, then edit`,
            }],
          }, 412);
        }
      }
      const result = await strom.reload(text);
      if (!result.ok) return c.json(result, 422);
      try {
        await writeAtomically(path, text);
      } catch (e) {
        const message = `applied, but ${path} could not be written: ${(e as Error).message}`;
        strom.log.error(`PUT /api/config: ${message}`);
        return c.json({ ...result, saved: false, message }, 500);
      }
      c.header("etag", etagOf(text));
      if (strom.runtime.config.adminToken === null) {
        // Saved as asked; said, since the API can change nothing more (this PUT included).
        const warning = "the saved config has no admin_token: the admin API now refuses every " +
          "change, PUT /api/config too, until a config with one is loaded (edit the file)";
        return c.json({ ...result, warnings: [...(result.warnings ?? []), warning] }, 200);
      }
      return c.json(result, 200);
    });
  });

  // { pool, backend, drained = true, keep_sticky = false }: no new requests for that backend (or
  // again); with keep_sticky, clients its sticky cookie binds still reach it.
  app.post("/api/drain", async (c) => {
    let body: unknown;
    const text = await readText(c.req.raw, MAX_DRAIN_BYTES);
    if (text === null) return c.text("413 - body too large", 413);
    try {
      body = JSON.parse(text);
    } catch {
      return c.text("400 - expected a JSON body", 400);
    }
    const fields = (body ?? {}) as Record<string, unknown>;
    const { pool, backend, drained = true, keep_sticky = false } = fields;
    const unknown = typeof fields === "object" && !Array.isArray(fields)
      ? Object.keys(fields).filter((k) => !DRAIN_KEYS.includes(k))
      : [];
    if (
      typeof pool !== "string" || typeof backend !== "string" || typeof drained !== "boolean" ||
      typeof keep_sticky !== "boolean" || unknown.length > 0
    ) {
      // An unknown key (`keepSticky`, as /api/pools spells it) is not passed over in silence.
      const extra = unknown.length > 0 ? ` (unknown: ${unknown.join(", ")})` : "";
      return c.text(
        '400 - expected { "pool": string, "backend": string, "drained": boolean, ' +
          `"keep_sticky": boolean }${extra}`,
        400,
      );
    }
    const sticky = strom.runtime.pools.find((p) => p.config.name === pool)?.strategy.boundTo;
    if (keep_sticky && drained && sticky === undefined) {
      return c.text(
        `400 - keep_sticky needs a pool whose strategy is StickyCookie (${
          JSON.stringify(pool)
        } has none, or no such pool)`,
        400,
      );
    }
    if (!strom.setDrained(pool, backend, drained, keep_sticky)) {
      const known = strom.runtime.pools.some((p) => p.config.name === pool);
      return c.text(
        known
          ? `404 - no backend ${JSON.stringify(backend)} in pool ${JSON.stringify(pool)}`
          : `404 - no pool ${JSON.stringify(pool)}`,
        404,
      );
    }
    return c.json({ pool, backend, drained, keep_sticky: drained && keep_sticky });
  });

  app.post("/api/reload", async (c) => {
    const result = await strom.reload();
    if (result.ok) return c.json(result, 200);
    // The file's text, which the problems' lines are about (not the running config's).
    const bytes = strom.configText === null
      ? null
      : await readConfigBytes(strom.configPath).catch(() => null);
    const text = bytes === null ? null : decodeConfig(bytes);
    return c.json(typeof text === "string" ? { ...result, text } : result, 422);
  });

  app.get("/api/logs", (c) => {
    const limit = Number(c.req.query("limit") ?? 500);
    // Empty (`?level=&q=x`, as a form sends an unset field) is no filter, as an absent one.
    const levelText = c.req.query("level") || undefined;
    const level = levelText === undefined ? undefined : parseLevel(levelText);
    if (level === null) {
      return c.text(`400 - unknown level (expected one of ${LEVELS.join(", ")})`, 400);
    }
    const records = strom.logRing?.query({
      level,
      q: c.req.query("q"),
      limit: Number.isFinite(limit) && limit > 0 ? Math.min(limit, 2000) : 500,
    }) ?? [];
    return c.json(
      records.map((r) => ({ time: r.time.toISOString(), level: r.level, message: r.message })),
    );
  });

  app.get("/api/events", (c) =>
    streamSSE(c, async (stream) => {
      await stream.writeSSE({ event: "history", data: JSON.stringify(strom.live.samples) });
      let last = strom.live.samples.at(-1)?.time ?? 0;
      // A stream never ends by itself: it ends when Strom stops, not after the grace period.
      const stopping = strom.stopping;
      while (!stream.aborted && !stream.closed && !stopping.aborted) {
        await sleepUnless(1000, stopping);
        if (stopping.aborted) break;
        const sample = strom.live.samples.at(-1);
        if (!sample || sample.time === last) continue;
        last = sample.time;
        await stream.writeSSE({
          event: "sample",
          data: JSON.stringify({
            sample,
            generation: strom.runtime.generation,
            pools: poolsView(strom.runtime, strom.workerCount),
          }),
        });
      }
    }));

  allowed = allowedMethods(app);
  app.notFound((c) => c.text("404 - page not found", 404));
  return app;
}

/** The methods one path takes, and its `Allow` value. */
interface Allowed {
  readonly methods: ReadonlySet<string>;
  readonly header: string;
}

/**
 * The methods each path of `app` takes, from the routes registered so far
 * (call it after the last route): a path asked with another method gets 405
 * with these in `Allow` (RFC 9110 15.5.6), not 404. The router matches the
 * decoded path exactly, as the lookup by `c.req.path` does.
 */
function allowedMethods(app: Hono): Map<string, Allowed> {
  const byPath = new Map<string, Set<string>>();
  for (const { path, method } of app.routes) {
    if (method === "ALL") continue; // middleware
    const methods = byPath.get(path) ?? new Set<string>();
    methods.add(method);
    if (method === "GET") methods.add("HEAD");
    byPath.set(path, methods);
  }
  return new Map(
    [...byPath].map(([path, methods]) => [path, { methods, header: [...methods].join(", ") }]),
  );
}

/** The ETag of a config text (a hash: the text holds secrets). */
function etagOf(text: string): string {
  return `"${nodeCrypto().createHash("sha256").update(text).digest("base64url").slice(0, 27)}"`;
}

/**
 * The admin app's handler: a HEAD request is answered as its GET would be,
 * body left out by Deno, which keeps the GET's Content-Length. (Hono answers
 * HEAD with a body-less copy of the GET answer, for which Deno writes
 * `content-length: 0`.)
 */
export function adminHandler(app: Hono): (request: Request) => Response | Promise<Response> {
  // The copy's URL is parsed again, which resolves dot-segments: `/api/./config`, a 404 to GET
  // (the router sees paths as sent), would become `/api/config`. Such a HEAD goes as it is.
  return (request) =>
    request.method === "HEAD" && !hasDotSegment(request.url)
      ? app.fetch(
        new Request(request.url, {
          method: "GET",
          headers: request.headers,
          signal: request.signal,
        }),
      )
      : app.fetch(request);
}

/** Whether a request URL's path holds a `.` or `..` segment (plainly or as `%2e`). */
function hasDotSegment(url: string): boolean {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.search(/[?#]/);
  const path = start < 0 ? "" : url.slice(start, end < 0 ? undefined : end);
  return /\/(?:\.|%2e){1,2}(?:\/|$)/i.test(path);
}

/** The keys `POST /api/drain` takes. */
const DRAIN_KEYS = ["pool", "backend", "drained", "keep_sticky"];

/** Longest `POST /api/drain` body. */
const MAX_DRAIN_BYTES = 4096;

/**
 * A request body's bytes, or null (and the rest left unread) once it passes
 * `limit` bytes: a body without Content-Length is not read whole first.
 */
async function readBytes(request: Request, limit: number): Promise<Uint8Array | null> {
  if (Number(request.headers.get("content-length") ?? 0) > limit) return null;
  if (request.body === null) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > limit) return null; // leaving the loop cancels the body
    parts.push(chunk);
  }
  return concatBytes(parts);
}

/** A request body as text, or null past `limit` bytes (see readBytes). */
async function readText(request: Request, limit: number): Promise<string | null> {
  const bytes = await readBytes(request, limit);
  return bytes === null ? null : new TextDecoder().decode(bytes);
}

/**
 * Waits `ms`, or less if `signal` aborts meanwhile. Leaves nothing behind: a
 * race against one promise that settles only at shutdown kept a reaction per
 * second, and a listener per stream, alive for the process's lifetime.
 */
function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/**
 * Replaces a file (or the target of a link) atomically (write a temporary
 * file, then rename), keeping `<file>.bak`. The new file keeps the old one's
 * permissions (a config holding secrets is often readable by its owner only)
 * and, where allowed, its owner.
 */
async function writeAtomically(configPath: string, text: string): Promise<void> {
  // A config that is a symbolic link keeps it: its target is replaced (renaming over the
  // link would turn it into a file, and edits to the target would no longer count).
  const path = await Deno.realPath(configPath).catch(() => configPath);
  const before = await Deno.stat(path).catch(() => null);
  try {
    await Deno.copyFile(path, `${path}.bak`);
  } catch { /* no previous file */ }
  const temp = `${path}.tmp-${crypto.randomUUID()}`;
  const mode = before?.mode == null ? undefined : before.mode & 0o7777;
  try {
    // Created owner-only, then given the old file's mode: never readable by others meanwhile.
    await Deno.writeTextFile(temp, text, { mode: 0o600 });
    if (mode !== undefined) await Deno.chmod(temp, mode);
    if (before?.uid != null && before.gid != null) {
      await Deno.chown(temp, before.uid, before.gid).catch(() => {}); // needs privileges
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}
