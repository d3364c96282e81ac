// Running wrk and reading its text output (with `--latency` percentiles).

import type { ProcessGroup } from "./procs.ts";

/** One wrk load: threads, connections and duration in seconds. */
export interface Load {
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
  /** Extra request headers, e.g. `Accept-Encoding: gzip` as browsers send it. */
  readonly headers?: readonly string[];
}

/** Latencies in milliseconds. */
export interface Latency {
  readonly avg: number;
  readonly stdev: number;
  readonly max: number;
  readonly p50: number;
  readonly p75: number;
  readonly p90: number;
  readonly p99: number;
}

/** Socket error counts as wrk reports them. */
export interface SocketErrors {
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
}

/** What one wrk run measured. */
export interface WrkResult {
  readonly requests: number;
  readonly durationS: number;
  readonly reqPerSec: number;
  readonly latencyMs: Latency;
  /** wrk's "Non-2xx or 3xx responses" (it counts status >= 400). */
  readonly non2xx: number;
  readonly socketErrors: SocketErrors;
}

/** The wrk argument list for `load` against `url`, always with `--latency`. */
export function wrkArgs(load: Load, url: string): string[] {
  return [
    `-t${load.threads}`,
    `-c${load.connections}`,
    `-d${load.durationS}s`,
    ...(load.headers ?? []).flatMap((h) => ["-H", h]),
    "--latency",
    url,
  ];
}

/** Runs wrk, writing its output to `rawPath`; returns the output text, throws on failure. */
export async function runWrk(
  group: ProcessGroup,
  options: { load: Load; url: string; rawPath: string },
): Promise<string> {
  const args = wrkArgs(options.load, options.url);
  const proc = group.spawn("wrk", "wrk", args, {
    stdoutPath: options.rawPath,
    stderrPath: `${options.rawPath}.stderr`,
  });
  const status = await proc.status;
  const out = await Deno.readTextFile(options.rawPath);
  const err = (await Deno.readTextFile(`${options.rawPath}.stderr`)).trim();
  if (err === "") await Deno.remove(`${options.rawPath}.stderr`);
  if (!status.success) {
    throw new Error(`Failed to run "wrk ${args.join(" ")}" (code ${status.code}): ${err || out}`);
  }
  return err === "" ? out : `${out}\n[stderr]\n${err}`;
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60000, h: 3600000 };

/** Converts a wrk time such as "512.00us", "1.20ms", "2.00s" or "1.00m" to milliseconds. */
export function parseTimeMs(text: string): number {
  const match = text.match(/^([\d.]+)(us|ms|s|m|h)$/);
  if (!match) throw new Error(`Cannot parse wrk time "${text}"`);
  // Rounded to the microsecond, wrk's resolution, to drop floating-point noise (0.57 * 1).
  return Math.round(Number(match[1]) * TIME_UNITS[match[2]] * 1000) / 1000;
}

/** Parses wrk's text output; throws when a required line is missing. */
export function parseWrk(text: string): WrkResult {
  const latency = need(text, /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m, "Latency line");
  const total = need(text, /^\s*(\d+) requests in ([\d.]+\w+),/m, "requests line");
  const rps = need(text, /^Requests\/sec:\s+([\d.]+)/m, "Requests/sec line");
  const socket = text.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const non2xx = text.match(/Non-2xx or 3xx responses: (\d+)/);
  return {
    requests: Number(total[1]),
    durationS: parseTimeMs(total[2]) / 1000,
    reqPerSec: Number(rps[1]),
    latencyMs: {
      avg: parseTimeMs(latency[1]),
      stdev: parseTimeMs(latency[2]),
      max: parseTimeMs(latency[3]),
      p50: percentile(text, 50),
      p75: percentile(text, 75),
      p90: percentile(text, 90),
      p99: percentile(text, 99),
    },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: {
      connect: socket ? Number(socket[1]) : 0,
      read: socket ? Number(socket[2]) : 0,
      write: socket ? Number(socket[3]) : 0,
      timeout: socket ? Number(socket[4]) : 0,
    },
  };
}

function percentile(text: string, p: number): number {
  const match = need(text, new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m"), `${p}% latency line`);
  return parseTimeMs(match[1]);
}

function need(text: string, pattern: RegExp, what: string): RegExpMatchArray {
  const match = text.match(pattern);
  if (!match) throw new Error(`Cannot find the ${what} in wrk's output`);
  return match;
}

/** Sum of all socket errors. */
export function totalSocketErrors(e: SocketErrors): number {
  return e.connect + e.read + e.write + e.timeout;
}
