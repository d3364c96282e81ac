// The peer proxies Strom is compared with: nginx, HAProxy and Caddy, each on
// one core's worth of workers, round-robin over the same backends with
// keep-alive towards them. Configs go into a temp dir; ports are free ones.

import { nginxCommon, nginxTempPaths } from "./backends.ts";
import type { BenchContext } from "./context.ts";
import {
  childPids,
  cpuSeconds,
  freePort,
  hasCommand,
  peakRssKb,
  readyOrStop,
  waitForPort,
} from "./procs.ts";
import { processCpu, processRss, type Rss, type Target, targetUrl } from "./target.ts";
import type { BenchTls } from "./tls.ts";
import { V8_FLAGS } from "../scripts/build.ts";

/** A peer proxy: its label, the program it needs, and how to start it (terminating TLS with `tls`). */
export interface Peer {
  readonly label: string;
  readonly binary: string;
  start(ctx: BenchContext, addresses: readonly string[], tls?: BenchTls): Promise<Target>;
}

/** nginx as a proxy: `worker_processes 1`, upstream keepalive. */
export const NGINX: Peer = {
  label: "nginx",
  binary: "nginx",
  start: (ctx, addresses, tls) => startNginxProxy(ctx, addresses, tls, false),
};
/**
 * nginx sending the six X-Forwarded-* fields Strom sends by default (nginx
 * sends none unless told): the same work for backends that parse each field.
 */
export const NGINX_FORWARDED: Peer = {
  label: "nginx, with Strom's X-Forwarded-* fields",
  binary: "nginx",
  start: (ctx, addresses, tls) => startNginxProxy(ctx, addresses, tls, true),
};

/** nginx directives setting the fields Strom adds (lib/proxy/headers.ts, forwardedFields). */
const NGINX_FORWARDED_FIELDS = [
  "X-Forwarded-For $remote_addr",
  "X-Real-IP $remote_addr",
  "X-Forwarded-Proto $scheme",
  "X-Forwarded-Host $host",
  "X-Forwarded-Port $server_port",
  "X-Forwarded-Server $hostname",
].map((f) => `      proxy_set_header ${f};\n`).join("");
/** HAProxy: `nbthread 1`, roundrobin, `http-reuse always`. */
export const HAPROXY: Peer = { label: "HAProxy", binary: "haproxy", start: startHaproxy };
/** Caddy: `GOMAXPROCS=1`, reverse_proxy with round_robin, admin endpoint off. */
export const CADDY: Peer = { label: "Caddy", binary: "caddy", start: startCaddy };

/** Whether the peer's program is installed. */
export function peerAvailable(peer: Peer): Promise<boolean> {
  return hasCommand(peer.binary);
}

async function startNginxProxy(
  ctx: BenchContext,
  addresses: readonly string[],
  tls: BenchTls | undefined,
  forwarded: boolean,
): Promise<Target> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "nginx-proxy-" });
  const port = freePort();
  const conf = `${nginxCommon(dir)}
http {
${nginxTempPaths(dir)}
  access_log off;
  upstream pool {
${addresses.map((a) => `    server ${a};`).join("\n")}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port}${tls ? " ssl" : ""};
${
    tls
      ? `    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n`
      : ""
  }    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${forwarded ? NGINX_FORWARDED_FIELDS : ""}    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const args = ["-e", `${dir}/error.log`, "-p", dir, "-c", `${dir}/nginx.conf`];
  const proc = ctx.group.spawn("nginx proxy", "nginx", args, {
    stdoutPath: `${dir}/stdout.log`,
    stderrPath: `${dir}/stderr.log`,
  });
  await readyOrStop(ctx.group, proc, waitForPort(port, proc));
  return {
    label: forwarded ? NGINX_FORWARDED.label : NGINX.label,
    ...targetUrl(port, tls),
    peakRss: () => nginxRss(proc.pid),
    cpuSeconds: () => nginxCpu(proc.pid),
    stop: () => ctx.group.stop(proc),
  };
}

/** CPU seconds of nginx's master and workers together. */
async function nginxCpu(masterPid: number): Promise<number | null> {
  let total = 0;
  for (const pid of [masterPid, ...await childPids(masterPid)]) {
    const seconds = await cpuSeconds(pid);
    if (seconds === null) return null;
    total += seconds;
  }
  return total;
}

/** The nginx worker's VmHWM; the master's is named in the note (it only supervises). */
async function nginxRss(masterPid: number): Promise<Rss | null> {
  const workers = await childPids(masterPid);
  if (workers.length !== 1) return null;
  const worker = await peakRssKb(workers[0]);
  const master = await peakRssKb(masterPid);
  if (worker === null) return null;
  return { kb: worker, note: `worker only (master: ${master ?? "?"} KiB more)` };
}

async function startHaproxy(
  ctx: BenchContext,
  addresses: readonly string[],
  tls?: BenchTls,
): Promise<Target> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "haproxy-" });
  const port = freePort();
  const conf = `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always

frontend fe
  bind 127.0.0.1:${port}${tls ? ` ssl crt ${tls.combined} alpn h2,http/1.1` : ""}
  default_backend pool

backend pool
  balance roundrobin
${addresses.map((a, i) => `  server s${i + 1} ${a}`).join("\n")}
`;
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, conf);
  const proc = ctx.group.spawn("haproxy", "haproxy", ["-db", "-f", `${dir}/haproxy.cfg`], {
    stdoutPath: `${dir}/stdout.log`,
    stderrPath: `${dir}/stderr.log`,
  });
  await readyOrStop(ctx.group, proc, waitForPort(port, proc));
  return {
    label: "HAProxy",
    ...targetUrl(port, tls),
    peakRss: processRss(proc.pid),
    cpuSeconds: processCpu(proc.pid),
    stop: () => ctx.group.stop(proc),
  };
}

async function startCaddy(
  ctx: BenchContext,
  addresses: readonly string[],
  tls?: BenchTls,
): Promise<Target> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "caddy-" });
  const port = freePort();
  const conf = `{
  admin off
  auto_https off
}

${tls ? "https" : "http"}://127.0.0.1:${port} {
${tls ? `  tls ${tls.cert} ${tls.key}\n` : ""}  reverse_proxy ${addresses.join(" ")} {
    lb_policy round_robin
  }
}
`;
  await Deno.writeTextFile(`${dir}/Caddyfile`, conf);
  const args = ["run", "--config", `${dir}/Caddyfile`, "--adapter", "caddyfile"];
  const env = { GOMAXPROCS: "1", HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir };
  const proc = ctx.group.spawn("caddy", "caddy", args, {
    env,
    stdoutPath: `${dir}/stdout.log`,
    stderrPath: `${dir}/stderr.log`,
  });
  await readyOrStop(ctx.group, proc, waitForPort(port, proc));
  return {
    label: "Caddy",
    ...targetUrl(port, tls),
    peakRss: processRss(proc.pid),
    cpuSeconds: processCpu(proc.pid),
    stop: () => ctx.group.stop(proc),
  };
}

/** The label of the minimal Deno proxy's row (bench/deno_floor.ts). */
export const DENO_FLOOR_LABEL = "Deno floor";

/**
 * The minimal Deno proxy (bench/deno_floor.ts) with the Deno and V8 flags
 * Strom runs with: what any proxy on this runtime costs at the least.
 */
export async function startDenoFloor(
  ctx: BenchContext,
  addresses: readonly string[],
): Promise<Target> {
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "deno-floor-" });
  const port = freePort();
  const args = [
    "run",
    "--allow-net",
    "--no-code-cache",
    V8_FLAGS,
    "bench/deno_floor.ts",
    String(port),
    ...addresses,
  ];
  const proc = ctx.group.spawn(DENO_FLOOR_LABEL, Deno.execPath(), args, {
    cwd: ctx.repo,
    stdoutPath: `${dir}/stdout.log`,
    stderrPath: `${dir}/stderr.log`,
  });
  await readyOrStop(ctx.group, proc, waitForPort(port, proc));
  return {
    label: DENO_FLOOR_LABEL,
    ...targetUrl(port, undefined),
    peakRss: processRss(proc.pid),
    cpuSeconds: processCpu(proc.pid),
    stop: () => ctx.group.stop(proc),
  };
}
