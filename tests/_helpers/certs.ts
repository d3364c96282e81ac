// Test certificates made with the openssl program (Debian package "openssl").

import { X509Certificate } from "node:crypto";
import { programRuns } from "./programs.ts";

/** Whether openssl is installed. */
export const hasOpenssl = await programRuns("openssl", ["version"]);

if (!hasOpenssl) console.log("skipping TLS tests: install the Debian package openssl");

/** Whether curl is installed (HTTP/2 and HTTPS client checks). */
export const hasCurl = await programRuns("curl", ["--version"]);

if (!hasCurl) console.log("skipping HTTP/2 client checks: install the Debian package curl");

/** A CA and certificates it signs, in a temp folder. */
export interface TestCa extends AsyncDisposable {
  readonly dir: string;
  /** Path of the CA certificate (PEM). */
  readonly caPath: string;
  readonly caPem: string;
  /** Makes `<file>.crt` and `<file>.key` for DNS names or IPs (the first is the CN); EC or RSA. */
  issue(
    file: string,
    names: string[],
    options?: { rsa?: boolean; sec1?: boolean; days?: number },
  ): Promise<{ cert: string; key: string }>;
}

const IP = /^[\d.]+$|:/;

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Creates a throwaway CA. */
export async function createCa(): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "strom-ca-" });
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=Strom Test CA",
  ], dir);
  return {
    dir,
    caPath: `${dir}/ca.crt`,
    caPem: await Deno.readTextFile(`${dir}/ca.crt`),
    async issue(file, names, options = {}) {
      const key = options.rsa
        ? ["-newkey", "rsa:2048"]
        : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
      await openssl([
        "req",
        "-new",
        ...key,
        "-nodes",
        "-keyout",
        `${file}.key`,
        "-out",
        `${file}.csr`,
        "-subj",
        `/CN=${names[0]}`,
      ], dir);
      await Deno.writeTextFile(
        `${dir}/${file}.ext`,
        `subjectAltName=${names.map((n) => `${IP.test(n) ? "IP" : "DNS"}:${n}`).join(",")}\n`,
      );
      await openssl([
        "x509",
        "-req",
        "-in",
        `${file}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `${file}.crt`,
        "-days",
        String(options.days ?? 2),
        "-extfile",
        `${file}.ext`,
      ], dir);
      if (options.sec1) await openssl(["ec", "-in", `${file}.key`, "-out", `${file}.key`], dir);
      if (options.rsa) {
        await openssl(["rsa", "-in", `${file}.key`, "-out", `${file}.key`, "-traditional"], dir);
      }
      return { cert: `${dir}/${file}.crt`, key: `${dir}/${file}.key` };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * An HTTPS backend on 127.0.0.1 with a certificate for "localhost" from `ca`, and the
 * pool lines that reach it (with the tests' transport) trusting that CA.
 */
export async function startTlsBackend(
  ca: TestCa,
  handler: (request: Request) => Response | Promise<Response>,
): Promise<{ address: string; poolExtra: string } & AsyncDisposable> {
  const tls = await ca.issue("backend", ["localhost"]);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(tls.cert),
    key: await Deno.readTextFile(tls.key),
    onListen: () => {},
  }, handler);
  return {
    address: `https://localhost:${server.addr.port}`,
    poolExtra: `[backend_pools.client]\nca_file = "${ca.caPath}"`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** The subject CN of the certificate a TLS server presents for `serverName`, via openssl s_client. */
export async function presentedCn(port: number, serverName: string | null): Promise<string> {
  const out = await sClient(port, serverName);
  return /subject=.*?CN\s*=\s*([^\n,]+)/.exec(out)?.[1]?.trim() ??
    `(no certificate) ${out.slice(0, 200)}`;
}

/** The leaf certificate a TLS server presents for `serverName`, or null when the handshake fails. */
export async function presentedCertificate(
  port: number,
  serverName: string,
): Promise<X509Certificate | null> {
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(
    await sClient(port, serverName),
  );
  return pem ? new X509Certificate(pem[0]) : null;
}

async function sClient(port: number, serverName: string | null): Promise<string> {
  const args = [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    ...(serverName ? ["-servername", serverName] : ["-noservername"]),
  ];
  const child = new Deno.Command("openssl", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.close();
  return new TextDecoder().decode((await child.output()).stdout);
}
