// A real ACME server for tests: Debian's pebble (RFC 8555, test-only) with its
// mock DNS pebble-challtestsrv, both on 127.0.0.1 at free ports. Every name
// resolves to 127.0.0.1 for pebble's HTTP-01 validation, which connects to
// `httpPort` (Strom's HTTP listener). Debian ships no test certificates for
// pebble's own HTTPS, so a throwaway CA signs one here: its file is the
// `ca_file` a client needs. Needs the Debian packages "pebble" and "openssl".

import { createCa, hasOpenssl, type TestCa } from "./certs.ts";
import { findProgram, freePort, requirePrograms, stopChild, waitForPort } from "./programs.ts";

/** Whether pebble can run here (prints the package to install when not). */
export const hasPebble: boolean = requirePrograms(["pebble", "pebble-challtestsrv"], "pebble") &&
  hasOpenssl;

/** A running pebble and its mock DNS. */
export interface TestPebble extends AsyncDisposable {
  /** `https://127.0.0.1:<port>/dir` */
  readonly directoryUrl: string;
  /** PEM file of the CA behind pebble's HTTPS certificate (Strom's `ca_file`). */
  readonly caFile: string;
  /** Orders pebble has accepted so far (counted in its log). */
  orders(): number;
  /** Makes pebble's validation reach `name` at `ip` (127.0.0.1 until told otherwise). */
  pointName(name: string, ip: string): Promise<void>;
}

/** A child process whose output is collected as text. */
function spawn(program: string, args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(findProgram(program)!, {
    args,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const collect = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeTo(
      new WritableStream({ write: (chunk) => void (output += decoder.decode(chunk)) }),
    );
  const done = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    output: () => output,
    async stop() {
      await stopChild(child);
      await done;
    },
  };
}

/** Starts pebble validating HTTP-01 on 127.0.0.1:`httpPort`. */
export async function startPebble(options: { httpPort: number }): Promise<TestPebble> {
  const ca: TestCa = await createCa();
  const tls = await ca.issue("pebble", ["127.0.0.1", "localhost"]);
  const [acmePort, managementPort, dnsPort, dnsManagementPort] = [0, 0, 0, 0].map(freePort);
  const configPath = `${ca.dir}/pebble.json`;
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: tls.cert,
        privateKey: tls.key,
        httpPort: options.httpPort,
        tlsPort: freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const dns = spawn("pebble-challtestsrv", [
    "-defaultIPv4",
    "127.0.0.1",
    "-defaultIPv6",
    "",
    "-dns01",
    `127.0.0.1:${dnsPort}`,
    "-management",
    `127.0.0.1:${dnsManagementPort}`,
    "-http01",
    "",
    "-https01",
    "",
    "-tlsalpn01",
    "",
  ]);
  const pebble = spawn("pebble", ["-config", configPath, "-dnsserver", `127.0.0.1:${dnsPort}`], {
    // No random sleeps before validating; really validate; no nonce rejected on purpose.
    PEBBLE_VA_NOSLEEP: "1",
    PEBBLE_VA_ALWAYS_VALID: "0",
    PEBBLE_WFE_NONCEREJECT: "0",
    // Orders validate afresh (by default pebble reuses valid authorizations
    // half the time; with 0 a small chance remains, see acme_test.ts).
    PEBBLE_AUTHZREUSE: "0",
  });
  const dispose = async () => {
    await Promise.all([pebble.stop(), dns.stop()]);
    await ca[Symbol.asyncDispose]();
  };
  try {
    await waitForPort(dnsManagementPort, "pebble-challtestsrv");
    await waitForPort(acmePort, "pebble");
  } catch (e) {
    await dispose();
    throw new Error(`${(e as Error).message}\n${dns.output()}\n${pebble.output()}`);
  }
  return {
    directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
    caFile: ca.caPath,
    orders: () => pebble.output().match(/Added order /g)?.length ?? 0,
    async pointName(name, ip) {
      for (
        const [path, body] of [["clear-a", { host: name }], ["add-a", {
          host: name,
          addresses: [ip],
        }]]
      ) {
        const response = await fetch(`http://127.0.0.1:${dnsManagementPort}/${path}`, {
          method: "POST",
          body: JSON.stringify(body),
        });
        await response.body?.cancel();
        if (!response.ok) throw new Error(`pebble-challtestsrv /${path}: ${response.status}`);
      }
    },
    [Symbol.asyncDispose]: dispose,
  };
}
