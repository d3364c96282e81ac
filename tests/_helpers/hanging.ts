// A loopback port whose connects hang (for connect timeouts and connects given
// up on), through libc (Linux).

import assert from "node:assert/strict";

/**
 * A loopback port whose connects hang: a socket listening with a backlog of 0
 * and a first connection filling its accept queue, so the kernel drops the
 * next SYNs. Linux only (libc through FFI).
 */
export function hangingPort(): { port: number; close(): void } {
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    listen: { parameters: ["i32", "i32"], result: "i32" },
    getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  const { socket, bind, listen, getsockname, connect, close } = libc.symbols;
  const AF_INET = 2, SOCK_STREAM = 1;
  // struct sockaddr_in: family (host order), port (network order), 127.0.0.1, zero padding.
  const address = new Uint8Array(16);
  new DataView(address.buffer).setUint16(0, AF_INET, true);
  address.set([127, 0, 0, 1], 4);
  const listening = socket(AF_INET, SOCK_STREAM, 0);
  assert.equal(bind(listening, address, 16), 0);
  assert.equal(listen(listening, 0), 0);
  const length = new Uint32Array([16]);
  assert.equal(getsockname(listening, address, new Uint8Array(length.buffer)), 0);
  const port = new DataView(address.buffer).getUint16(2, false);
  const filler = socket(AF_INET, SOCK_STREAM, 0);
  assert.equal(connect(filler, address, 16), 0);
  return {
    port,
    close() {
      close(filler);
      close(listening);
      libc.close();
    },
  };
}
