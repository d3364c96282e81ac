// Cutting off a client that stops reading a streamed response: without it, a
// client that never reads would hold its backend connection (and the body
// the backend keeps producing) forever. Like nginx's send_timeout.

/** How a streamed response body treats a client that reads nothing. */
export interface StallOptions {
  /** A streamed response body whose client reads nothing for this long is cut off. */
  readonly stallTimeoutMs?: number;
  /** Called when that happens, after the body failed (to end the client's connection). */
  readonly onStall?: () => void;
  /** A response body whose backend sends nothing for this long fails (0 or absent: never). */
  readonly readTimeoutMs?: number;
}

/** Why a body failed when its backend went silent. */
export class BackendSilent extends Error {}

/**
 * Armed while a body waits for its backend's next bytes: calls `onSilent`
 * with the error to fail the body with when `ms` pass first (0: never).
 */
export class ReadTimer {
  readonly #ms: number;
  readonly #onSilent: (error: BackendSilent) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number | undefined, onSilent: (error: BackendSilent) => void) {
    this.#ms = ms ?? 0;
    this.#onSilent = onSilent;
  }

  arm(): void {
    if (this.#ms <= 0) return;
    const ms = this.#ms;
    const timer = setTimeout(
      () => this.#onSilent(new BackendSilent(`the backend sent nothing for ${ms} ms`)),
      ms,
    );
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  disarm(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Why a body failed when its client read nothing: the client's doing, logged at INFO. */
export class ClientStalled extends Error {}

/** Default when a request names no `stallTimeoutMs`. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/**
 * Armed after each chunk handed to the client and disarmed when the client
 * pulls the next one; fires `onStall` when no pull came within `ms`.
 */
export class StallTimer {
  readonly #ms: number;
  readonly #onStall: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number | undefined, onStall: () => void) {
    this.#ms = ms ?? DEFAULT_STALL_TIMEOUT_MS;
    this.#onStall = onStall;
  }

  /** The error a body fails with when it fires. */
  get error(): Error {
    return new ClientStalled(`the client read nothing for ${this.#ms} ms`);
  }

  arm(): void {
    const timer = setTimeout(this.#onStall, this.#ms);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
