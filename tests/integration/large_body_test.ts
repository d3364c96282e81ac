// A 1 GiB upload and a 1 GiB download pass through Strom while memory stays
// flat. STROM_BIG_BODY_MB changes the size (default 1024).

import assert from "node:assert/strict";
import { poolToml, startBackend, startStrom } from "../_helpers/servers.ts";

const SIZE = Number(Deno.env.get("STROM_BIG_BODY_MB") ?? 1024) * 1024 * 1024;
const CHUNK = 256 * 1024;
/** Allowed growth of the process's peak RSS over its starting RSS. */
const MAX_GROWTH = 256 * 1024 * 1024;

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

async function drain(body: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += chunk.length;
  return n;
}

/** Runs `work` while sampling RSS; returns the peak growth in bytes. */
async function peakRssGrowth(work: () => Promise<void>): Promise<number> {
  const start = Deno.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, Deno.memoryUsage().rss) - start;
}

Deno.test("a large upload streams through with flat memory", async () => {
  let received = 0;
  await using backend = startBackend(async (req) => {
    received = await drain(req.body!);
    return new Response(String(received));
  });
  await using lb = startStrom(poolToml([backend.address]));
  const growth = await peakRssGrowth(async () => {
    const r = await fetch(`${lb.url}/upload`, { method: "POST", body: generated(SIZE) });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), String(SIZE));
  });
  assert.equal(received, SIZE);
  assert.ok(growth < MAX_GROWTH, `RSS grew by ${(growth / 1048576).toFixed(0)} MiB`);
});

Deno.test("a large download streams through with flat memory", async () => {
  await using backend = startBackend(() =>
    new Response(generated(SIZE), { headers: { "content-length": String(SIZE) } })
  );
  await using lb = startStrom(poolToml([backend.address]));
  const growth = await peakRssGrowth(async () => {
    const r = await fetch(`${lb.url}/download`);
    assert.equal(r.status, 200);
    assert.equal(await drain(r.body!), SIZE);
  });
  assert.ok(growth < MAX_GROWTH, `RSS grew by ${(growth / 1048576).toFixed(0)} MiB`);
});
