// Search-then-bind against an LDAP directory with reused connections: one
// multiplexed connection for searches (bound as `bind_dn`, or anonymous), and
// a small pool for user binds, which must not share a connection with any
// other operation (RFC 4511 §4.2.1). RustStrom opened a connection per request
// and put the user name into the filter unescaped (spec §2.10.5).

import { Client, InvalidCredentialsError, ResultCodeError, SizeLimitExceededError } from "ldapts";

const FILTER_ESCAPES: Record<string, string> = {
  "*": "\\2a",
  "(": "\\28",
  ")": "\\29",
  "\\": "\\5c",
  "\0": "\\00",
};

/** Escapes a value for an LDAP filter (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL. */
export function escapeFilterValue(value: string): string {
  let out = "";
  for (const c of value) out += FILTER_ESCAPES[c] ?? c;
  return out;
}

/** Where and how users are found. */
export interface DirectoryOptions {
  readonly url: string;
  readonly userDirectory: string;
  readonly rdnIdentifier: string;
  readonly recursive: boolean;
  readonly bindDn: string | null;
  readonly bindPassword: string | null;
}

/** Milliseconds to connect, and for each LDAP operation. */
const TIMEOUT_MS = 5000;
/** Idle user-bind connections kept for reuse. */
const IDLE_BIND_CONNECTIONS = 8;
/** Entries a search may return; a name matching more is ambiguous. */
const SIZE_LIMIT = 8;

/** An LDAP directory that checks user names and passwords. */
export class LdapDirectory {
  readonly #options: DirectoryOptions;
  #search: Client | null = null;
  #searchBound: Promise<void> | null = null;
  readonly #idle: Client[] = [];
  #closed = false;

  /** A DN under the user directory that no entry has (a random RDN value). */
  readonly #nobody: string;

  constructor(options: DirectoryOptions) {
    this.#options = options;
    this.#nobody =
      `${options.rdnIdentifier}=strom-nobody-${crypto.randomUUID()},${options.userDirectory}`;
  }

  #client(): Client {
    return new Client({
      url: this.#options.url,
      timeout: TIMEOUT_MS,
      connectTimeout: TIMEOUT_MS,
      autoRebind: true,
    });
  }

  /** True when `user` exists and `password` binds as it; throws on LDAP failures. */
  async verify(user: string, password: string): Promise<boolean> {
    // An empty password would be an unauthenticated bind, which succeeds (RFC 4513 §5.1.2).
    if (password === "" || this.#closed) return false;
    const found = await this.#find(user);
    for (const dn of found) {
      if (await this.#bind(dn, password)) return true;
    }
    // An unknown user costs a bind too (of a DN that cannot exist), so the time
    // an answer takes does not tell which users exist (as BasicAuth's dummy hash).
    if (found.length === 0) await this.#bind(this.#nobody, password);
    return false;
  }

  async #find(user: string): Promise<string[]> {
    const { userDirectory, rdnIdentifier, recursive, bindDn, bindPassword } = this.#options;
    const search = this.#search ??= this.#client();
    if (bindDn !== null) {
      this.#searchBound ??= search.bind(bindDn, bindPassword ?? "").catch((e) => {
        this.#searchBound = null;
        throw e;
      });
      await this.#searchBound;
    }
    try {
      const { searchEntries } = await search.search(userDirectory, {
        scope: recursive ? "sub" : "one",
        filter: `(${rdnIdentifier}=${escapeFilterValue(user)})`,
        attributes: ["1.1"],
        sizeLimit: SIZE_LIMIT,
      });
      return searchEntries.map((e) => e.dn);
    } catch (e) {
      if (e instanceof SizeLimitExceededError) return []; // ambiguous: nobody
      if (e instanceof ResultCodeError) throw e; // the server answered: the connection is fine
      // A broken connection is replaced on the next request.
      this.#search = null;
      this.#searchBound = null;
      search.unbind().catch(() => {});
      throw e;
    }
  }

  async #bind(dn: string, password: string): Promise<boolean> {
    const client = this.#idle.pop() ?? this.#client();
    try {
      await client.bind(dn, password);
      this.#release(client);
      return true;
    } catch (e) {
      if (!(e instanceof InvalidCredentialsError)) {
        client.unbind().catch(() => {});
        throw e;
      }
      this.#release(client);
      return false;
    }
  }

  #release(client: Client): void {
    if (this.#closed || this.#idle.length >= IDLE_BIND_CONNECTIONS) {
      client.unbind().catch(() => {});
    } else this.#idle.push(client);
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    const clients = [...this.#idle.splice(0), ...(this.#search ? [this.#search] : [])];
    this.#search = null;
    await Promise.allSettled(clients.map((c) => c.unbind()));
  }
}
