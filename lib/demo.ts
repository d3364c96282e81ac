// `strom demo`: three small backends that answer JSON naming themselves, and
// Strom in front of them with RoundRobin and health checks.

import { parseConfig } from "./config/load.ts";
import type { Config } from "./config/types.ts";

/** A running demo backend. */
export interface DemoBackend {
  readonly name: string;
  readonly port: number;
  readonly server: Deno.HttpServer<Deno.NetAddr>;
}

/** Starts three demo backends on `basePort`, +1, +2 (or three free ports when 0). */
export function startDemoBackends(basePort: number): DemoBackend[] {
  return [1, 2, 3].map((n) => {
    const name = `backend-${n}`;
    const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
      hostname: "127.0.0.1",
      port: basePort === 0 ? 0 : basePort + n - 1,
      onListen: () => {},
    }, (request): Response => {
      const url = new URL(request.url);
      if (url.pathname === "/health") return Response.json({ status: "ok", backend: name });
      return Response.json({
        backend: name,
        port: server.addr.port,
        method: request.method,
        path: url.pathname + url.search,
        forwardedFor: request.headers.get("x-forwarded-for"),
      });
    });
    return { name, port: server.addr.port, server };
  });
}

/** The demo's config text, in the RustStrom TOML schema. */
export function demoConfigText(ports: { http: number; admin: number; backends: number[] }): string {
  return `# Strom demo: RoundRobin over three local backends, health-checked every 2 s.
http_address = "127.0.0.1:${ports.http}"
admin_address = "127.0.0.1:${ports.admin}"

[health_interval]
check_every = 2

[[backend_pools]]
name = "demo"
matcher = "PathPrefix('/')"
addresses = [${ports.backends.map((p) => `"127.0.0.1:${p}"`).join(", ")}]
schemes = ["HTTP"]
strategy = { RoundRobin = {} }

[backend_pools.health_config]
path = "/health"
timeout = 500
slow_threshold = 300
`;
}

/** The demo's validated config. */
export function demoConfig(ports: { http: number; admin: number; backends: number[] }): Config {
  return parseConfig(demoConfigText(ports), { source: "<demo>", baseDir: Deno.cwd() });
}

/** What `strom demo` prints once everything listens. */
export function demoBanner(http: number, admin: number, backends: number[]): string {
  return `
Strom demo is running:
  balancer   http://127.0.0.1:${http}   RoundRobin over ${backends.length} backends, health checks every 2 s
  dashboard  http://127.0.0.1:${admin}/
  admin API  http://127.0.0.1:${admin}/api/pools
  backends   ${backends.map((p) => `http://127.0.0.1:${p}`).join("  ")}

Try:
  curl http://127.0.0.1:${http}/hello        # repeat it: backend-1, backend-2, backend-3 take turns
  curl http://127.0.0.1:${admin}/api/pools   # pools, backends and their counters
Press Ctrl-C to stop.
`;
}
