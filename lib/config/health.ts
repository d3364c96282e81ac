// Readers for a pool's `health_config` and `outlier_detection` tables.

import { shownValue, type TableReader } from "./fields.ts";
import { MAX_DURATION_MS, parseDurationMs } from "./duration.ts";
import type { Config, HealthConfig, OutlierConfig, PoolConfig, StatusRange } from "./types.ts";

const TWO_XX: readonly StatusRange[] = [{ from: 200, to: 299 }];

/** A pool's time between health rounds in ms: its own `interval`, else the global one; 0: no checks. */
export function probeIntervalMs(config: Config, pool: PoolConfig): number {
  return pool.health.intervalMs ?? config.healthCheckEverySec * 1000;
}

/** Reads `health_config` (absent: RustStrom's defaults plus Strom's). */
export function readHealth(r: TableReader | null): HealthConfig | undefined {
  if (!r) {
    return {
      slowThresholdMs: 300,
      timeoutMs: 500,
      path: "/",
      healthyAfter: 2,
      unhealthyAfter: 3,
      expectedStatus: TWO_XX,
      expectedBody: null,
      intervalMs: null,
      host: null,
    };
  }
  const before = r.problems.length;
  const slowThresholdMs = r.int("slow_threshold", { fallback: 300 });
  const timeoutMs = r.int("timeout", { fallback: 500, min: 1, max: MAX_DURATION_MS });
  const path = r.string("path", "/");
  if (path !== undefined && !/^\/[\x21-\x7e]*$/.test(path)) {
    r.problem(
      "path",
      `invalid path ${JSON.stringify(path)}: expected "/" followed by visible ASCII`,
    );
  }
  const healthyAfter = r.int("healthy_after", { fallback: 2, min: 1, max: 100 });
  const unhealthyAfter = r.int("unhealthy_after", { fallback: 3, min: 1, max: 100 });
  const expectedStatus = readStatusRanges(r);
  const expectedBody = r.has("expected_body") ? r.string("expected_body") ?? null : null;
  const intervalMs = r.has("interval")
    ? parseDurationMs(r.raw("interval"), r.at("interval"), r.problems) ?? null
    : null;
  if (intervalMs === 0) r.problem("interval", "expected a positive duration");
  const host = r.has("host") ? r.string("host") ?? null : null;
  if (host !== null && !/^[\x21-\x7e]+$/.test(host)) {
    r.problem("host", `invalid host ${JSON.stringify(host)}`);
  }
  r.finish();
  if (r.problems.length > before) return undefined;
  return {
    slowThresholdMs: slowThresholdMs!,
    timeoutMs: timeoutMs!,
    path: path!,
    healthyAfter: healthyAfter!,
    unhealthyAfter: unhealthyAfter!,
    expectedStatus: expectedStatus!,
    expectedBody,
    intervalMs,
    host,
  };
}

/** `expected_status`: a list of codes (`200`) and ranges (`"200-399"`, `"2xx"`). */
function readStatusRanges(r: TableReader): StatusRange[] | undefined {
  const list = r.array("expected_status");
  if (list === null) return r.has("expected_status") ? undefined : [...TWO_XX];
  if (list.length === 0) {
    r.problem("expected_status", "expected at least one status or range");
    return undefined;
  }
  const out: StatusRange[] = [];
  list.forEach((v, i) => {
    const range = parseStatusRange(v);
    if (range) out.push(range);
    else {
      r.problems.push({
        path: `${r.at("expected_status")}[${i}]`,
        message: `invalid status ${
          shownValue(v)
        } (expected a code from 100 to 599, a range like "200-399", or "2xx")`,
      });
    }
  });
  return out;
}

function parseStatusRange(v: unknown): StatusRange | null {
  const valid = (n: number) => Number.isInteger(n) && n >= 100 && n <= 599;
  if (typeof v === "number" || typeof v === "bigint") {
    const n = Number(v);
    return valid(n) ? { from: n, to: n } : null;
  }
  if (typeof v !== "string") return null;
  const classMatch = /^([1-5])xx$/i.exec(v);
  if (classMatch) {
    return { from: Number(classMatch[1]) * 100, to: Number(classMatch[1]) * 100 + 99 };
  }
  const m = /^(\d{3})\s*-\s*(\d{3})$/.exec(v) ?? /^(\d{3})()$/.exec(v);
  if (!m) return null;
  const from = Number(m[1]);
  const to = m[2] === "" ? from : Number(m[2]);
  return valid(from) && valid(to) && from <= to ? { from, to } : null;
}

/** Reads `outlier_detection` (absent: the defaults). */
export function readOutlier(r: TableReader | null): OutlierConfig | undefined {
  const defaults: OutlierConfig = {
    consecutiveFailures: 5,
    count5xx: false,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 50,
  };
  if (!r) return defaults;
  const before = r.problems.length;
  const duration = (key: string, fallback: number) =>
    r.has(key) ? parseDurationMs(r.raw(key), r.at(key), r.problems) : fallback;
  const config = {
    consecutiveFailures: r.int("consecutive_failures", { fallback: 5, max: 1000 })!,
    count5xx: r.bool("count_5xx", false)!,
    baseEjectionMs: duration("base_ejection_time", defaults.baseEjectionMs)!,
    maxEjectionMs: duration("max_ejection_time", defaults.maxEjectionMs)!,
    maxEjectionPercent: r.int("max_ejection_percent", { fallback: 50, max: 100 })!,
  };
  r.finish();
  if (r.problems.length > before) return undefined;
  if (config.maxEjectionMs < config.baseEjectionMs) {
    r.problem("max_ejection_time", "must not be shorter than base_ejection_time");
    return undefined;
  }
  return config;
}
