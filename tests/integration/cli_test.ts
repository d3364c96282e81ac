import assert from "node:assert/strict";
import { runStrom, StromProcess } from "../_helpers/process.ts";
import { get, poolToml, startBackend, waitFor } from "../_helpers/servers.ts";
import { VERSION } from "../../lib/version.ts";
import { createCa, hasOpenssl } from "../_helpers/certs.ts";

async function configFile(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(path, text);
  return path;
}

const VALID = `http_address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"
[[backend_pools]]
name = "api"
matcher = "Host('a.com') && PathPrefix('/api')"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081"]
schemes = ["HTTP"]
strategy = { StickyCookie = { cookie_name = "lb", http_only = true, secure = false, same_site = "Lax", inner = "LeastConnection" } }
`;

Deno.test("strom --version and --help answer and exit 0", async () => {
  const version = await runStrom(["--version"]);
  assert.equal(version.code, 0);
  assert.equal(version.stdout.trim(), `strom ${VERSION} (dev)`);
  const help = await runStrom(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /strom --check --config FILE/);
});

Deno.test("strom exits 2 with a one-line usage error for bad flags and levels", async () => {
  for (
    const [args, env, message] of [
      [["--bogus"], {}, "strom: Unknown option '--bogus'"],
      [["-c", "x.toml"], { LOG_LEVEL: "loud" }, 'strom: Invalid LOG_LEVEL "loud"'],
      [["x.toml"], {}, 'strom: Unexpected argument "x.toml" (did you mean --config x.toml?)'],
    ] as const
  ) {
    const r = await runStrom([...args], env);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.startsWith(message), r.stderr);
    assert.ok(!r.stderr.includes("    at "), "no stack trace");
  }
});

Deno.test("strom --check prints a summary of a valid config and exits 0", async () => {
  const path = await configFile(VALID);
  const r = await runStrom(["--check", "--config", path]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout.trim(),
    [
      `Config "${path}" is valid`,
      "  listeners: http 127.0.0.1:0, admin 127.0.0.1:0",
      "  health checks: every 10 s",
      "  pools (first match wins): 1",
      "    api: Host('a.com') && PathPrefix('/api')",
      '      schemes HTTP; strategy StickyCookie(cookie "lb", inner LeastConnection)',
      "      backends 127.0.0.1:8080, 127.0.0.1:8081",
    ].join("\n"),
  );
  await Deno.remove(path);
});

Deno.test("strom --check of an empty file says a reload to it is refused", async () => {
  const path = await configFile("# nothing yet\n\n");
  const r = await runStrom(["--check", "--config", path]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /warning: the file is empty .* a reload to it is refused/);
  await Deno.remove(path);
});

Deno.test("strom --check refuses a regex that could backtrack for ever, and says when it cannot tell", async () => {
  const path = await configFile(
    VALID.replace("&& PathPrefix('/api')", () => "&& PathRegexp('^/files/([a-z0-9]+/?){1,20}$')"),
  );
  const r = await runStrom(["--check", "-c", path]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /repeats a group that itself repeats or alternates/);
  // Without Strom's V8 flags (`deno run main.ts` by hand) the engine cannot be asked: a note.
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const bare = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "--check", "-c", path],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(bare.stderr);
  assert.equal(bare.code, 0, stderr);
  assert.match(stderr, /^strom: note: V8 runs without Strom's flags/);
  assert.ok(!r.stderr.includes("note:"), r.stderr);
  await Deno.remove(path);
});

Deno.test("strom --check lists every problem of an invalid config and exits 1", async () => {
  const path = await configFile(
    VALID.replace("LeastConnection", "Fastest").replace("&& PathPrefix", "&& &&"),
  );
  const r = await runStrom(["--check", "-c", path]);
  assert.equal(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines[0], `Cannot load config "${path}": found 2 problems`);
  assert.match(r.stderr, /backend_pools\[0\]\.matcher: invalid matcher: expected a term/);
  assert.match(
    r.stderr,
    /backend_pools\[0\]\.strategy\.StickyCookie\.inner: unknown strategy "Fastest"/,
  );
  const missing = await runStrom(["-c", "/nonexistent/strom.toml"]);
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /^Cannot load config "\/nonexistent\/strom.toml": found 1 problem\n {2}cannot read file: /,
  );
  await Deno.remove(path);
});

Deno.test("strom exits 1 with one line naming the address when a listener cannot bind", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const inUse = await configFile(
    VALID.replace(`http_address = "127.0.0.1:0"`, `http_address = "127.0.0.1:${port}"`),
  );
  const r = await runStrom(["-c", inUse, "--log-level", "error"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr.trim(),
    `Cannot listen on 127.0.0.1:${port} (http_address): address already in use`,
  );
  const foreign = await configFile(
    VALID.replace(
      `admin_address = "127.0.0.1:0"`,
      `admin_address = "192.0.2.1:9090"\nadmin_token = "0123456789abcdef0123"`,
    ),
  );
  const r2 = await runStrom(["-c", foreign, "--log-level", "error"]);
  assert.equal(r2.code, 1);
  assert.equal(
    r2.stderr.trim(),
    "Cannot listen on 192.0.2.1:9090 (admin_address): address not available on this machine",
  );
  await Deno.remove(inUse);
  await Deno.remove(foreign);
});

Deno.test("SIGTERM lets an in-flight request finish, then strom exits 0", async () => {
  const gate = Promise.withResolvers<void>();
  let reached = false;
  await using backend = startBackend(async (request) => {
    // Health probes reach the backend too; only the client's request counts.
    if (new URL(request.url).pathname === "/slow") reached = true;
    await gate.promise;
    return new Response("finished");
  });
  const path = await configFile(
    VALID.replace(`["127.0.0.1:8080", "127.0.0.1:8081"]`, `["${backend.address}"]`)
      .replace("Host('a.com') && PathPrefix('/api')", "PathPrefix('/')"),
  );
  await using strom = new StromProcess(["-c", path]);
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  const pending = get(`http://127.0.0.1:${port}/slow`);
  await waitFor(() => reached, "the request to reach the backend");
  strom.child.kill("SIGTERM");
  await strom.waitForLine(/Received SIGTERM/);
  gate.resolve();
  const r = await pending;
  assert.deepEqual([r.status, r.text], [200, "finished"]);
  assert.equal((await strom.child.status).code, 0);
  await Deno.remove(path);
});

Deno.test("a second SIGINT during the drain stops strom at once, with exit 1", async () => {
  let reached = false;
  const gate = Promise.withResolvers<void>();
  await using backend = startBackend(async (request) => {
    if (new URL(request.url).pathname === "/slow") reached = true;
    await gate.promise; // not before strom is gone
    return new Response("late");
  });
  const path = await configFile(
    VALID.replace(`["127.0.0.1:8080", "127.0.0.1:8081"]`, `["${backend.address}"]`)
      .replace("Host('a.com') && PathPrefix('/api')", "PathPrefix('/')"),
  );
  await using strom = new StromProcess(["-c", path, "--grace", "60"]);
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  const pending = get(`http://127.0.0.1:${port}/slow`).catch(() => null);
  await waitFor(() => reached, "the request to reach the backend");
  strom.child.kill("SIGINT");
  await strom.waitForLine(/Received SIGINT, finishing/);
  strom.child.kill("SIGINT");
  await strom.waitForLine(/Received SIGINT again: stopping now/);
  assert.equal((await strom.child.status).code, 1);
  gate.resolve();
  await pending;
  await Deno.remove(path);
});

Deno.test("a log reader that goes away (EPIPE on stdout) neither breaks requests nor SIGTERM", async () => {
  await using backend = startBackend(() => new Response("still here"));
  const path = await configFile(`http_address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"
[[backend_pools]]
matcher = "PathPrefix('/dead')"
addresses = ["127.0.0.1:1"]
schemes = ["HTTP"]
strategy = "RoundRobin"
[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["${backend.address}"]
schemes = ["HTTP"]
strategy = "RoundRobin"
`);
  await using strom = new StromProcess(["-c", path]);
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  await strom.closeStdout();
  // Each answer from the dead pool logs a warning, so each meets the broken pipe.
  for (let i = 0; i < 3; i++) {
    const dead = await get(`http://127.0.0.1:${port}/dead`);
    assert.ok([502, 503].includes(dead.status), `status ${dead.status}: ${dead.text}`);
    const r = await get(`http://127.0.0.1:${port}/x`);
    assert.deepEqual([r.status, r.text], [200, "still here"]);
  }
  strom.child.kill("SIGTERM");
  const kill = setTimeout(() => strom.child.kill("SIGKILL"), 10_000);
  const status = await strom.child.status;
  clearTimeout(kill);
  assert.equal(status.code, 0, "strom did not exit on SIGTERM after its stdout broke");
  await Deno.remove(path);
});

Deno.test("strom demo serves three backends in turn", async () => {
  await using demo = new StromProcess([
    "demo",
    "--http-port",
    "0",
    "--admin-port",
    "0",
    "--backend-port",
    "0",
  ]);
  const [, url] = await demo.waitForLine(/balancer\s+(http:\/\/127\.0\.0\.1:\d+)/);
  await demo.waitForLine(/Try:/);
  const names = [];
  for (let i = 0; i < 3; i++) names.push(JSON.parse((await get(`${url}/hello`)).text).backend);
  assert.deepEqual(names.sort(), ["backend-1", "backend-2", "backend-3"]);
  demo.child.kill("SIGINT");
  assert.equal((await demo.child.status).code, 0);
});

Deno.test("SIGHUP opens the access log anew, as logrotate's postrotate expects", async () => {
  await using backend = startBackend(() => new Response("ok"));
  const dir = await Deno.makeTempDir();
  const path = await configFile(
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
      `[access_log]\npath = "${dir}/access.log"\n` + poolToml([backend.address]),
  );
  await using strom = new StromProcess(["-c", path]);
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  assert.equal((await get(`http://127.0.0.1:${port}/before`)).status, 200);
  const lines = async (file: string) =>
    await Deno.readTextFile(file).then(
      (t) => t.trim().split("\n").filter((l) => l !== ""),
      () => [],
    );
  await waitFor(async () => (await lines(`${dir}/access.log`)).length === 1, "the first line");
  await Deno.rename(`${dir}/access.log`, `${dir}/access.log.1`); // logrotate moves it
  strom.child.kill("SIGHUP");
  await strom.waitForLine(/Reloaded configuration/);
  assert.equal((await get(`http://127.0.0.1:${port}/after`)).status, 200);
  await waitFor(
    async () => (await lines(`${dir}/access.log`)).length === 1,
    "a line in the new file",
  );
  assert.match((await lines(`${dir}/access.log`))[0], /GET \/after /);
  assert.equal((await lines(`${dir}/access.log.1`)).length, 1, "the moved file got nothing more");
  await Deno.remove(path);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a SIGHUP while Strom starts is a reload once it has started, not the end of it", async () => {
  await using backend = startBackend(() => new Response("ok"));
  // Pools enough that starting takes a while after the config is read.
  const pools = Array.from(
    { length: 1500 },
    (_, i) => poolToml([backend.address], { matcher: `Host('h${i}.test') && PathRegexp('^/a')` }),
  );
  const path = await configFile(
    `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` + pools.join("") +
      poolToml([backend.address]),
  );
  await using strom = new StromProcess(["-c", path]);
  await strom.waitForLine(/Logging level/);
  strom.child.kill("SIGHUP");
  const [, port] = await strom.waitForLine(/\(http_address, port (\d+)\)/);
  await strom.waitForLine(/Reloaded configuration/);
  assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  await Deno.remove(path);
});

Deno.test("strom exits 1 when it cannot start (an access log it cannot open)", async () => {
  const dir = await Deno.makeTempDir();
  const path = await configFile(`http_address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"
[access_log]
path = "${dir}/missing/access.log"
`);
  await using strom = new StromProcess(["-c", path]);
  const status = await strom.child.status;
  assert.equal(status.code, 1, strom.lines.join("\n"));
  await Deno.remove(path);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("saving the config again unchanged retries a listener that could not move", async () => {
  await using backend = startBackend(() => new Response("ok"));
  const text = `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"\n` +
    poolToml([backend.address]);
  const path = await configFile(text);
  try {
    await using strom = new StromProcess(["-c", path]);
    await strom.waitForLine(/\(http_address, port (\d+)\)/);
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (taken.addr as Deno.NetAddr).port;
    const moved = text.replace(
      'http_address = "127.0.0.1:0"',
      `http_address = "127.0.0.1:${port}"`,
    );
    await Deno.writeTextFile(path, moved);
    await strom.waitForLine(/Reloaded configuration \(generation 2\), except: http_address/);
    taken.close();
    await Deno.writeTextFile(path, moved); // the same text: the watcher must hand it on again
    await strom.waitForLine(/Reloaded configuration \(generation 3\)$/);
    assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test({
  name:
    "`deno run -A main.ts` by hand serves HTTPS: deno.json turns on the unstable APIs Strom needs",
  ignore: !hasOpenssl,
  async fn() {
    // Without --unstable-net, Deno ended the process (exit code 70) at the HTTPS listener's
    // SO_REUSEPORT, with only its own message.
    await using ca = await createCa();
    const { cert, key } = await ca.issue("site", ["a.test"]);
    const path = `${ca.dir}/strom.toml`;
    await Deno.writeTextFile(
      path,
      `http_address = "127.0.0.1:0"\nhttps_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"
[certificates."a.test"]\ntype = "Local"\ncertificate_path = "${cert}"\nprivate_key_path = "${key}"
` + poolToml(["127.0.0.1:9"]),
    );
    await using strom = new StromProcess(["-c", path], {}, [], ["-A"]);
    await strom.waitForLine(/\(https_address, port \d+\)/);
  },
});
