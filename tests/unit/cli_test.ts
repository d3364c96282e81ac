import assert from "node:assert/strict";
import { parseCli, UsageError } from "../../lib/cli.ts";

Deno.test("parseCli() reads the run command with its options", () => {
  assert.deepEqual(parseCli(["-c", "a.toml"], {}), {
    kind: "run",
    configPath: "a.toml",
    check: false,
    logLevel: "info",
    graceMs: 10_000,
  });
  assert.deepEqual(
    parseCli(["--check", "--config=a.toml", "--log-level", "DEBUG", "--grace", "2.5"], {}),
    {
      kind: "run",
      configPath: "a.toml",
      check: true,
      logLevel: "debug",
      graceMs: 2500,
    },
  );
});

Deno.test("parseCli() takes LOG_LEVEL case-insensitively, the flag winning", () => {
  const run = (args: string[], env: { LOG_LEVEL?: string }) => {
    const c = parseCli(args, env);
    return c.kind === "run" ? c.logLevel : null;
  };
  assert.equal(run(["-c", "x"], { LOG_LEVEL: "Warn" }), "warn");
  assert.equal(run(["-c", "x", "--log-level", "off"], { LOG_LEVEL: "trace" }), "off");
});

Deno.test("parseCli() reads the demo command and its ports", () => {
  assert.deepEqual(parseCli(["demo", "--http-port", "0", "--backend-port", "9000"], {}), {
    kind: "demo",
    httpPort: 0,
    adminPort: 9090,
    backendPort: 9000,
    logLevel: "info",
    graceMs: 10_000,
  });
});

Deno.test("parseCli() answers --help and --version first", () => {
  assert.deepEqual(parseCli(["--help", "-c", "x"], {}), { kind: "help" });
  assert.deepEqual(parseCli(["-V"], {}), { kind: "version" });
});

Deno.test("parseCli() turns every bad command line into a UsageError with a clear message", () => {
  const cases: [string[], { LOG_LEVEL?: string }, string][] = [
    [["--bogus"], {}, "Unknown option '--bogus'"],
    [[], {}, "Missing --config FILE"],
    [["config.toml"], {}, 'Unexpected argument "config.toml" (did you mean --config config.toml?)'],
    [
      ["-c", "x", "--log-level", "loud"],
      {},
      'Invalid --log-level "loud" (expected one of off, error, warn, info, debug, trace)',
    ],
    [
      ["-c", "x"],
      { LOG_LEVEL: "verbose" },
      'Invalid LOG_LEVEL "verbose" (expected one of off, error, warn, info, debug, trace)',
    ],
    [
      ["demo", "--http-port", "70000"],
      {},
      'Invalid --http-port "70000" (expected a port from 0 to 65535)',
    ],
    [["demo", "-c", "x"], {}, "The demo runs its own config: --config and --check do not apply"],
    [["-c", "x", "--http-port", "1"], {}, '--http-port only applies to "strom demo"'],
    [["-c", "x", "--grace=-1"], {}, 'Invalid --grace "-1" (expected a non-negative number)'],
    [["-c", "x", "--grace=1e3"], {}, 'Invalid --grace "1e3" (expected a non-negative number)'],
    [["-c", "x", "--grace=3000000"], {}, 'Invalid --grace "3000000" (at most 2147483.647 s)'],
    [
      ["demo", "--http-port", "0x50"],
      {},
      'Invalid --http-port "0x50" (expected a non-negative number)',
    ],
    [
      ["-c", "x", "--log-level="],
      {},
      'Invalid --log-level "" (expected one of off, error, warn, info, debug, trace)',
    ],
    [["demo", "extra"], {}, 'Unexpected argument "extra"'],
    [["-c", "x", "--grace"], {}, "Option '--grace <value>' argument missing"],
  ];
  for (const [args, env, message] of cases) {
    assert.throws(() => parseCli(args, env), (e: unknown) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.equal(e.message, message);
      return true;
    });
  }
});
