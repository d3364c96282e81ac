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

/**
 * Armed while a body waits on one side (the client to pull, the backend to
 * send) and disarmed when it moves; calls `onIdle` when `ms` pass first
 * (0: never).
 */
class IdleTimer {
  readonly ms: number;
  readonly #onIdle: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number, onIdle: () => void) {
    this.ms = ms;
    this.#onIdle = onIdle;
  }

  arm(): void {
    if (this.ms <= 0) return;
    const timer = setTimeout(this.#onIdle, this.ms);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  disarm(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Why a body failed when its backend went silent. */
export class BackendSilent extends Error {}

/** Armed while a body waits for its backend's next bytes: `onSilent` gets the error to fail it with. */
export class ReadTimer extends IdleTimer {
  constructor(ms: number | undefined, onSilent: (error: BackendSilent) => void) {
    super(
      ms ?? 0,
      () => onSilent(new BackendSilent(`the backend sent nothing for ${ms} ms`)),
    );
  }
}

/** Why a body failed when its client read nothing: the client's doing, logged at INFO. */
export class ClientStalled extends Error {}

/**
 * A backend's body failed after its answer's head was passed on (it broke off,
 * was malformed, or went silent past `read_timeout`): the client's connection
 * is cut, the one thing left to do. The message names the backend.
 */
export class BackendBodyBroke extends Error {
  constructor(backend: string, reason: string) {
    super(`the body from backend ${backend} broke off: ${reason}`);
    this.name = "BackendBodyBroke";
  }
}

/** Default when a request names no `stallTimeoutMs`. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/**
 * Armed after each chunk handed to the client and disarmed when the client
 * pulls the next one; fires `onStall` when no pull came within `ms`.
 */
export class StallTimer extends IdleTimer {
  constructor(ms: number | undefined, onStall: () => void) {
    super(ms ?? DEFAULT_STALL_TIMEOUT_MS, onStall);
  }

  /** The error a body fails with when it fires. */
  get error(): Error {
    return new ClientStalled(`the client read nothing for ${this.ms} ms`);
  }
}
