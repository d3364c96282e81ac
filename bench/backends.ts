// The backends the proxies balance over: three nginx servers (one master,
// one worker, three ports, an access log per port) or three Python
// `http.server` processes (the seed's set-up). Each one answers a small JSON
// body naming itself, and each keeps a log from which requests are counted.

import type { BenchContext } from "./context.ts";
import { cpuSeconds, freePort, hasCommand, type Proc, readyOrStop, waitForPort } from "./procs.ts";

/** Three running backends and a way to count the requests each has served. */
export interface Backends {
  /** Backend names, e.g. ["b1", "b2", "b3"]; the body is `{"backend":"<name>"}`. */
  readonly names: readonly string[];
  /** `127.0.0.1:port` per backend. */
  readonly addresses: readonly string[];
  /** How the counts are obtained (goes into the report). */
  readonly countNote: string;
  /** Requests logged so far per backend. */
  counts(): Promise<number[]>;
  /** Errors the backends logged so far (e.g. the last line of each Python traceback). */
  problems(): Promise<string[]>;
  /** CPU seconds the backend processes have used so far (absent or null: not measured). */
  cpuSeconds?(): Promise<number | null>;
  /** Stops the backend processes. */
  stop(): Promise<void>;
}

/** The JSON body a backend named `name` answers with. */
export function backendBody(name: string): string {
  return `{"backend":"${name}"}`;
}

/** nginx paths every nginx config here needs so nothing touches /var. */
export function nginxCommon(dir: string): string {
  return [
    Deno.uid() === 0 ? "user root;" : "",
    "worker_processes 1;",
    "daemon off;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    "events { worker_connections 4096; }",
  ].filter((l) => l).join("\n");
}

/** Temp-path directives for an nginx `http` block. */
export function nginxTempPaths(dir: string): string {
  return ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((t) => `  ${t}_temp_path ${dir}/${t};`).join("\n");
}

/** Starts one nginx (`worker_processes 1`) serving three backends on three free ports. */
export async function startNginxBackends(ctx: BenchContext): Promise<Backends> {
  if (!(await hasCommand("nginx"))) {
    throw new Error("nginx is not installed (apt-get install nginx-light)");
  }
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "backends-" });
  const names = ["b1", "b2", "b3"];
  const ports = names.map(() => freePort());
  const logs = names.map((n) => `${dir}/${n}.access.log`);
  const servers = names.map((name, i) =>
    `  server {\n    listen 127.0.0.1:${ports[i]};\n` +
    `    access_log ${logs[i]} bench if=$bench_log;\n` +
    `    location / { default_type application/json; return 200 '${backendBody(name)}'; }\n  }`
  );
  const conf = `${nginxCommon(dir)}
http {
${nginxTempPaths(dir)}
  # Strom's health probes are not counted as load.
  map $http_user_agent $bench_log { ~^Strom-HealthCheck 0; default 1; }
  log_format bench '$status';
${servers.join("\n")}
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const proc = ctx.group.spawn("nginx backends", "nginx", [
    "-e",
    `${dir}/error.log`,
    "-p",
    dir,
    "-c",
    `${dir}/nginx.conf`,
  ], { stdoutPath: `${dir}/stdout.log`, stderrPath: `${dir}/stderr.log` });
  for (const port of ports) await readyOrStop(ctx.group, proc, waitForPort(port, proc));
  return {
    names,
    addresses: ports.map((p) => `127.0.0.1:${p}`),
    countNote: "lines in each backend's nginx access log (Strom's health probes excluded)",
    counts: () => Promise.all(logs.map((l) => countLines(l, () => true))),
    problems: () => Promise.resolve([]),
    stop: () => ctx.group.stop(proc),
  };
}

const PY_REQUEST = /"[A-Z]+ [^"]* HTTP\/[\d.]+" \d{3} /;

/** Starts three `python3 -m http.server` backends, each serving an index.html with its JSON. */
export async function startPythonBackends(ctx: BenchContext): Promise<Backends> {
  if (!(await hasCommand("python3"))) throw new Error("python3 is not installed");
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "python-" });
  const names = ["p1", "p2", "p3"];
  const procs: Proc[] = [];
  const ports: number[] = [];
  for (const name of names) {
    const root = `${dir}/${name}`;
    await Deno.mkdir(root);
    await Deno.writeTextFile(`${root}/index.html`, backendBody(name));
    const port = freePort();
    const args = ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", root];
    procs.push(ctx.group.spawn(`python backend ${name}`, "python3", args, {
      stdoutPath: `${dir}/${name}.stdout.log`,
      stderrPath: `${dir}/${name}.log`,
    }));
    ports.push(port);
  }
  try {
    for (const [i, port] of ports.entries()) await waitForPort(port, procs[i]);
  } catch (e) {
    await Promise.all(procs.map((p) => ctx.group.stop(p)));
    throw e;
  }
  const logs = names.map((n) => `${dir}/${n}.log`);
  return {
    names,
    addresses: ports.map((p) => `127.0.0.1:${p}`),
    countNote: "request lines in each Python server's stderr log (includes Strom's health " +
      "probes: one per backend per 10 s while Strom runs)",
    counts: () => Promise.all(logs.map((l) => countLines(l, (line) => PY_REQUEST.test(line)))),
    problems: async () => (await Promise.all(logs.map((l) => readLines(l, isErrorLine)))).flat(),
    cpuSeconds: async () => {
      const each = await Promise.all(procs.map((p) => cpuSeconds(p.pid)));
      return each.some((s) => s === null) ? null : each.reduce((a, b) => a! + b!, 0);
    },
    stop: async () => {
      await Promise.all(procs.map((p) => ctx.group.stop(p)));
    },
  };
}

/** A traceback's last line, e.g. `ConnectionResetError: [Errno 104] Connection reset by peer`. */
function isErrorLine(line: string): boolean {
  return /^[A-Za-z_.]*(Error|Exception)(:|$)/.test(line);
}

/** Counts the lines of `path` for which `keep` is true; 0 when the file does not exist yet. */
async function countLines(path: string, keep: (line: string) => boolean): Promise<number> {
  return (await readLines(path, keep)).length;
}

/** The lines of `path` for which `keep` is true; none when the file does not exist yet. */
async function readLines(path: string, keep: (line: string) => boolean): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter((line) => line !== "" && keep(line));
}
