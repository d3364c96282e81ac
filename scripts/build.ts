// Builds Strom's single binaries and release archives.
//
//   deno run -A scripts/build.ts compile [--target=T ...] [--version=X.Y.Z]
//   deno run -A scripts/build.ts release --version=X.Y.Z [--base-url=URL] [--prebuilt]
//
// `deno compile` downloads its runtime base (denort) unless DENORT_BIN points
// at one; on machines without that download the compile step fails with
// Deno's own message.

import { parseArgs } from "node:util";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderFormula, type Target, TARGETS } from "./release.ts";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const VERSION_FILE = join(ROOT, "lib/version.ts");

/**
 * V8's heap sizing (see the Makefile): a 4 MB young generation, and the old
 * generation collected when it grew by 20 % (at least 8 MB) instead of up to 4x.
 */
export const V8_FLAGS =
  "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=20,--enable-experimental-regexp-engine-on-excessive-backtracks,--enable-experimental-regexp-engine,--regexp-backtracks-before-fallback=1000";

/** Flags Strom always runs with, its tests too (the Makefile's FLAGS). */
export const COMMON_FLAGS = ["--unstable-no-legacy-abort", "--unstable-net", V8_FLAGS];

/**
 * Flags Strom runs with (`deno run`, `deno compile`): also without V8's code
 * cache, a SQLite file Deno maps in (the Makefile's RUN_ONLY; `deno test` has
 * no such flag).
 */
export const RUN_FLAGS = [...COMMON_FLAGS, "--no-code-cache"];

/**
 * Only what Strom needs: the network, reading config and certificates,
 * writing the config (PUT /api/config), access log and ACME files, the
 * environment (LOG_LEVEL), system information (host name, memory) and FFI
 * (libc's shutdown(2), to close slow and idle clients: lib/net/sockets.ts).
 */
export const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

async function run(cmd: string, args: string[]): Promise<void> {
  const status = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdout: "inherit",
    stderr: "inherit",
  })
    .spawn().status;
  if (!status.success) throw new Error(`${cmd} ${args.join(" ")} failed with code ${status.code}`);
}

async function commit(): Promise<string> {
  const out = await new Deno.Command("git", {
    args: ["rev-parse", "--short", "HEAD"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
  })
    .output().catch(() => null);
  return out?.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
}

/** Compiles one binary per target with the version and commit stamped in. */
export async function compile(targets: readonly Target[], version: string): Promise<string[]> {
  const original = await Deno.readTextFile(VERSION_FILE);
  const stamped = original
    .replace(/export const VERSION = "[^"]*";/, `export const VERSION = "${version}";`)
    .replace(/export const COMMIT = "[^"]*";/, `export const COMMIT = "${await commit()}";`);
  await Deno.mkdir(join(ROOT, "dist"), { recursive: true });
  const outputs: string[] = [];
  try {
    await Deno.writeTextFile(VERSION_FILE, stamped);
    for (const target of targets) {
      const output = join(ROOT, "dist", target.file);
      console.log(`compiling ${basename(output)} (${target.triple})`);
      await run(Deno.execPath(), [
        "compile",
        ...RUN_FLAGS,
        ...PERMISSIONS,
        "--target",
        target.triple,
        "--include",
        "config/example.toml",
        "--include",
        "lib/workers/entry.ts",
        "--include",
        "lib/middleware/bcrypt_worker.ts",
        "--output",
        output,
        "main.ts",
      ]);
      outputs.push(output);
    }
  } finally {
    await Deno.writeTextFile(VERSION_FILE, original);
  }
  return outputs;
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Compiles every target, then packs them (see `pack`). */
async function release(version: string, baseUrl: string): Promise<void> {
  await compile(TARGETS, version);
  await pack(version, baseUrl, {
    dist: join(ROOT, "dist"),
    formula: join(ROOT, "packaging/homebrew/strom.rb"),
  });
}

/**
 * Packs the binaries already in `paths.dist` into one archive per target in
 * `<dist>/release` (the binary, the example config and the README), writes
 * SHA256SUMS there and renders the Homebrew formula to `paths.formula`.
 */
export async function pack(
  version: string,
  baseUrl: string,
  paths: { readonly dist: string; readonly formula: string },
): Promise<void> {
  const dir = join(paths.dist, "release");
  await Deno.mkdir(dir, { recursive: true });
  const sums: Record<string, string> = {};
  for (const target of TARGETS) {
    const archive = target.archive(version);
    const binary = target.file.endsWith(".exe") ? "strom.exe" : "strom";
    const stage = await Deno.makeTempDir();
    try {
      await Deno.copyFile(join(paths.dist, target.file), join(stage, binary));
      await Deno.chmod(join(stage, binary), 0o755);
      await Deno.copyFile(join(ROOT, "config/example.toml"), join(stage, "strom.toml.example"));
      await Deno.copyFile(join(ROOT, "README.md"), join(stage, "README.md"));
      await run("tar", [
        "-czf",
        join(dir, archive),
        "-C",
        stage,
        binary,
        "strom.toml.example",
        "README.md",
      ]);
    } finally {
      await Deno.remove(stage, { recursive: true });
    }
    sums[archive] = await sha256(join(dir, archive));
  }
  await Deno.writeTextFile(
    join(dir, "SHA256SUMS"),
    Object.entries(sums).map(([file, sum]) => `${sum}  ${file}\n`).join(""),
  );
  await Deno.writeTextFile(paths.formula, renderFormula({ version, baseUrl, sha256: sums }));
  console.log(`wrote ${dir} and ${paths.formula}`);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      target: { type: "string", multiple: true },
      version: { type: "string" },
      "base-url": { type: "string" },
      prebuilt: { type: "boolean", default: false },
    },
  });
  const deno = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const version = values.version ?? deno.version;
  const [command] = positionals;
  if (command === "compile") {
    const wanted = values.target ?? TARGETS.map((t) => t.triple);
    const targets = TARGETS.filter((t) => wanted.includes(t.triple) || wanted.includes(t.file));
    if (targets.length === 0) throw new Error(`Unknown target: ${wanted.join(", ")}`);
    await compile(targets, version);
  } else if (command === "release") {
    if (!values.version) throw new Error("release needs --version=X.Y.Z");
    const baseUrl = values["base-url"] ??
      `https://github.com/strom-lb/strom/releases/download/v${version}`;
    // --prebuilt packs the binaries already in dist/ (built elsewhere, e.g. with DENORT_BIN).
    if (values.prebuilt) {
      await pack(version, baseUrl, {
        dist: join(ROOT, "dist"),
        formula: join(ROOT, "packaging/homebrew/strom.rb"),
      });
    } else await release(version, baseUrl);
  } else {
    console.error(
      "usage: build.ts compile [--target=T] [--version=V] | release --version=V [--base-url=URL] [--prebuilt]",
    );
    Deno.exit(2);
  }
}
