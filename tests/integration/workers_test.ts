// `workers = N`: several isolates share the HTTP port; health is probed once
// and reaches every worker; the admin API sums their counters; HTTPS is served
// by the workers and the primary, with the same certificates.

import assert from "node:assert/strict";
import {
  get,
  heldProbe,
  poolToml,
  startBackend,
  startStrom,
  waitFor,
} from "../_helpers/servers.ts";
import { createLogger } from "../../lib/log.ts";
import { ManualClock, nextTurn } from "../_helpers/clock.ts";
import { render } from "../../lib/metrics/registry.ts";
import { X509Certificate } from "node:crypto";
import {
  createCa,
  hasCurl,
  hasOpenssl,
  presentedCertificate,
  presentedCn,
} from "../_helpers/certs.ts";
import { resolvedLimitMessage } from "../../lib/tls/store.ts";
import { type FromWorker, STATS_INTERVAL_MS, type ToWorker } from "../../lib/workers/protocol.ts";
import type { Probe } from "../../lib/health/probe.ts";

type Certificate = { readonly cert: string; readonly key: string };

/** Two workers and HTTPS for a.test with certificate `c`, in front of `backend`. */
function workersHttpsToml(backend: string, c: Certificate): string {
  return `workers = 2\nhttps_address = "127.0.0.1:0"\n` +
    poolToml([backend], { schemes: '["HTTP", "HTTPS"]' }) +
    `[certificates."a.test"]\ntype = "Local"\ncertificate_path = "${c.cert}"\n` +
    `private_key_path = "${c.key}"\n`;
}

/**
 * Strom with two workers serving HTTPS for a.test with `first`, once both
 * workers said they listen; `bothServe()` says so again after `lines` is
 * cleared and a reload made them listen anew.
 */
async function startHttpsWorkers(backend: string, first: Certificate) {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(r.message) });
  const lb = await startStrom(workersHttpsToml(backend, first), { log });
  const port = lb.strom.port("https_address")!;
  const serves = (id: number) =>
    lines.some((l) =>
      l.startsWith(`worker ${id}: Started listening on `) &&
      l.includes(`(https_address, port ${port})`)
    );
  const bothServe = () => serves(1) && serves(2);
  await waitFor(bothServe, "both workers to serve HTTPS");
  return {
    lb,
    lines,
    port,
    bothServe,
    reload: (c: Certificate) => lb.strom.reload(workersHttpsToml(backend, c)),
    [Symbol.asyncDispose]: () => lb[Symbol.asyncDispose](),
  };
}

Deno.test("two workers share the port, every backend serves, and counters add up", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using c = startBackend();
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address, b.address, c.address]));
  const results = await Promise.all(
    Array.from({ length: 10 }, async () => {
      const texts: string[] = [];
      for (let i = 0; i < 30; i++) {
        // A fresh connection each time, so the kernel spreads them over the workers.
        const r = await get(`${lb.url}/`, { headers: { connection: "close" } });
        assert.equal(r.status, 200);
        texts.push(r.text);
      }
      return texts;
    }),
  );
  const served = new Set(results.flat());
  assert.equal(served.size, 3);
  await waitFor(async () => {
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    const total = pools[0].backends.reduce(
      (n: number, b: { requests: number }) => n + b.requests,
      0,
    );
    return total === 300;
  }, "the admin API to count 300 requests over both workers");
});

Deno.test("with workers, a reload that reorders backends moves no count to another backend", async () => {
  await using a = startBackend();
  await using b = startBackend();
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address]));
  for (let i = 0; i < 40; i++) {
    assert.equal((await get(`${lb.url}/`, { headers: { connection: "close" } })).status, 200);
  }
  const counts = async () => {
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    return Object.fromEntries(
      pools[0].backends.map((x: { address: string; requests: number }) => [x.address, x.requests]),
    );
  };
  await waitFor(async () => (await counts())[a.address] === 40, "both workers' counts");
  // B goes first: a worker that has not reported on the new layout yet must not have its
  // count for A (first before) read as B's.
  const reordered = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nworkers = 2\n` +
    poolToml([b.address, a.address]);
  assert.ok((await lb.strom.reload(reordered)).ok);
  const until = performance.now() + 2.5 * STATS_INTERVAL_MS;
  while (performance.now() < until) {
    assert.deepEqual(await counts(), { [b.address]: 0, [a.address]: 40 });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
});

Deno.test("with workers, a reload that changes http_address says it kept the old one", async () => {
  await using a = startBackend();
  const toml = `workers = 2\n` + poolToml([a.address]);
  await using lb = await startStrom(toml);
  const result = await lb.strom.reload(
    `http_address = "127.0.0.1:1"\nadmin_address = "127.0.0.1:0"\n` + toml,
  );
  assert.ok(result.ok);
  assert.deepEqual(result.kept, [{
    path: "http_address",
    message: "a restart is required for 127.0.0.1:1 with workers " +
      "(they keep the address they started on)",
  }]);
  assert.equal((await get(`${lb.url}/`)).status, 200, "still served where it was");
});

Deno.test("with workers, every reload of a changed http_address says it is kept, and going back says nothing", async () => {
  await using a = startBackend();
  const toml = `admin_address = "127.0.0.1:0"\nworkers = 2\n` + poolToml([a.address]);
  const at = (address: string) => `http_address = "${address}"\n` + toml;
  await using lb = await startStrom(at("127.0.0.1:0"));
  const port = lb.strom.port("http_address");
  const moved = at("127.0.0.2:1");
  const kept = [{
    path: "http_address",
    message: "a restart is required for 127.0.0.2:1 with workers " +
      "(they keep the address they started on)",
  }];
  const first = await lb.strom.reload(moved);
  assert.ok(first.ok);
  assert.deepEqual(first.kept, kept);
  // The same config again (POST /api/reload): the workers still listen where they started.
  const again = await lb.strom.reload(moved);
  assert.ok(again.ok);
  assert.deepEqual(again.kept, kept);
  // A save of that text (PUT /api/config's own write) retries nothing: only a restart moves them.
  assert.equal(await lb.strom.reloadIfChanged(moved), null);
  const status = await (await fetch(`${lb.adminUrl}/api/status`)).json();
  assert.deepEqual(
    status.listeners.find((l: { role: string }) => l.role === "http_address"),
    { role: "http_address", address: `127.0.0.1:${port}` },
    "the status names where the workers listen",
  );
  // Back to the address they listen on: nothing kept.
  const back = await lb.strom.reload(at("127.0.0.1:0"));
  assert.ok(back.ok);
  assert.equal(back.kept, undefined, JSON.stringify(back));
  assert.equal((await get(`${lb.url}/`)).status, 200, "still served where it was");
});

Deno.test("with workers, a reload that changes workers says a restart is required", async () => {
  await using a = startBackend();
  const toml = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
    poolToml([a.address]);
  await using lb = await startStrom(`workers = 2\n` + toml);
  const result = await lb.strom.reload(`workers = 1\n` + toml);
  assert.ok(result.ok);
  assert.deepEqual(result.kept, [{
    path: "workers",
    message: "a restart is required for workers = 1 to take effect (running 2)",
  }]);
  assert.equal((await get(`${lb.url}/`)).status, 200);
});

Deno.test("with workers, an HTTP port another process holds is refused, not shared", async () => {
  await using a = startBackend();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort: true });
  const port = (taken.addr as Deno.NetAddr).port;
  await assert.rejects(
    () => startStrom(`workers = 2\nhttp_address = "127.0.0.1:${port}"\n` + poolToml([a.address])),
    (e: Error) => e.name === "ListenError" && /address already in use/i.test(e.message),
  );
});

Deno.test("health found by the primary reaches every worker, for each listing of an address", async () => {
  let failing = false;
  let liveHits = 0;
  await using sick = startBackend((req) => {
    if (new URL(req.url).pathname === "/health") {
      return new Response("", { status: failing ? 500 : 200 });
    }
    liveHits++;
    return new Response("sick");
  });
  await using ok = startBackend(() => new Response("ok"));
  await using lb = await startStrom(
    `workers = 2\n` +
      // Listed twice: each worker must take both listings out (the first only was).
      poolToml([sick.address, sick.address, ok.address], {
        // Generous limits: a busy machine must not make a probe Slow or time out.
        extra:
          `[backend_pools.health_config]\npath = "/health"\nslow_threshold = 10000\ntimeout = 10000`,
      }),
  );
  failing = true;
  for (let i = 0; i < 3; i++) await lb.strom.health.checkAll();
  // The broadcast is a message; give the workers a moment by polling for its effect.
  const before = liveHits;
  await waitFor(async () => {
    const start = liveHits;
    for (let i = 0; i < 10; i++) await get(`${lb.url}/`, { headers: { connection: "close" } });
    return liveHits === start;
  }, "both workers to stop sending to the unhealthy backend");
  assert.ok(liveHits >= before);
  for (let i = 0; i < 20; i++) {
    assert.equal((await get(`${lb.url}/`, { headers: { connection: "close" } })).text, "ok");
  }
});

Deno.test("with workers, a probe still running when a reload comes reaches every worker", async () => {
  let dHits = 0;
  await using a = startBackend(() => new Response("a"));
  await using d = startBackend(() => {
    dHits++;
    return new Response("d");
  });
  const held = heldProbe(d.address);
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nworkers = 2\n` +
    poolToml([a.address, d.address]);
  await using lb = await startStrom(text, { probe: held.probe });
  const round = lb.strom.health.checkAll();
  assert.equal((await lb.strom.reload(text + "\n# edited\n")).ok, true);
  held.answer(false);
  await round;
  await waitFor(async () => {
    const start = dHits;
    for (let i = 0; i < 10; i++) await get(`${lb.url}/`, { headers: { connection: "close" } });
    return dHits === start;
  }, "both workers to stop sending to the backend found down");
});

Deno.test("with workers, /metrics adds up every worker and a reload reaches them all", async () => {
  await using a = startBackend();
  await using b = startBackend();
  const toml = `workers = 2\n` + poolToml([a.address, b.address]);
  await using lb = await startStrom(toml);
  for (let i = 0; i < 40; i++) {
    assert.equal((await get(`${lb.url}/`, { headers: { connection: "close" } })).status, 200);
  }
  const text = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.match(text, /^http_requests_total 40$/m);
  // The dashboard's live figures (one sample a second) count every worker too.
  const answered = () => lb.strom.live.samples.reduce((n, s) => n + s.status["2xx"], 0);
  await waitFor(() => answered() >= 40, "40 answers in the live samples", 5000);
  assert.equal(answered(), 40);
  // Each worker samples its own event loop: their samples add to the primary's.
  const lagCount = (text: string) =>
    Number(/^deno_eventloop_lag_seconds_count (\d+)$/m.exec(text)?.[1] ?? NaN);
  const own = () => lagCount(render(lb.strom.traffic.registry.snapshot()));
  await waitFor(
    async () => lagCount(await (await fetch(`${lb.adminUrl}/metrics`)).text()) > own() + 1,
    "event-loop samples from the workers",
  );
  // So do their V8 heaps (each worker's is a few MB at least).
  const heapUsed = (text: string) =>
    Number(/^deno_heap_size_used_bytes (\d+)$/m.exec(text)?.[1] ?? NaN);
  const all = heapUsed(await (await fetch(`${lb.adminUrl}/metrics`)).text());
  const primary = heapUsed(render(lb.strom.traffic.registry.snapshot()));
  assert.ok(all > primary + 2e6, `all isolates ${all} bytes, the primary ${primary}`);
  const result = await lb.strom.reload(
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
      toml.replace(`,"${b.address}"`, ""),
  );
  assert.ok(result.ok);
  const before = b.requests.length;
  for (let i = 0; i < 20; i++) {
    assert.equal(
      (await get(`${lb.url}/`, { headers: { connection: "close" } })).text,
      `backend ${a.port}`,
    );
  }
  assert.equal(b.requests.length, before, "no worker sends to the removed backend");
});

Deno.test("with workers, a backend drained through the admin API gets no request from any worker", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const token = "workers-token-0123456789";
  await using lb = await startStrom(
    `workers = 2\nadmin_token = "${token}"\n` + poolToml([a.address, b.address]),
  );
  const r = await fetch(`${lb.adminUrl}/api/drain`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ pool: "pool-0", backend: a.address }),
  });
  assert.equal(r.status, 200);
  await r.body?.cancel();
  // The drain reaches the workers as a message; poll for its effect, then check many connections.
  await waitFor(async () => {
    const texts = await Promise.all(
      Array.from({ length: 8 }, () => get(`${lb.url}/`, { headers: { connection: "close" } })),
    );
    return texts.every((t) => t.text === "b");
  }, "every worker to stop sending to the drained backend");
  const before = a.requests.length;
  for (let i = 0; i < 30; i++) {
    assert.equal((await get(`${lb.url}/`, { headers: { connection: "close" } })).text, "b");
  }
  assert.equal(a.requests.length, before);
});

Deno.test("with workers, /api/pools counts the requests in flight now, not at the last report", async () => {
  const release = Promise.withResolvers<void>();
  let arrived = 0;
  await using slow = startBackend(async () => {
    arrived++;
    await release.promise;
    return new Response("slow");
  });
  await using lb = await startStrom(`workers = 2\n` + poolToml([slow.address]));
  const inFlight = async () =>
    (await (await fetch(`${lb.adminUrl}/api/pools`)).json())[0].backends[0].inFlight;
  const requests = Array.from(
    { length: 6 },
    () => get(`${lb.url}/`, { headers: { connection: "close" } }),
  );
  await waitFor(() => arrived === 6, "the six requests at the backend");
  // What a drain's caller reads: it deploys once this says 0.
  assert.equal(await inFlight(), 6);
  release.resolve();
  await Promise.all(requests);
  assert.equal(await inFlight(), 0);
});

Deno.test("with workers, a drain keeping sticky clients reaches every worker", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const token = "workers-token-0123456789";
  await using lb = await startStrom(
    `workers = 2\nadmin_token = "${token}"\n` + poolToml([a.address, b.address], {
      strategy:
        '{ StickyCookie = { cookie_name = "lb", http_only = true, secure = false, same_site = "Lax", inner = "RoundRobin" } }',
    }),
  );
  let cookie = "";
  await waitFor(async () => {
    const r = await get(`${lb.url}/`, { headers: { connection: "close" } });
    cookie = r.headers.get("set-cookie")?.split(";")[0] ?? "";
    return r.text === "a";
  }, "a client bound to a");
  const r = await fetch(`${lb.adminUrl}/api/drain`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ pool: "pool-0", backend: a.address, keep_sticky: true }),
  });
  assert.equal(r.status, 200);
  await r.body?.cancel();
  const fresh = () => get(`${lb.url}/`, { headers: { connection: "close" } });
  await waitFor(async () => {
    const texts = await Promise.all(Array.from({ length: 8 }, fresh));
    return texts.every((t) => t.text === "b");
  }, "every worker to send new clients elsewhere");
  for (let i = 0; i < 16; i++) {
    const bound = await get(`${lb.url}/`, { headers: { connection: "close", cookie } });
    assert.equal(bound.text, "a", "the bound client stays in every worker");
  }
});

Deno.test("with workers, the admin API says in how many workers live traffic ejected a backend", async () => {
  await using live = startBackend(() => new Response("live"));
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${closed.addr.port}`; // refuses connections from now on
  closed.close();
  await using lb = await startStrom(
    `workers = 2\n` +
      poolToml([live.address, dead], {
        extra:
          `[backend_pools.outlier_detection]\nconsecutive_failures = 1\nbase_ejection_time = "60s"`,
      }),
  );
  // Fresh connections; retries reach `live`.
  const view = async () => {
    for (let i = 0; i < 8; i++) {
      const r = await get(`${lb.url}/`, { headers: { connection: "close" } });
      assert.equal(r.text, "live");
    }
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    return pools[0].backends.find((b: { address: string }) => b.address === dead);
  };
  // The kernel may hand every connection to one worker: each worker that got one ejects it.
  await waitFor(async () => (await view()).ejectedInWorkers >= 1, "a worker to eject it", 10_000);
  const backend = await view();
  assert.ok(backend.ejectedInWorkers <= 2);
  const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.match(
    metrics,
    new RegExp(`^strom_backend_ejected_in_workers\\{pool="pool-0",backend="${dead}"\\} [12]$`, "m"),
  );
  assert.equal(backend.ejected, false, "the primary's own traffic (none here) did not eject it");
  // Once every worker ejected it, it takes no traffic anywhere: not available (it was, as the
  // primary's own working set, which no worker's ejection reaches, has it).
  await waitFor(
    async () => (await view()).ejectedInWorkers === 2,
    "both workers to eject it",
    10_000,
  );
  assert.equal((await view()).available, false);
  assert.match(
    await (await fetch(`${lb.adminUrl}/metrics`)).text(),
    new RegExp(`^strom_backend_available\\{pool="pool-0",backend="${dead}"\\} 0$`, "m"),
  );
  const single = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
  assert.equal(
    single[0].backends.find((b: { address: string }) => b.address === live.address)
      .ejectedInWorkers,
    0,
  );
});

Deno.test("with workers, reopenLogs() has every worker write to a new access log file", async () => {
  await using backend = startBackend(() => new Response("ok"));
  const dir = await Deno.makeTempDir();
  await using lb = await startStrom(
    `workers = 2\n[access_log]\npath = "${dir}/access.log"\n` + poolToml([backend.address]),
  );
  const count = async (file: string) =>
    (await Deno.readTextFile(file).catch(() => "")).split("\n").filter((l) => l !== "").length;
  for (let i = 0; i < 20; i++) await get(`${lb.url}/`, { headers: { connection: "close" } });
  await waitFor(async () => (await count(`${dir}/access.log`)) === 20, "20 lines");
  await Deno.rename(`${dir}/access.log`, `${dir}/access.log.1`);
  await lb.strom.reopenLogs();
  // The workers get the message after this returns: wait until both have a new file open.
  await waitFor(async () => {
    await get(`${lb.url}/`, { headers: { connection: "close" } });
    return (await count(`${dir}/access.log`)) > 0;
  }, "a line in the new file");
  const moved = await count(`${dir}/access.log.1`);
  for (let i = 0; i < 20; i++) await get(`${lb.url}/`, { headers: { connection: "close" } });
  await waitFor(async () => (await count(`${dir}/access.log`)) >= 20, "the new lines");
  assert.equal(await count(`${dir}/access.log.1`), moved, "no worker writes to the moved file");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("with workers, the primary trims memory and drops the binary's pages for the whole process", async () => {
  const clock = new ManualClock();
  let trims = 0;
  let drops = 0;
  await using a = startBackend(() => new Response("backend"));
  await using lb = await startStrom(
    `workers = 2\nmemory_trim_interval = "2s"\n` + poolToml([a.address]),
    {
      deps: { clock },
      memoryTrim: () => Promise.resolve(void trims++),
      pageDrop: () => Promise.resolve(++drops),
    },
  );
  assert.equal(drops, 1, "the pages are dropped once the workers serve");
  for (let i = 0; i < 4; i++) {
    assert.equal((await get(`${lb.url}/`, { headers: { connection: "close" } })).text, "backend");
  }
  await nextTurn();
  clock.advance(2000);
  await nextTurn();
  assert.equal(trims, 1, "trimmed on the primary's schedule");
  assert.equal(drops, 1, "and the pages not dropped again within a minute");
});

Deno.test("with workers, ACME challenge answers are served on the shared HTTP port", async () => {
  await using a = startBackend(() => new Response("backend"));
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address]));
  lb.strom.challenges.set("token-123", "token-123.key-authorization");
  await waitFor(async () => {
    const answers = await Promise.all(
      Array.from({ length: 6 }, () =>
        get(`${lb.url}/.well-known/acme-challenge/token-123`, {
          headers: { connection: "close" },
        })),
    );
    return answers.every((r) => r.text === "token-123.key-authorization");
  }, "every worker to answer the challenge");
  lb.strom.challenges.delete("token-123");
  await waitFor(async () => {
    const r = await get(`${lb.url}/.well-known/acme-challenge/token-123`, {
      headers: { connection: "close" },
    });
    return r.text === "backend";
  }, "a deleted challenge to be routed like any request again");
});

Deno.test("a worker that dies is logged and started again, and learns what the others were told", async () => {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address, b.address]), { log });
  let sent = 0;
  const send = () => {
    sent++;
    return get(`${lb.url}/`, { headers: { connection: "close" } });
  };
  // Traffic over both workers first: what the dying one counted must stay counted.
  for (let i = 0; i < 40; i++) assert.equal((await send()).status, 200);
  const counted = async () => {
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    return pools[0].backends.reduce((n: number, x: { requests: number }) => n + x.requests, 0);
  };
  await waitFor(async () => await counted() === 40, "the admin API to count the 40 requests");
  const requestsTotal = async () => {
    const text = await (await fetch(`${lb.adminUrl}/metrics`)).text();
    return Number(text.match(/^http_requests_total (\d+)$/m)?.[1]);
  };
  assert.equal(await requestsTotal(), 40);
  assert.ok(lb.strom.setDrained("pool-0", a.address, true));
  lb.strom.failWorker(0);
  await waitFor(
    () => lines.some((l) => l.startsWith("info Worker 1 started again, listening on port ")),
    "worker 1 to start again",
  );
  assert.ok(
    lines.some((l) =>
      /^error Worker 1 died \(.*failing on request.*\); starting it again( in 1 s)?$/.test(l)
    ),
    JSON.stringify(lines),
  );
  // The new worker got the drain made before it started: no connection reaches `a`.
  await waitFor(async () => {
    const texts = await Promise.all(Array.from({ length: 8 }, send));
    return texts.every((t) => t.text === "b");
  }, "every worker to keep the drain");
  const before = a.requests.length;
  for (let i = 0; i < 30; i++) assert.equal((await send()).text, "b");
  assert.equal(a.requests.length, before);
  // Counters never go back: the dead worker's count stays in the total.
  await waitFor(async () => await counted() === sent, `the admin API to count all ${sent}`);
  assert.equal(await requestsTotal(), sent, "/metrics counts what the dead worker had counted");
  // Every worker answers again: /metrics does not wait for a dead one.
  const started = performance.now();
  const metrics = await fetch(`${lb.adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  await metrics.body?.cancel();
  assert.ok(performance.now() - started < 5000);
});

Deno.test("strom_workers counts the workers running, not those configured, while one waits to start again", async () => {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  await using a = startBackend(() => new Response("a"));
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address]), { log });
  const workersGauge = async () => {
    const text = await (await fetch(`${lb.adminUrl}/metrics`)).text();
    return Number(text.match(/^strom_workers (\d+)$/m)?.[1]);
  };
  assert.equal(await workersGauge(), 2);
  // Dying young twice: the second start waits a second or more, a worker short meanwhile.
  lb.strom.failWorker(0);
  await waitFor(() => lines.some((l) => l.startsWith("info Worker 1 started again")), "restart");
  lines.length = 0;
  lb.strom.failWorker(0);
  await waitFor(() => lines.some((l) => /Worker 1 died .* in \d+ s$/.test(l)), "a second death");
  assert.equal(await workersGauge(), 1);
  await waitFor(async () => await workersGauge() === 2, "worker 1 to run again");
});

/** Strom with two workers over `addresses` (its log in `lines`), and what tests of restarts use. */
async function startRestartable(addresses: string[], options: { probe?: Probe } = {}) {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  const head = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\nworkers = 2\n`;
  const lb = await startStrom(head + poolToml(addresses), { log, probe: options.probe });
  return {
    lb,
    /** Reloads with the pool over `next`. */
    reload: async (next: string[]) => assert.ok((await lb.strom.reload(head + poolToml(next))).ok),
    /** Has worker `index` die and waits until it was started again. */
    restart: async (index: number) => {
      lines.length = 0;
      lb.strom.failWorker(index);
      await waitFor(
        () => lines.some((l) => l.startsWith(`info Worker ${index + 1} started again`)),
        `worker ${index + 1} to start again`,
      );
    },
    /** Waits until fresh connections, over both workers, all reach the backend answering `text`. */
    allReach: async (text: string) => {
      const fresh = () => get(`${lb.url}/`, { headers: { connection: "close" } });
      await waitFor(async () => {
        const answers = await Promise.all(Array.from({ length: 8 }, fresh));
        return answers.every((r) => r.text === text);
      }, `every worker to send to ${text}`);
      for (let i = 0; i < 30; i++) assert.equal((await fresh()).text, text);
    },
    [Symbol.asyncDispose]: () => lb[Symbol.asyncDispose](),
  };
}

Deno.test("a worker started again is told the drains of the backends there are now, not of removed ones", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using group = await startRestartable([a.address, b.address]);
  const { strom } = group.lb;
  assert.ok(strom.setDrained("pool-0", b.address, true));
  await group.reload([a.address]);
  await group.reload([a.address, b.address]); // b comes back undrained
  assert.ok(strom.setDrained("pool-0", a.address, true));
  await group.allReach("b");
  await group.restart(0);
  // A replay of b's old drain would leave the new worker nothing to send to.
  await group.allReach("b");
});

Deno.test("a worker started again is told the health states of the backends there are now, not of removed ones", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const down = new Set<string>();
  const probe: Probe = (backend) => {
    const ok = !down.has(backend.id);
    return Promise.resolve({
      ok,
      slow: false,
      status: ok ? 200 : 503,
      latencyMs: 1,
      reason: `status ${ok ? 200 : 503}`,
    });
  };
  await using group = await startRestartable([a.address, b.address], { probe });
  const { strom } = group.lb;
  const until = async (address: string, status: string) => {
    for (let i = 0; i < 10; i++) {
      const backend = strom.runtime.pools[0].backends.find((x) => x.id === address)!;
      if (backend.health.status === status) return;
      await strom.health.checkAll();
    }
    throw new Error(`${address} did not become ${status}`);
  };
  down.add(b.address);
  await until(b.address, "Unresponsive");
  await group.reload([a.address]);
  down.delete(b.address);
  await group.reload([a.address, b.address]); // b comes back Healthy, so no change to announce
  down.add(a.address);
  await until(a.address, "Unresponsive");
  await until(b.address, "Healthy");
  await group.allReach("b");
  await group.restart(1);
  await group.allReach("b");
});

Deno.test("with workers, a backend removed and added again does not get what a dead worker counted for it", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using group = await startRestartable([a.address, b.address]);
  const { lb } = group;
  const fresh = () => get(`${lb.url}/`, { headers: { connection: "close" } });
  const requestsOf = async (address: string) => {
    const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
    return pools[0].backends.find((x: { address: string }) => x.address === address)?.requests;
  };
  for (let i = 0; i < 40; i++) assert.equal((await fresh()).status, 200);
  await waitFor(
    async () => await requestsOf(b.address) === b.requests.length,
    "the admin API to count b's requests over both workers",
  );
  const metricsText = async () => await (await fetch(`${lb.adminUrl}/metrics`)).text();
  assert.ok((await metricsText()).includes(`backend="${b.address}"`)); // each worker reported
  await group.restart(0); // what worker 1 counted for b is carried in the totals
  await group.reload([a.address]);
  // Its series go with it, the dead worker's part too (kept, the total went back, a reset).
  const stale = (await metricsText()).split("\n").filter((l) => l.includes(`"${b.address}"`));
  assert.deepEqual(stale, []);
  await group.reload([a.address, b.address]);
  const since = b.requests.length;
  for (let i = 0; i < 20; i++) assert.equal((await fresh()).status, 200);
  await waitFor(
    async () => await requestsOf(b.address) === b.requests.length - since,
    "the admin API to count only b's requests since it was added again",
  );
  // Both workers report again meanwhile: the count stays right.
  const until = performance.now() + 2.5 * STATS_INTERVAL_MS;
  while (performance.now() < until) {
    assert.equal(await requestsOf(b.address), b.requests.length - since);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
});

Deno.test("worker log lines reach the primary's log, with the worker named", async () => {
  const lines: string[] = [];
  const log = createLogger("info", { sink: (r) => lines.push(`${r.level} ${r.message}`) });
  await using a = startBackend();
  await using lb = await startStrom(`workers = 2\n` + poolToml([a.address]), { log });
  for (const id of [1, 2]) {
    assert.ok(
      lines.some((l) =>
        l.startsWith(`info worker ${id}: Started listening on `) && l.includes("(http_address")
      ),
      `worker ${id}'s "Started listening" line in ${JSON.stringify(lines)}`,
    );
  }
  assert.equal((await get(`${lb.url}/`)).status, 200);
});

Deno.test({
  name: "with workers, HTTPS is served by every isolate and new certificates reach them all",
  ignore: !hasOpenssl || !hasCurl,
  async fn() {
    await using ca = await createCa();
    const first = await ca.issue("first", ["a.test"]);
    const second = await ca.issue("second", ["a.test"]);
    await using backend = startBackend(() => new Response("ok"));
    await using https = await startHttpsWorkers(backend.address, first);
    const { lb, lines, port, bothServe } = https;

    // Each curl is a new connection; the kernel spreads them over the three listeners.
    const curl = async () => {
      const out = await new Deno.Command("curl", {
        args: [
          "-sS",
          "--cacert",
          ca.caPath,
          "--resolve",
          `a.test:${port}:127.0.0.1`,
          `https://a.test:${port}/`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    };
    for (let i = 0; i < 30; i++) assert.equal(await curl(), "ok");
    // The primary's own HTTPS requests and the workers' add up in the admin API.
    await waitFor(async () => {
      const pools = await (await fetch(`${lb.adminUrl}/api/pools`)).json();
      return pools[0].backends[0].requests === 30;
    }, "the admin API to count the 30 HTTPS requests");

    // A reload with a new certificate: every isolate presents it to new handshakes.
    const serial = (pem: string) => new X509Certificate(pem).serialNumber;
    const expected = serial(await Deno.readTextFile(second.cert));
    assert.notEqual(expected, serial(await Deno.readTextFile(first.cert)));
    lines.length = 0;
    assert.ok((await https.reload(second)).ok);
    await waitFor(bothServe, "both workers to rebind HTTPS");
    for (let i = 0; i < 20; i++) {
      assert.equal((await presentedCertificate(port, "a.test"))?.serialNumber, expected);
    }
    assert.equal(await curl(), "ok");
  },
});

Deno.test({
  name: "with workers, HTTPS requests on listeners a reload replaced finish before a shutdown ends",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const first = await ca.issue("first", ["a.test", "127.0.0.1"]);
    const second = await ca.issue("second", ["a.test", "127.0.0.1"]);
    const gate = Promise.withResolvers<void>();
    let reached = 0;
    await using backend = startBackend(async () => {
      reached++;
      await gate.promise;
      return new Response("ok");
    });
    await using https = await startHttpsWorkers(backend.address, first);
    const { lb, lines, port, bothServe } = https;
    // Nine requests in flight, spread by the kernel over the three isolates' listeners.
    const conns = await Promise.all(
      Array.from(
        { length: 9 },
        () => Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca.caPem] }),
      ),
    );
    try {
      for (const conn of conns) {
        await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
      }
      await waitFor(() => reached === 9, "the nine requests to reach the backend");
      lines.length = 0;
      assert.ok((await https.reload(second)).ok);
      await waitFor(bothServe, "both workers to rebind HTTPS");
      const stopping = lb.strom.shutdown(10_000);
      for (let i = 0; i < 50; i++) await nextTurn(); // the workers get their shutdown
      gate.resolve();
      const answers = await Promise.all(conns.map(async (conn) => {
        const buf = new Uint8Array(1024);
        const n = await conn.read(buf).catch(() => null);
        return n === null ? "(cut)" : new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
      }));
      assert.deepEqual(answers, Array(9).fill("HTTP/1.1 200 OK"));
      await stopping;
    } finally {
      gate.resolve();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  },
});

Deno.test({
  name:
    "with workers, a worker's HTTPS listener that resolved its limit of server names is replaced",
  ignore: !hasOpenssl,
  async fn() {
    await using ca = await createCa();
    const a = await ca.issue("a", ["a.test"]);
    const b = await ca.issue("b", ["b.test"]);
    await using backend = startBackend(() => new Response("ok"));
    const lines: string[] = [];
    const log = createLogger("info", { sink: (r) => lines.push(r.message) });
    const certificate = (name: string, c: { cert: string; key: string }) =>
      `[certificates."${name}"]\ntype = "Local"\ncertificate_path = "${c.cert}"\n` +
      `private_key_path = "${c.key}"\n`;
    await using lb = await startStrom(
      `workers = 2\nhttps_address = "127.0.0.1:0"\ndefault_certificate = "b.test"\n` +
        poolToml([backend.address], { schemes: '["HTTP", "HTTPS"]' }) +
        certificate("a.test", a) + certificate("b.test", b),
      { log, resolvedNamesLimit: 3 },
    );
    const port = lb.strom.port("https_address")!;
    const fromWorker = new RegExp(`^worker \\d: ${resolvedLimitMessage(3)}$`);
    // New names on new connections, until one worker (not only the primary) reached the limit.
    for (let i = 0; i < 300 && !lines.some((l) => fromWorker.test(l)); i++) {
      assert.equal(await presentedCn(port, `n${i}.test`), "b.test");
    }
    assert.ok(lines.some((l) => fromWorker.test(l)), lines.join("\n"));
    for (let i = 0; i < 10; i++) assert.equal(await presentedCn(port, "a.test"), "a.test");
  },
});

Deno.test({
  name: "with workers, the client timeouts know the connections the workers serve",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using backend = startBackend(() => new Response("ok"));
    await using lb = await startStrom(
      `workers = 2\nclient_header_timeout = "1s"\n` + poolToml([backend.address]),
    );
    const port = lb.strom.port("http_address");
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const busy = await Deno.connect({ hostname: "127.0.0.1", port });
    const silent = await Deno.connect({ hostname: "127.0.0.1", port });
    let silentClosed = false;
    const guard = setTimeout(() => silent.close(), 10_000);
    const closing = silent.read(new Uint8Array(16)).catch(() => null).then((n) => {
      clearTimeout(guard);
      silentClosed = true;
      return n;
    });
    // A worker serves `busy` back to back: the primary, which runs the timeouts,
    // must learn that from the worker's reports or it would close `busy` too.
    let answered = 0;
    const buf = new Uint8Array(4096);
    while (!silentClosed) {
      await busy.write(enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
      let text = "";
      while (!text.endsWith("\r\n\r\nok")) {
        const n = await busy.read(buf);
        assert.notEqual(n, null, `busy was closed after ${answered} answers`);
        text += dec.decode(buf.subarray(0, n!));
      }
      answered++;
    }
    assert.equal(await closing, null, "the silent client was closed");
    assert.ok(answered > 10);
    busy.close();
    try {
      silent.close();
    } catch { /* closed */ }
  },
});

Deno.test("a worker applies the drains and health it is started with before it listens", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  const worker = new Worker(new URL("../../lib/workers/entry.ts", import.meta.url), {
    type: "module",
  });
  try {
    const listening = new Promise<number>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        if (event.data.type === "listening") resolve(event.data.port);
        if (event.data.type === "error") reject(new Error(event.data.message));
      };
    });
    const start: ToWorker = {
      type: "start",
      id: 1,
      configText: `http_address = "127.0.0.1:0"\n[health_interval]\ncheck_every = 0\n` +
        poolToml([a.address, b.address]),
      source: "<test>",
      baseDir: ".",
      logLevel: "error",
      watchPeers: false,
      generation: 1,
      // A started anew: a is drained. Its first request (RoundRobin starts at a) must not go there.
      states: [
        { type: "drain", pool: "pool-0", backend: a.address, drained: true, keepSticky: false },
      ],
    };
    worker.postMessage(start);
    const port = await listening;
    const first = await get(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
    assert.equal(first.text, "b");
    assert.equal(a.requests.length, 0);
  } finally {
    worker.postMessage({ type: "shutdown", graceMs: 0 } satisfies ToWorker);
    await new Promise<void>((resolve) => {
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        if (event.data.type === "stopped") resolve();
      };
    });
    worker.terminate();
  }
});
