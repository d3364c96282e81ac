// Application log: leveled lines with time, level and message, written to an
// injected sink (stdout by default).

import type { Clock } from "./clock.ts";

/** Log levels, quietest first; `LOG_LEVEL` takes these names in any case. */
export const LEVELS = ["off", "error", "warn", "info", "debug", "trace"] as const;
export type Level = typeof LEVELS[number];

/** Parses a level name case-insensitively; null when unknown. */
export function parseLevel(text: string): Level | null {
  const lower = text.toLowerCase();
  return (LEVELS as readonly string[]).includes(lower) ? lower as Level : null;
}

/** A leveled logger. Messages follow the Deno style: action first, values quoted. */
export interface Logger {
  readonly level: Level;
  enabled(level: Exclude<Level, "off">): boolean;
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  trace(message: string): void;
}

/** A written log line, for sinks that keep structure. */
export interface LogRecord {
  readonly time: Date;
  readonly level: Exclude<Level, "off">;
  readonly message: string;
}

/** Formats a record as `2026-01-02T03:04:05.678Z INFO  message`. */
export function formatRecord(r: LogRecord): string {
  return `${r.time.toISOString()} ${r.level.toUpperCase().padEnd(5)} ${r.message}`;
}

const encoder = new TextEncoder();

let stdoutGone = false;

/**
 * The default sink: one line to stdout. Logging never breaks what is being
 * logged: when stdout fails (a log reader that went away: EPIPE), lines are
 * dropped and the proxy, its signal handlers and its shutdown carry on.
 */
export function stdoutSink(r: LogRecord): void {
  if (stdoutGone) return;
  try {
    Deno.stdout.writeSync(encoder.encode(formatRecord(r) + "\n"));
  } catch (e) {
    stdoutGone = true;
    try {
      Deno.stderr.writeSync(
        encoder.encode(`Writing the log to stdout failed (${e}); further log lines are dropped\n`),
      );
    } catch { /* stderr is gone too */ }
  }
}

/** Where log records go and how they are stamped. */
export interface LoggerOptions {
  /** Default: one line to stdout. */
  readonly sink?: (record: LogRecord) => void;
  readonly now?: () => Date;
  /** Put before every message, e.g. "worker 2: ". */
  readonly prefix?: string;
}

/** Creates a logger at `level`. */
export function createLogger(level: Level, options: LoggerOptions = {}): Logger {
  const { sink = stdoutSink, now = () => new Date(), prefix = "" } = options;
  const rank = LEVELS.indexOf(level);
  const at = (l: Exclude<Level, "off">) => {
    const enabled = LEVELS.indexOf(l) <= rank;
    return enabled
      ? (message: string) => sink({ time: now(), level: l, message: prefix + message })
      : () => {};
  };
  return {
    level,
    enabled: (l) => LEVELS.indexOf(l) <= rank,
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    trace: at("trace"),
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = createLogger("off");

/**
 * A log line that may come once per request, said at most once a second: an
 * outage (no backend left) answered thousands of requests a second with a
 * WARN line each (21,000 lines and 1.6 MB a second). Lines held back are
 * counted and said in one line when the second is over.
 */
export class ThrottledLine {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  #lastAt = -Infinity;
  #held = 0;
  #last = "";
  #timer: number | undefined;

  constructor(clock: Clock, intervalMs = 1000) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  /** Says `message` through `say` now, or counts it for the summary line. */
  say(say: (message: string) => void, message: string): void {
    const now = this.#clock.now();
    if (now - this.#lastAt >= this.#intervalMs) {
      this.#lastAt = now;
      say(message);
      return;
    }
    this.#last = message;
    if (this.#held++ === 0) {
      this.#timer = this.#clock.setTimeout(() => {
        const held = this.#held;
        this.#held = 0;
        this.#lastAt = this.#clock.now();
        say(`${held} more like this in the last second, the last: ${this.#last}`);
      }, this.#intervalMs - (now - this.#lastAt));
    }
  }

  /** Drops a pending summary (the pool is gone). */
  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#held = 0;
  }
}
