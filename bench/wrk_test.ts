import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { parseTimeMs, parseWrk } from "./wrk.ts";
import { spreadPct } from "./measure.ts";
import { parseTcpExt } from "./netstat.ts";

const OUTPUT = `Running 3s test @ http://127.0.0.1:43077/
  4 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   175.31ms  310.32ms   1.43s    82.78%
    Req/Sec   536.28    331.49     1.25k    64.00%
  Latency Distribution
     50%  812.00us
     75%  210.52ms
     90%  737.37ms
     99%    1.13s 
  5464 requests in 3.02s, 1.09MB read
  Socket errors: connect 1, read 2, write 3, timeout 6
  Non-2xx or 3xx responses: 17
Requests/sec:   1808.60
Transfer/sec:    369.14KB
`;

Deno.test("parseWrk() reads counts, latencies in ms, errors and non-2xx", () => {
  const r = parseWrk(OUTPUT);
  equal(r.requests, 5464);
  equal(r.durationS, 3.02);
  equal(r.reqPerSec, 1808.6);
  deepStrictEqual(r.latencyMs, {
    avg: 175.31,
    stdev: 310.32,
    max: 1430,
    p50: 0.812,
    p75: 210.52,
    p90: 737.37,
    p99: 1130,
  });
  deepStrictEqual(r.socketErrors, { connect: 1, read: 2, write: 3, timeout: 6 });
  equal(r.non2xx, 17);
});

Deno.test("parseWrk() counts zero errors when wrk prints no error lines", () => {
  const clean = OUTPUT.replace(/^ {2}(Socket errors|Non-2xx).*\n/gm, "");
  const r = parseWrk(clean);
  deepStrictEqual(r.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 });
  equal(r.non2xx, 0);
});

Deno.test("parseWrk() rejects output without a latency distribution", () => {
  throws(() => parseWrk(OUTPUT.replace(/^ +99%.*\n/m, "")), /99% latency line/);
});

Deno.test("parseTimeMs() converts every wrk unit", () => {
  deepStrictEqual(["250.00us", "1.50ms", "2.00s", "1.00m"].map(parseTimeMs), [
    0.25,
    1.5,
    2000,
    60000,
  ]);
});

Deno.test("spreadPct() is the largest deviation from an even share", () => {
  equal(spreadPct([100, 100, 100]), 0);
  equal(spreadPct([90, 100, 110]), 10);
  equal(spreadPct([0, 0, 0]), null);
});

Deno.test("parseTcpExt() finds a field by its header", () => {
  const text = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 0 42\nIpExt: A\nIpExt: 1\n";
  equal(parseTcpExt(text, "ListenOverflows"), 42);
  equal(parseTcpExt(text, "Missing"), null);
});
