// Compression: compresses backend answers (and Strom's own) for clients that
// accept it. Unlike RustStrom it produces zlib-wrapped `deflate` (RFC 9110
// §8.4.1.2), honours q-values, `*` and `identity`, adds `Vary`, and leaves
// alone what does not shrink or must not be touched (spec §2.10.3).

import type { Transform } from "node:stream";
import type { Clock } from "../clock.ts";
import { nodeZlib } from "../node_builtins.ts";
import { shownValue } from "../config/fields.ts";
import { HttpError, type MiddlewareSpec, StreamedBytes, withStreamedBytes } from "./middleware.ts";
import { type Coding, CODINGS, negotiate } from "./accept_encoding.ts";

/** Options: `min_size` bytes (default 1024), `encodings` in preference order, `skip_types`. */
export type CompressionOptions = {
  readonly minSize: number;
  readonly encodings: readonly Coding[];
  /** Media types (or `type/` prefixes) never compressed, on top of the built-in list. */
  readonly skipTypes: readonly string[];
};

/** Already compressed or streamed media: images (but SVG), audio, video, fonts, archives. */
const BUILT_IN_SKIP = [
  "image/",
  "audio/",
  "video/",
  "font/",
  "application/font-woff",
  "application/zip",
  "application/gzip",
  "application/x-gzip",
  "application/x-bzip2",
  "application/x-xz",
  "application/x-7z-compressed",
  "application/x-rar-compressed",
  "application/vnd.rar",
  "application/zstd",
  "application/pdf",
  "application/octet-stream",
  "application/grpc",
  "text/event-stream",
  "multipart/x-mixed-replace",
];
const COMPRESSIBLE_IMAGES = new Set(["image/svg+xml", "image/x-icon", "image/bmp"]);

/** Whether a media type is on the skip list (`type/` entries match a whole top-level type). */
export function skippedType(contentType: string, skip: readonly string[]): boolean {
  const type = contentType.split(";")[0].trim().toLowerCase();
  if (COMPRESSIBLE_IMAGES.has(type)) return false;
  return skip.some((s) =>
    s.endsWith("/") ? type.startsWith(s) : type === s || type.startsWith(s + "+")
  );
}

/** The compression middleware's spec. */
export const compression: MiddlewareSpec<CompressionOptions> = {
  name: "Compression",
  parse(r) {
    const minSize = r.int("min_size", { fallback: 1024 });
    const encodings: Coding[] = [];
    (r.array("encodings") ?? [...CODINGS]).forEach((v, i) => {
      if (typeof v === "string" && (CODINGS as readonly string[]).includes(v)) {
        if (!encodings.includes(v as Coding)) encodings.push(v as Coding);
      } else {
        const list = CODINGS.map((c) => `"${c}"`).join(", ");
        r.problems.push({
          path: r.at("encodings") + `[${i}]`,
          message: `unknown encoding ${shownValue(v)} (expected one of ${list})`,
        });
      }
    });
    const listed = r.has("encodings") ? r.raw("encodings") : undefined;
    if (Array.isArray(listed) && listed.length === 0) {
      r.problem("encodings", "is empty: nothing would ever be compressed");
    }
    const skipTypes: string[] = [];
    (r.array("skip_types") ?? []).forEach((v, i) => {
      if (typeof v === "string" && /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]*$/i.test(v)) {
        skipTypes.push(v.toLowerCase());
      } else {
        r.problems.push({
          path: r.at("skip_types") + `[${i}]`,
          message: `invalid media type ${shownValue(v)}: expected "type/subtype" or "type/"`,
        });
      }
    });
    return { minSize: minSize!, encodings, skipTypes };
  },
  create(options, deps) {
    loadCompressors(); // while the config is built, not on the first answer
    const skip = [...BUILT_IN_SKIP, ...options.skipTypes];
    return async (context, next) => {
      const response = await next();
      const { headers } = response;
      if (!eligible(response, skip)) return response;
      addVary(headers);
      const length = headers.get("content-length");
      if (response.body === null || context.method === "HEAD") return response;
      if (length !== null && Number(length) < options.minSize) return response;
      const accept = context.request.headers.get("accept-encoding");
      const coding = negotiate(accept, options.encodings);
      if (coding === null) return response;
      const size = length === null ? NaN : Number(length);
      if (size <= ONE_SHOT_LIMIT) return await compressWhole(response, coding);
      markEncoded(headers, coding);
      const count = new StreamedBytes();
      const body = pullThrough(response.body, compressor(coding, size || 0), {
        flushKind: loadCompressors()[coding].flushKind,
        clock: deps.clock,
        count,
      });
      return withStreamedBytes(
        new Response(body, { status: response.status, statusText: response.statusText, headers }),
        count,
      );
    };
  },
};

/**
 * Bodies of known length up to this size are read whole and compressed in one
 * call: a stream through node:zlib costs far more per response than the
 * compression of a small body itself.
 */
const ONE_SHOT_LIMIT = 64 * 1024;

/**
 * Compresses a whole body at once. What does not shrink (tiny or already
 * dense bodies) goes out as it came; its Vary still names Accept-Encoding.
 */
async function compressWhole(response: Response, coding: Coding): Promise<Response> {
  const { status, statusText, headers } = response;
  let input: Uint8Array<ArrayBuffer>;
  try {
    input = new Uint8Array(await response.arrayBuffer());
  } catch {
    throw new HttpError(502); // the backend's body broke off: nothing was sent yet
  }
  const output = compressBytes(coding, input);
  if (output.length >= input.length) return new Response(input, { status, statusText, headers });
  markEncoded(headers, coding);
  headers.set("content-length", String(output.length)); // what the access log counts
  return new Response(output, { status, statusText, headers });
}

/** Fields that describe the bytes as they were: wrong once they are compressed. */
const STALE_AFTER_ENCODING = [
  "content-length",
  // A range of the compressed bytes is not what a Range request would get (nginx drops it too).
  "accept-ranges",
  // Digests of the content or representation (RFC 9530, RFC 3230, RFC 1864).
  "content-digest",
  "repr-digest",
  "digest",
  "content-md5",
];

/** Headers of a body now sent with `coding`. */
function markEncoded(headers: Headers, coding: Coding): void {
  headers.set("content-encoding", coding);
  for (const name of STALE_AFTER_ENCODING) headers.delete(name);
  // The bytes change, so a strong validator must not survive (RFC 9110 §8.8.1).
  const etag = headers.get("etag");
  if (etag !== null && !etag.startsWith("W/")) headers.set("etag", `W/${etag}`);
}

/** Whether the status, headers and type allow compressing at all. */
function eligible(response: Response, skip: readonly string[]): boolean {
  const { status, headers } = response;
  if (status < 200 || status === 204 || status === 206 || status === 304) return false;
  const encoding = headers.get("content-encoding");
  if (encoding !== null && encoding.trim().toLowerCase() !== "identity") return false;
  if (headers.has("content-range")) return false;
  if (/(?:^|,)\s*no-transform\s*(?:,|$)/i.test(headers.get("cache-control") ?? "")) return false;
  // Without a Content-Type the client sniffs; RustStrom compressed those too.
  const type = headers.get("content-type");
  return type === null || !skippedType(type, skip);
}

/** Adds `Accept-Encoding` to Vary unless it is there (or Vary is `*`). */
function addVary(headers: Headers): void {
  const vary = headers.get("vary");
  if (vary === null) return headers.set("vary", "Accept-Encoding");
  const names = vary.split(",").map((v) => v.trim().toLowerCase());
  if (!names.includes("accept-encoding") && !names.includes("*")) {
    headers.set("vary", `${vary}, Accept-Encoding`);
  }
}

/** Brotli's quality for on-the-fly work (11, its default, would be far too slow). */
const BROTLI_QUALITY = 4;

/**
 * How each coding compresses, as a stream or in one call, with the same
 * settings. `deflate` is zlib-wrapped, as "deflate" means in HTTP.
 */
type Compressors = Record<Coding, {
  stream(sizeHint: number): Compressor;
  whole(bytes: Uint8Array): Uint8Array;
  /** How to flush the stream without ending it (Z_SYNC_FLUSH and its kin). */
  flushKind: number;
}>;

let compressors: Compressors | undefined;

/**
 * The codings' compressors; node:zlib is loaded on the first
 * call (see node_builtins.ts).
 */
function loadCompressors(): Compressors {
  return compressors ??= makeCompressors(nodeZlib());
}

function makeCompressors(zlib: typeof import("node:zlib")): Compressors {
  const brotliParams = (sizeHint: number): Record<number, number> => ({
    [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
    ...(sizeHint > 0 ? { [zlib.constants.BROTLI_PARAM_SIZE_HINT]: sizeHint } : {}),
  });
  return {
    br: {
      stream: (sizeHint) => zlib.createBrotliCompress({ params: brotliParams(sizeHint) }),
      whole: (bytes) => zlib.brotliCompressSync(bytes, { params: brotliParams(bytes.length) }),
      flushKind: zlib.constants.BROTLI_OPERATION_FLUSH,
    },
    zstd: {
      stream: () => zlib.createZstdCompress(),
      whole: (bytes) => zlib.zstdCompressSync(bytes),
      flushKind: zlib.constants.ZSTD_e_flush,
    },
    gzip: {
      stream: () => zlib.createGzip(),
      whole: (bytes) => zlib.gzipSync(bytes, zlibWindow(bytes.length)),
      flushKind: zlib.constants.Z_SYNC_FLUSH,
    },
    deflate: {
      stream: () => zlib.createDeflate(),
      whole: (bytes) => zlib.deflateSync(bytes, zlibWindow(bytes.length)),
      flushKind: zlib.constants.Z_SYNC_FLUSH,
    },
  };
}

/** A node:zlib compression stream. */
type Compressor = Transform & { flush(kind: number, callback: () => void): void };

/** A streaming compressor. */
function compressor(coding: Coding, sizeHint: number): Compressor {
  return loadCompressors()[coding].stream(sizeHint);
}

/**
 * After this long without input, what the compressor holds is flushed to the
 * client: a streamed answer (log lines, JSON events) is not held back until
 * the compressor's buffer fills or the backend ends it, as nginx and Caddy
 * flush an unbuffered answer.
 */
export const FLUSH_IDLE_MS = 5;

/** What pullThrough's race on the next chunk gives when the backend stays quiet. */
const IDLE = Symbol("idle");

/**
 * `source` through a node:zlib compressor, read only as fast as the client
 * takes the output: each pull reads input until the compressor has output to
 * give. (`Duplex.toWeb` read the whole backend answer into memory ahead of a
 * slow client, and a client that read nothing never tripped `send_timeout`.)
 * When no input came for FLUSH_IDLE_MS since input went in, the compressor is
 * flushed with `flushKind`.
 *
 * A write (or flush) is done when node:zlib calls back, but it calls back only
 * once its output buffer is below its high-water mark (16 KiB): a chunk that
 * compresses to more than that (random bytes, zip files) waits until its
 * output is read. So a pull waits for the compressor's next event (output, a
 * write done, the end) and takes output while a write is under way, instead of
 * awaiting the write alone, which never returned.
 */
export function pullThrough(
  source: ReadableStream<Uint8Array>,
  compressor: Compressor,
  options: { readonly flushKind: number; readonly clock: Clock; readonly count?: StreamedBytes },
): ReadableStream<Uint8Array> {
  const { flushKind, clock, count } = options;
  const reader = source.getReader();
  /** The next chunk, asked for and not yet written. */
  let next: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  /** Input went in since the last flush. */
  let unflushed = false;
  const idleOr = (read: Promise<ReadableStreamReadResult<Uint8Array>>) => {
    let timer = 0;
    const idle = new Promise<typeof IDLE>((resolve) => {
      timer = clock.setTimeout(() => resolve(IDLE), FLUSH_IDLE_MS);
    });
    return Promise.race([read, idle]).finally(() => clock.clearTimeout(timer));
  };
  let ended = false;
  let finished = false;
  /** A write or flush node:zlib has not called back for yet. */
  let busy = false;
  let failure: Error | null = null;
  /** The pull waiting for the compressor's next event, if one is. */
  let wake: (() => void) | null = null;
  const event = () => {
    const waiting = wake;
    wake = null;
    waiting?.();
  };
  const nextEvent = () => new Promise<void>((resolve) => wake = resolve);
  const done = () => {
    busy = false;
    event();
  };
  compressor.on("readable", event);
  compressor.on("error", (e: Error) => {
    failure = e;
    event();
  });
  compressor.on("end", () => {
    finished = true;
    event();
  });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        await pullOnce(controller);
      } catch (e) {
        count?.end();
        throw e;
      }
    },
    cancel(reason) {
      count?.end();
      compressor.destroy();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });

  async function pullOnce(controller: ReadableStreamDefaultController<Uint8Array>) {
    while (true) {
      if (failure) throw failure;
      const out: Uint8Array | null = compressor.read();
      if (out !== null) {
        if (count) count.bytes += out.byteLength;
        return controller.enqueue(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      }
      if (finished) {
        controller.close();
        count?.end();
        return;
      }
      // State is checked again after every event, so none is missed between check and wait.
      if (busy || ended) {
        await nextEvent();
        continue;
      }
      next ??= reader.read();
      const result = unflushed ? await idleOr(next) : await next;
      if (result === IDLE) {
        unflushed = false;
        busy = true;
        compressor.flush(flushKind, done);
        continue;
      }
      next = null;
      const { value, done: last } = result;
      if (last) {
        ended = true;
        compressor.end();
        continue;
      }
      busy = true;
      compressor.write(value, done);
      unflushed = true;
    }
  }
}

/** `bytes` compressed with `coding` in one call. */
function compressBytes(coding: Coding, bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = loadCompressors()[coding].whole(bytes);
  return new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
}

/**
 * A zlib window no larger than the body needs: zlib sets up (and clears) its
 * whole window and hash table for every call, ~270 KB at the defaults. For a
 * 2 KB body this halves the time (29 vs 16 us, measured with Deno 2.9.6) for
 * the same output, since no match can reach further back than the body.
 */
function zlibWindow(size: number): { windowBits: number; memLevel: number } {
  const windowBits = Math.min(15, Math.max(9, Math.ceil(Math.log2(Math.max(size, 1)))));
  return { windowBits, memLevel: Math.min(8, windowBits - 6) };
}
