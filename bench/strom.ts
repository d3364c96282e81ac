// Strom as a target: writes its config, starts `main.ts` with the Deno that
// runs this harness, and watches its admin counters and its log lines so the
// report can say what Strom itself saw go wrong during a run.

import type { BenchContext } from "./context.ts";
import { exitMessage, freePort, type Proc, readyOrStop, waitFor, waitForPort } from "./procs.ts";
import { processCpu, processRss, type Target, targetUrl } from "./target.ts";
import type { BenchTls } from "./tls.ts";
import { PERMISSIONS, RUN_FLAGS, V8_FLAGS } from "../scripts/build.ts";

/** Options for a Strom target. */
export interface StromOptions {
  readonly label: string;
  readonly addresses: readonly string[];
  /** TOML lines appended to the pool table (e.g. `transport = "fetch"`); "" for none. */
  readonly extra: string;
  /** V8 flags after Strom's own (a scenario 2 variant); "" or absent for none. */
  readonly v8?: string;
  /** Terminate TLS with this certificate: wrk then loads the HTTPS listener. */
  readonly tls?: BenchTls;
}

/** Keys a variant may set that belong to the top level, not to the pool. */
const TOP_LEVEL = new RegExp(
  `^\\s*(${
    [
      "workers",
      "memory_trim_interval",
      "send_timeout",
      "client_header_timeout",
      "client_idle_timeout",
      "trusted_proxies",
    ].join("|")
  })\\s*=`,
);

/** The config the benchmark runs Strom with: round-robin, health checks every 10 s, admin on. */
export function stromConfig(
  ports: { http: number; admin: number; https?: number },
  pool: { addresses: readonly string[]; extra: string; tls?: BenchTls },
): string {
  const lines = pool.extra.split("\n");
  const top = lines.filter((l) => TOP_LEVEL.test(l)).join("\n");
  const extra = lines.filter((l) => !TOP_LEVEL.test(l)).join("\n");
  const https = pool.tls && ports.https !== undefined
    ? `https_address = "127.0.0.1:${ports.https}"\ndefault_certificate = "bench"\n`
    : "";
  const certificate = pool.tls
    ? `\n[certificates."bench"]\ntype = "Local"\ncertificate_path = "${pool.tls.cert}"\n` +
      `private_key_path = "${pool.tls.key}"\n`
    : "";
  return `http_address = "127.0.0.1:${ports.http}"
admin_address = "127.0.0.1:${ports.admin}"
${https}${top}

[health_interval]
check_every = 10

[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = [${pool.addresses.map((a) => `"${a}"`).join(", ")}]
schemes = ["HTTP"${pool.tls ? ', "HTTPS"' : ""}]
strategy = "RoundRobin"
${extra}
${certificate}`;
}

/**
 * The exact command line Strom is started with (for the report): as `make
 * start` and the compiled binary run it, with `v8` flags after Strom's own.
 */
export function stromCommand(configPath: string, v8 = ""): string[] {
  return [
    "run",
    ...PERMISSIONS,
    ...RUN_FLAGS.map((flag) => v8 && flag === V8_FLAGS ? `${flag},${v8}` : flag),
    "main.ts",
    "--config",
    configPath,
  ];
}

/** Starts Strom and waits for its "Started listening" line and its admin listener. */
export async function startStrom(ctx: BenchContext, options: StromOptions): Promise<Target> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "strom-" });
  const admin = freePort();
  const ports = { http: freePort(), admin, https: options.tls ? freePort() : undefined };
  const config = stromConfig(ports, options);
  await Deno.writeTextFile(`${dir}/strom.toml`, config);
  const proc = ctx.group.spawn(
    options.label,
    Deno.execPath(),
    stromCommand(`${dir}/strom.toml`, options.v8),
    {
      cwd: ctx.repo,
      stdoutPath: `${dir}/stdout.log`,
      stderrPath: `${dir}/stderr.log`,
    },
  );
  const port = await readyOrStop(ctx.group, proc, listeningPort(proc));
  await readyOrStop(ctx.group, proc, waitForPort(admin, proc));
  if (ports.https !== undefined) await readyOrStop(ctx.group, proc, waitForPort(ports.https, proc));
  return {
    label: options.label,
    ...(ports.https === undefined
      ? targetUrl(port, undefined)
      : targetUrl(ports.https, options.tls)),
    peakRss: processRss(proc.pid),
    cpuSeconds: processCpu(proc.pid),
    watch: () => watchStrom(proc, admin),
    stop: () => ctx.group.stop(proc),
  };
}

/** Reads the balancer's port from Strom's `Started listening on ... (http_address, port N)` line. */
function listeningPort(proc: Proc): Promise<number> {
  return waitFor('Strom\'s "Started listening" line', async () => {
    const text = await Deno.readTextFile(proc.stdoutPath).catch(() => "");
    const match = text.match(/Started listening on .* \(http_address, port (\d+)\)/);
    if (match) return Number(match[1]);
    if (proc.exited()) throw new Error(await exitMessage(proc));
    return null;
  }, 30000);
}

interface Counters {
  requests: number;
  failures: number;
}

async function adminCounters(adminPort: number): Promise<Counters | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/pools`, {
      signal: AbortSignal.timeout(5000),
    });
    const pools = await res.json() as { backends: Counters[] }[];
    const backends = pools.flatMap((p) => p.backends);
    return {
      requests: backends.reduce((n, b) => n + b.requests, 0),
      failures: backends.reduce((n, b) => n + b.failures, 0),
    };
  } catch {
    return null;
  }
}

async function watchStrom(proc: Proc, adminPort: number): Promise<() => Promise<string[]>> {
  const before = await adminCounters(adminPort);
  const offset = (await Deno.stat(proc.stdoutPath)).size;
  return async () => {
    const after = await adminCounters(adminPort);
    const notes = [counterNote(before, after)];
    const lines = await problemLines(proc.stdoutPath, offset);
    notes.push(...summarizeProblems(lines));
    if (proc.exited()) notes.push(`Strom exited during the run: ${await exitMessage(proc)}`);
    return notes;
  };
}

function counterNote(before: Counters | null, after: Counters | null): string {
  if (!before || !after) return "Strom admin API: counters unavailable";
  const requests = after.requests - before.requests;
  const failures = after.failures - before.failures;
  return `Strom admin API: ${requests} requests forwarded, ${failures} backend failures`;
}

/** WARN and ERROR lines Strom logged after byte `offset`, without their timestamps. */
async function problemLines(path: string, offset: number): Promise<string[]> {
  const bytes = await Deno.readFile(path);
  const text = new TextDecoder().decode(bytes.subarray(offset));
  return text.split("\n")
    .filter((l) => /^\S+ (WARN|ERROR) /.test(l))
    .map((l) => l.replace(/^\S+ /, ""));
}

/** "N WARN/ERROR lines" plus the three most frequent messages with their counts. */
export function summarizeProblems(lines: readonly string[]): string[] {
  if (lines.length === 0) return ["Strom log: no WARN or ERROR lines"];
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return [
    `Strom log: ${lines.length} WARN/ERROR lines, ${counts.size} distinct; most frequent:`,
    ...top.map(([line, n]) => `  ${n} x \`${line.slice(0, 300)}\``),
  ];
}
