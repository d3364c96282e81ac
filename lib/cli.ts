// Command-line parsing and usage text. Pure: returns a command or a usage error.

import { parseArgs } from "node:util";
import { MAX_DURATION_MS } from "./config/duration.ts";
import { type Level, LEVELS, parseLevel } from "./log.ts";

/** What the user asked for. */
export type Command =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | {
    readonly kind: "run";
    readonly configPath: string;
    readonly check: boolean;
    readonly logLevel: Level;
    readonly graceMs: number;
  }
  | {
    readonly kind: "demo";
    readonly httpPort: number;
    readonly adminPort: number;
    readonly backendPort: number;
    readonly logLevel: Level;
    readonly graceMs: number;
  };

/** A command line that cannot be run; exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The text `--help` prints. */
export const USAGE = `Strom: an HTTP load balancer and reverse proxy (RustStrom-compatible config)

Usage:
  strom --config FILE              run the balancer
  strom --check --config FILE      validate a config, print a summary (exit 0 valid, 1 not)
  strom demo [PORT OPTIONS]        three demo backends behind Strom, to try it out

Options:
  -c, --config FILE      config file (TOML, RustStrom schema)
      --check            only validate the config
      --log-level LEVEL  ${LEVELS.join("|")} (default info; or env LOG_LEVEL)
      --grace SECONDS    on SIGINT/SIGTERM, wait this long for in-flight requests (default 10)
  -V, --version          print version and commit
  -h, --help             print this help

Demo port options (0 picks a free port):
      --http-port N      balancer port (default 8000)
      --admin-port N     admin API port (default 9090)
      --backend-port N   first of the three backend ports (default 8080)
`;

/** Parses arguments (without the program name) and the environment. */
export function parseCli(args: readonly string[], env: { LOG_LEVEL?: string }): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        check: { type: "boolean" },
        "log-level": { type: "string" },
        grace: { type: "string" },
        version: { type: "boolean", short: "V" },
        help: { type: "boolean", short: "h" },
        "http-port": { type: "string" },
        "admin-port": { type: "string" },
        "backend-port": { type: "string" },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0].replace(/\. To specify.*$|\.$/, ""));
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  const logLevel = readLevel(values["log-level"], env.LOG_LEVEL);
  const graceMs = values.grace === undefined ? 10_000 : readNumber("--grace", values.grace) * 1000;
  if (graceMs > MAX_DURATION_MS) {
    throw new UsageError(`Invalid --grace "${values.grace}" (at most ${MAX_DURATION_MS / 1000} s)`);
  }
  const [command, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`Unexpected argument "${extra[0]}"`);
  if (command === "demo") {
    if (values.config !== undefined || values.check) {
      throw new UsageError("The demo runs its own config: --config and --check do not apply");
    }
    return {
      kind: "demo",
      httpPort: readPort("--http-port", values["http-port"], 8000),
      adminPort: readPort("--admin-port", values["admin-port"], 9090),
      backendPort: readPort("--backend-port", values["backend-port"], 8080),
      logLevel,
      graceMs,
    };
  }
  if (command !== undefined) {
    throw new UsageError(
      `Unexpected argument "${command}"${
        command.endsWith(".toml") ? ` (did you mean --config ${command}?)` : ""
      }`,
    );
  }
  for (const flag of ["http-port", "admin-port", "backend-port"] as const) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} only applies to "strom demo"`);
  }
  if (values.config === undefined) throw new UsageError("Missing --config FILE");
  return {
    kind: "run",
    configPath: values.config,
    check: values.check ?? false,
    logLevel,
    graceMs,
  };
}

function readLevel(flag: string | undefined, env: string | undefined): Level {
  // An empty LOG_LEVEL is unset (shells and unit files leave it so); an empty flag is a mistake.
  const text = flag ?? (env === "" ? undefined : env);
  if (text === undefined) return "info";
  const level = parseLevel(text);
  if (level === null) {
    const source = flag !== undefined ? "--log-level" : "LOG_LEVEL";
    throw new UsageError(`Invalid ${source} "${text}" (expected one of ${LEVELS.join(", ")})`);
  }
  return level;
}

function readNumber(flag: string, text: string): number {
  // Decimal digits only: Number() also reads "0x50" (80) and "1e3".
  if (!/^\d{1,10}(\.\d+)?$/.test(text)) {
    throw new UsageError(`Invalid ${flag} "${text}" (expected a non-negative number)`);
  }
  return Number(text);
}

function readPort(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = readNumber(flag, text);
  if (!Number.isInteger(n) || n > 65535) {
    throw new UsageError(`Invalid ${flag} "${text}" (expected a port from 0 to 65535)`);
  }
  return n;
}
