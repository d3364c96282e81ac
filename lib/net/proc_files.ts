// Reading /proc through libc. Deno lets only --allow-all read it (even
// /proc/self), and --allow-ffi, which Strom needs anyway, already grants as much.

/** The libc calls a ProcReader needs (others may be loaded with them). */
export const PROC_READ_SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  // Called only to give the event loop a turn: an async op, unlike setTimeout(0),
  // which a timer callback's nested timers clamp to 4 ms.
  getpid: { parameters: [], result: "i32", nonblocking: true },
} as const;

type ProcLibc = Deno.DynamicLibrary<typeof PROC_READ_SYMBOLS>["symbols"];

const O_RDONLY_CLOEXEC = 0x80000;
const READ_CHUNK = 64 * 1024;
/** Read calls between two yields to the event loop (~1 ms of kernel work). */
const READS_PER_SLICE = 32;

/** Reads whole /proc files with libc calls. */
export class ProcReader {
  readonly #libc: ProcLibc;
  readonly #scratch = new Uint8Array(READ_CHUNK);

  constructor(libc: ProcLibc) {
    this.#libc = libc;
  }

  /**
   * A whole file, or null when it cannot be read. The kernel writes
   * /proc/net/tcp a page per read call (~30 us each); the event loop gets a
   * turn every READS_PER_SLICE calls, so a large table does not stall requests.
   */
  async read(path: string): Promise<Uint8Array | null> {
    const fd = this.#libc.open(cString(path), O_RDONLY_CLOEXEC);
    if (fd < 0) return null;
    try {
      const scratch = this.#scratch;
      let all = new Uint8Array(READ_CHUNK * 4);
      let total = 0;
      for (let calls = 1;; calls++) {
        if (calls % READS_PER_SLICE === 0) await this.#libc.getpid();
        const n = Number(this.#libc.read(fd, scratch, BigInt(scratch.length)));
        if (n < 0) return null;
        if (n === 0) break;
        if (all.length - total < n) {
          const bigger = new Uint8Array(all.length * 2);
          bigger.set(all.subarray(0, total));
          all = bigger;
        }
        all.set(scratch.subarray(0, n), total);
        total += n;
      }
      return all.subarray(0, total);
    } finally {
      this.#libc.close(fd);
    }
  }
}

const utf8 = new TextEncoder();

/** `text` as a NUL-terminated C string. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(`${text}\0`);
}
