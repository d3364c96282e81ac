// External programs tests use (slapd, redis-server): found on PATH or in the
// sbin folders, with a one-line reason naming the package when missing.

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

/** Whether every program is installed; prints one line naming the package when not. */
export function requirePrograms(programs: readonly string[], pkg: string): boolean {
  const missing = programs.filter((p) => findProgram(p) === null);
  if (missing.length === 0) return true;
  console.log(
    `Skipping tests that need ${missing.join(", ")}: install the Debian package "${pkg}"`,
  );
  return false;
}

/**
 * A TCP port on 127.0.0.1 that is free now, for programs that must be told their port before
 * they start (pebble, slapd, redis-server, an HTTP-01 port). It is taken below the kernel's
 * ephemeral range, so neither a port-0 listener nor an outgoing connection of a test running
 * in parallel can take it between this check and the program's bind; a port handed out once
 * is not handed out again by this process.
 */
export function freePort(): number {
  const [low] = ephemeralRange();
  const first = 10_000;
  for (let attempt = 0; attempt < 200 && low - first > 1_000; attempt++) {
    const port = first + Math.floor(Math.random() * (low - first));
    if (handedOut.has(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch {
      continue; // in use by something else
    }
    handedOut.add(port);
    return port;
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const handedOut = new Set<number>();

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range")
      .trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch { /* not Linux: fall back to the usual default */ }
  return [32_768, 60_999];
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
