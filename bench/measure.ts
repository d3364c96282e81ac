// One measured run: optional warm-up, backend counters before and after, wrk,
// peak RSS and the target's own notes. A failure becomes part of the record.

import type { Backends } from "./backends.ts";
import type { BenchContext } from "./context.ts";
import { type Load, parseWrk, runWrk, wrkArgs, type WrkResult } from "./wrk.ts";
import { listenOverflows } from "./netstat.ts";
import { machineCpu } from "./procs.ts";
import { preflight, type Rss, type Target } from "./target.ts";

/** Requests per backend during a run and how uneven they were. */
export interface Distribution {
  readonly names: readonly string[];
  readonly counts: readonly number[];
  /** Max deviation from an even share in %; null when no even share is expected or nothing came. */
  readonly spreadPct: number | null;
}

/** Everything recorded about one measured run. */
export interface RunRecord {
  readonly label: string;
  /** The exact wrk command line. */
  readonly command: string;
  /** The raw wrk output, relative to the repository root. */
  readonly rawPath: string;
  readonly result: WrkResult | null;
  readonly error: string | null;
  readonly distribution: Distribution | null;
  readonly rss: Rss | null;
  /** CPU microseconds the proxy used per completed request during the run; null when not measured. */
  readonly cpuUsPerRequest: number | null;
  /** The same for the backend processes (scenario 3's Python servers); null when not measured. */
  readonly backendCpuUsPerRequest: number | null;
  /** How busy all the machine's cores were during the run, in % (null when unreadable). */
  readonly machineBusyPct: number | null;
  readonly notes: readonly string[];
}

/** What to measure. */
export interface MeasureSpec {
  readonly target: Target;
  readonly backends: Backends;
  readonly load: Load;
  /** Seconds of unrecorded load before the measured run (0 for none). */
  readonly warmupS: number;
  /** File-name stem for the raw outputs, e.g. "s2-nginx". */
  readonly slug: string;
  /** Whether requests should spread evenly over the backends (false for a direct run). */
  readonly balanced: boolean;
}

/** Max deviation of any count from the even share, in % of that share; null for no requests. */
export function spreadPct(counts: readonly number[]): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const even = total / counts.length;
  return Math.max(...counts.map((c) => Math.abs(c - even))) / even * 100;
}

/** Runs one measurement; never throws for a failed run, the record carries the error. */
export async function measure(ctx: BenchContext, spec: MeasureSpec): Promise<RunRecord> {
  const rawRel = `bench/results/raw/${spec.slug}.txt`;
  const command = `wrk ${wrkArgs(spec.load, spec.target.url).join(" ")}`;
  const base = { label: spec.target.label, command, rawPath: rawRel };
  let notes: string[] = [];
  try {
    await preflight(spec.target.url, spec.target.caPem);
    if (spec.warmupS > 0) await warmUp(ctx, spec);
    const before = await spec.backends.counts();
    const problemsBefore = (await spec.backends.problems()).length;
    const finish = spec.target.watch ? await spec.target.watch() : null;
    const overflowsBefore = await listenOverflows();
    const cpuBefore = await spec.target.cpuSeconds?.() ?? null;
    const backendCpuBefore = await spec.backends.cpuSeconds?.() ?? null;
    const machineBefore = await machineCpu();
    const raw = await runWrk(ctx.group, {
      load: spec.load,
      url: spec.target.url,
      rawPath: `${ctx.rawDir}/${spec.slug}.txt`,
    });
    const machineAfter = await machineCpu();
    const backendCpuAfter = await spec.backends.cpuSeconds?.() ?? null;
    const cpuAfter = await spec.target.cpuSeconds?.() ?? null;
    const result = parseWrk(raw);
    const after = await spec.backends.counts();
    const overflows = overflowNote(overflowsBefore, await listenOverflows());
    const counts = after.map((n, i) => n - before[i]);
    notes = finish ? await finish() : [];
    if (overflows) notes.push(overflows);
    notes.push(...backendProblems((await spec.backends.problems()).slice(problemsBefore)));
    return {
      ...base,
      result,
      error: null,
      distribution: {
        names: spec.backends.names,
        counts,
        spreadPct: spec.balanced ? spreadPct(counts) : null,
      },
      rss: await spec.target.peakRss(),
      cpuUsPerRequest: perRequest(cpuBefore, cpuAfter, result.requests),
      backendCpuUsPerRequest: perRequest(backendCpuBefore, backendCpuAfter, result.requests),
      machineBusyPct: machineBefore === null || machineAfter === null ||
          machineAfter.total <= machineBefore.total
        ? null
        : (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total) *
          100,
      notes,
    };
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return {
      ...base,
      result: null,
      error,
      distribution: null,
      rss: null,
      cpuUsPerRequest: null,
      backendCpuUsPerRequest: null,
      machineBusyPct: null,
      notes,
    };
  }
}

/** CPU microseconds per request between two readings in seconds; null when one is missing. */
function perRequest(before: number | null, after: number | null, requests: number): number | null {
  return before === null || after === null || requests === 0
    ? null
    : (after - before) * 1e6 / requests;
}

function overflowNote(before: number | null, after: number | null): string | null {
  if (before === null || after === null || after === before) return null;
  return `kernel: ${after - before} listen-queue overflows during the run (machine-wide ` +
    "TcpExt ListenOverflows; each drops a SYN, and the client retries after 1 s)";
}

/** "backend logs: N errors" and the distinct messages with their counts. */
function backendProblems(lines: readonly string[]): string[] {
  if (lines.length === 0) return [];
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  return [
    `backend logs: ${lines.length} error line(s) during the run:`,
    ...[...counts].map(([line, n]) => `  ${n} x \`${line.slice(0, 200)}\``),
  ];
}

async function warmUp(ctx: BenchContext, spec: MeasureSpec): Promise<void> {
  await runWrk(ctx.group, {
    load: { ...spec.load, durationS: spec.warmupS },
    url: spec.target.url,
    rawPath: `${ctx.rawDir}/${spec.slug}.warmup.txt`,
  });
}

/** Starts a target, measures it, and stops it again; a start failure becomes a failed record. */
export async function measureStarted(
  ctx: BenchContext,
  start: () => Promise<Target>,
  spec: Omit<MeasureSpec, "target"> & { label: string },
): Promise<RunRecord> {
  let target: Target;
  try {
    target = await start();
  } catch (e) {
    const error = `Failed to start ${spec.label}: ${e instanceof Error ? e.message : e}`;
    return {
      label: spec.label,
      command: "(not run)",
      rawPath: "",
      result: null,
      error,
      distribution: null,
      rss: null,
      cpuUsPerRequest: null,
      backendCpuUsPerRequest: null,
      machineBusyPct: null,
      notes: [],
    };
  }
  try {
    return await measure(ctx, { ...spec, target });
  } finally {
    await target.stop();
  }
}
