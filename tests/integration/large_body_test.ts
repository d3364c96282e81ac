// A 1 GiB upload and a 1 GiB download pass through Strom while its memory
// stays flat. Strom runs as its own process so its peak RSS (VmHWM) can be read
// without counting the test's own work. STROM_BIG_BODY_MB changes the size.

import assert from "node:assert/strict";
import { StromProcess } from "../_helpers/process.ts";
import { startBackend } from "../_helpers/servers.ts";

const SIZE = Number(Deno.env.get("STROM_BIG_BODY_MB") ?? 1024) * 1024 * 1024;
const CHUNK = 256 * 1024;
/** Allowed peak RSS of the Strom process while a body of SIZE bytes passes through. */
const MAX_PEAK_RSS = 200 * 1024 * 1024;

function generated(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      const n = Math.min(CHUNK, total - sent);
      if (n === 0) return controller.close();
      const chunk = new Uint8Array(n);
      chunk[0] = sent % 251;
      controller.enqueue(chunk);
      sent += n;
    },
  }, { highWaterMark: 0 });
}

async function drain(body: ReadableStream<Uint8Array> | null): Promise<number> {
  let n = 0;
  for await (const chunk of body ?? []) n += chunk.length;
  return n;
}

/** Peak resident memory of a process (Linux), or null elsewhere. */
async function peakRss(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function stromBefore(
  backendAddress: string,
): Promise<{ url: string; strom: StromProcess; path: string }> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(
    path,
    `http_address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"
[health_interval]
check_every = 0
[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["${backendAddress}"]
schemes = ["HTTP"]
strategy = "RoundRobin"
request_timeout = "120s"
`,
  );
  const strom = new StromProcess(["-c", path]);
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  return { url: `http://127.0.0.1:${port}`, strom, path };
}

Deno.test("a large upload streams through Strom with flat memory", async () => {
  let received = 0;
  await using backend = startBackend(async (req) => {
    received = await drain(req.body);
    return new Response(String(received));
  });
  const { url, strom, path } = await stromBefore(backend.address);
  await using _ = strom;
  // A raw client with Content-Length: Deno's fetch uploads a stream in small
  // chunked writes that make any proxy slow (Nagle), which is not what is tested here.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  await conn.write(new TextEncoder().encode(
    `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${SIZE}\r\nConnection: close\r\n\r\n`,
  ));
  await generated(SIZE).pipeTo(conn.writable, { preventClose: true });
  const answer = await new Response(conn.readable).text();
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.ok(answer.endsWith(`\r\n\r\n${SIZE}`), answer);
  assert.equal(received, SIZE);
  const peak = await peakRss(strom.child.pid);
  if (peak !== null) assert.ok(peak < MAX_PEAK_RSS, `peak RSS ${(peak / 1048576).toFixed(0)} MiB`);
  await Deno.remove(path);
});

Deno.test("a large download streams through Strom with flat memory", async () => {
  await using backend = startBackend(() =>
    new Response(generated(SIZE), { headers: { "content-length": String(SIZE) } })
  );
  const { url, strom, path } = await stromBefore(backend.address);
  await using _ = strom;
  const r = await fetch(`${url}/download`);
  assert.equal(r.status, 200);
  assert.equal(await drain(r.body), SIZE);
  const peak = await peakRss(strom.child.pid);
  if (peak !== null) assert.ok(peak < MAX_PEAK_RSS, `peak RSS ${(peak / 1048576).toFixed(0)} MiB`);
  await Deno.remove(path);
});
