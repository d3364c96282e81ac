// RequestId (Strom's own): gives every request an ID that the backend, the
// client and the access log share, to follow one request across systems.
//
//   [backend_pools.middlewares.RequestId]
//   header = "X-Request-Id"     # default
//   response = true             # also return it to the client (default)
//
// An ID that arrives from a peer in `trusted_proxies` (an upstream balancer)
// is kept when it looks sane (1-200 visible ASCII characters); from anyone
// else it is replaced, so clients cannot forge IDs in the backends' logs.
// New IDs are random UUIDs. The JSON access log has it as `request_id`.

import { cgiSpelling, isForwardingField, TOKEN } from "../proxy/headers.ts";
import { managedField } from "./headers.ts";
import type { MiddlewareSpec } from "./middleware.ts";

/** Validated options: the header (lower-case) and whether the response carries it. */
export type RequestIdOptions = { readonly header: string; readonly response: boolean };

const SANE_ID = /^[\x21-\x7e]{1,200}$/;

/** The request-ID middleware's spec. */
export const requestId: MiddlewareSpec<RequestIdOptions> = {
  name: "RequestId",
  parse(r) {
    const header = r.string("header", "X-Request-Id");
    const lower = (header ?? "x-request-id").toLowerCase();
    if (header !== undefined && !TOKEN.test(header)) {
      r.problem("header", `invalid header name ${JSON.stringify(header)}`);
    } else if (managedField(lower) || isForwardingField(lower)) {
      // An ID in Content-Length or Transfer-Encoding would break the request's framing.
      r.problem("header", `cannot use header ${JSON.stringify(header)}: Strom manages it`);
    }
    const response = r.bool("response", true);
    return { header: lower, response: response ?? true };
  },
  create(options, deps) {
    const { header } = options;
    const spelling = cgiSpelling(header);
    return async (context, next) => {
      let id: string | null = null;
      const fields = context.fields.filter(([name, value]) => {
        if (name === header) {
          if (id === null && context.peerTrusted && SANE_ID.test(value)) id = value;
          return false;
        }
        // An underscore spelling (X_Request_Id) is the same field to a CGI-style backend: dropped.
        return cgiSpelling(name) !== spelling;
      });
      id ??= deps.newId();
      fields.push([header, id]);
      context.fields = fields;
      context.requestId = id;
      const response = await next();
      if (options.response) response.headers.set(header, id);
      return response;
    };
  },
};
