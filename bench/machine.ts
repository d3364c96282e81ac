// The machine and program versions a report was produced with.

import { capture } from "./procs.ts";

/** Where and with what the benchmark ran. */
export interface Machine {
  /** ISO date and time of the start of the run. */
  readonly date: string;
  readonly cpu: string;
  /** Logical processors in /proc/cpuinfo. */
  readonly cores: number;
  readonly kernel: string;
  /** Program name to its version line ("not installed" when missing). */
  readonly versions: Readonly<Record<string, string>>;
  /** Strom's git commit, with a mark when the working tree has changes. */
  readonly stromCommit: string;
  /** /proc/loadavg's 1, 5 and 15 minute averages when the run started. */
  readonly loadAtStart: string;
}

/** The 1, 5 and 15 minute load averages from /proc/loadavg, or "unknown". */
export async function loadAverage(): Promise<string> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text.split(" ").slice(0, 3).join(" ") || "unknown";
}

/** Reads CPU model and count from /proc/cpuinfo, the kernel, and every program's version. */
export async function describeMachine(repo: string): Promise<Machine> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown";
  const cores = cpuinfo.match(/^processor\s*:/gm)?.length ?? navigator.hardwareConcurrency;
  const versions: Record<string, string> = { deno: `deno ${Deno.version.deno}` };
  const probes: [string, string[]][] = [
    ["nginx", ["-v"]],
    ["haproxy", ["-v"]],
    ["caddy", ["version"]],
    ["wrk", ["-v"]],
    ["python3", ["--version"]],
  ];
  for (const [cmd, args] of probes) {
    versions[cmd] = firstLine(await capture(cmd, args)) || "not installed";
  }
  return {
    date: new Date().toISOString(),
    cpu: model.trim(),
    cores,
    kernel: `${Deno.build.os} ${Deno.osRelease()} (${Deno.build.arch})`,
    versions,
    stromCommit: await gitCommit(repo),
    loadAtStart: await loadAverage(),
  };
}

function firstLine(text: string): string {
  // wrk -v prints its version and then its usage text.
  return text.split("\n")[0].replace(/\s*Copyright.*$/, "").trim();
}

async function gitCommit(repo: string): Promise<string> {
  const head = await capture("git", ["-C", repo, "rev-parse", "--short", "HEAD"]);
  if (!/^[0-9a-f]+$/.test(head)) return "unknown (not a git checkout)";
  const dirty = await capture("git", ["-C", repo, "status", "--porcelain", "--", "lib", "main.ts"]);
  return dirty ? `${head} (with uncommitted changes in lib/ or main.ts)` : head;
}
