// A real redis-server for tests, on 127.0.0.1 at a free port, with nothing
// persisted. Needs the Debian package "redis-server".

import { freePort, requirePrograms, startServerProgram } from "./programs.ts";

/** Whether redis-server can run here (prints the package to install when not). */
export const hasRedis: boolean = requirePrograms(["redis-server"], "redis-server");

/** A running redis-server. */
export interface TestRedis extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
}

/** Starts redis-server in the foreground as a child of the test. */
export async function startRedis(): Promise<TestRedis> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "strom-redis-" });
  const dispose = await startServerProgram("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
  ], { port, dir });
  return { url: `redis://127.0.0.1:${port}`, port, [Symbol.asyncDispose]: dispose };
}
