// A target is whatever wrk is pointed at: a backend directly, or a proxy in
// front of the backends. The measuring code does not know which one it is.

import { cpuSeconds, peakRssKb } from "./procs.ts";
import type { BenchTls } from "./tls.ts";

/** Peak RSS of a target in KiB; `note` says what was measured when it is not one process. */
export interface Rss {
  readonly kb: number;
  readonly note: string | null;
}

/** Something to load with wrk. */
export interface Target {
  readonly label: string;
  /** The URL wrk requests. */
  readonly url: string;
  /** For an https:// URL: the CA its certificate is checked against before the run. */
  readonly caPem?: string;
  /** Peak RSS of the proxy (null when not applicable or unreadable). */
  peakRss(): Promise<Rss | null>;
  /** CPU seconds the proxy's processes have used so far (absent or null: not measured). */
  cpuSeconds?(): Promise<number | null>;
  /**
   * Called just before a measured run; the returned function is called right
   * after it and gives notes for the report (e.g. Strom's warnings).
   */
  watch?(): Promise<() => Promise<string[]>>;
  stop(): Promise<void>;
}

/** The URL of a loopback port: https (checked against the CA) when it terminates `tls`. */
export function targetUrl(port: number, tls: BenchTls | undefined): Pick<Target, "url" | "caPem"> {
  return tls
    ? { url: `https://127.0.0.1:${port}/`, caPem: tls.caPem }
    : { url: `http://127.0.0.1:${port}/` };
}

/** A Rss reader for one process. */
export function processRss(pid: number): () => Promise<Rss | null> {
  return async () => {
    const kb = await peakRssKb(pid);
    return kb === null ? null : { kb, note: null };
  };
}

/** A CPU reader for one process (with all its threads). */
export function processCpu(pid: number): () => Promise<number | null> {
  return () => cpuSeconds(pid);
}

/** Fetches `url` once and checks the answer is a 200 from one of the backends; throws otherwise. */
export async function preflight(url: string, caPem?: string): Promise<void> {
  let res: Response;
  const client = caPem ? Deno.createHttpClient({ caCerts: [caPem] }) : undefined;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000), client });
  } catch (e) {
    client?.close();
    throw new Error(`Failed the pre-flight request to "${url}": ${e}`);
  }
  const body = await res.text();
  client?.close();
  if (res.status !== 200 || !body.includes('"backend"')) {
    throw new Error(
      `Failed the pre-flight request to "${url}": status ${res.status}, body "${
        body.slice(0, 200)
      }"`,
    );
  }
}
