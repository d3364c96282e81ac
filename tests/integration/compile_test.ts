// The compiled binary: built with `scripts/build.ts compile` for this machine
// and run. `deno compile` needs its runtime base (denort): set DENORT_BIN to a
// denort binary where Deno's download server cannot be reached.

import assert from "node:assert/strict";
import { startBackend } from "../_helpers/servers.ts";

const denort = Deno.env.get("DENORT_BIN");
const runnable = denort !== undefined &&
  (await Deno.stat(denort).then((s) => s.isFile, () => false));
if (!runnable) {
  console.log(
    "skipping the compiled-binary test: set DENORT_BIN to a denort binary (deno compile cannot download it here)",
  );
}

const ROOT = new URL("../..", import.meta.url).pathname;
const HOST = Deno.build.os === "darwin"
  ? `strom-macos-${Deno.build.arch === "aarch64" ? "arm64" : "x86_64"}`
  : `strom-${Deno.build.os}-${Deno.build.arch === "aarch64" ? "arm64" : "x86_64"}`;

Deno.test({
  name: "the compiled binary prints its version, checks a config and proxies a request",
  ignore: !runnable,
  async fn() {
    const build = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "scripts/build.ts",
        "compile",
        `--target=${HOST}`,
        "--version=9.9.9",
      ],
      cwd: ROOT,
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const binary = `${ROOT}dist/${HOST}`;
    const run = (args: string[]) =>
      new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).output();
    const version = new TextDecoder().decode((await run(["--version"])).stdout);
    assert.match(version, /^strom 9\.9\.9 \([0-9a-f]+\)/);
    const check = await run(["--check", "--config", `${ROOT}config/example.toml`]);
    assert.ok(check.success, new TextDecoder().decode(check.stderr));

    await using backend = startBackend(() => new Response("through the binary"));
    const config = await Deno.makeTempFile({ suffix: ".toml" });
    await Deno.writeTextFile(
      config,
      `http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"
[[backend_pools]]\nmatcher = "PathPrefix('/')"\naddresses = ["${backend.address}"]\nschemes = ["HTTP"]\nstrategy = "RoundRobin"\n`,
    );
    const child = new Deno.Command(binary, {
      args: ["--config", config],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let port: string | undefined;
    while (!port) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      port = /\(http_address, port (\d+)\)/.exec(text)?.[1];
    }
    assert.ok(port, text);
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "through the binary");
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    await reader.cancel();
  },
});
