// The process's client connections as the kernel sees them, and a way to end
// one: what the client timeouts need, since `Deno.serve` has neither a
// header-read timeout nor a TLS handshake time limit and shows Strom no
// connection objects (issues #7 and #10).
//
// Listing reads /proc/self/net/tcp and tcp6 (through libc: Deno lets only
// --allow-all read /proc). Ending a connection calls libc's
// shutdown(2) through FFI on a duplicate of the socket's descriptor: the
// runtime's reader then sees end of stream and closes the connection itself,
// so Strom never closes a descriptor it does not own. The duplicate pins the
// socket while it is checked, so a descriptor number reused meanwhile cannot
// send the shutdown to another socket. Measured with Deno 2.9.6: a client
// trickling a request head, or connected to the HTTPS port and silent in its
// TLS handshake, sees its connection closed at once, and Deno releases it.
//
// Linux only; elsewhere, or without --allow-ffi, the timeouts are off and
// `openSocketTable` says why.

/** An established connection to one of Strom's listening ports. */
export interface ClientSocket {
  /** The kernel's inode of the socket: its identity while it exists. */
  readonly inode: string;
  readonly localPort: number;
  /** The peer as `canonicalPeer` writes it. */
  readonly peer: string;
}

/** Lists client connections and ends them. */
export interface SocketTable {
  /** Established TCP connections whose local port is one of `ports`. */
  list(ports: ReadonlySet<number>): Promise<ClientSocket[]>;
  /** Shuts down the connections with these inodes that this process holds; returns those shut. */
  shut(inodes: ReadonlySet<string>): Promise<Set<string>>;
}

/**
 * Parses /proc/net/tcp or tcp6 text: established connections on `ports`.
 * Addresses there are hex words in the machine's byte order (little-endian
 * on the x86-64 and arm64 machines Strom targets). A busy host lists tens of
 * thousands of lines, so each is checked in place (fixed columns after the
 * slot number) and only matching ones are taken apart.
 */
export function parseProcNetTcp(text: string, ports: ReadonlySet<number>): ClientSocket[] {
  const out: ClientSocket[] = [];
  const wanted = [...ports].map((p) => p.toString(16).toUpperCase().padStart(4, "0"));
  let start = text.indexOf("\n") + 1; // the header line
  while (start > 0 && start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = start;
    start = end + 1;
    // "  12: LLLLLLLL:PPPP RRRRRRRR:PPPP ST ..." (32 hex digits per address in tcp6)
    const address = text.indexOf(":", line) + 2;
    if (address < 2 || address >= end) continue;
    const width = text.charCodeAt(address + 8) === COLON ? 8 : 32;
    const remote = address + width + 6;
    const state = remote + width + 6;
    if (state + 2 > end || text.charCodeAt(state) !== 48 || text.charCodeAt(state + 1) !== 49) {
      continue; // not "01", ESTABLISHED
    }
    const portAt = address + width + 1;
    let watched = false;
    for (let i = 0; i < wanted.length && !watched; i++) {
      watched = text.startsWith(wanted[i], portAt);
    }
    if (!watched) continue;
    const ip = width === 8
      ? ipv4FromProc(parseInt(text.slice(remote, remote + 8), 16))
      : ipFromProc(text.slice(remote, remote + width));
    const peerPort = parseInt(text.slice(remote + width + 1, remote + width + 5), 16);
    const inode = field(text, state + 2, end, 5);
    if (ip === null || Number.isNaN(peerPort) || !/^\d+$/.test(inode)) continue;
    out.push({
      inode,
      localPort: parseInt(text.slice(portAt, portAt + 4), 16),
      peer: `${ip}|${peerPort}`,
    });
  }
  return out;
}

const COLON = 58;
const SPACE = 32;

/**
 * The `index`th space-separated field of text[from, end): after the state
 * come the tx:rx queues, timer, retransmits, uid, timeout and the inode (5).
 */
function field(text: string, from: number, end: number, index: number): string {
  let i = from;
  for (let n = 0;; n++) {
    while (i < end && text.charCodeAt(i) === SPACE) i++;
    const start = i;
    while (i < end && text.charCodeAt(i) !== SPACE) i++;
    if (n === index || i >= end) return text.slice(start, i);
  }
}

/** An IPv4 address from its /proc/net/tcp word (little-endian), or null. */
function ipv4FromProc(n: number): string | null {
  if (Number.isNaN(n)) return null;
  return `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}`;
}

/** The address of a /proc/net/tcp{,6} hex field, written as `canonicalIp` does; null if malformed. */
function ipFromProc(hex: string): string | null {
  if (hex.length !== 8 && hex.length !== 32) return null;
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    // each 32-bit word is little-endian
    for (let b = 6; b >= 0; b -= 2) bytes.push(parseInt(hex.slice(w + b, w + b + 2), 16));
  }
  if (bytes.some((b) => Number.isNaN(b))) return null;
  return formatIp(bytes);
}

/** IPv4 as dotted quad (also for IPv4-mapped IPv6); other IPv6 as eight full hex groups. */
function formatIp(bytes: number[]): string {
  if (bytes.length === 4) return bytes.join(".");
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 &&
    bytes[11] === 255;
  if (mapped) return bytes.slice(12).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16).padStart(4, "0"));
  }
  return groups.join(":");
}

/** An IP address as Deno reports it, written as the socket table writes it; null if not an IP. */
export function canonicalIp(text: string): string | null {
  const address = text.replace(/%.*$/, "").replace(/^\[|\]$/g, "");
  const v4 = parseIpv4(address);
  if (v4 !== null) return formatIp(v4);
  const v6 = parseIpv6(address);
  return v6 === null ? null : formatIp(v6);
}

/** A peer key of lib/net/activity.ts (`hostname|port`), written as the socket table writes it. */
export function canonicalPeer(key: string): string | null {
  const bar = key.lastIndexOf("|");
  if (bar < 0) return null;
  const ip = canonicalIp(key.slice(0, bar));
  return ip === null ? null : `${ip}|${key.slice(bar + 1)}`;
}

function parseIpv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = parts.map((p) => /^\d{1,3}$/.test(p) ? Number(p) : NaN);
  return bytes.every((b) => b >= 0 && b <= 255) ? bytes : null;
}

function parseIpv6(text: string): number[] | null {
  if (!text.includes(":")) return null;
  let words: number[] = [];
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === null) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) out.push(parseInt(piece, 16));
      else return null;
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    words = [...head, ...new Array(missing).fill(0), ...tail];
  } else words = head;
  if (words.length !== 8) return null;
  return words.flatMap((w) => [w >> 8, w & 255]);
}

const SHUT_RDWR = 2;
const O_RDONLY_CLOEXEC = 0x80000;
/** Where d_name starts in glibc's and musl's 64-bit `struct dirent`. */
const DIRENT_NAME = 19;
const LIBC_NAMES = ["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"];
const SYMBOLS = {
  dup: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // A large /proc file is produced by the kernel as it is read: off the event loop.
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let opened: SocketTable | string | undefined;

/** The Linux socket table (one per isolate), or why there is none here. */
export function openSocketTable(): SocketTable | string {
  return opened ??= open();
}

function open(): SocketTable | string {
  if (Deno.build.os !== "linux") return `it needs Linux (this is ${Deno.build.os})`;
  let libc: Libc | null = null;
  let failure = "";
  for (const name of LIBC_NAMES) {
    try {
      libc = Deno.dlopen(name, SYMBOLS).symbols;
      break;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return "it needs --allow-ffi (to end connections with libc's shutdown)";
      }
      failure = e instanceof Error ? e.message : String(e);
    }
  }
  if (libc === null) return `cannot load libc: ${failure}`;
  // /proc is read through libc too: Deno lets only --allow-all read it, and
  // --allow-ffi, which Strom needs anyway, already grants as much.
  const proc = new ProcFiles(libc);
  const { dup, shutdown, close } = libc;
  let descriptors = new Map<string, number>();
  return {
    async list(ports) {
      const out: ClientSocket[] = [];
      for (const file of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
        const text = await proc.read(file); // null: no IPv6 on this machine
        if (text !== null) out.push(...parseProcNetTcp(text, ports));
      }
      return out;
    },
    shut(inodes) {
      const done = new Set<string>();
      if (inodes.size === 0) return Promise.resolve(done);
      // Which descriptor holds each socket, from the last look at /proc/self/fd;
      // looked at again when one is not there (a socket accepted since).
      if ([...inodes].some((inode) => !descriptors.has(inode))) descriptors = proc.sockets();
      for (const inode of inodes) {
        const fd = descriptors.get(inode);
        descriptors.delete(inode);
        if (fd === undefined) continue;
        const copy = dup(fd);
        if (copy < 0) continue;
        // The copy pins the open file: if `fd` was closed and reused since the
        // look, the copy names another file and is left alone.
        if (proc.link(`/proc/self/fd/${copy}`) === `socket:[${inode}]`) {
          if (shutdown(copy, SHUT_RDWR) === 0) done.add(inode);
        }
        close(copy);
      }
      return Promise.resolve(done);
    },
  };
}

/** Reads /proc with libc calls. */
class ProcFiles {
  readonly #libc: Libc;
  readonly #link = new Uint8Array(256);

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /** A whole file (read in the runtime's blocking pool), or null when it cannot be read. */
  async read(path: string): Promise<string | null> {
    const fd = this.#libc.open(cString(path), O_RDONLY_CLOEXEC);
    if (fd < 0) return null;
    try {
      const chunks: Uint8Array[] = [];
      let total = 0;
      while (true) {
        const chunk = new Uint8Array(64 * 1024);
        const n = Number(await this.#libc.read(fd, chunk, BigInt(chunk.length)));
        if (n < 0) return null;
        if (n === 0) break;
        chunks.push(chunk.subarray(0, n));
        total += n;
      }
      const all = new Uint8Array(total);
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return latin1.decode(all);
    } finally {
      this.#libc.close(fd);
    }
  }

  /** The target of a symbolic link, or null. */
  link(path: string): string | null {
    const n = Number(this.#libc.readlink(cString(path), this.#link, BigInt(this.#link.length)));
    return n < 0 ? null : latin1.decode(this.#link.subarray(0, n));
  }

  /** Socket inode → descriptor, for every socket this process holds. */
  sockets(): Map<string, number> {
    const out = new Map<string, number>();
    const dir = this.#libc.opendir(cString("/proc/self/fd"));
    if (dir === null) return out;
    try {
      const names: string[] = [];
      for (let entry = this.#libc.readdir(dir); entry !== null; entry = this.#libc.readdir(dir)) {
        names.push(new Deno.UnsafePointerView(entry).getCString(DIRENT_NAME));
      }
      for (const name of names) {
        const inode = this.link(`/proc/self/fd/${name}`)?.match(/^socket:\[(\d+)\]$/)?.[1];
        if (inode !== undefined) out.set(inode, Number(name));
      }
    } finally {
      this.#libc.closedir(dir);
    }
    return out;
  }
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(`${text}\0`);
}
