// The benchmark harness: `deno run --allow-all bench/run.ts [--quick] [--only=1,2,3]
// [--strom-extra=TOML] [--strom-variant=name:TOML ...]`. Runs the scenarios,
// writes bench/results/latest.md and the raw wrk outputs, and stops everything
// it started, also on Ctrl-C and on errors.

import { parseArgs } from "node:util";
import { type Backends, startNginxBackends, startPythonBackends } from "./backends.ts";
import type { BenchContext, BenchOptions, StromVariant } from "./context.ts";
import { describeMachine, loadAverage } from "./machine.ts";
import { hasCommand, ProcessGroup } from "./procs.ts";
import { renderReport } from "./report.ts";
import { peerRuns, pythonRuns, type ScenarioReport, seedRuns, tlsRuns } from "./scenarios.ts";

const USAGE = `Usage: deno run --allow-all bench/run.ts [options]

  --quick                     every measured run lasts 3 s (same connection counts)
  --only=1,2,3,4,5            scenarios to run (default all; 4 and 5 are HTTPS)
  --strom-extra=TOML          lines added to Strom's pool in every scenario, e.g. 'transport = "fetch"'
  --strom-variant=NAME:TOML   a Strom run of scenario 2 (repeatable; default one "strom (default)")
  --strom-v8-variant=NAME:FLAGS  a Strom run of scenario 2 with these V8 flags after its own
                              (comma-separated, e.g. --concurrent-recompilation; repeatable)
                              with its own extra pool lines; "\\n" in TOML separates lines
  --rounds=N                  scenarios 2 and 3 go through all their targets N times, interleaved,
                              and report each target's median run (default 1)
  --help                      this text`;

/** The default Strom run of scenario 2. */
export const DEFAULT_VARIANT: StromVariant = { name: "strom (default)", toml: "", v8: "" };

/** Parses the harness's arguments; throws an Error with a message for bad ones. */
export function parseOptions(args: string[]): BenchOptions | null {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", default: "1,2,3,4,5" },
      "strom-extra": { type: "string", default: "" },
      "strom-variant": { type: "string", multiple: true, default: [] },
      "strom-v8-variant": { type: "string", multiple: true, default: [] },
      rounds: { type: "string", default: "1" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return null;
  const only = values.only.split(",").map((s) => Number(s.trim()));
  if (only.some((n) => ![1, 2, 3, 4, 5].includes(n))) {
    throw new Error(`Invalid --only "${values.only}" (expected scenario numbers 1 to 5)`);
  }
  const variants = [
    ...values["strom-variant"].map(parseVariant),
    ...values["strom-v8-variant"].map(parseV8Variant),
  ];
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) {
    throw new Error(`Invalid --rounds "${values.rounds}" (expected 1 to 9)`);
  }
  return {
    quick: values.quick,
    only,
    stromExtra: unescapeLines(values["strom-extra"]),
    stromVariants: variants.length ? variants : [DEFAULT_VARIANT],
    rounds,
  };
}

function parseVariant(text: string): StromVariant {
  const colon = text.indexOf(":");
  if (colon <= 0) throw new Error(`Invalid --strom-variant "${text}" (expected name:toml lines)`);
  return { name: text.slice(0, colon), toml: unescapeLines(text.slice(colon + 1)), v8: "" };
}

/** `NAME:--flag,--other-flag`: V8 flags, each a `--name` or `--name=value` without spaces. */
function parseV8Variant(text: string): StromVariant {
  const colon = text.indexOf(":");
  const flags = colon > 0 ? text.slice(colon + 1).split(",") : [];
  if (flags.length === 0 || !flags.every((f) => /^--[a-z][a-z0-9_-]*(=[^\s,]+)?$/.test(f))) {
    throw new Error(`Invalid --strom-v8-variant "${text}" (expected name:--flag,--flag=value)`);
  }
  return { name: text.slice(0, colon), toml: "", v8: flags.join(",") };
}

function unescapeLines(text: string): string {
  return text.replaceAll("\\n", "\n");
}

async function runScenarios(ctx: BenchContext): Promise<ScenarioReport[]> {
  const only = ctx.options.only;
  const reports: ScenarioReport[] = [];
  if ([1, 2, 4, 5].some((n) => only.includes(n))) {
    let backends: Backends | null = null;
    let error = "";
    try {
      backends = await startNginxBackends(ctx);
    } catch (e) {
      error = `Failed to start the nginx backends: ${e instanceof Error ? e.message : e}`;
    }
    try {
      if (only.includes(1)) {
        reports.push(backends ? await seedRuns(ctx, backends) : failed(1, error));
      }
      if (only.includes(2)) {
        reports.push(backends ? await peerRuns(ctx, backends) : failed(2, error));
      }
      if (only.includes(4) || only.includes(5)) {
        const ids = [4, 5].filter((n) => only.includes(n));
        reports.push(
          ...(backends ? await tlsRuns(ctx, backends, ids) : ids.map((n) => failed(n, error))),
        );
      }
    } finally {
      await backends?.stop();
    }
  }
  if (only.includes(3)) reports.push(await pythonRuns(ctx, () => startPythonBackends(ctx)));
  return reports;
}

function failed(id: number, error: string): ScenarioReport {
  return { id, title: `Scenario ${id}`, setup: [], runs: [], skipped: [], error };
}

async function clearRaw(rawDir: string): Promise<void> {
  await Deno.mkdir(rawDir, { recursive: true });
  for await (const entry of Deno.readDir(rawDir)) {
    if (entry.isFile && entry.name.endsWith(".txt")) await Deno.remove(`${rawDir}/${entry.name}`);
  }
}

function shellQuote(arg: string): string {
  return /^[\w=,.\/-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function countFailures(reports: readonly ScenarioReport[]): number {
  return reports.reduce(
    (n, s) => n + (s.error ? 1 : 0) + s.runs.filter((r) => !r.result).length,
    0,
  );
}

async function main(args: string[]): Promise<number> {
  let options: BenchOptions | null;
  try {
    options = parseOptions(args);
  } catch (e) {
    console.error(`bench: ${e instanceof Error ? e.message : e}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  if (!(await hasCommand("wrk"))) {
    console.error("bench: wrk is not installed (run `make bench-deps`)");
    return 1;
  }
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const rawDir = `${repo}/bench/results/raw`;
  await clearRaw(rawDir);
  const tmp = await Deno.makeTempDir({ prefix: "strom-bench-" });
  const ctx: BenchContext = { group: new ProcessGroup(), tmp, repo, rawDir, options };
  const cleanup = async () => {
    await ctx.group.stopAll();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  const onSignal = async () => {
    console.error("bench: interrupted; stopping everything it started (no report written)");
    await cleanup();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const started = performance.now();
    const machine = await describeMachine(repo);
    console.log(`bench: ${machine.cpu}, ${machine.cores} cores; temp dir ${tmp}`);
    const scenarios = await runScenarios(ctx);
    const report = renderReport({
      machine,
      commandLine: ["deno run --allow-all bench/run.ts", ...args.map(shellQuote)].join(" "),
      quick: options.quick,
      scenarios,
      elapsedS: (performance.now() - started) / 1000,
      loadAtEnd: await loadAverage(),
    });
    await Deno.writeTextFile(`${repo}/bench/results/latest.md`, report);
    const failures = countFailures(scenarios);
    console.log(`bench: wrote bench/results/latest.md (${failures} failed runs or scenarios)`);
    return failures ? 1 : 0;
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
