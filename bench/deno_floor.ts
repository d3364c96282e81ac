// The Deno floor: the least a reverse proxy on Deno must do, as a reference
// row in scenarios 2 and 3 (not a product). `Deno.serve` takes the request; a
// keep-alive connection from a per-backend idle list (`Deno.connect`) carries
// `GET path` round-robin (a connection whose answer is HTTP/1.0 or says
// `Connection: close` is closed); the answer is read up to its Content-Length and sent
// back with its Content-Type. No header forwarding rules, no health checks, no
// metrics, no timeouts, Content-Length bodies only: the gap between this row
// and Strom's is what those features cost on the same runtime.
//
// Usage: deno run --allow-net bench/deno_floor.ts PORT BACKEND [BACKEND ...]

const HEAD_END = [13, 10, 13, 10];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Index of CRLF CRLF in `bytes[0, end)`, or -1. */
function headEnd(bytes: Uint8Array, end: number): number {
  outer: for (let i = 0; i + 3 < end; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== HEAD_END[j]) continue outer;
    return i;
  }
  return -1;
}

/** Whether the backend ends the connection after this answer (HTTP/1.0 or `Connection: close`). */
function closes(head: string): boolean {
  if (/\r\nconnection:[^\r]*close/i.test(head)) return true;
  return head.startsWith("HTTP/1.0") && !/\r\nconnection:[^\r]*keep-alive/i.test(head);
}

interface Answer {
  response: Response;
  reusable: boolean;
}

/** Sends one GET over `conn` and reads the answer; null when the connection is unusable. */
async function exchange(conn: Deno.TcpConn, path: string): Promise<Answer | null> {
  await conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nhost: backend\r\n\r\n`));
  let buf = new Uint8Array(8192);
  let filled = 0;
  while (true) {
    if (filled === buf.length) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = await conn.read(buf.subarray(filled));
    if (n === null) return null;
    filled += n;
    const end = headEnd(buf, filled);
    if (end < 0) continue;
    const head = decoder.decode(buf.subarray(0, end));
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
    if (!Number.isFinite(length)) return null;
    if (filled < end + 4 + length) continue;
    const type = /\r\ncontent-type:\s*([^\r]*)/i.exec(head)?.[1] ?? "application/octet-stream";
    const status = Number(head.slice(9, 12));
    const response = new Response(buf.slice(end + 4, end + 4 + length), { status });
    response.headers.set("content-type", type);
    return { response, reusable: !closes(head) };
  }
}

function main(args: string[]): void {
  const [port, ...backends] = args;
  if (!port || backends.length === 0) {
    console.error("usage: deno_floor.ts PORT BACKEND [BACKEND ...]");
    Deno.exit(2);
  }
  const targets = backends.map((b) => {
    const colon = b.lastIndexOf(":");
    return { hostname: b.slice(0, colon), port: Number(b.slice(colon + 1)) };
  });
  const idle = targets.map(() => [] as Deno.TcpConn[]);
  let next = 0;
  Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen() {} }, async (request) => {
    const i = next++ % targets.length;
    const url = request.url;
    const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
    // A pooled connection the backend has closed meanwhile (nginx ends one
    // after 1,000 requests) gets one retry, always on a new connection.
    for (let attempt = 0; attempt < 2; attempt++) {
      const pooled = attempt === 0 ? idle[i].pop() : undefined;
      const conn = pooled ?? await Deno.connect(targets[i]);
      try {
        const answer = await exchange(conn, path);
        if (answer !== null) {
          if (answer.reusable) idle[i].push(conn);
          else conn.close();
          return answer.response;
        }
      } catch { /* retried or answered below */ }
      conn.close();
      if (pooled === undefined) break;
    }
    return new Response("bad gateway", { status: 502 });
  });
}

if (import.meta.main) main(Deno.args);
