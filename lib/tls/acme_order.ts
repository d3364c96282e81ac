// One ACME order (RFC 8555 7.4) with HTTP-01 challenges, through acme-client:
// the account is registered (or found again by its key), the order placed, the
// challenge answers put where the HTTP listener serves them, the order
// finalized with a fresh EC P-256 key, and the chain downloaded.
//
// acme-client sends its requests through one shared axios instance (Node's
// http/https modules, which Deno provides). To trust a private CA (`ca_file`,
// e.g. pebble's test CA) for one directory only, each order runs inside an
// AsyncLocalStorage context holding an https.Agent with that CA and the
// order's AbortSignal; a request interceptor on acme-client's axios instance
// reads the context and sets `httpsAgent` and `signal` on every request of
// that order. This works in-process and per order, unlike DENO_CERT or
// --unsafely-ignore-certificate-errors, which are fixed at start and global.

import type * as AcmeClient from "acme-client";
import type { AsyncLocalStorage } from "node:async_hooks";
import type { Agent } from "node:https";
import { nodeAsyncHooks, nodeHttps } from "../node_builtins.ts";
import type { ChallengeStore } from "./challenges.ts";

/** What an order needs. */
export interface OrderRequest {
  /** The DNS name to certify (the CSR's CN and only subjectAltName). */
  readonly name: string;
  readonly directoryUrl: string;
  /** Contact of the account (`mailto:`). */
  readonly email: string;
  /** The account's private key (PEM). */
  readonly accountKey: string;
  /** CA certificates (PEM) trusted for the directory's HTTPS; empty: the system's. */
  readonly caCerts: readonly string[];
  /** Where HTTP-01 answers go while the CA validates. */
  readonly challenges: ChallengeStore;
  /** Aborts the order's requests (Strom stops or the entry was removed). */
  readonly signal: AbortSignal;
  /** acme-client's debug lines. */
  readonly trace?: (line: string) => void;
  /** Polling of pending challenges and orders: first wait, doubling up to `pollMaxMs`. Default 1 s. */
  readonly pollMinMs?: number;
  /** Default 10 s. */
  readonly pollMaxMs?: number;
  /** One request to the CA at most this long (default REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs?: number;
}

/** A certificate chain (leaf first) and its private key, both PEM. */
export interface OrderedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Places one order; rejects on any failure. Injected into the manager (tests use fakes). */
export type OrderCertificate = (request: OrderRequest) => Promise<OrderedCertificate>;

interface OrderContext {
  readonly agent: Agent | undefined;
  readonly signal: AbortSignal;
  readonly trace: ((line: string) => void) | undefined;
  readonly requestTimeoutMs: number | undefined;
}

let contexts: AsyncLocalStorage<OrderContext> | undefined;

/** The order running in this async context (node:async_hooks is loaded on first use). */
function orderContext(): AsyncLocalStorage<OrderContext> {
  return contexts ??= new (nodeAsyncHooks().AsyncLocalStorage)<OrderContext>();
}
let loading: Promise<typeof AcmeClient> | null = null;

/**
 * acme-client, loaded on first use: it costs about 30 MB of memory, which a
 * Strom without ACME entries (or with valid persisted certificates) never pays.
 */
function loadClient(): Promise<typeof AcmeClient> {
  return loading ??= import("acme-client").then((acme) => {
    acme.axios.interceptors.request.use((config) => {
      const order = orderContext().getStore();
      if (order) {
        if (order.agent) config.httpsAgent = order.agent;
        config.signal = order.signal;
      }
      // A CA that takes the connection and never answers fails the request, not the renewals.
      config.timeout ||= order?.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
      return config;
    });
    // An error without an answer (refused, reset, timed out, an untrusted certificate) reached
    // acme-client's own handler as "Cannot read properties of undefined (reading 'config')".
    // Handed on first, without its request config, it passes that handler as it is.
    const handlers = (acme.axios.interceptors.response as unknown as { handlers: unknown[] })
      .handlers;
    handlers.unshift({
      fulfilled: null,
      rejected: (error: { response?: unknown; code?: string; message?: string }) =>
        Promise.reject(
          error?.response ? error : new Error(
            `${error?.message ?? String(error)}${error?.code ? ` (${error.code})` : ""}`,
          ),
        ),
      synchronous: false,
      runWhen: null,
    });
    // acme-client retries failed requests itself, sleeping up to 25 s between
    // tries, with timers that cannot be cancelled. The renewal schedule retries
    // whole orders with its own backoff, so a failed request fails the order.
    (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } })
      .acmeSettings.retryMaxAttempts = 0;
    acme.setLogger((line) => orderContext().getStore()?.trace?.(line));
    return acme;
  });
}

/** One request to the CA at most this long. */
const REQUEST_TIMEOUT_MS = 30_000;
/** One whole order at most this long (validation polls included); then it failed. */
const ORDER_LIMIT_MS = 10 * 60_000;

/** Orders a certificate for `request.name` from its ACME directory. */
export async function orderCertificate(request: OrderRequest): Promise<OrderedCertificate> {
  const acme = await loadClient();
  const agent = request.caCerts.length > 0
    ? new (nodeHttps().Agent)({ ca: [...request.caCerts], keepAlive: false })
    : undefined;
  const signal = AbortSignal.any([request.signal, AbortSignal.timeout(ORDER_LIMIT_MS)]);
  try {
    return await orderContext().run(
      { agent, signal, trace: request.trace, requestTimeoutMs: request.requestTimeoutMs },
      () => order(acme, request),
    );
  } finally {
    agent?.destroy();
  }
}

async function order(
  acme: typeof AcmeClient,
  request: OrderRequest,
): Promise<OrderedCertificate> {
  const client = new acme.Client({
    directoryUrl: request.directoryUrl,
    accountKey: request.accountKey,
    backoffAttempts: 10,
    backoffMin: request.pollMinMs ?? 1000,
    backoffMax: request.pollMaxMs ?? 10_000,
  });
  const key = await acme.crypto.createPrivateEcdsaKey("P-256");
  const [, csr] = await acme.crypto.createCsr(
    { commonName: request.name, altNames: [request.name] },
    key,
  );
  const certPem = await client.auto({
    csr,
    email: request.email,
    // As RustStrom (acme-lib) did: using the CA means accepting its terms.
    termsOfServiceAgreed: true,
    challengePriority: ["http-01"],
    // The CA's own validation decides; a self-check would have to reach the
    // public name from here, which NAT or split DNS often prevent.
    skipChallengeVerification: true,
    challengeCreateFn: (_authz, challenge, keyAuthorization) => {
      request.challenges.set(challenge.token, keyAuthorization);
      return Promise.resolve();
    },
    challengeRemoveFn: (_authz, challenge) => {
      request.challenges.delete(challenge.token);
      return Promise.resolve();
    },
  });
  return { certPem, keyPem: key.toString() };
}
