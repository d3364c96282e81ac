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
