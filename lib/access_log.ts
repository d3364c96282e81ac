// The access log: one line per request in JSON, Common or Combined Log Format,
// buffered so writing never waits on the disk in the request path.

import type { AccessLogConfig } from "./config/types.ts";

/** What is known about one request once its response is complete. */
export interface RequestRecord {
  readonly time: Date;
  readonly client: string;
  readonly method: string;
  /** Path and query as forwarded. */
  readonly path: string;
  readonly protocol: string;
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly pool: string | null;
  readonly backend: string | null;
  readonly attempts: number;
  readonly referer: string | null;
  readonly userAgent: string | null;
  /** The user of a request with Basic credentials (`Authorization`), as nginx's $remote_user. */
  readonly user?: string | null;
  /** Set by a RequestId middleware; only the JSON format has a field for it. */
  readonly requestId?: string | null;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `[10/Oct/2000:13:55:36 +0000]`-style time, in UTC. */
function clfTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

// Control characters and bytes past ASCII are what nginx escapes in a CLF line (a header
// value is a byte string: one character per byte).
// deno-lint-ignore no-control-regex
const UNSAFE = /[\\"\x00-\x1f\x7f-\xff]/g;
const NON_ASCII = /[\x80-\xff]/;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A header value (a byte string) as text for JSON: its bytes read as UTF-8
 * (what a client sends for `é`), or unchanged when they are not UTF-8.
 */
function headerText(value: string | null): string | null {
  if (value === null || !NON_ASCII.test(value)) return value;
  const bytes = Uint8Array.from(value, (c) => c.charCodeAt(0));
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return value;
  }
}

/** A byte (one character) as nginx escapes it in a CLF line: \xHH. */
const hexEscape = (c: string) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;

/** A quoted CLF field: `"` and `\` escaped, control characters and non-ASCII bytes as \xHH. */
function quoted(value: string | null): string {
  if (value === null) return '"-"';
  const escaped = value.replace(UNSAFE, (c) => c === '"' || c === "\\" ? `\\${c}` : hexEscape(c));
  return `"${escaped}"`;
}

// An unquoted CLF field also escapes what would end it (a space).
// deno-lint-ignore no-control-regex
const UNSAFE_BARE = /[\\" \x00-\x1f\x7f-\xff]/g;

/** An unquoted CLF field (the user): every byte `quoted` escapes, and spaces, as \xHH. */
function bare(value: string): string {
  return value.replace(UNSAFE_BARE, hexEscape);
}

/**
 * The user name of `Basic` credentials (RFC 7617: up to the first colon), or null: none, another
 * scheme, not base64, or no colon (then it may be a bare secret, an API key: never logged, as
 * nginx's $remote_user is empty then). As bytes (one character each), as header values are.
 */
export function basicUser(authorization: string | null): string | null {
  if (authorization === null || !/^basic /i.test(authorization)) return null;
  let decoded: string;
  try {
    decoded = atob(authorization.slice(6).trim());
  } catch {
    return null;
  }
  const colon = decoded.indexOf(":");
  return colon > 0 ? decoded.slice(0, colon) : null;
}

/** Formats one record as a log line (without the newline). */
export function formatAccess(format: AccessLogConfig["format"], r: RequestRecord): string {
  if (format === "json") {
    return JSON.stringify({
      time: r.time.toISOString(),
      client: r.client,
      method: r.method,
      path: r.path,
      protocol: r.protocol,
      status: r.status,
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
      duration_ms: Math.round(r.durationMs * 1000) / 1000,
      pool: r.pool,
      backend: r.backend,
      attempts: r.attempts,
      referer: headerText(r.referer),
      user_agent: headerText(r.userAgent),
      request_id: r.requestId ?? null,
      user: headerText(r.user ?? null),
    });
  }
  const request = quoted(`${r.method} ${r.path} ${r.protocol}`);
  const user = r.user ? bare(r.user) : "-";
  const common = `${r.client} - ${user} [${clfTime(r.time)}] ${request} ${r.status} ${
    r.bytesOut || "-"
  }`;
  return format === "common" ? common : `${common} ${quoted(r.referer)} ${quoted(r.userAgent)}`;
}

/** The log's file (appended to), or null for "stdout". */
async function openFile(path: string): Promise<Deno.FsFile | null> {
  if (path === "stdout") return null;
  return await Deno.open(path, { append: true, create: true, write: true });
}

/** Flush when this much is buffered, or after FLUSH_MS. */
const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 250;
const encoder = new TextEncoder();

/** A buffered access log writer. */
export class AccessLog {
  readonly #format: AccessLogConfig["format"];
  readonly #path: string;
  #file: Deno.FsFile | null;
  #lines: string[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  readonly #onError: (message: string) => void;
  /** Writes are failing (told once until one succeeds again). */
  #failing = false;

  private constructor(
    config: AccessLogConfig,
    file: Deno.FsFile | null,
    onError: (message: string) => void,
  ) {
    this.#format = config.format;
    this.#path = config.path;
    this.#file = file;
    this.#onError = onError;
  }

  /**
   * Opens the log (a file is appended to; "stdout" writes to standard output).
   * `onError` hears of lines that could not be written (a full disk), once
   * until writing works again.
   */
  static async open(
    config: AccessLogConfig,
    onError: (message: string) => void = () => {},
  ): Promise<AccessLog> {
    return new AccessLog(config, await openFile(config.path), onError);
  }

  /**
   * Opens its file anew, at the same path: after logrotate moved it away (SIGHUP),
   * lines go to a new file there. Rejects, writing on to the old file, when it cannot.
   */
  async reopen(): Promise<void> {
    let file: Deno.FsFile | null;
    try {
      file = await openFile(this.#path);
    } catch (e) {
      throw new Error(
        `Cannot open the access log ${this.#path} anew (${e}); writing on to the old one`,
      );
    }
    const before = this.#file;
    this.#file = file; // lines not yet written go to the new file
    await this.#writing; // writes under way end in the old one
    before?.close();
  }

  /** Queues one record. */
  write(record: RequestRecord): void {
    const line = formatAccess(this.#format, record) + "\n";
    this.#lines.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= FLUSH_BYTES) this.flush();
    else if (this.#timer === undefined) {
      const timer = setTimeout(() => this.flush(), FLUSH_MS);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Writes what is buffered; resolves when it is written. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return this.#writing;
    const chunk = encoder.encode(this.#lines.join(""));
    this.#lines = [];
    this.#bytes = 0;
    const target = this.#file ?? Deno.stdout;
    this.#writing = this.#writing.then(async () => {
      let offset = 0;
      while (offset < chunk.length) offset += await target.write(chunk.subarray(offset));
      if (this.#failing) this.#onError(`The access log ${this.#path} is written again`);
      this.#failing = false;
    }).catch((e) => {
      if (this.#failing) return;
      this.#failing = true;
      this.#onError(
        `Cannot write the access log ${this.#path} (${
          e instanceof Error ? e.message : e
        }): its lines are lost until it can be written again`,
      );
    });
    return this.#writing;
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    await this.flush();
    this.#file?.close();
  }
}
