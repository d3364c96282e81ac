// The scenarios: the seed's runs against Strom, Strom side by side with nginx,
// HAProxy and Caddy, the seed's Python set-up with nginx next to Strom, and
// HTTPS termination side by side (over kept-alive and over new connections).

import type { Backends } from "./backends.ts";
import type { BenchContext } from "./context.ts";
import { measure, measureStarted, type RunRecord } from "./measure.ts";
import {
  CADDY,
  DENO_FLOOR_LABEL,
  HAPROXY,
  NGINX,
  NGINX_FORWARDED,
  type Peer,
  peerAvailable,
  startDenoFloor,
} from "./peers.ts";
import { startStrom } from "./strom.ts";
import type { Target } from "./target.ts";
import type { Load } from "./wrk.ts";
import { benchCertificate, type BenchTls } from "./tls.ts";

/** The outcome of one scenario, as the report shows it. */
export interface ScenarioReport {
  readonly id: number;
  readonly title: string;
  /** Set-up lines for the report (Markdown). */
  readonly setup: readonly string[];
  readonly runs: readonly RunRecord[];
  /** Peers that were not run, with the reason. */
  readonly skipped: readonly string[];
  /** A failure that stopped the whole scenario, or null. */
  readonly error: string | null;
}

/** Seconds of warm-up before each measured run in scenarios 2 and 3. */
export const WARMUP_S = 2;
/** Measured duration of every run with `--quick`. */
export const QUICK_S = 3;

function duration(ctx: BenchContext, seconds: number): number {
  return ctx.options.quick ? QUICK_S : seconds;
}

function joinToml(...parts: string[]): string {
  return parts.filter((p) => p.trim() !== "").join("\n");
}

/** Scenario 1: the seed's three wrk runs against Strom over three nginx backends. */
export async function seedRuns(ctx: BenchContext, backends: Backends): Promise<ScenarioReport> {
  const loads: [string, Load][] = [
    ["light", { threads: 4, connections: 10, durationS: duration(ctx, 10) }],
    ["medium", { threads: 4, connections: 50, durationS: duration(ctx, 30) }],
    ["heavy", { threads: 8, connections: 100, durationS: duration(ctx, 30) }],
  ];
  const report = {
    id: 1,
    title: "The seed's three runs against Strom",
    setup: [
      "Strom, RoundRobin over three nginx backends, health checks every 10 s, admin API on.",
      "The three runs follow each other against one Strom process, without warm-up (as in the seed).",
      `Distribution: ${backends.countNote}.`,
    ],
    skipped: [],
  };
  let strom: Target;
  try {
    strom = await startStrom(ctx, {
      label: "Strom",
      addresses: backends.addresses,
      extra: ctx.options.stromExtra,
    });
  } catch (e) {
    return { ...report, runs: [], error: `Failed to start Strom: ${errorText(e)}` };
  }
  const runs: RunRecord[] = [];
  try {
    for (const [name, load] of loads) {
      const spec = {
        target: strom,
        backends,
        load,
        warmupS: 0,
        slug: `s1-${name}`,
        balanced: true,
      };
      const record = await measure(ctx, spec);
      runs.push({ ...record, label: `${name} (t${load.threads} c${load.connections})` });
      logRun(1, runs[runs.length - 1]);
    }
  } finally {
    await strom.stop();
  }
  return { ...report, runs, error: null };
}

/** Scenario 2: the backends directly, then nginx, HAProxy, Caddy and Strom, one after another. */
export async function peerRuns(ctx: BenchContext, backends: Backends): Promise<ScenarioReport> {
  // Like a browser, every client asks for gzip (so a Compression variant has work to do).
  const load = {
    threads: 2,
    connections: 50,
    durationS: duration(ctx, 20),
    headers: ["Accept-Encoding: gzip"],
  };
  const common = { backends, load, warmupS: WARMUP_S, balanced: true };
  const skipped: string[] = [];
  const targets: RoundTarget[] = [{
    label: "direct",
    run: (round) =>
      measure(ctx, {
        ...common,
        target: directTarget(backends),
        slug: `s2-direct${round}`,
        balanced: false,
      }),
  }];
  for (const peer of [NGINX, HAPROXY, CADDY]) {
    if (!(await peerAvailable(peer))) {
      skipped.push(`${peer.label}: \`${peer.binary}\` is not installed`);
      continue;
    }
    const start = () => peer.start(ctx, backends.addresses);
    targets.push({
      label: peer.label,
      run: (round) =>
        measureStarted(ctx, start, { ...common, label: peer.label, slug: slug(peer) + round }),
    });
  }
  targets.push({
    label: DENO_FLOOR_LABEL,
    run: (round) =>
      measureStarted(ctx, () => startDenoFloor(ctx, backends.addresses), {
        ...common,
        label: DENO_FLOOR_LABEL,
        slug: `s2-deno-floor${round}`,
      }),
  });
  for (const [i, variant] of ctx.options.stromVariants.entries()) {
    const extra = joinToml(ctx.options.stromExtra, variant.toml);
    const start = () =>
      startStrom(ctx, {
        label: variant.name,
        addresses: backends.addresses,
        extra,
        v8: variant.v8,
      });
    targets.push({
      label: variant.name,
      run: (round) =>
        measureStarted(ctx, start, {
          ...common,
          label: variant.name,
          slug: `s2-strom-${i + 1}${round}`,
        }),
    });
  }
  const { rounds } = ctx.options;
  const runs = await inRounds(2, rounds, targets);
  return {
    id: 2,
    title: "Strom side by side with nginx, HAProxy and Caddy",
    setup: [
      "The same three nginx backends, first reached directly (wrk on b1 only), then through each " +
      "proxy, one after another, each started fresh with one core's worth of workers.",
      `Each measured run follows a ${WARMUP_S} s warm-up run at the same load (not recorded).`,
      ...roundsNote(rounds),
      "nginx: `worker_processes 1`, upstream `keepalive 64`. HAProxy: `nbthread 1`, " +
      "`balance roundrobin`, `http-reuse always`. Caddy: `GOMAXPROCS=1`, `reverse_proxy` with " +
      "`lb_policy round_robin`, admin endpoint off. Strom: as in scenario 1, plus each variant's lines.",
      `${DENO_FLOOR_LABEL}: bench/deno_floor.ts, the least a proxy on Deno does (\`Deno.serve\`, ` +
      "pooled keep-alive `Deno.connect`, Content-Length bodies; no header rules, health checks, " +
      "metrics or timeouts), with Strom's Deno and V8 flags: the gap to it is what Strom's " +
      "features cost, the gap from it to nginx is the runtime's.",
      ...ctx.options.stromVariants.map((v) =>
        `Strom variant "${v.name}": ${
          v.toml.trim() ? `\`${v.toml.replaceAll("\n", "; ")}\`` : "no extra lines"
        }${v.v8 ? `, V8 flags \`${v.v8}\` after Strom's own` : ""}`
      ),
      `Distribution: ${backends.countNote}.`,
    ],
    runs,
    skipped,
    error: null,
  };
}

/**
 * Scenarios 4 and 5: every proxy terminates TLS (the same EC P-256 certificate)
 * in front of the nginx backends; wrk keeps its connections (4), or opens a new
 * TLS connection for every request (5: handshakes dominate). One round each.
 */
export async function tlsRuns(
  ctx: BenchContext,
  backends: Backends,
  ids: readonly number[] = [4, 5],
): Promise<ScenarioReport[]> {
  const scenarios = [
    {
      id: 4,
      title: "HTTPS side by side, connections kept alive",
      load: { threads: 2, connections: 50, durationS: duration(ctx, 20) },
      slug: "s4",
      what: "wrk keeps its 50 connections, so this measures encrypting and decrypting requests.",
    },
    {
      id: 5,
      title: "HTTPS side by side, a new TLS connection per request",
      load: {
        threads: 2,
        connections: 50,
        durationS: duration(ctx, 10),
        headers: ["Connection: close"],
      },
      slug: "s5",
      what: "wrk sends `Connection: close`, so every request pays a full TLS handshake " +
        "(TCP connect included).",
    },
  ].filter((s) => ids.includes(s.id));
  let tls: BenchTls;
  try {
    tls = await benchCertificate(ctx);
  } catch (e) {
    const error = `Cannot make a certificate: ${errorText(e)}`;
    return scenarios.map((s) => ({ ...s, setup: [], runs: [], skipped: [], error }));
  }
  const peers: Peer[] = [];
  const skipped: string[] = [];
  for (const peer of [NGINX, HAPROXY, CADDY]) {
    if (await peerAvailable(peer)) peers.push(peer);
    else skipped.push(`${peer.label}: \`${peer.binary}\` is not installed`);
  }
  const reports: ScenarioReport[] = [];
  for (const scenario of scenarios) {
    const common = { backends, load: scenario.load, warmupS: WARMUP_S, balanced: true };
    const runs: RunRecord[] = [];
    for (const peer of peers) {
      const start = () => peer.start(ctx, backends.addresses, tls);
      runs.push(
        await measureStarted(ctx, start, {
          ...common,
          label: peer.label,
          slug: `${scenario.slug}-${peer.binary}`,
        }),
      );
      logRun(scenario.id, runs.at(-1)!);
    }
    const strom = () =>
      startStrom(ctx, {
        label: "Strom",
        addresses: backends.addresses,
        extra: ctx.options.stromExtra,
        tls,
      });
    runs.push(
      await measureStarted(ctx, strom, {
        ...common,
        label: "Strom",
        slug: `${scenario.slug}-strom`,
      }),
    );
    logRun(scenario.id, runs.at(-1)!);
    reports.push({
      id: scenario.id,
      title: scenario.title,
      setup: [
        "The three nginx backends of scenario 2 over plain HTTP; each proxy terminates TLS with " +
        "the same certificate (EC P-256, signed by a throwaway CA) and is configured as in " +
        "scenario 2 otherwise (Strom: the default run, with `https_address`).",
        scenario.what,
        `Each measured run follows a ${WARMUP_S} s warm-up run at the same load; one round.`,
        `Distribution: ${backends.countNote}.`,
      ],
      runs,
      skipped,
      error: null,
    });
  }
  return reports;
}

/** A target of a scenario measured in rounds: `run` measures it once (`round` ends its slug). */
interface RoundTarget {
  readonly label: string;
  run(round: string): Promise<RunRecord>;
}

/**
 * Goes through the list of targets once per round, one after another, and
 * keeps each target's median run: a noisy moment on the shared machine falls
 * on one round of every target rather than on one target's only run.
 */
async function inRounds(
  scenario: number,
  rounds: number,
  targets: readonly RoundTarget[],
): Promise<RunRecord[]> {
  const byTarget: RunRecord[][] = targets.map(() => []);
  for (let r = 1; r <= rounds; r++) {
    for (const [i, target] of targets.entries()) {
      const run = await target.run(rounds > 1 ? `-r${r}` : "");
      byTarget[i].push(run);
      logRun(scenario, run);
    }
  }
  return byTarget.map(medianRun);
}

function roundsNote(rounds: number): string[] {
  if (rounds <= 1) return [];
  return [
    `${rounds} rounds: the whole list of targets was measured ${rounds} times, one target ` +
    "after another, and each row is that target's median run by req/s (every round's req/s " +
    "is in the notes), so a noisy moment on the shared machine does not decide a ratio.",
  ];
}

/** The run with the median req/s (failed runs count as 0), with every round's req/s in its notes. */
export function medianRun(runs: readonly RunRecord[]): RunRecord {
  const rate = (r: RunRecord) => r.result?.reqPerSec ?? 0;
  const sorted = [...runs].sort((a, b) => rate(a) - rate(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (runs.length === 1) return median;
  const each = runs.map((r) => r.result ? Math.round(rate(r)).toLocaleString("en-US") : "failed");
  const notes = [
    ...median.notes,
    `req/s in rounds 1-${runs.length}: ${each.join(", ")} (median shown)`,
  ];
  if (runs.some((r) => r.cpuUsPerRequest !== null)) {
    const cpu = runs.map((r) => r.cpuUsPerRequest?.toFixed(0) ?? "-");
    notes.push(`proxy CPU us/request in rounds 1-${runs.length}: ${cpu.join(", ")}`);
  }
  return { ...median, notes };
}

function slug(peer: Peer): string {
  return `s2-${peer.binary}`;
}

function directTarget(backends: Backends): Target {
  return {
    label: `direct (${backends.names[0]})`,
    url: `http://${backends.addresses[0]}/`,
    peakRss: () => Promise.resolve(null),
    stop: () => Promise.resolve(),
  };
}

const CAPPED_TOML = "[backend_pools.client]\nmax_connections_per_host = 4";
const CAPPED_LABEL = "Strom, max_connections_per_host = 4";

/** Scenario 3: three Python http.server backends, Strom and then nginx in front of them. */
export async function pythonRuns(
  ctx: BenchContext,
  startBackends: () => Promise<Backends>,
): Promise<ScenarioReport> {
  const load = { threads: 4, connections: 50, durationS: duration(ctx, 10) };
  const report = {
    id: 3,
    title: "The seed's set-up: Python http.server backends, Strom next to nginx",
    setup: [
      'Three `python3 -m http.server` backends, each serving an index.html with `{"backend":"pN"}`.',
      "Strom (as in scenario 1), Strom with `max_connections_per_host = 4` in the pool's " +
      `\`[backend_pools.client]\`, the ${DENO_FLOOR_LABEL} (as in scenario 2; it closes a ` +
      "connection whose answer is HTTP/1.0), then nginx (as in scenario 2), then nginx sending " +
      "the six X-Forwarded-* fields Strom adds (nginx adds none by default, and http.server " +
      `parses every field), on the same backends, each after a ${WARMUP_S} s warm-up run.`,
      ...roundsNote(ctx.options.rounds),
      "http.server answers HTTP/1.0 and closes every connection, so each proxy connects anew for " +
      "every request, and it listens with a backlog of 5 (socketserver's `request_queue_size`): " +
      "under this load SYNs are dropped and retried after 1 s, which sets the tail latencies " +
      "(see the kernel notes).",
    ],
    skipped: [] as string[],
  };
  let backends: Backends;
  try {
    backends = await startBackends();
  } catch (e) {
    return { ...report, runs: [], error: `Failed to start the Python backends: ${errorText(e)}` };
  }
  let runs: RunRecord[];
  try {
    const common = { backends, load, warmupS: WARMUP_S, balanced: true };
    const extra = ctx.options.stromExtra;
    const started = (label: string, slug: string, start: () => Promise<Target>): RoundTarget => ({
      label,
      run: (round) => measureStarted(ctx, start, { ...common, label, slug: slug + round }),
    });
    const targets = [
      started(
        "Strom",
        "s3-strom",
        () => startStrom(ctx, { label: "Strom", addresses: backends.addresses, extra }),
      ),
      // The same with a cap on connections per backend: requests wait in Strom
      // instead of overflowing http.server's listen queue (no 1 s SYN retries).
      started(CAPPED_LABEL, "s3-strom-capped", () =>
        startStrom(ctx, {
          label: CAPPED_LABEL,
          addresses: backends.addresses,
          extra: `${extra}\n${CAPPED_TOML}`,
        })),
      started(DENO_FLOOR_LABEL, "s3-deno-floor", () => startDenoFloor(ctx, backends.addresses)),
    ];
    if (await peerAvailable(NGINX)) {
      targets.push(
        started("nginx", "s3-nginx", () => NGINX.start(ctx, backends.addresses)),
        started(
          NGINX_FORWARDED.label,
          "s3-nginx-forwarded",
          () => NGINX_FORWARDED.start(ctx, backends.addresses),
        ),
      );
    } else {
      report.skipped.push("nginx: `nginx` is not installed");
    }
    runs = await inRounds(3, ctx.options.rounds, targets);
  } finally {
    await backends.stop();
  }
  return {
    ...report,
    setup: [...report.setup, `Distribution: ${backends.countNote}.`],
    runs,
    error: null,
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Prints a one-line summary of a finished run. */
function logRun(scenario: number, run: RunRecord): void {
  const r = run.result;
  if (!r) {
    console.log(`[${scenario}] ${run.label}: FAILED: ${run.error}`);
    return;
  }
  const e = r.socketErrors;
  const d = run.distribution;
  const spread = d?.spreadPct == null ? "" : ` (spread ${d.spreadPct.toFixed(1)}%)`;
  const dist = d ? `, backends ${d.counts.join("/")}${spread}` : "";
  console.log(
    `[${scenario}] ${run.label}: ${r.requests} req in ${r.durationS}s, ${r.reqPerSec} req/s, ` +
      `avg ${r.latencyMs.avg}ms p50 ${r.latencyMs.p50}ms p75 ${r.latencyMs.p75}ms ` +
      `p90 ${r.latencyMs.p90}ms p99 ${r.latencyMs.p99}ms max ${r.latencyMs.max}ms, ` +
      `non-2xx ${r.non2xx}, socket errors c${e.connect}/r${e.read}/w${e.write}/t${e.timeout}${dist}`,
  );
  for (const note of run.notes) console.log(`    ${note}`);
}
