// The soak run: Strom under moderate load for a long time (default 10 min)
// with a config reload every 10 s and one backend restarted every minute.
// Reports requests, errors, RSS and open descriptors over time, with PNG charts.
//
//   deno run --allow-all bench/soak.ts [--minutes=10] [--concurrency=8]
//
// Writes bench/results/soak.md and bench/results/soak-{rss,fds,rps}.png.

import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { lineChart } from "./png.ts";
import { PERMISSIONS, RUN_FLAGS } from "../scripts/build.ts";
import { freePort } from "./procs.ts";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const RESULTS = join(ROOT, "bench", "results");
const FLAGS = [...PERMISSIONS, ...RUN_FLAGS]; // as `make start` runs it

/** A backend process on a fixed port (so a restart comes back on the same address). */
class Backend {
  child: Deno.ChildProcess | null = null;
  constructor(readonly port: number) {}
  async start(): Promise<void> {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", join(ROOT, "tests/fixtures/backend.ts"), String(this.port)],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    while (!(await reader.read()).value?.includes("listening")) { /* wait */ }
    reader.releaseLock();
  }
  async kill(): Promise<void> {
    try {
      this.child?.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child?.status;
    await this.child?.stdout.cancel().catch(() => {});
  }
}

interface Sample {
  readonly t: number;
  readonly rssMb: number;
  readonly fds: number;
  /** Threads of the Strom process (the runtime's pools and V8's; a leak would show here). */
  readonly threads: number;
  readonly rps: number;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "10" },
      concurrency: { type: "string", default: "8" },
    },
  });
  const minutes = Number(values.minutes);
  const concurrency = Number(values.concurrency);
  const backends = [new Backend(freePort()), new Backend(freePort()), new Backend(freePort())];
  await Promise.all(backends.map((b) => b.start()));
  const dir = await Deno.makeTempDir({ prefix: "strom-soak-" });
  const configPath = join(dir, "strom.toml");
  const httpPort = freePort();
  const config = (n: number) =>
    `# reload ${n}\nhttp_address = "127.0.0.1:${httpPort}"\nadmin_address = "127.0.0.1:${freePort()}"
[health_interval]\ncheck_every = 2
[[backend_pools]]\nmatcher = "PathPrefix('/')"
addresses = [${backends.map((b) => `"127.0.0.1:${b.port}"`).join(", ")}]
schemes = ["HTTP"]\nstrategy = "RoundRobin"\nretries = ${1 + (n % 2)}\n`;
  await Deno.writeTextFile(configPath, config(0));
  const strom = new Deno.Command(Deno.execPath(), {
    args: ["run", ...FLAGS, join(ROOT, "main.ts"), "--config", configPath, "--log-level", "warn"],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // Wait until it answers.
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${httpPort}/`).then((r) => r.text(), () => null)) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const started = Date.now();
  const end = started + minutes * 60_000;
  let requests = 0;
  let failures = 0;
  const failureKinds = new Map<string, number>();
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const r = await fetch(`http://127.0.0.1:${httpPort}/soak`);
        await r.arrayBuffer();
        if (r.status !== 200) throw new Error(`status ${r.status}`);
      } catch (e) {
        failures++;
        const kind = String(e).slice(0, 60);
        failureKinds.set(kind, (failureKinds.get(kind) ?? 0) + 1);
      }
      requests++;
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const samples: Sample[] = [];
  let lastRequests = 0;
  const sampler = setInterval(async () => {
    const status = await Deno.readTextFile(`/proc/${strom.pid}/status`).catch(() => "");
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    let fds = 0;
    for await (const _ of Deno.readDir(`/proc/${strom.pid}/fd`)) fds++;
    samples.push({
      t: (Date.now() - started) / 1000,
      rssMb: rss,
      fds,
      threads: Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? 0),
      rps: (requests - lastRequests) / 5,
    });
    lastRequests = requests;
  }, 5000);
  let reloads = 0;
  const reloader = setInterval(() => Deno.writeTextFile(configPath, config(++reloads)), 10_000);
  let restarts = 0;
  const restarter = setInterval(async () => {
    const b = backends[restarts++ % backends.length];
    await b.kill();
    await b.start();
  }, 60_000);

  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(sampler);
  clearInterval(reloader);
  clearInterval(restarter);
  strom.kill("SIGTERM");
  const exit = await strom.status;
  await Promise.all(backends.map((b) => b.kill()));
  await Deno.remove(dir, { recursive: true });

  await Deno.mkdir(RESULTS, { recursive: true });
  const chart = (name: string, pick: (s: Sample) => number) =>
    Deno.writeFile(
      join(RESULTS, `soak-${name}.png`),
      lineChart(samples.map((s) => [s.t, pick(s)])),
    );
  await chart("rss", (s) => s.rssMb);
  await chart("fds", (s) => s.fds);
  await chart("rps", (s) => s.rps);
  const warm = samples.filter((s) => s.t >= 60);
  const range = (pick: (s: Sample) => number) => {
    const v = warm.map(pick);
    return v.length ? `${Math.min(...v).toFixed(1)} – ${Math.max(...v).toFixed(1)}` : "n/a";
  };
  const report = `# Strom soak run

Generated by \`deno run --allow-all bench/soak.ts --minutes=${minutes} --concurrency=${concurrency}\` on ${
    new Date().toISOString()
  } (${Deno.build.os}, ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}).

- ${minutes} min of GETs from ${concurrency} clients (each pausing 2 ms between requests), RoundRobin
  over three backend processes, health checks every 2 s.
- The config file was rewritten every 10 s (${reloads} reloads through the file watcher), and one
  backend was killed (SIGKILL) and restarted every minute (${restarts} restarts).
- Strom exited with code ${exit.code} after SIGTERM.

| | |
| --- | --- |
| requests | ${requests} |
| failed requests (non-200 or connection errors) | ${failures} |
| RSS after the first minute (MiB) | ${range((s) => s.rssMb)} |
| open descriptors after the first minute | ${range((s) => s.fds)} |
| threads after the first minute | ${range((s) => s.threads)} |
| throughput (req/s, 5 s windows) | ${range((s) => s.rps)} |

${
    failures
      ? `Failures by kind:\n\n${[...failureKinds].map(([k, n]) => `- ${n} × ${k}`).join("\n")}\n`
      : ""
  }
Charts (x: seconds since start; y from 0): RSS in MiB, open descriptors, requests per second.

![RSS](soak-rss.png)
![descriptors](soak-fds.png)
![throughput](soak-rps.png)

| t (s) | RSS (MiB) | fds | threads | req/s |
| ---: | ---: | ---: | ---: | ---: |
${
    samples.map((s) =>
      `| ${s.t.toFixed(0)} | ${s.rssMb.toFixed(1)} | ${s.fds} | ${s.threads} | ${
        s.rps.toFixed(0)
      } |`
    ).join("\n")
  }
`;
  await Deno.writeTextFile(join(RESULTS, "soak.md"), report);
  console.log(report.split("\n").slice(0, 20).join("\n"));
}

if (import.meta.main) await main();
