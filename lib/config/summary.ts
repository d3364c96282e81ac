// The short, human-readable summary `strom --check` prints for a valid config.

import type { Config, StrategyConfig } from "./types.ts";

/** Describes a strategy with its nesting, e.g. `StickyCookie(cookie "lb", inner RoundRobin)`. */
function describeStrategy(s: StrategyConfig): string {
  if (s.name === "WeightedRoundRobin") {
    const weights = Object.entries(s.options.weights as Record<string, number>);
    if (weights.length === 0) return s.name;
    return `WeightedRoundRobin(${weights.map(([a, w]) => `${a} = ${w}`).join(", ")})`;
  }
  if (s.name !== "StickyCookie") return s.name;
  const inner = describeStrategy(s.options.inner as StrategyConfig);
  return `StickyCookie(cookie "${s.options.cookieName}", inner ${inner})`;
}

/** Renders listeners, then each pool with its matcher, strategy and backends. */
export function summarizeConfig(config: Config): string {
  const lines = [
    `Config "${config.source}" is valid`,
    `  listeners: http ${config.httpAddress.text}, admin ${config.adminAddress.text}` +
    (config.certificates.length > 0 ? `, https ${config.httpsAddress.text}` : ""),
    `  health checks: ${
      config.healthCheckEverySec === 0 ? "disabled" : `every ${config.healthCheckEverySec} s`
    }${
      config.pools.some((p) => p.health.intervalMs !== null)
        ? ", except in pools that set their own interval (below)"
        : ""
    }`,
    `  pools (first match wins): ${config.pools.length}`,
  ];
  for (const pool of config.pools) {
    lines.push(
      `    ${pool.name}: ${pool.matcherSource}`,
      `      schemes ${[...pool.schemes].join(", ") || "(none)"}; strategy ${
        describeStrategy(pool.strategy)
      }`,
      `      backends ${pool.addresses.map((a) => a.id).join(", ") || "(none)"}`,
    );
    if (pool.health.intervalMs !== null) {
      lines.push(`      health checks every ${pool.health.intervalMs / 1000} s`);
    }
    if (pool.middlewares.length > 0) {
      lines.push(`      middlewares ${pool.middlewares.map((m) => m.name).join(" → ")}`);
    }
  }
  for (const warning of config.warnings) lines.push(`  warning: ${warning}`);
  return lines.join("\n");
}
