// Authentication: HTTP Basic credentials checked against LDAP by search then
// bind. Every option is validated at load; RustStrom dropped the middleware
// (leaving the pool open) when one was missing or mistyped (spec §2.10.0).

import { withPasswordHidden } from "../net/address.ts";
import { HttpError, type MiddlewareSpec } from "./middleware.ts";
import {
  basicAuthMiddleware,
  type ChallengeOptions,
  parseChallengeOptions,
} from "./basic_credentials.ts";
import type { DirectoryOptions } from "./ldap_directory.ts";
import { TimeLimitError, withTimeLimit } from "../time_limit.ts";
import { ThrottledLine } from "../log.ts";

/** Validated options: the directory, plus realm, cache and forwarding. */
export type AuthenticationOptions = DirectoryOptions & ChallengeOptions;

/** Milliseconds one check of credentials may take (search and binds), then 503. */
export const VERIFY_LIMIT_MS = 5000;

/** An attribute description: a name or an OID (RFC 4512 §2.5). */
const ATTRIBUTE = /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)$/;

/** Checks an LDAP URL; a message when it is not `ldap://host[:port]` or `ldaps://...`. */
export function checkLdapUrl(text: string): string | null {
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch { /* reported below */ }
  // A password written in it is not repeated (problems reach logs and the API).
  const shown = JSON.stringify(withPasswordHidden(text));
  if (url?.protocol === "ldapi:") {
    return `unsupported LDAP address ${shown}: ldapi:// is not supported`;
  }
  if (
    url === null || (url.protocol !== "ldap:" && url.protocol !== "ldaps:") ||
    url.hostname === "" || (url.pathname !== "" && url.pathname !== "/")
  ) {
    return `invalid LDAP address ${shown}: expected "ldap://host:port" or "ldaps://host:port"`;
  }
  return null;
}

/** `url` (a valid LDAP address) without the `user:password@` part. */
function withoutUserinfo(url: string): string {
  const at = url.lastIndexOf("@");
  return at < 0 ? url : url.slice(0, url.indexOf("//") + 2) + url.slice(at + 1);
}

/** The LDAP authentication middleware's spec. */
export const authentication: MiddlewareSpec<AuthenticationOptions> = {
  name: "Authentication",
  parse(r, { warn }) {
    let url = r.string("ldap_address");
    const urlProblem = url === undefined ? null : checkLdapUrl(url);
    if (urlProblem !== null) r.problem("ldap_address", urlProblem);
    else if (url !== undefined && withoutUserinfo(url) !== url) {
      // The LDAP client never used a user or password written there (RustStrom's neither);
      // kept, it would show in every log line about the directory.
      url = withoutUserinfo(url);
      warn?.(
        r.at("ldap_address"),
        `the user and password in it are not used (set bind_dn and bind_password); ${url} is`,
      );
    }
    const userDirectory = r.string("user_directory");
    if (userDirectory === "") r.problem("user_directory", "expected a DN, found an empty string");
    const rdnIdentifier = r.string("rdn_identifier");
    if (rdnIdentifier !== undefined && !ATTRIBUTE.test(rdnIdentifier)) {
      r.problem(
        "rdn_identifier",
        `invalid attribute name ${JSON.stringify(rdnIdentifier)}: expected letters, digits and "-"`,
      );
    }
    const recursive = r.bool("recursive");
    const bindDn = r.has("bind_dn") ? r.string("bind_dn") : undefined;
    const bindPassword = r.has("bind_password") ? r.string("bind_password") : undefined;
    if (bindDn !== undefined && bindPassword === undefined && !r.has("bind_password")) {
      r.problem("bind_password", "missing required key (bind_dn is set)");
    }
    if (bindPassword !== undefined && !r.has("bind_dn")) {
      r.problem("bind_password", "only applies with bind_dn");
    } else if (bindPassword === "") {
      // A bind with a DN and no password is an unauthenticated bind (RFC 4513 5.1.2), which
      // LDAP servers refuse: every request would get 503.
      r.problem("bind_password", "is empty: a bind without a password is refused by LDAP servers");
    }
    return {
      url: url!,
      userDirectory: userDirectory!,
      rdnIdentifier: rdnIdentifier!,
      recursive: recursive!,
      bindDn: bindDn ?? null,
      bindPassword: bindPassword ?? null,
      ...parseChallengeOptions(r),
    };
  },
  async create(options, deps) {
    // The LDAP client is loaded only when a pool uses Authentication.
    const { LdapDirectory, ServiceBindError } = await import("./ldap_directory.ts");
    const directory = new LdapDirectory(options, deps.clock);
    // During an outage every request fails alike: one line a second, with a count (a probe
    // saw 1,923 ERROR lines in a second, which pushed everything else out of the log ring).
    const failures = new ThrottledLine(deps.clock);
    const verify = async ({ user, password }: { user: string; password: string }) => {
      try {
        // request_timeout does not cover middlewares: without this bound a request
        // waited as long as the LDAP client did, which was forever when it lost a callback.
        return await withTimeLimit(directory.verify(user, password), VERIFY_LIMIT_MS, deps.clock);
      } catch (e) {
        failures.say(
          (message) => deps.log.error(message),
          e instanceof ServiceBindError
            ? e.message
            : `Cannot check user ${JSON.stringify(user)} at ${options.url}: ${
              e instanceof TimeLimitError ? e.message : e
            }`,
        );
        throw new HttpError(503, { message: "LDAP unavailable" });
      }
    };
    const middleware = basicAuthMiddleware(options, verify, deps.clock);
    return Object.assign(middleware, {
      close: () => {
        failures.stop();
        return directory.close();
      },
    });
  },
};
