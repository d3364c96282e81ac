// What every part of a benchmark run shares: the process group, the temp dir
// for configs and logs, the raw-output dir and the run's options.

import type { ProcessGroup } from "./procs.ts";

/** Options chosen on the command line. */
export interface BenchOptions {
  /** Shortens every measured run to 3 s. */
  readonly quick: boolean;
  /** Scenario numbers to run (default all). */
  readonly only: readonly number[];
  /** TOML lines added to every Strom pool, in every scenario (default none). */
  readonly stromExtra: string;
  /** Strom runs of scenario 2: a name, TOML lines added to the pool, V8 flags added. */
  readonly stromVariants: readonly StromVariant[];
  /** How many times scenarios 2 and 3 go through all their targets (the median run is reported). */
  readonly rounds: number;
}

/** A named set of per-pool TOML lines, or of V8 flags, for one Strom run in scenario 2. */
export interface StromVariant {
  readonly name: string;
  readonly toml: string;
  /** V8 flags after Strom's own (`--a,--no-b`; V8 takes the last of two that disagree); "" for none. */
  readonly v8: string;
}

/** The shared state of one harness run. */
export interface BenchContext {
  readonly group: ProcessGroup;
  /** Temp dir for configs, logs and served files; removed at the end. */
  readonly tmp: string;
  /** The repository root (where main.ts is). */
  readonly repo: string;
  /** Where raw wrk outputs go (git-ignored). */
  readonly rawDir: string;
  readonly options: BenchOptions;
}
