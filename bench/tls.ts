// A certificate for the HTTPS scenarios: a leaf for 127.0.0.1 (EC P-256) from
// a throwaway CA, made with the tests' openssl helper and kept in the run's
// temp dir.

import type { BenchContext } from "./context.ts";
import { createCa } from "../tests/_helpers/certs.ts";

/** The certificate every proxy terminates TLS with, as files and the CA as PEM. */
export interface BenchTls {
  readonly cert: string;
  readonly key: string;
  /** Certificate and key in one file (HAProxy's `crt`). */
  readonly combined: string;
  /** The CA that signed `cert`, for the pre-flight request. */
  readonly caPem: string;
}

/** Makes the CA and the leaf; throws when openssl is missing or fails. */
export async function benchCertificate(ctx: BenchContext): Promise<BenchTls> {
  await using ca = await createCa();
  const leaf = await ca.issue("leaf", ["127.0.0.1"]);
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "tls-" });
  const cert = await Deno.readTextFile(leaf.cert);
  const key = await Deno.readTextFile(leaf.key);
  await Deno.writeTextFile(`${dir}/leaf.crt`, cert);
  await Deno.writeTextFile(`${dir}/leaf.key`, key);
  await Deno.writeTextFile(`${dir}/combined.pem`, cert + key);
  return {
    cert: `${dir}/leaf.crt`,
    key: `${dir}/leaf.key`,
    combined: `${dir}/combined.pem`,
    caPem: ca.caPem,
  };
}
