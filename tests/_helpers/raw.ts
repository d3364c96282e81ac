// Raw HTTP/1.1 over TCP, for tests that need exact bytes on the wire.

import { concatBytes } from "../../lib/bytes.ts";

/** Sends `request` as is to 127.0.0.1:port and returns everything read until the peer closes. */
export async function rawExchange(port: number, request: string | Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(typeof request === "string" ? new TextEncoder().encode(request) : request);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new TextDecoder().decode(concatBytes(chunks));
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

const LOOPBACK = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

/** A TCP socket bound to an ephemeral port of 127.0.0.1, not listening (libc through FFI). */
function bindLoopback(): { fd: number; port: number; libc: Deno.DynamicLibrary<typeof LOOPBACK> } {
  const libc = Deno.dlopen("libc.so.6", LOOPBACK);
  const { socket, bind, getsockname } = libc.symbols;
  const fd = socket(2, 1, 0); // AF_INET, SOCK_STREAM
  const address = new Uint8Array(16); // sockaddr_in: 127.0.0.1, port 0
  address.set([2, 0, 0, 0, 127, 0, 0, 1]);
  if (fd < 0 || bind(fd, address, 16) !== 0) throw new Error("cannot bind a loopback socket");
  getsockname(fd, address, new Uint8Array(new Uint32Array([16]).buffer));
  return { fd, port: (address[2] << 8) | address[3], libc };
}

/**
 * A port whose connects hang, as a host that drops SYNs makes them (without
 * leaving loopback): a listener with a backlog of 0, never accepting, whose
 * queue one connection fills. Linux only (libc through FFI).
 */
export async function unansweredPort(): Promise<AsyncDisposable & { port: number }> {
  const { fd, port, libc } = bindLoopback();
  if (libc.symbols.listen(fd, 0) !== 0) {
    throw new Error("cannot make a listener with a backlog of 0");
  }
  const filler = await Deno.connect({ hostname: "127.0.0.1", port });
  return {
    port,
    [Symbol.asyncDispose]: () => {
      filler.close();
      libc.symbols.close(fd);
      libc.close();
      return Promise.resolve();
    },
  };
}

/**
 * A port that refuses connects while it is held: bound, not listening. (A
 * closed listener's port can be taken by another test's server before the
 * connect.) Linux only (libc through FFI).
 */
export function refusedPort(): Disposable & { port: number } {
  const { fd, port, libc } = bindLoopback();
  return {
    port,
    [Symbol.dispose]: () => {
      libc.symbols.close(fd);
      libc.close();
    },
  };
}
