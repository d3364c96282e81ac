// IpFilter (Strom's own): lets a pool serve only some client networks.
//
//   [backend_pools.middlewares.IpFilter]
//   allow = ["10.0.0.0/8", "192.168.1.5"]   # only these clients (when given)
//   deny = ["10.0.0.13"]                     # never these; deny wins over allow
//
// The client is the one `trusted_proxies` identifies (X-Forwarded-For only
// counts from trusted peers). Refused clients get 403 before anything else
// runs below this middleware.

import { type Cidr, cidrContains, parseIp } from "../net/address.ts";
import { readNetworks } from "../config/networks.ts";
import { HttpError, type MiddlewareSpec } from "./middleware.ts";

/** Validated options: allowed networks (null: everyone) and denied ones. */
export type IpFilterOptions = {
  readonly allow: readonly Cidr[] | null;
  readonly deny: readonly Cidr[];
};

/** The IP filter's spec. */
export const ipFilter: MiddlewareSpec<IpFilterOptions> = {
  name: "IpFilter",
  parse(r, { warn }) {
    const allow = readNetworks(r, "allow");
    const deny = readNetworks(r, "deny");
    if (allow === null && deny === null) {
      r.problems.push({
        path: r.at("allow"),
        message: 'missing required key (give "allow", "deny" or both)',
      });
    }
    if (allow !== null && allow.length === 0 && r.array("allow")?.length === 0) {
      // Likely a list left empty by a template; closing a pool is said with deny.
      r.problems.push({
        path: r.at("allow"),
        message: "an empty list refuses every client (to do that on purpose, write deny = " +
          '["0.0.0.0/0", "::/0"]; to allow everyone, leave "allow" out)',
      });
    }
    if (allow === null && deny !== null && deny.length === 0 && r.array("deny")?.length === 0) {
      warn?.(r.at("deny"), "an empty list and no allow: every client passes");
    }
    return { allow, deny: deny ?? [] };
  },
  create(options) {
    const { allow, deny } = options;
    const admitted = (clientIp: string) => {
      const ip = parseIp(clientIp);
      if (ip === null) return allow === null && deny.length === 0;
      if (deny.some((n) => cidrContains(n, ip))) return false;
      return allow === null || allow.some((n) => cidrContains(n, ip));
    };
    return async (context, next) => {
      if (!admitted(context.clientIp)) {
        throw new HttpError(403, { message: `client ${context.clientIp} is not allowed` });
      }
      return await next();
    };
  },
};
