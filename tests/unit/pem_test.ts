import assert from "node:assert/strict";
import { parseCertificate } from "../../lib/tls/pem.ts";
import { hasOpenssl } from "../_helpers/certs.ts";

/** A self-signed certificate for a.test with a key made by `openssl req -newkey <spec>`. */
async function selfSigned(dir: string, name: string, newkey: string[]) {
  const out = await new Deno.Command("openssl", {
    args: ["req", "-x509", ...newkey, "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`]
      .concat(["-days", "2", "-subj", "/CN=a.test"]),
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const read = (ext: string) => Deno.readTextFileSync(`${dir}/${name}.${ext}`);
  return parseCertificate(read("crt"), read("key"));
}

Deno.test({
  name: "parseCertificate() refuses keys Deno's TLS cannot serve, which node:crypto reads",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "strom-pem-" });
    try {
      const ec = (curve: string) => ["-newkey", "ec", "-pkeyopt", `ec_paramgen_curve:${curve}`];
      for (
        const [name, newkey] of [
          ["rsa2048", ["-newkey", "rsa:2048"]],
          ["p384", ec("secp384r1")],
          ["p521", ec("secp521r1")],
          ["ed25519", ["-newkey", "ed25519"]],
        ] as const
      ) {
        const parsed = await selfSigned(dir, name, [...newkey]);
        assert.equal(typeof parsed, "object", `${name}: ${parsed}`);
      }
      const served = "Deno's TLS serves RSA keys of 2048 bits or more, ECDSA keys on P-256, " +
        "P-384 or P-521, and Ed25519 keys";
      assert.equal(
        await selfSigned(dir, "rsa1024", ["-newkey", "rsa:1024"]),
        `the RSA key has 1024 bits: ${served}`,
      );
      assert.equal(
        await selfSigned(dir, "k256", ec("secp256k1")),
        `the EC key is on curve secp256k1: ${served}`,
      );
      assert.equal(
        await selfSigned(dir, "ed448", ["-newkey", "ed448"]),
        `the private key is ed448: ${served}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "parseCertificate() says that an encrypted key is encrypted",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "strom-pem-" });
    try {
      await selfSigned(dir, "plain", ["-newkey", "rsa:2048"]);
      const out = await new Deno.Command("openssl", {
        args: ["pkcs8", "-topk8", "-in", "plain.key", "-out", "locked.key", "-passout", "pass:x"],
        cwd: dir,
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const problem = parseCertificate(
        Deno.readTextFileSync(`${dir}/plain.crt`),
        Deno.readTextFileSync(`${dir}/locked.key`),
      );
      assert.match(String(problem), /^the private key is encrypted/);
      // The traditional form (`Proc-Type: 4,ENCRYPTED` in an RSA PRIVATE KEY block) too.
      const traditional = await new Deno.Command("openssl", {
        args: ["rsa", "-in", "plain.key", "-aes256", "-traditional", "-out", "old.key"]
          .concat(["-passout", "pass:x"]),
        cwd: dir,
        stderr: "piped",
      }).output();
      assert.ok(traditional.success, new TextDecoder().decode(traditional.stderr));
      assert.match(Deno.readTextFileSync(`${dir}/old.key`), /Proc-Type: 4,ENCRYPTED/);
      assert.match(
        String(parseCertificate(
          Deno.readTextFileSync(`${dir}/plain.crt`),
          Deno.readTextFileSync(`${dir}/old.key`),
        )),
        /^the private key is encrypted/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
