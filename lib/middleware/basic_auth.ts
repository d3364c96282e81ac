// BasicAuth (Strom's own): HTTP Basic credentials checked against an htpasswd
// file read at config load (relative to the config file). Only bcrypt hashes
// (`htpasswd -B`) are accepted: MD5-crypt, SHA-1 and plain text are refused.

import { HttpError, type MiddlewareSpec } from "./middleware.ts";
import { BcryptBusy, openBcrypt } from "./bcrypt_thread.ts";
import { readConfigFile } from "./files.ts";
import {
  basicAuthMiddleware,
  type ChallengeOptions,
  parseChallengeOptions,
} from "./basic_credentials.ts";

/** Validated options: bcrypt hashes by user name, plus realm, cache and forwarding. */
export type BasicAuthOptions = ChallengeOptions & {
  readonly users: Readonly<Record<string, string>>;
};

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** Parses htpasswd text into user → bcrypt hash; problems name the line. */
export function parseHtpasswd(
  text: string,
): { users: Record<string, string>; problems: string[] } {
  const users: Record<string, string> = {};
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    if (colon <= 0) problems.push(`line ${i + 1}: expected "user:hash"`);
    else if (!BCRYPT.test(hash)) {
      problems.push(
        `line ${i + 1}: unsupported hash for user ${
          JSON.stringify(user)
        } (expected bcrypt, "htpasswd -B")`,
      );
    } else if (Object.hasOwn(users, user)) {
      problems.push(`line ${i + 1}: user ${JSON.stringify(user)} appears twice`);
    } else users[user] = hash;
  });
  return { users, problems };
}

/**
 * The bcrypt cost of the file's dearest hash (10 without users): an unknown user
 * is checked against a hash of that cost, so the time an answer takes does not
 * tell whether the user exists (a cost-10 dummy next to cost-5 users did).
 */
export function dearestCost(users: Iterable<string>): number {
  let cost = 0;
  for (const hash of users) cost = Math.max(cost, Number(hash.slice(4, 6)));
  return cost || 10;
}

/** The htpasswd middleware's spec. */
export const basicAuth: MiddlewareSpec<BasicAuthOptions> = {
  name: "BasicAuth",
  parse(r, { baseDir }) {
    const file = r.string("htpasswd");
    let users: Record<string, string> = {};
    const read = file === undefined ? null : readConfigFile(baseDir, file, "htpasswd file");
    if (read !== null && "problem" in read) r.problem("htpasswd", read.problem);
    else if (read !== null) {
      const parsed = parseHtpasswd(read.text);
      users = parsed.users;
      for (const p of parsed.problems) r.problem("htpasswd", `in "${read.path}", ${p}`);
    }
    return { users, ...parseChallengeOptions(r) };
  },
  async create(options, deps) {
    // bcrypt runs on a worker thread, started when a pool first uses BasicAuth.
    const bcrypt = openBcrypt();
    const users = new Map(Object.entries(options.users));
    let dummy: string;
    try {
      dummy = await bcrypt.hash(crypto.randomUUID(), dearestCost(users.values()));
    } catch (e) {
      bcrypt.close();
      throw e;
    }
    const middleware = basicAuthMiddleware(options, async ({ user, password }) => {
      const hash = users.get(user);
      let ok: boolean;
      try {
        ok = await bcrypt.compare(password, hash ?? dummy);
      } catch (e) {
        if (e instanceof BcryptBusy) {
          throw new HttpError(503, { message: "too many password checks at once" });
        }
        deps.log.error(`Cannot check a password: ${e}`);
        throw new HttpError(503, { message: "cannot check passwords" });
      }
      return ok && hash !== undefined;
    }, deps.clock);
    return Object.assign(middleware, {
      close: () => {
        bcrypt.close();
        return Promise.resolve();
      },
    });
  },
};
