import { deepStrictEqual, equal, match, ok, throws } from "node:assert/strict";
import type { RunRecord } from "./measure.ts";
import { parseWrk } from "./wrk.ts";

const WRK = `Running 3s test @ http://127.0.0.1:43077/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms    0.50ms   5.00ms   82.78%
    Req/Sec     5.00k     1.00k    6.00k    64.00%
  Latency Distribution
     50%  1.00ms
     75%  1.20ms
     90%  1.50ms
     99%  3.00ms
  30000 requests in 3.00s, 1.09MB read
Requests/sec:  10000.00
Transfer/sec:    369.14KB
`;
import { medianRun } from "./scenarios.ts";
import { parseOptions } from "./run.ts";
import { stromCommand, stromConfig } from "./strom.ts";
import { PERMISSIONS, V8_FLAGS } from "../scripts/build.ts";
import { cpuSeconds, freePort, machineCpu, waitForPort } from "./procs.ts";
import { renderReport } from "./report.ts";
import { DENO_FLOOR_LABEL } from "./peers.ts";
import { parseConfig } from "../lib/config/load.ts";

function run(reqPerSec: number | null, cpuUsPerRequest: number | null = null): RunRecord {
  const result = reqPerSec === null ? null : {
    ...parseWrk(WRK),
    reqPerSec,
  };
  return {
    label: "x",
    command: "wrk",
    rawPath: `raw-${reqPerSec}`,
    result,
    error: result ? null : "failed",
    distribution: null,
    rss: null,
    cpuUsPerRequest,
    backendCpuUsPerRequest: null,
    machineBusyPct: null,
    notes: ["a note"],
  };
}

Deno.test("medianRun() picks the median round and lists every round's req/s", () => {
  const median = medianRun([run(900), run(1500), run(1200)]);
  equal(median.rawPath, "raw-1200");
  deepStrictEqual(median.notes, [
    "a note",
    "req/s in rounds 1-3: 900, 1,500, 1,200 (median shown)",
  ]);
  equal(medianRun([run(5)]).notes.length, 1, "one round adds no note");
  equal(medianRun([run(null), run(7), run(8)]).rawPath, "raw-7", "a failed round counts as 0");
});

Deno.test("medianRun() lists every round's proxy CPU per request when it was measured", () => {
  const median = medianRun([run(900, 80.4), run(1500, 60), run(1200, null)]);
  deepStrictEqual(median.notes.slice(1), [
    "req/s in rounds 1-3: 900, 1,500, 1,200 (median shown)",
    "proxy CPU us/request in rounds 1-3: 80, 60, -",
  ]);
});

/** The report of one scenario `id` with these runs, on a made-up machine. */
function reportOf(id: number, runs: RunRecord[]): string {
  return renderReport({
    machine: {
      date: "2026-01-01T00:00:00Z",
      cpu: "test",
      cores: 2,
      kernel: "linux",
      versions: {},
      stromCommit: "abc",
      loadAtStart: "0 0 0",
    },
    commandLine: "bench",
    quick: true,
    elapsedS: 1,
    loadAtEnd: "0 0 0",
    scenarios: [{ id, title: `scenario ${id}`, setup: [], skipped: [], error: null, runs }],
  });
}

Deno.test("the report shows the proxy's CPU per request and its ratios to nginx and the floor", () => {
  const labelled = (label: string, reqPerSec: number, cpu: number | null) => ({
    ...run(reqPerSec, cpu),
    label,
  });
  const report = reportOf(2, [
    labelled("direct (b1)", 4000, null),
    labelled("nginx", 2000, 50),
    labelled(DENO_FLOOR_LABEL, 1600, 60),
    labelled("default", 1000, 90),
  ]);
  const row = (label: string) => report.split("\n").find((l) => l.startsWith(`| ${label} |`));
  match(row("nginx")!, /\| 50 us \| - \|$/);
  match(row("direct (b1)")!, /\| - \| - \|$/);
  // Ratios: req/s to nginx, HAProxy, Caddy, p99 to nginx, CPU/req to nginx; req/s and CPU/req to the floor.
  const ratios = report.split("\n").find((l) => l.startsWith("| default | 0."));
  equal(
    ratios,
    "| default | 0.50x | 1.00x | 1.80x | 0.63x | 1.50x |",
    "no columns for absent peers",
  );
  match(report, /\| Strom run \| req\/s Strom\/nginx \| p99 Strom\/nginx \|/);
});

Deno.test("scenario 3 compares each Strom run with nginx and the floor, not nginx's variant", () => {
  const labelled = (label: string, reqPerSec: number, cpu: number | null) => ({
    ...run(reqPerSec, cpu),
    label,
  });
  const report = reportOf(3, [
    labelled("Strom", 900, 120),
    labelled(DENO_FLOOR_LABEL, 1000, 100),
    labelled("nginx", 1200, 60),
    labelled("nginx, with Strom's X-Forwarded-* fields", 1100, 62),
  ]);
  const lines = report.split("\n");
  ok(lines.includes("| Strom | 0.75x | 1.00x | 2.00x | 0.90x | 1.20x |"), report);
  ok(!lines.some((l) => l.startsWith("| nginx, with Strom's X-Forwarded-* fields | 0.")), report);
  ok(lines.includes("Deno floor/nginx: 0.83x req/s."), report);
});

Deno.test("scenario 3's report adds up the proxy's and the backends' CPU per request", () => {
  const budget = (label: string, proxy: number | null, backends: number | null) => ({
    ...run(1000, proxy),
    label,
    backendCpuUsPerRequest: backends,
    machineBusyPct: 95.4,
  });
  const scenario = (runs: RunRecord[]) => reportOf(3, runs);
  const report = scenario([budget("Strom", 280.4, 900), budget("nginx", 100, null)]);
  const lines = report.split("\n");
  ok(lines.includes("| Strom | 1,000 | 280 us | 900 us | 1180 us | 95 % |"), report);
  ok(lines.includes("| nginx | 1,000 | 100 us | - | - | 95 % |"), report);
  ok(!scenario([run(1000, 50)]).includes("backends CPU/req"), "no table without backend CPU");
});

Deno.test("machineCpu() reads the cores' busy and total time", async () => {
  const cpu = (await machineCpu())!;
  ok(cpu.total > 0 && cpu.busy > 0 && cpu.busy < cpu.total, JSON.stringify(cpu));
});

Deno.test("cpuSeconds() reads the CPU time a process has used", async () => {
  const before = (await cpuSeconds(Deno.pid))!;
  let after = before;
  // Burn CPU until the kernel's 10 ms ticks show it (bounded).
  for (let i = 0; i < 200 && after < before + 0.02; i++) {
    let x = 0;
    for (let j = 0; j < 1e6; j++) x += Math.sqrt(j);
    if (x < 0) throw new Error("unreachable");
    after = (await cpuSeconds(Deno.pid))!;
  }
  ok(after >= before + 0.02, `${before} -> ${after}`);
  equal(await cpuSeconds(2 ** 22 + 1), null, "no such process");
});

Deno.test("parseOptions() reads --rounds and refuses nonsense", () => {
  equal(parseOptions([])!.rounds, 1);
  equal(parseOptions(["--rounds=3"])!.rounds, 3);
  throws(() => parseOptions(["--rounds=0"]), /Invalid --rounds "0"/);
  throws(() => parseOptions(["--rounds=two"]), /Invalid --rounds/);
});

Deno.test("a V8 variant runs Strom with its flags after Strom's own, and bad flags are refused", () => {
  const options = parseOptions([
    "--strom-variant=default:",
    "--strom-v8-variant=concurrent:--concurrent-recompilation,--max-semi-space-size=8",
  ])!;
  deepStrictEqual(options.stromVariants, [
    { name: "default", toml: "", v8: "" },
    { name: "concurrent", toml: "", v8: "--concurrent-recompilation,--max-semi-space-size=8" },
  ]);
  const plain = stromCommand("s.toml");
  const tuned = stromCommand("s.toml", options.stromVariants[1].v8);
  ok(plain.includes(V8_FLAGS));
  // With the permissions `make start` and the binaries give it, not --allow-all.
  for (const p of PERMISSIONS) ok(plain.includes(p), p);
  ok(!plain.includes("--allow-all") && !plain.includes("-A"));
  deepStrictEqual(
    tuned,
    plain.map((f) => f === V8_FLAGS ? `${V8_FLAGS},${options.stromVariants[1].v8}` : f),
  );
  for (const bad of ["x:", "x:concurrent", "x:--a b", ":--a", "--a"]) {
    throws(() => parseOptions([`--strom-v8-variant=${bad}`]), /Invalid --strom-v8-variant/, bad);
  }
});

Deno.test("the benchmark's Strom config is valid, with and without HTTPS", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The certificate files are read at validation: empty ones fail, so use real PEM.
    const cert = `${dir}/leaf.crt`, key = `${dir}/leaf.key`;
    const out = await new Deno.Command("openssl", {
      args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        .concat(["-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"]),
      stdout: "null",
      stderr: "null",
    }).output().catch(() => null);
    const origin = { source: "<bench>", baseDir: dir };
    const addresses = ["127.0.0.1:1", "127.0.0.1:2"];
    const plain = parseConfig(stromConfig({ http: 1, admin: 2 }, { addresses, extra: "" }), origin);
    equal(plain.certificates.length, 0);
    if (!out?.success) return; // no openssl here: the HTTPS case cannot be checked
    const tls = { cert, key, combined: cert, caPem: "" };
    const https = parseConfig(
      stromConfig({ http: 1, admin: 2, https: 3 }, { addresses, extra: "", tls }),
      origin,
    );
    deepStrictEqual([https.httpsAddress.port, https.certificates.length], [3, 1]);
    deepStrictEqual([...https.pools[0].schemes].sort(), ["HTTP", "HTTPS"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a variant's top-level keys go to the top of Strom's config, the others into the pool", () => {
  const config = parseConfig(
    stromConfig({ http: 1, admin: 2 }, {
      addresses: ["127.0.0.1:1"],
      extra:
        'workers = 2\nmemory_trim_interval = 0\ntransport = "fetch"\nclient_idle_timeout = "5s"',
    }),
    { source: "<bench>", baseDir: "/" },
  );
  deepStrictEqual(
    [config.workers, config.memoryTrimIntervalMs, config.clientIdleTimeoutMs],
    [2, 0, 5000],
  );
  equal(config.pools[0].transport, "fetch");
});

Deno.test("the Deno floor proxy round-robins GETs over its backends, keeping status and type", async () => {
  const backends = ["one", "two"].map((name) =>
    Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request) => Response.json({ name, path: new URL(request.url).pathname }, { status: 201 }),
    )
  );
  const port = freePort();
  const floor = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("./deno_floor.ts", import.meta.url).pathname,
      String(port),
      ...backends.map((b) => `127.0.0.1:${b.addr.port}`),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForPort(port);
    const seen = [];
    for (let i = 0; i < 4; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/a/b?c=1`);
      equal(response.status, 201);
      equal(response.headers.get("content-type"), "application/json");
      seen.push(await response.json());
    }
    deepStrictEqual(seen.map((s) => s.name), ["one", "two", "one", "two"]);
    equal(seen[0].path, "/a/b");
  } finally {
    floor.kill();
    await floor.status;
    await Promise.all(backends.map((b) => b.shutdown()));
  }
});
