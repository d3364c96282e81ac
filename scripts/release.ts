// Release metadata: the five targets, archive names, and the Homebrew formula.

/** A compile target. */
export interface Target {
  /** Deno's target triple. */
  readonly triple: string;
  /** The binary's name in dist/. */
  readonly file: string;
  /** The release archive's name for a version. */
  archive(version: string): string;
}

function target(triple: string, os: string, arch: string): Target {
  const file = `strom-${os}-${arch}${os === "windows" ? ".exe" : ""}`;
  return { triple, file, archive: (v) => `strom-${v}-${os}-${arch}.tar.gz` };
}

/** x86_64 and arm64 Linux, x86_64 and arm64 macOS, x86_64 Windows. */
export const TARGETS: readonly Target[] = [
  target("x86_64-unknown-linux-gnu", "linux", "x86_64"),
  target("aarch64-unknown-linux-gnu", "linux", "arm64"),
  target("x86_64-apple-darwin", "macos", "x86_64"),
  target("aarch64-apple-darwin", "macos", "arm64"),
  target("x86_64-pc-windows-msvc", "windows", "x86_64"),
];

/** The Homebrew formula for a release: the right binary per Mac (and Linux) architecture. */
export function renderFormula(options: {
  version: string;
  baseUrl: string;
  sha256: Record<string, string>;
}): string {
  const { version, baseUrl, sha256 } = options;
  const entry = (os: string, arch: string) => {
    const archive = `strom-${version}-${os}-${arch}.tar.gz`;
    const sum = sha256[archive];
    if (!sum) throw new Error(`Missing the checksum of ${archive}`);
    return `url "${baseUrl}/${archive}"\n      sha256 "${sum}"`;
  };
  return `# Rendered by \`make release VERSION=${version}\` (scripts/build.ts); do not edit by hand.
class Strom < Formula
  desc "HTTP load balancer and reverse proxy (RustStrom-compatible config)"
  homepage "https://github.com/strom-lb/strom"
  version "${version}"
  license "MIT"

  on_macos do
    if Hardware::CPU.arm?
      ${entry("macos", "arm64")}
    else
      ${entry("macos", "x86_64")}
    end
  end

  on_linux do
    if Hardware::CPU.arm?
      ${entry("linux", "arm64")}
    else
      ${entry("linux", "x86_64")}
    end
  end

  def install
    bin.install "strom"
    (etc/"strom").install "strom.toml.example" => "strom.toml" unless (etc/"strom/strom.toml").exist?
  end

  service do
    run [opt_bin/"strom", "--config", etc/"strom/strom.toml"]
    keep_alive true
    log_path var/"log/strom.log"
    error_log_path var/"log/strom.log"
  end

  test do
    assert_match "strom #{version}", shell_output("#{bin}/strom --version")
    (testpath/"strom.toml").write <<~TOML
      http_address = "127.0.0.1:18080"
      [[backend_pools]]
      matcher = "PathPrefix('/')"
      addresses = ["127.0.0.1:18081"]
      schemes = ["HTTP"]
      strategy = "RoundRobin"
    TOML
    assert_match "is valid", shell_output("#{bin}/strom --check --config #{testpath}/strom.toml")
  end
end
`;
}
