// The one place that maps a failure to an HTTP status and a short text body.

import { UpstreamError } from "../transport/transport.ts";
import { HttpError, statusText } from "../middleware/middleware.ts";

/** Why Strom answers a request itself instead of relaying a backend's answer. */
export type Failure =
  | "body-on-get" // a GET or HEAD with a body, which Deno does not hand over: 400
  | "request-timeout" // request_timeout passed while the client was still sending its body: 408
  | "no-pool" // no pool matched: 404
  | "not-implemented" // CONNECT: a reverse proxy opens no tunnels: 501
  | "no-backend" // the pool has no available backend: 503
  | "connect" // the backend refused or could not be reached: 502
  | "bad-gateway" // reset or malformed answer: 502
  | "timeout" // request_timeout passed: 504
  | "client-gone"; // the client disconnected: 499, logged only

const STATUS: Record<Failure, [number, string]> = {
  "body-on-get": [
    400,
    "400 - Bad Request: Strom cannot forward the body of a GET or HEAD request\n",
  ],
  "no-pool": [404, "404 - page not found"],
  "request-timeout": [408, "408 - Request Timeout"],
  "not-implemented": [501, "501 - Not Implemented"],
  "no-backend": [503, "503 - Service Unavailable"],
  "connect": [502, "502 - Bad Gateway"],
  "bad-gateway": [502, "502 - Bad Gateway"],
  "timeout": [504, "504 - Gateway Timeout"],
  "client-gone": [499, "499 - Client Closed Request"],
};

/** The status code for a failure. */
export function failureStatus(failure: Failure): number {
  return STATUS[failure][0];
}

/**
 * Why Strom refuses a request it cannot forward safely (400): named in the answer's body, so
 * that a client, and an operator reading a capture, can tell one refusal from another.
 */
export type BadRequest =
  | "conflicting-host" // an absolute-form target naming another authority than Host
  | "invalid-host"
  | "lower-case-method"
  | "websocket-without-host"
  | "invalid-content-length"
  | "ambiguous-path" // a dot-segment made by decoding, or one carrying a path parameter
  | "unreadable-body" // the client's body broke off or was malformed
  | "websocket-handshake"; // a malformed WebSocket handshake or an unknown version

const BAD_REQUEST: Record<BadRequest, string> = {
  "conflicting-host": "the request target names another host than the Host field",
  "invalid-host": "the Host field is not a host name or address",
  "lower-case-method": "methods are case-sensitive (GET, not get)",
  "websocket-without-host": "a WebSocket handshake needs a Host field",
  "invalid-content-length": "invalid Content-Length",
  "ambiguous-path":
    "the path is ambiguous (a dot-segment made by decoding, or one with a path parameter)",
  "unreadable-body": "the request body could not be read",
  "websocket-handshake": "malformed WebSocket handshake (Sec-WebSocket-Key, version 13)",
};

/** Strom's 400 for a request it refuses, saying why. */
export function badRequest(why: BadRequest): Response {
  return textResponse(400, `400 - Bad Request: ${BAD_REQUEST[why]}\n`);
}

/** The response Strom sends for a failure (499 is never seen by anyone; it is for logs). */
export function failureResponse(failure: Failure): Response {
  const [status, text] = STATUS[failure];
  return textResponse(status, text);
}

function textResponse(status: number, text: string): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": String(text.length) },
  });
}

/** Classifies an error thrown while forwarding, given what the pipeline knows. */
export function classifyFailure(
  error: unknown,
  state: { readonly timedOut: boolean; readonly clientGone: boolean },
): Failure {
  if (state.timedOut) return "timeout";
  if (state.clientGone) return "client-gone";
  if (error instanceof UpstreamError && error.kind === "connect") return "connect";
  return "bad-gateway";
}

/**
 * The response for something a middleware threw: an HttpError's status,
 * headers and body (default `<status> - <reason>`), anything else a 500.
 */
export function errorResponse(error: unknown): Response {
  if (!(error instanceof HttpError)) {
    return new Response("500 - Internal Server Error", {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  const nullBody = error.status === 204 || error.status === 304 || error.status < 200;
  const body = nullBody ? null : error.body ?? statusText(error.status);
  const headers = new Headers(error.headers);
  if (body !== null && !headers.has("content-type")) {
    headers.set("content-type", "text/plain; charset=utf-8");
  }
  // Its length, as a backend's answer has one (Compression's min_size looks at it).
  if (body !== null) headers.set("content-length", String(new TextEncoder().encode(body).length));
  return new Response(body, { status: error.status, headers });
}
