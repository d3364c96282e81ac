// Child processes of the harness: started with their output going straight to
// files (no pipe through this process, which would steal CPU from the proxies),
// tracked, and stopped on every exit path.

/** A started child process. */
export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** Resolves when the process exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** True once the process has exited. */
  exited(): boolean;
}

/** Options for `ProcessGroup.spawn`. */
export interface SpawnOptions {
  readonly stdoutPath: string;
  readonly stderrPath: string;
  readonly env?: Record<string, string>;
  readonly cwd?: string;
}

/** Every process the harness started; `stopAll()` ends those still running. */
export class ProcessGroup {
  #procs = new Set<Proc>();
  #closed = false;

  /** Starts `cmd args...` with stdout and stderr redirected to files by `sh`; throws after `stopAll()`. */
  spawn(name: string, cmd: string, args: string[], options: SpawnOptions): Proc {
    if (this.#closed) throw new Error(`Cannot start ${name}: the benchmark is stopping`);
    // `exec` keeps the pid, so the pid we hold is the program's own (for /proc reads).
    const script = 'out=$1; err=$2; shift 2; exec "$@" >"$out" 2>"$err"';
    const child = new Deno.Command("sh", {
      args: ["-c", script, "sh", options.stdoutPath, options.stderrPath, cmd, ...args],
      env: options.env,
      cwd: options.cwd,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let done = false;
    const status = child.status.then((s) => {
      done = true;
      return s;
    });
    const proc: Proc = {
      name,
      pid: child.pid,
      stdoutPath: options.stdoutPath,
      stderrPath: options.stderrPath,
      status,
      exited: () => done,
    };
    this.#procs.add(proc);
    status.then(() => this.#procs.delete(proc));
    return proc;
  }

  /** Sends SIGTERM, then SIGKILL after `graceMs` (default 5000 ms); resolves once it exited. */
  async stop(proc: Proc, graceMs = 5000): Promise<void> {
    if (proc.exited()) return;
    signal(proc.pid, "SIGTERM");
    const timer = setTimeout(() => signal(proc.pid, "SIGKILL"), graceMs);
    await proc.status;
    clearTimeout(timer);
  }

  /** Stops every process still running, all in parallel; no new one can start afterwards. */
  async stopAll(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#procs].map((p) => this.stop(p)));
  }
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // Already gone: nothing to stop.
  }
}

/**
 * A TCP port on 127.0.0.1 that is free now, for programs that must be told their port before
 * they start (nginx, HAProxy, Caddy, the soak's backends that restart on their port; in the
 * tests pebble, slapd, redis-server, an HTTP-01 port). It is taken below the kernel's ephemeral
 * range, so neither a port-0 listener nor an outgoing connection (wrk's, a test's running in
 * parallel) can take it between this check and the program's bind; a port handed out once is
 * not handed out again by this process.
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

/** Polls `check` every 50 ms until it returns a value other than null; throws `what` on timeout. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | null>,
  timeoutMs = 15000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== null) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Waits until 127.0.0.1:`port` accepts a TCP connection; fails early when `proc` exits. */
export function waitForPort(port: number, proc?: Proc, timeoutMs = 15000): Promise<true> {
  return waitFor(`127.0.0.1:${port} to accept connections`, async () => {
    if (proc?.exited()) throw new Error(await exitMessage(proc));
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return true;
    } catch {
      return null;
    }
  }, timeoutMs);
}

/** Describes an exited process with the tail of its output, for error messages. */
export async function exitMessage(proc: Proc): Promise<string> {
  const status = await proc.status;
  const out = await tail(proc.stdoutPath);
  const err = await tail(proc.stderrPath);
  return `${proc.name} exited early (code ${status.code}): ${
    [out, err].filter((s) => s).join(" | ")
  }`;
}

/** The last `maxChars` (default 600) characters of a file, trimmed; "" when unreadable. */
export async function tail(path: string, maxChars = 600): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).slice(-maxChars).trim();
  } catch {
    return "";
  }
}

/** Peak resident set size (VmHWM) of `pid` in KiB, or null when unreadable. */
export async function peakRssKb(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = status.match(/^VmHWM:\s+(\d+) kB/m);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/**
 * The fields of /proc/<pid>/stat after the command name (field 2, which may
 * hold spaces): index 0 is field 3 (state). Null when unreadable.
 */
async function statFields(pid: number | string): Promise<string[] | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/**
 * User + system CPU seconds `pid` has used so far (all its threads), or null
 * when unreadable. /proc counts in USER_HZ ticks, 100 per second on Linux.
 */
export async function cpuSeconds(pid: number): Promise<number | null> {
  const fields = await statFields(pid);
  return fields === null ? null : (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime
}

/**
 * The machine's CPU time so far from /proc/stat's first line, in seconds
 * summed over all cores: `busy` (everything but idle and iowait) and `total`;
 * null when unreadable.
 */
export async function machineCpu(): Promise<{ busy: number; total: number } | null> {
  const text = await Deno.readTextFile("/proc/stat").catch(() => "");
  const fields = /^cpu\s+([\d ]+)/.exec(text)?.[1].trim().split(/\s+/).map(Number);
  if (!fields || fields.length < 5 || fields.some((n) => !Number.isFinite(n))) return null;
  // user nice system idle iowait irq softirq steal (guest time is inside user)
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = fields[3] + fields[4];
  return { busy: (total - idle) / 100, total: total / 100 };
}

/** Pids whose parent is `pid`, found by scanning /proc. */
export async function childPids(pid: number): Promise<number[]> {
  const children: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    // Field 4 is the ppid; null: the process went away while scanning.
    const fields = await statFields(entry.name);
    if (fields !== null && Number(fields[1]) === pid) children.push(Number(entry.name));
  }
  return children;
}

/** Whether `cmd` is found on PATH. */
export async function hasCommand(cmd: string): Promise<boolean> {
  const { success } = await new Deno.Command("sh", {
    args: ["-c", 'command -v "$0" >/dev/null', cmd],
    stdout: "null",
    stderr: "null",
  }).output();
  return success;
}

/** Runs a short command and returns stdout+stderr trimmed, or "" when it cannot run. */
export async function capture(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return (dec.decode(out.stdout) + dec.decode(out.stderr)).trim();
  } catch {
    return "";
  }
}

/** Awaits `ready`; when it fails, stops `proc` before rethrowing, so nothing is left behind. */
export async function readyOrStop<T>(
  group: ProcessGroup,
  proc: Proc,
  ready: Promise<T>,
): Promise<T> {
  try {
    return await ready;
  } catch (e) {
    await group.stop(proc);
    throw e;
  }
}
