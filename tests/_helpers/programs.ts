// External programs tests use (slapd, redis-server): found on PATH or in the
// sbin folders, with a one-line reason naming the package when missing.

export { freePort } from "../../bench/procs.ts";

const EXTRA_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];

/** The full path of a program, or null when it is not installed. */
export function findProgram(name: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/**
 * Whether `name args` runs and succeeds. Deno's `Command.output()` throws at
 * once (no rejected promise) when the program is missing, hence the try.
 */
export async function programRuns(name: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(name, { args, stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** Whether every program is installed; prints one line naming the package when not. */
export function requirePrograms(programs: readonly string[], pkg: string): boolean {
  const missing = programs.filter((p) => findProgram(p) === null);
  if (missing.length === 0) return true;
  console.log(
    `Skipping tests that need ${missing.join(", ")}: install the Debian package "${pkg}"`,
  );
  return false;
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(
          `Timed out after ${timeoutMs} ms waiting for ${what} on port ${port}: ${e}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Starts `program` in the foreground (our child, so it dies with the test) and waits until
 * it accepts connections on `port`. The returned dispose stops it and removes `dir`.
 */
export async function startServerProgram(
  program: string,
  args: string[],
  options: { port: number; dir: string },
): Promise<() => Promise<void>> {
  const child = new Deno.Command(findProgram(program)!, { args, stdout: "null", stderr: "null" })
    .spawn();
  const dispose = async () => {
    await stopChild(child);
    await Deno.remove(options.dir, { recursive: true });
  };
  try {
    await waitForPort(options.port, program);
  } catch (e) {
    await dispose();
    throw e;
  }
  return dispose;
}

/** A child process that is killed and awaited on dispose. */
export async function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.status;
}
