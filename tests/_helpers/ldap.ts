// A real OpenLDAP slapd for tests: its own config and a small directory in a
// temp folder, on 127.0.0.1 at a free port. Needs the Debian package "slapd".

import { findProgram, freePort, requirePrograms, startServerProgram } from "./programs.ts";
import { fakeContext } from "./middleware.ts";

/** Whether slapd can run here (prints the package to install when not). */
export const hasSlapd: boolean = requirePrograms(["slapd", "slapadd"], "slapd");

/** The directory's users and their passwords. */
export const LDAP_USERS = {
  alice: { dn: "uid=alice,ou=people,dc=example,dc=com", password: "alice-pw" },
  bob: { dn: "uid=bob,ou=people,dc=example,dc=com", password: "b*b:(pw)" },
  /** One level down, found only by a recursive search. */
  carol: { dn: "uid=carol,ou=staff,ou=people,dc=example,dc=com", password: "carol-pw" },
} as const;

/** A service account that may search when anonymous search is off. */
export const LDAP_READER = { dn: "cn=reader,dc=example,dc=com", password: "reader-pw" };

/** A running slapd. */
export interface TestLdap extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  /** The DNs of the binds slapd has seen so far, in order (its "stats" log). */
  binds(): Promise<string[]>;
}

function ldif(): string {
  const entries = [
    "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
    "dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people",
    "dn: ou=staff,ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: staff",
    `dn: ${LDAP_READER.dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n` +
    `cn: reader\nuserPassword: ${LDAP_READER.password}`,
    ...Object.entries(LDAP_USERS).map(([uid, { dn, password }]) =>
      `dn: ${dn}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\n` +
      `userPassword: ${password}`
    ),
  ];
  return entries.join("\n\n") + "\n";
}

function slapdConf(dir: string, anonymousSearch: boolean): string {
  return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile ${dir}/slapd.pid
logfile ${dir}/slapd.log
database mdb
maxsize 10485760
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw admin-pw
directory ${dir}/data
access to attrs=userPassword by anonymous auth by * none
access to * ${anonymousSearch ? "by * read" : "by users read by anonymous auth by * none"}
`;
}

/** Starts slapd; `anonymousSearch: false` lets only bound users search (default true). */
export async function startSlapd(options: { anonymousSearch?: boolean } = {}): Promise<TestLdap> {
  const dir = await Deno.makeTempDir({ prefix: "strom-slapd-" });
  await Deno.mkdir(`${dir}/data`);
  await Deno.writeTextFile(`${dir}/slapd.conf`, slapdConf(dir, options.anonymousSearch ?? true));
  await Deno.writeTextFile(`${dir}/data.ldif`, ldif());
  const load = await new Deno.Command(findProgram("slapadd")!, {
    args: ["-f", `${dir}/slapd.conf`, "-l", `${dir}/data.ldif`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!load.success) throw new Error(`slapadd failed: ${new TextDecoder().decode(load.stderr)}`);
  const port = freePort();
  const url = `ldap://127.0.0.1:${port}`;
  // -d keeps slapd in the foreground; 256 ("stats") logs each operation to the logfile.
  const dispose = await startServerProgram(
    "slapd",
    ["-f", `${dir}/slapd.conf`, "-h", `${url}/`, "-d", "256"],
    { port, dir },
  );
  const binds = async () => {
    const log = await Deno.readTextFile(`${dir}/slapd.log`).catch(() => "");
    return [...log.matchAll(/ BIND dn="([^"]*)" method=/g)].map((m) => m[1]);
  };
  return { url, port, binds, [Symbol.asyncDispose]: dispose };
}

/** Authentication options for the test directory at `url`, with `extra` on top. */
export function authenticationOptions(url: string, extra: Record<string, unknown> = {}) {
  return {
    ldap_address: url,
    user_directory: "ou=people,dc=example,dc=com",
    rdn_identifier: "uid",
    recursive: false,
    ...extra,
  };
}

/** A request with Basic credentials `user:password` (UTF-8). */
export function basicRequest(credentials: string) {
  const basic = "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(credentials)));
  return fakeContext("http://a.com/", { headers: { authorization: basic } });
}
