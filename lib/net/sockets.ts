// The process's client connections as the kernel sees them, and a way to end
// one: what the client timeouts need, since `Deno.serve` has neither a
// header-read timeout nor a TLS handshake time limit and shows Strom no
// connection objects (issues #7 and #10).
//
// Listing asks the kernel over netlink (sock_diag, what `ss` uses) for the
// established TCP sockets: it skips the TIME_WAIT and listening ones itself, so
// a round stays cheap on a busy host. Where sock_diag is missing, it reads
// /proc/self/net/tcp and tcp6 instead (through libc: Deno lets only
// --allow-all read /proc), which costs about 100 ms per round at 28,000
// sockets. Ending a connection calls libc's shutdown(2) through FFI on a duplicate of the socket's descriptor: the
// runtime's reader then sees end of stream and closes the connection itself,
// so Strom never closes a descriptor it does not own. The duplicate pins the
// socket while it is checked, so a descriptor number reused meanwhile cannot
// send the shutdown to another socket. Measured with Deno 2.9.6: a client
// trickling a request head, or connected to the HTTPS port and silent in its
// TLS handshake, sees its connection closed at once, and Deno releases it.
//
// Linux only; elsewhere, or without --allow-ffi, the timeouts are off and
// `openSocketTable` says why.

import { cString, PROC_READ_SYMBOLS, ProcReader } from "./proc_files.ts";

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
  /**
   * Shuts down the connections with these inodes that this process holds;
   * returns those shut. With `reset`, the socket also lingers 0 s: when the
   * runtime closes it, unsent data is dropped and the peer gets a RST (nginx's
   * `reset_timedout_connection`), so a peer that reads nothing cannot keep it.
   */
  shut(inodes: ReadonlySet<string>, options?: { reset?: boolean }): Promise<Set<string>>;
}

/**
 * Parses the bytes of /proc/net/tcp or tcp6: established connections on
 * `ports`. Addresses there are hex words in the machine's byte order
 * (little-endian on the x86-64 and arm64 machines Strom targets). A busy host
 * lists tens of thousands of lines, so each is checked in place, as bytes
 * (fixed columns after the slot number), and only matching ones are taken apart.
 */
export function parseProcNetTcp(bytes: Uint8Array, ports: ReadonlySet<number>): ClientSocket[] {
  const out: ClientSocket[] = [];
  let start = bytes.indexOf(NEWLINE) + 1; // the header line
  while (start > 0 && start < bytes.length) {
    let end = bytes.indexOf(NEWLINE, start);
    if (end < 0) end = bytes.length;
    const line = start;
    start = end + 1;
    // "  12: LLLLLLLL:PPPP RRRRRRRR:PPPP ST ..." (32 hex digits per address in tcp6)
    const address = bytes.indexOf(COLON, line) + 2;
    if (address < 2 || address >= end) continue;
    const width = bytes[address + 8] === COLON ? 8 : 32;
    const remote = address + width + 6;
    const state = remote + width + 6;
    if (state + 2 > end || bytes[state] !== 48 || bytes[state + 1] !== 49) {
      continue; // not "01", ESTABLISHED
    }
    const localPort = hex(bytes, address + width + 1, 4);
    if (!ports.has(localPort)) continue;
    const ip = ipFromProc(bytes, remote, width);
    const peerPort = hex(bytes, remote + width + 1, 4);
    const inode = inodeField(bytes, state + 2, end);
    if (ip === null || peerPort < 0 || inode === null) continue;
    out.push({ inode, localPort, peer: `${ip}|${peerPort}` });
  }
  return out;
}

const NEWLINE = 10;
const COLON = 58;
const SPACE = 32;

/** The value of `length` hex digits at `at`, or -1. */
function hex(bytes: Uint8Array, at: number, length: number): number {
  let n = 0;
  for (let i = at; i < at + length; i++) {
    const b = bytes[i];
    const d = b >= 48 && b <= 57
      ? b - 48
      : b >= 65 && b <= 70
      ? b - 55
      : b >= 97 && b <= 102
      ? b - 87
      : -1;
    if (d < 0) return -1;
    n = n * 16 + d;
  }
  return n;
}

/**
 * The inode: the sixth space-separated field after the state (tx:rx queues,
 * timer, retransmits, uid, timeout, inode), as digits; null if malformed.
 */
function inodeField(bytes: Uint8Array, from: number, end: number): string | null {
  let i = from;
  for (let n = 0; n < 6; n++) {
    while (i < end && bytes[i] === SPACE) i++;
    const first = i;
    while (i < end && bytes[i] !== SPACE) i++;
    if (n < 5) continue;
    if (i === first) return null;
    let inode = "";
    for (let j = first; j < i; j++) {
      if (bytes[j] < 48 || bytes[j] > 57) return null;
      inode += String.fromCharCode(bytes[j]);
    }
    return inode;
  }
  return null;
}

/** Netlink and sock_diag constants (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h). */
const NLMSG_HEADER = 16;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const TCP_ESTABLISHED = 1;
/** struct inet_diag_msg: family, state, timer, retrans, the 48-byte id, expires, queues, uid, inode. */
const DIAG_MSG = 72;

/** A sock_diag dump request for `family`'s established TCP sockets. */
export function diagRequest(family: number, seq: number): Uint8Array<ArrayBuffer> {
  const req = new Uint8Array(NLMSG_HEADER + 56);
  const v = new DataView(req.buffer);
  v.setUint32(0, req.length, true);
  v.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  v.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  v.setUint32(8, seq, true);
  req[16] = family;
  req[17] = IPPROTO_TCP;
  v.setUint32(20, 1 << TCP_ESTABLISHED, true);
  return req;
}

/**
 * Parses netlink messages of a sock_diag dump: the sockets on `ports`, and
 * whether the dump is over (`done`), or the kernel's error (a negative errno).
 */
export function parseDiag(
  bytes: Uint8Array,
  ports: ReadonlySet<number>,
): { sockets: ClientSocket[]; done: boolean; error: number } {
  const sockets: ClientSocket[] = [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + NLMSG_HEADER <= bytes.length;) {
    const length = v.getUint32(at, true);
    const type = v.getUint16(at + 4, true);
    if (length < NLMSG_HEADER || at + length > bytes.length) break;
    if (type === NLMSG_DONE) return { sockets, done: true, error: 0 };
    if (type === NLMSG_ERROR) {
      return { sockets, done: true, error: length >= 20 ? v.getInt32(at + 16, true) : -1 };
    }
    const m = at + NLMSG_HEADER;
    if (type === SOCK_DIAG_BY_FAMILY && length >= NLMSG_HEADER + DIAG_MSG) {
      const family = bytes[m];
      const localPort = v.getUint16(m + 4); // network order
      if (bytes[m + 1] === TCP_ESTABLISHED && ports.has(localPort)) {
        const peerPort = v.getUint16(m + 6);
        const dst = m + 24; // id.idiag_dst
        const ip = family === AF_INET
          ? formatIp([...bytes.subarray(dst, dst + 4)])
          : formatIp([...bytes.subarray(dst, dst + 16)]);
        sockets.push({
          inode: String(v.getUint32(m + 68, true)),
          localPort,
          peer: `${ip}|${peerPort}`,
        });
      }
    }
    at += (length + 3) & ~3; // NLMSG_ALIGN
  }
  return { sockets, done: false, error: 0 };
}

/**
 * The address in the `width` hex digits at `at` of a /proc/net/tcp{,6} line,
 * written as `canonicalIp` does; null if malformed. Each 32-bit word is
 * little-endian.
 */
function ipFromProc(bytes: Uint8Array, at: number, width: number): string | null {
  const out: number[] = [];
  for (let w = at; w < at + width; w += 8) {
    for (let b = 6; b >= 0; b -= 2) {
      const byte = hex(bytes, w + b, 2);
      if (byte < 0) return null;
      out.push(byte);
    }
  }
  return formatIp(out);
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
const SOL_SOCKET = 1;
const SO_LINGER = 13;
/** struct linger { int l_onoff = 1; int l_linger = 0; }: close drops unsent data and resets. */
const LINGER_ZERO = new Uint8Array(new Int32Array([1, 0]).buffer);
/** Descriptors looked at between two yields to the event loop. */
const FDS_PER_SLICE = 512;

/** Where d_name starts in glibc's and musl's 64-bit `struct dirent`. */
const DIRENT_NAME = 19;
const LIBC_NAMES = ["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"];
const SYMBOLS = {
  ...PROC_READ_SYMBOLS,
  dup: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // On a thread of the runtime's blocking pool: a sock_diag dump walks the kernel's
  // whole connection table inside them (2 ms for 262,144 buckets, at any load).
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize", nonblocking: true },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize", nonblocking: true },
  // On this thread: a lookup of one connection is a hash lookup in the kernel.
  sendNow: { name: "send", parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recvNow: { name: "recv", parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let opened: SocketTable | string | undefined;

/** The Linux socket table (one per isolate), or why there is none here. */
export function openSocketTable(): SocketTable | string {
  return opened ??= createSocketTable();
}

/** Whether a client is still connected: "unknown" where the kernel cannot be asked. */
export type ClientState = "connected" | "gone" | "unknown";

let lookups: ConnectionLookup | null | undefined;

/** The lookups of single connections (one per isolate), or null where there are none (not Linux). */
function connectionLookup(): ConnectionLookup | null {
  if (lookups === undefined) {
    const libc = Deno.build.os === "linux" ? loadLibc() : "not Linux";
    lookups = typeof libc === "string" ? null : new ConnectionLookup(libc);
  }
  return lookups;
}

/**
 * Whether the client `peer` still has its connection to the listener bound
 * to `listener` open, as the kernel's table says (Linux: one sock_diag lookup
 * by the connection's four addresses, a hash lookup in the kernel, not a dump
 * of the table). "gone" once the client closed (CLOSE-WAIT) or reset it, or
 * the connection left the table (Deno closes its side of a TLS connection
 * whose client hung up, and may still hold the descriptor).
 * A listener bound to a wildcard address takes connections on any of the
 * host's addresses: each is tried; a connection found on none is looked for
 * in a dump of the port's established connections (it may be on an address
 * not tried, such as another of 127.0.0.0/8): the kernel walks its whole
 * table then, which only clients that left (or came in on such an address)
 * cost.
 */
export async function clientState(
  listener: { readonly hostname: string; readonly port: number },
  peer: Deno.NetAddr,
): Promise<ClientState> {
  const lookups = connectionLookup();
  if (lookups === null) return "unknown";
  let state: ClientState | "elsewhere";
  try {
    state = lookups.state(listener, peer);
  } catch {
    return "unknown";
  }
  if (state !== "elsewhere") return state;
  const table = openSocketTable();
  const key = canonicalPeer(`${peer.hostname}|${peer.port}`);
  if (typeof table === "string" || key === null) return "unknown";
  try {
    const established = await table.list(new Set([listener.port]));
    return established.some((s) => s.peer === key) ? "connected" : "gone";
  } catch {
    return "unknown";
  }
}

/** libc with the calls sockets need, or why it cannot be loaded. */
function loadLibc(): Libc | string {
  let failure = "";
  for (const name of LIBC_NAMES) {
    try {
      return Deno.dlopen(name, SYMBOLS).symbols;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return "it needs --allow-ffi (to end connections with libc's shutdown)";
      }
      failure = e instanceof Error ? e.message : String(e);
    }
  }
  return `cannot load libc: ${failure}`;
}

/**
 * Shuts down this process's established TCP connection from local port
 * `localPort` to remote port `remotePort`, if it has one; whether it did.
 * For a connection Deno no longer lets Strom close: closing a `Deno.TlsConn`
 * whose handshake is pending cancels the handshake but leaves the TCP
 * connection open (Deno 2.9.6); after a shutdown the runtime sees the end and
 * releases it. Linux with --allow-ffi only (false elsewhere).
 */
export function shutConnection(localPort: number, remotePort: number): Promise<boolean> {
  const suffix = `|${remotePort}`;
  return shutOne(new Set([localPort]), (peer) => peer.endsWith(suffix), false);
}

/**
 * Resets this process's connection from `peer` (a `peerKey`) to one of
 * `ports`, if it has one: for a client that stopped reading its answer, whose
 * connection the runtime would otherwise keep while it waits to flush what the
 * client does not read. Whether it did (false where there is no socket table).
 */
export function resetClient(ports: ReadonlySet<number>, peer: string): Promise<boolean> {
  const key = canonicalPeer(peer);
  if (key === null) return Promise.resolve(false);
  return shutOne(ports, (p) => p === key, true);
}

/**
 * Shuts down (with `reset`, resets) the one connection on `ports` whose peer
 * `matches`; none when there is none or more than one (not knowing which).
 */
async function shutOne(
  ports: ReadonlySet<number>,
  matches: (peer: string) => boolean,
  reset: boolean,
): Promise<boolean> {
  const table = openSocketTable();
  if (typeof table === "string") return false;
  const mine = (await table.list(ports)).filter((s) => matches(s.peer));
  if (mine.length !== 1) return false;
  return (await table.shut(new Set([mine[0].inode]), { reset })).size === 1;
}

/** A socket table; `source` "proc" skips sock_diag (tests compare the two). */
export function createSocketTable(
  { source = "diag" }: { source?: "diag" | "proc" } = {},
): SocketTable | string {
  if (Deno.build.os !== "linux") return `it needs Linux (this is ${Deno.build.os})`;
  const libc = loadLibc();
  if (typeof libc === "string") return libc;
  // /proc is read through libc too: Deno lets only --allow-all read it, and
  // --allow-ffi, which Strom needs anyway, already grants as much.
  const proc = new ProcFiles(libc);
  let diag: SockDiag | null = source === "diag" ? new SockDiag(libc) : null;
  const { dup, shutdown, close, setsockopt } = libc;
  let descriptors = new Map<string, number>();
  return {
    async list(ports) {
      if (diag !== null) {
        const listed = await diag.list(ports);
        if (typeof listed !== "string") return listed;
        if (listed === "missing") diag = null; // /proc from now on; "failed": this round
      }
      const out: ClientSocket[] = [];
      for (const file of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
        const bytes = await proc.read(file); // null: no IPv6 on this machine
        if (bytes !== null) out.push(...parseProcNetTcp(bytes, ports));
      }
      return out;
    },
    async shut(inodes, { reset = false } = {}) {
      const done = new Set<string>();
      if (inodes.size === 0) return done;
      // Which descriptor holds each socket, from the last look at /proc/self/fd;
      // looked at again when one is not there (a socket accepted since).
      if ([...inodes].some((inode) => !descriptors.has(inode))) descriptors = await proc.sockets();
      for (const inode of inodes) {
        const fd = descriptors.get(inode);
        descriptors.delete(inode);
        if (fd === undefined) continue;
        const copy = dup(fd);
        if (copy < 0) continue;
        // The copy pins the open file: if `fd` was closed and reused since the
        // look, the copy names another file and is left alone.
        if (proc.socketOf(copy) === inode) {
          if (reset) setsockopt(copy, SOL_SOCKET, SO_LINGER, LINGER_ZERO, LINGER_ZERO.length);
          if (shutdown(copy, SHUT_RDWR) === 0) done.add(inode);
        }
        close(copy);
      }
      return done;
    },
  };
}

const AF_NETLINK = 16;
const SOCK_DGRAM_CLOEXEC = 2 | 0x80000;
const NETLINK_SOCK_DIAG = 4;
const MSG_DONTWAIT = 0x40;

/**
 * Dumps established TCP sockets over netlink (sock_diag), off the JavaScript
 * thread: the kernel walks its whole table of connections for each dump, which
 * held every request up for 2 ms (idle, 262,144 buckets) to 10 ms (under
 * load) once a second when it ran on this thread.
 */
class SockDiag {
  readonly #libc: Libc;
  #seq = 0;

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /**
   * The established connections on `ports`; "missing" when this kernel has
   * no sock_diag, "failed" when this dump did not work.
   */
  async list(ports: ReadonlySet<number>): Promise<ClientSocket[] | "missing" | "failed"> {
    const fd = this.#libc.socket(AF_NETLINK, SOCK_DGRAM_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return "missing";
    // One buffer per dump: two dumps (a round and a reset) may run at once.
    const buffer = new Uint8Array(64 * 1024);
    try {
      const out: ClientSocket[] = [];
      for (const family of [AF_INET, AF_INET6]) {
        const request = diagRequest(family, ++this.#seq);
        const size = BigInt(request.length);
        if (Number(await this.#libc.send(fd, request, size, 0)) !== request.length) {
          return "failed";
        }
        for (;;) {
          const n = Number(
            await this.#libc.recv(fd, buffer, BigInt(buffer.length), MSG_DONTWAIT),
          );
          if (n <= 0) return "failed";
          const { sockets, done, error } = parseDiag(buffer.subarray(0, n), ports);
          out.push(...sockets);
          if (error !== 0) return family === AF_INET6 ? out : "missing"; // AF_INET6: no IPv6
          if (done) break;
        }
      }
      return out;
    } finally {
      this.#libc.close(fd);
    }
  }
}

/** How long the host's addresses (for listeners on a wildcard address) are taken as known. */
const ADDRESSES_TTL_MS = 10_000;
const TCP_LISTEN = 10;
const ENOENT = 2;

/** Looks single connections up by their addresses over netlink (sock_diag). */
class ConnectionLookup {
  readonly #libc: Libc;
  readonly #reply = new Uint8Array(1024);
  #seq = 0;
  #addresses: { v4: number[][]; v6: number[][]; at: number } | null = null;

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /** The state, or "elsewhere": on a wildcard address, found on none of the host's addresses. */
  state(
    listener: { hostname: string; port: number },
    peer: Deno.NetAddr,
  ): ClientState | "elsewhere" {
    const bound = ipBytes(listener.hostname);
    const peerIp = ipBytes(peer.hostname);
    if (bound === null || peerIp === null) return "unknown";
    const v6 = bound.length === 16;
    // An IPv6 listener sees IPv4 clients as IPv4-mapped addresses.
    const remote = v6 && peerIp.length === 4 ? mapped(peerIp) : peerIp;
    if (remote.length !== bound.length) return "unknown";
    const wildcard = bound.every((b) => b === 0);
    const locals = wildcard ? this.#hostAddresses(v6) : [bound];
    const fd = this.#libc.socket(AF_NETLINK, SOCK_DGRAM_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return "unknown";
    try {
      for (const local of locals) {
        const request = lookupRequest(
          v6 ? AF_INET6 : AF_INET,
          local,
          listener.port,
          remote,
          peer.port,
          ++this.#seq,
        );
        const reply = this.#exchange(fd, request);
        if (reply === null) return "unknown";
        const found = parseLookup(reply);
        if (found === "error") return "unknown";
        if (found === "none") continue;
        return found === TCP_ESTABLISHED ? "connected" : "gone";
      }
      return wildcard ? "elsewhere" : "gone";
    } finally {
      this.#libc.close(fd);
    }
  }

  /** Sends one request on `fd`; its reply (a view of the reply buffer), or null. */
  #exchange(fd: number, request: Uint8Array<ArrayBuffer>): Uint8Array | null {
    const sent = Number(this.#libc.sendNow(fd, request, BigInt(request.length), 0));
    if (sent !== request.length) return null;
    const n = Number(
      this.#libc.recvNow(fd, this.#reply, BigInt(this.#reply.length), MSG_DONTWAIT),
    );
    return n <= 0 ? null : this.#reply.subarray(0, n);
  }

  /** The TcpProgress of the connection `local` → `remote`, or null. */
  tcpProgress(local: Deno.NetAddr, remote: Deno.NetAddr): TcpProgress | null {
    const from = ipBytes(local.hostname);
    const to = ipBytes(remote.hostname);
    if (from === null || to === null || from.length !== to.length) return null;
    const fd = this.#libc.socket(AF_NETLINK, SOCK_DGRAM_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return null;
    try {
      const family = from.length === 16 ? AF_INET6 : AF_INET;
      const request = lookupRequest(
        family,
        from,
        local.port,
        to,
        remote.port,
        ++this.#seq,
        1 << (INET_DIAG_INFO - 1),
      );
      const reply = this.#exchange(fd, request);
      return reply === null ? null : parseTcpProgress(reply);
    } finally {
      this.#libc.close(fd);
    }
  }

  /** The host's addresses of one family (IPv4 ones also mapped for IPv6), loopback first. */
  #hostAddresses(v6: boolean): number[][] {
    const now = performance.now();
    if (this.#addresses === null || now - this.#addresses.at > ADDRESSES_TTL_MS) {
      const v4: number[][] = [[127, 0, 0, 1]];
      const v6s: number[][] = [];
      try {
        for (const i of Deno.networkInterfaces()) {
          const bytes = ipBytes(i.address);
          if (bytes === null) continue;
          if (bytes.length === 4) {
            if (!v4.some((a) => a.join() === bytes.join())) v4.push(bytes);
          } else v6s.push(bytes);
        }
      } catch { /* no --allow-sys: loopback only */ }
      this.#addresses = { v4, v6: [...v6s, ...v4.map(mapped)], at: now };
    }
    return v6 ? this.#addresses.v6 : this.#addresses.v4;
  }
}

/** An IP literal's bytes (4 or 16), or null. */
function ipBytes(text: string): number[] | null {
  const address = text.replace(/%.*$/, "").replace(/^\[|\]$/g, "");
  return parseIpv4(address) ?? parseIpv6(address);
}

function mapped(v4: number[]): number[] {
  return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...v4];
}

/**
 * A sock_diag request for the one TCP socket with these addresses (no
 * NLM_F_DUMP: the kernel looks it up, established first, then listening).
 */
export function lookupRequest(
  family: number,
  local: number[],
  localPort: number,
  peer: number[],
  peerPort: number,
  seq: number,
  extensions = 0,
): Uint8Array<ArrayBuffer> {
  const req = new Uint8Array(NLMSG_HEADER + 56);
  const v = new DataView(req.buffer);
  v.setUint32(0, req.length, true);
  v.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  v.setUint16(6, NLM_F_REQUEST, true);
  v.setUint32(8, seq, true);
  req[16] = family;
  req[17] = IPPROTO_TCP;
  req[18] = extensions; // attributes wanted in the reply (1 << (INET_DIAG_x - 1) each)
  v.setUint32(20, 0xffffffff, true); // every state
  v.setUint16(24, localPort); // inet_diag_sockid, network order
  v.setUint16(26, peerPort);
  req.set(local, 28);
  req.set(peer, 44);
  v.setUint32(64, 0xffffffff, true); // INET_DIAG_NOCOOKIE
  v.setUint32(68, 0xffffffff, true);
  return req;
}

/**
 * The reply to a lookupRequest: the socket's TCP state, "none" when there is
 * no such connection (only the listener matched, or ENOENT), or "error".
 */
export function parseLookup(bytes: Uint8Array): number | "none" | "error" {
  if (bytes.length < NLMSG_HEADER) return "error";
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint16(4, true);
  if (type === NLMSG_ERROR) {
    return bytes.length >= 20 && v.getInt32(16, true) === -ENOENT ? "none" : "error";
  }
  if (type !== SOCK_DIAG_BY_FAMILY || bytes.length < NLMSG_HEADER + DIAG_MSG) return "error";
  const state = bytes[NLMSG_HEADER + 1];
  return state === TCP_LISTEN ? "none" : state;
}

/** The `INET_DIAG_INFO` attribute (struct tcp_info), asked for with `1 << (2 - 1)`. */
const INET_DIAG_INFO = 2;
/** Where `tcpi_bytes_acked` (u64) sits in struct tcp_info (Linux 4.1 and later). */
const TCPI_BYTES_ACKED = 120;
/** Where `tcpi_notsent_bytes` (u32) sits in struct tcp_info (Linux 4.6 and later). */
const TCPI_NOTSENT_BYTES = 144;

/** How far the peer has taken what this side sent on a TCP connection. */
export interface TcpProgress {
  /** Bytes the peer's kernel acknowledged (the SYN counts one). */
  readonly acked: bigint;
  /** Bytes waiting in this side's send queue, not sent yet (the peer's window is full). */
  readonly notSent: number;
}

/**
 * `tcpi_bytes_acked` and `tcpi_notsent_bytes` from the reply to a lookupRequest
 * made with INET_DIAG_INFO; null when the reply has no such connection or no
 * such fields (a kernel before 4.6).
 */
export function parseTcpProgress(bytes: Uint8Array): TcpProgress | null {
  if (bytes.length < NLMSG_HEADER + DIAG_MSG) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint16(4, true) !== SOCK_DIAG_BY_FAMILY) return null;
  const end = Math.min(bytes.length, v.getUint32(0, true));
  for (let at = NLMSG_HEADER + DIAG_MSG; at + 4 <= end;) {
    const length = v.getUint16(at, true);
    if (length < 4) return null;
    if (v.getUint16(at + 2, true) === INET_DIAG_INFO) {
      const info = at + 4;
      if (length < 4 + TCPI_NOTSENT_BYTES + 4 || info + TCPI_NOTSENT_BYTES + 4 > end) return null;
      return {
        acked: v.getBigUint64(info + TCPI_BYTES_ACKED, true),
        notSent: v.getUint32(info + TCPI_NOTSENT_BYTES, true),
      };
    }
    at += (length + 3) & ~3;
  }
  return null;
}

/**
 * How far the peer of the TCP connection `local` → `remote` has taken what
 * this process sent (Linux: one sock_diag lookup), or null where that cannot
 * be known. While bytes wait unsent (the peer's window is full), a peer whose
 * acknowledged count grows reads, however slowly; one stopped (or gone)
 * acknowledges nothing new. With nothing waiting, acknowledgements only say
 * that its kernel took the bytes.
 */
export function tcpProgress(local: Deno.NetAddr, remote: Deno.NetAddr): TcpProgress | null {
  try {
    return connectionLookup()?.tcpProgress(local, remote) ?? null;
  } catch {
    return null;
  }
}

/** Reads /proc with libc calls: whole files, and the sockets among this process's descriptors. */
class ProcFiles extends ProcReader {
  readonly #libc: Libc;
  readonly #link = new Uint8Array(256);
  /** "/proc/self/fd/<fd>\0", the number written in by `socketOf`. */
  readonly #path = new Uint8Array(64);

  constructor(libc: Libc) {
    super(libc);
    this.#libc = libc;
    this.#path.set(FD_PREFIX);
  }

  /** The inode of the socket descriptor `fd` names, or null (not a socket, or closed). */
  socketOf(fd: number): string | null {
    const { written } = utf8.encodeInto(String(fd), this.#path.subarray(FD_PREFIX.length));
    this.#path[FD_PREFIX.length + written] = 0;
    const n = Number(this.#libc.readlink(this.#path, this.#link, BigInt(this.#link.length)));
    return socketInode(this.#link, n);
  }

  /**
   * Socket inode → descriptor, for every socket this process holds. Yields to
   * the event loop every FDS_PER_SLICE descriptors, so thousands of them do
   * not stall requests.
   */
  async sockets(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const dir = this.#libc.opendir(cString("/proc/self/fd"));
    if (dir === null) return out;
    const fds: number[] = [];
    try {
      for (let entry = this.#libc.readdir(dir); entry !== null; entry = this.#libc.readdir(dir)) {
        const name = new Deno.UnsafePointerView(entry).getCString(DIRENT_NAME);
        if (/^\d+$/.test(name)) fds.push(Number(name)); // not "." or ".."
      }
    } finally {
      this.#libc.closedir(dir);
    }
    for (let i = 0; i < fds.length; i++) {
      if (i > 0 && i % FDS_PER_SLICE === 0) await this.#libc.getpid();
      const inode = this.socketOf(fds[i]);
      if (inode !== null) out.set(inode, fds[i]);
    }
    return out;
  }
}

const SOCKET_PREFIX = Array.from("socket:[", (c) => c.charCodeAt(0));

/** The inode of a `socket:[N]` link in `bytes[0, n)`, or null. */
function socketInode(bytes: Uint8Array, n: number): string | null {
  if (n <= SOCKET_PREFIX.length + 1 || bytes[n - 1] !== 93) return null; // "]"
  for (let i = 0; i < SOCKET_PREFIX.length; i++) if (bytes[i] !== SOCKET_PREFIX[i]) return null;
  let inode = "";
  for (let i = SOCKET_PREFIX.length; i < n - 1; i++) {
    if (bytes[i] < 48 || bytes[i] > 57) return null;
    inode += String.fromCharCode(bytes[i]);
  }
  return inode;
}

const utf8 = new TextEncoder();
const FD_PREFIX = utf8.encode("/proc/self/fd/");
