// Search-then-bind against an LDAP directory with reused connections: one
// multiplexed connection for searches (bound as `bind_dn`, or anonymous), and
// a small pool for user binds, which must not share a connection with any
// other operation (RFC 4511 §4.2.1). RustStrom opened a connection per request
// and put the user name into the filter unescaped (spec §2.10.5).

import { Client, InvalidCredentialsError, ResultCodeError, SizeLimitExceededError } from "ldapts";
import type { Clock } from "../clock.ts";
import { withTimeLimit } from "../time_limit.ts";

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

/** The service account's bind (`bind_dn`) was refused; the message names it, not the user. */
export class ServiceBindError extends Error {
  override name = "ServiceBindError";
}

/** Milliseconds to connect, for each LDAP operation, and for opening the search connection. */
const TIMEOUT_MS = 5000;
/**
 * Milliseconds a refused service bind is remembered and not tried again: a wrong
 * `bind_password` tried on every request would soon lock the service account where
 * a password policy counts failures (OpenLDAP ppolicy, Active Directory).
 */
export const SERVICE_BIND_RETRY_MS = 60_000;
/** LDAP's inappropriateAuthentication (48): the bind's method or credentials are refused. */
const INAPPROPRIATE_AUTH = 48;
/** Idle user-bind connections kept for reuse. */
const IDLE_BIND_CONNECTIONS = 8;
/** Entries a search may return; a name matching more is ambiguous. */
const SIZE_LIMIT = 8;

/** An LDAP directory that checks user names and passwords. */
export class LdapDirectory {
  readonly #options: DirectoryOptions;
  readonly #clock: Clock;
  /** The search connection once opened (connected, and bound when `bind_dn` is set). */
  #search: Client | null = null;
  /** Settles when the search connection being opened is ready or failed. */
  #opening: Promise<void> | null = null;
  #serviceBindFailure: { error: ServiceBindError; until: number } | null = null;
  readonly #idle: Client[] = [];
  #closed = false;

  /** A DN under the user directory that no entry has (a random RDN value). */
  readonly #nobody: string;

  constructor(options: DirectoryOptions, clock: Clock) {
    this.#options = options;
    this.#clock = clock;
    this.#nobody =
      `${options.rdnIdentifier}=strom-nobody-${crypto.randomUUID()},${options.userDirectory}`;
  }

  #client(): Client {
    // No autoRebind: a search connection that broke is replaced by #open, never
    // reconnected by ldapts behind the callers' backs (see #searchWith).
    return new Client({ url: this.#options.url, timeout: TIMEOUT_MS, connectTimeout: TIMEOUT_MS });
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
    const { userDirectory, rdnIdentifier, recursive } = this.#options;
    try {
      const { searchEntries } = await this.#searchWith((client) =>
        client.search(userDirectory, {
          scope: recursive ? "sub" : "one",
          filter: `(${rdnIdentifier}=${escapeFilterValue(user)})`,
          attributes: ["1.1"],
          sizeLimit: SIZE_LIMIT,
        })
      );
      return searchEntries.map((e) => e.dn);
    } catch (e) {
      if (e instanceof SizeLimitExceededError) return []; // ambiguous: nobody
      throw e;
    }
  }

  /**
   * Runs `op` on the search connection, opening one when there is none. ldapts
   * 9.2 connects once per operation called while it is not connected, each
   * connect overwriting the last one's socket, and the promises of the others
   * then never settle: requests hung forever when many came while the server
   * was down or just started. So only one operation, the opening one, ever runs
   * on a connection that is not connected yet; the others wait for it and share
   * its failure.
   */
  async #searchWith<T>(op: (client: Client) => Promise<T>): Promise<T> {
    if (!this.#search?.isConnected && this.#opening !== null) await this.#opening;
    const client = this.#search;
    // isConnected, then op calling client.search() at once: ldapts does not connect.
    if (!client?.isConnected) return await this.#open(op);
    try {
      return await op(client);
    } catch (e) {
      if (!(e instanceof ResultCodeError) && this.#search === client) {
        this.#search = null; // broken: the next request opens another
        client.unbind().catch(() => {});
      }
      throw e;
    }
  }

  /** Opens a search connection with `op` as its first operation (after the bind as `bind_dn`). */
  #open<T>(op: (client: Client) => Promise<T>): Promise<T> {
    this.#search?.unbind().catch(() => {});
    this.#search = null;
    const failure = this.#serviceBindFailure;
    if (failure !== null && this.#clock.now() < failure.until) return Promise.reject(failure.error);
    const client = this.#client();
    const result = (async () => {
      await this.#serviceBind(client);
      return await op(client);
    })();
    // An LDAP result code (no such object, ...) is the server's answer: connected all the same.
    const connected = result.then(() => {}, (e) => {
      if (!(e instanceof ResultCodeError)) throw e;
    });
    const opening: Promise<void> = withTimeLimit(connected, TIMEOUT_MS, this.#clock).then(
      () => {
        // Two requests may open one each after a connection broke: the first kept is used.
        if (this.#closed || this.#search?.isConnected) client.unbind().catch(() => {});
        else this.#search = client;
      },
      (e) => {
        client.unbind().catch(() => {});
        throw e;
      },
    ).finally(() => {
      if (this.#opening === opening) this.#opening = null;
    });
    opening.catch(() => {}); // the opening caller sees the error through `result`
    this.#opening = opening;
    return result;
  }

  /** Binds `client` as `bind_dn` when one is set; a refusal is remembered for a while. */
  async #serviceBind(client: Client): Promise<void> {
    const { bindDn, bindPassword, url } = this.#options;
    if (bindDn === null) return;
    try {
      await client.bind(bindDn, bindPassword ?? "");
    } catch (e) {
      if (!(e instanceof ResultCodeError)) throw e; // not the server's answer: try again next time
      // Only a refusal of the credentials themselves is remembered; busy (51), unavailable (52)
      // and the like pass (a domain controller restarting), and the next request tries again.
      const refused = e instanceof InvalidCredentialsError || e.code === INAPPROPRIATE_AUTH;
      const reason = e instanceof InvalidCredentialsError
        ? "invalid credentials"
        : `result code ${e.code}${e.message.trim().startsWith("Code:") ? "" : `: ${e.message}`}`;
      const who = `${JSON.stringify(bindDn)} (bind_dn and bind_password)`;
      const error = new ServiceBindError(
        `Cannot bind as ${who} at ${url}: ${reason}` +
          (refused ? ` (tried again at most every ${SERVICE_BIND_RETRY_MS / 1000} s)` : ""),
        { cause: e },
      );
      if (refused) {
        this.#serviceBindFailure = { error, until: this.#clock.now() + SERVICE_BIND_RETRY_MS };
      }
      throw error;
    }
    this.#serviceBindFailure = null;
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
