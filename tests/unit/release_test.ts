import assert from "node:assert/strict";
import { renderFormula, TARGETS } from "../../scripts/release.ts";
import { pack } from "../../scripts/build.ts";
import { programRuns } from "../_helpers/programs.ts";

const hasRuby = await programRuns("ruby", ["--version"]);
if (!hasRuby) {
  console.log("skipping the Homebrew formula syntax check: install the Debian package ruby");
}

function sums(version: string): Record<string, string> {
  return Object.fromEntries(TARGETS.map((t, i) => [t.archive(version), String(i).repeat(64)]));
}

Deno.test("release targets cover x86_64 and arm64 Linux and macOS, and x86_64 Windows", () => {
  assert.deepEqual(TARGETS.map((t) => [t.triple, t.file]), [
    ["x86_64-unknown-linux-gnu", "strom-linux-x86_64"],
    ["aarch64-unknown-linux-gnu", "strom-linux-arm64"],
    ["x86_64-apple-darwin", "strom-macos-x86_64"],
    ["aarch64-apple-darwin", "strom-macos-arm64"],
    ["x86_64-pc-windows-msvc", "strom-windows-x86_64.exe"],
  ]);
});

Deno.test("renderFormula() picks each architecture's archive and checksum", () => {
  const formula = renderFormula({
    version: "1.2.3",
    baseUrl: "https://example.com/v1.2.3",
    sha256: sums("1.2.3"),
  });
  assert.match(
    formula,
    /if Hardware::CPU\.arm\?\n\s+url "https:\/\/example\.com\/v1\.2\.3\/strom-1\.2\.3-macos-arm64\.tar\.gz"\n\s+sha256 "3{64}"/,
  );
  assert.match(
    formula,
    /url "https:\/\/example\.com\/v1\.2\.3\/strom-1\.2\.3-macos-x86_64\.tar\.gz"\n\s+sha256 "2{64}"/,
  );
  assert.match(
    formula,
    /assert_match "strom #\{version\}", shell_output\("#\{bin\}\/strom --version"\)/,
  );
  assert.match(formula, /strom --check --config/);
  assert.throws(
    () => renderFormula({ version: "1.2.3", baseUrl: "x", sha256: {} }),
    /Missing the checksum/,
  );
});

Deno.test({
  name: "the rendered Homebrew formula is valid Ruby (ruby -c)",
  ignore: !hasRuby,
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".rb" });
    await Deno.writeTextFile(
      path,
      renderFormula({ version: "1.2.3", baseUrl: "https://e/x", sha256: sums("1.2.3") }),
    );
    const out = await new Deno.Command("ruby", {
      args: ["-c", path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /Syntax OK/);
    await Deno.remove(path);
  },
});

Deno.test("pack() archives each target's binary with the example config and README, and sums them", async () => {
  const dist = await Deno.makeTempDir();
  try {
    // Stand-ins for compiled binaries (deno compile cannot run everywhere).
    for (const t of TARGETS) await Deno.writeTextFile(`${dist}/${t.file}`, `binary ${t.file}`);
    const formula = `${dist}/strom.rb`;
    await pack("1.2.3", "https://example.invalid/v1.2.3", { dist, formula });
    const release = `${dist}/release`;
    const sums = await Deno.readTextFile(`${release}/SHA256SUMS`);
    const lines = sums.trim().split("\n");
    assert.equal(lines.length, TARGETS.length);
    for (const t of TARGETS) {
      const archive = t.archive("1.2.3");
      assert.ok(lines.some((l) => l.endsWith(`  ${archive}`)), `${archive} in SHA256SUMS`);
      const list = await new Deno.Command("tar", {
        args: ["-tzf", `${release}/${archive}`],
        stdout: "piped",
      }).output();
      const binary = t.file.endsWith(".exe") ? "strom.exe" : "strom";
      assert.deepEqual(
        new TextDecoder().decode(list.stdout).trim().split("\n").sort(),
        ["README.md", binary, "strom.toml.example"],
      );
    }
    // The sums are right: sha256sum checks every archive.
    const check = await new Deno.Command("sha256sum", { args: ["-c", "SHA256SUMS"], cwd: release })
      .output();
    assert.ok(check.success, new TextDecoder().decode(check.stdout));
    const rendered = await Deno.readTextFile(formula);
    for (const line of lines) {
      const [sum, archive] = line.split("  ");
      // Homebrew installs the macOS and Linux archives; Windows is not in the formula.
      if (archive.includes("windows")) continue;
      assert.ok(rendered.includes(`sha256 "${sum}"`), `${archive}'s sum in the formula`);
    }
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
});
