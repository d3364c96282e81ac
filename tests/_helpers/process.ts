// Runs Strom's real command line (main.ts) as a child process.

import { PERMISSIONS, RUN_FLAGS } from "../../scripts/build.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
/**
 * Flags every Strom process runs with: the permissions of `make start` and
 * the compiled binaries (not --allow-all), so tests see what users get.
 */
export const DENO_FLAGS = [...PERMISSIONS, ...RUN_FLAGS];

/** Runs `strom <args>` to completion. */
export async function runStrom(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...DENO_FLAGS, MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** A long-running Strom child process whose stdout can be awaited line by line. */
export class StromProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  /** Whether the process has ended. */
  exited = false;
  #waiters: (() => void)[] = [];
  #reading: Promise<void>;
  #stopReading = new AbortController();

  /**
   * `wrapper` runs Deno through another program, e.g. `["prlimit", "--nofile=100"]`; `flags`
   * replace Strom's Deno flags (as someone running `deno run -A main.ts` by hand gives them).
   */
  constructor(
    args: string[],
    env: Record<string, string> = {},
    wrapper: string[] = [],
    flags: readonly string[] = DENO_FLAGS,
  ) {
    const command = [...wrapper, Deno.execPath(), "run", ...flags, MAIN, ...args];
    this.child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: { NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#reading = this.#read();
    this.child.status.then(() => this.exited = true);
  }

  async #read(): Promise<void> {
    const lines = this.child.stdout.pipeThrough(new TextDecoderStream(), {
      signal: this.#stopReading.signal,
    });
    let rest = "";
    try {
      for await (const chunk of lines) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
        this.#waiters.splice(0).forEach((w) => w());
      }
    } catch (e) {
      if (!this.#stopReading.signal.aborted) throw e;
    }
  }

  /** Closes the reading end of Strom's stdout, as a log reader that died would. */
  async closeStdout(): Promise<void> {
    this.#stopReading.abort();
    await this.#reading;
  }

  /** Waits for a stdout line matching `pattern` and returns its match. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      for (const line of this.lines) {
        const m = line.match(pattern);
        if (m) return m;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(
          `Timed out waiting for a line matching ${pattern}; got:\n${this.lines.join("\n")}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#waiters.push(r)),
        new Promise<void>((r) => timer = setTimeout(r, remaining)),
      ]);
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await this.child.status;
    await this.#reading;
  }
}

/** A backend in its own process, so a test can kill it hard (SIGKILL). */
export class BackendProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly port: Promise<number>;

  constructor(port = 0) {
    const script = new URL("../fixtures/backend.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", script, String(port)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.child = child;
    this.port = (async () => {
      let text = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        const m = /listening (\d+)/.exec(text);
        if (m) return Number(m[1]);
      }
      throw new Error("backend process exited before listening");
    })();
  }

  /** Kills the process at once (no graceful close of its connections). */
  async kill(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.child.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    await this.child.stdout.cancel().catch(() => {});
  }
}
