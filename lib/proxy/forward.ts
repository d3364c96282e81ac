// The proxy pipeline: request → pool → backend → response. One function per
// step; failures become statuses in proxy/errors.ts only.

import type { Scheme } from "../config/types.ts";
import type { MatchRequest } from "../config/matcher.ts";
import type { Logger } from "../log.ts";
import type { Backend, Pool, Runtime } from "../runtime.ts";
import type { PickContext } from "../balance/strategy.ts";
import { selectPool } from "../routing.ts";
import { removeDotSegments } from "./path.ts";
import {
  type ArrivalInfo,
  type ClientIdentity,
  identifyClient,
  setForwardedHeaders,
  stripHopByHop,
} from "./headers.ts";
import { classifyFailure, failureResponse } from "./errors.ts";

/** What the proxy needs from its listener and the process. */
export interface ProxyOptions {
  /** The live config generation; read once per request. */
  readonly runtime: () => Runtime;
  readonly scheme: Scheme;
  readonly arrival: ArrivalInfo;
  readonly log: Logger;
}

/** Handles one proxied request; never throws. */
export type ProxyHandler = (request: Request, remote: Deno.NetAddr) => Promise<Response>;

/** A request split into the parts matchers and forwarding use. */
interface Target extends MatchRequest {
  /** Path and query exactly as forwarded. */
  readonly target: string;
}

/** Creates the proxy handler for one listener. */
export function createProxy(options: ProxyOptions): ProxyHandler {
  const { log } = options;
  return async (request, remote) => {
    const runtime = options.runtime();
    const target = splitTarget(request);
    const pool = selectPool(runtime.poolsFor(options.scheme), target);
    if (pool === null) return failureResponse("no-pool");
    const candidates = pool.available();
    if (candidates.length === 0) {
      log.warn(
        `No backend available in pool "${pool.config.name}" for ${target.method} ${target.path}`,
      );
      return failureResponse("no-backend");
    }
    const client = identifyClient(
      remote.hostname,
      request.headers.get("x-forwarded-for"),
      runtime.config.trustedProxies,
    );
    const context: PickContext = {
      clientIp: client.clientIp,
      cookie: request.headers.get("cookie"),
      setCookie: null,
    };
    const backend = pool.strategy.pick(candidates, context);
    const response = await forward(pool, backend, request, { target, client, options });
    if (context.setCookie !== null) response.headers.append("set-cookie", context.setCookie);
    return response;
  };
}

/** Splits `request.url` (raw target as received) into host, path and query. */
function splitTarget(request: Request): Target {
  const url = request.url;
  const authorityStart = url.indexOf("//") + 2;
  let pathStart = url.indexOf("/", authorityStart);
  if (pathStart < 0) pathStart = url.length;
  const queryStart = url.indexOf("?", pathStart);
  const rawPath = url.slice(pathStart, queryStart < 0 ? url.length : queryStart) || "/";
  const path = removeDotSegments(rawPath);
  const query = queryStart < 0 ? "" : url.slice(queryStart + 1);
  return {
    method: request.method,
    host: request.headers.get("host") ?? url.slice(authorityStart, pathStart),
    path,
    query,
    headers: request.headers,
    target: queryStart < 0 ? path : `${path}?${query}`,
  };
}

interface Exchange {
  readonly target: Target;
  readonly client: ClientIdentity;
  readonly options: ProxyOptions;
}

async function forward(
  pool: Pool,
  backend: Backend,
  request: Request,
  { target, client, options }: Exchange,
): Promise<Response> {
  const headers = new Headers(request.headers);
  stripHopByHop(headers);
  if (!headers.has("host") && target.host !== "") headers.set("host", target.host);
  setForwardedHeaders(headers, client, { ...options.arrival, host: target.host });

  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, pool.config.requestTimeoutMs);
  const onClientGone = () => abort.abort();
  request.signal.addEventListener("abort", onClientGone);
  backend.inFlight++;
  backend.requests++;
  let finished = false;
  const finish = () => {
    if (!finished) {
      finished = true;
      backend.inFlight--;
    }
  };
  try {
    const response = await pool.transport.send(backend.address, {
      method: request.method,
      target: target.target,
      headers,
      body: request.body,
      signal: abort.signal,
    });
    stripHopByHop(response.headers);
    if (response.body === null) {
      finish();
      return response;
    }
    return new Response(trackBody(response.body, finish), {
      status: response.status,
      headers: response.headers,
    });
  } catch (error) {
    finish();
    const failure = classifyFailure(error, { timedOut, clientGone: request.signal.aborted });
    const where =
      `${target.method} ${target.path} to backend ${backend.id} in pool "${pool.config.name}"`;
    if (failure === "client-gone") options.log.debug(`Client went away during ${where}`);
    else {
      backend.failures++;
      const reason = timedOut
        ? `timed out after ${pool.config.requestTimeoutMs} ms`
        : error instanceof Error
        ? error.message
        : String(error);
      options.log.warn(`Failed ${where}: ${reason}`);
    }
    return failureResponse(failure);
  } finally {
    clearTimeout(timer);
    request.signal.removeEventListener("abort", onClientGone);
  }
}

/** Passes a body through and calls `done` once when it ends, fails or is cancelled. */
function trackBody(
  body: ReadableStream<Uint8Array>,
  done: () => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done: end } = await reader.read();
        if (end) {
          done();
          controller.close();
        } else controller.enqueue(value);
      } catch (e) {
        done();
        controller.error(e);
      }
    },
    cancel(reason) {
      done();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
