// Application log: leveled lines with time, level and message, written to an
// injected sink (stdout by default).

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
