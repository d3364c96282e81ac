// Retry rules: what may be retried, and a budget that keeps a sick pool from
// being hammered by retries (Envoy's retry budget).

import type { Clock } from "../clock.ts";
import type { UpstreamFailure } from "../transport/transport.ts";

/** Methods RFC 9110 9.2.2 calls idempotent. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Whether a failed attempt may be repeated on another backend. A connect
 * failure sent nothing, so any request may go again if its body can be
 * replayed; after bytes may have reached the backend, only idempotent methods.
 */
export function mayRetry(
  failure: UpstreamFailure,
  method: string,
  bodyReplayable: boolean,
): boolean {
  if (!bodyReplayable) return false;
  if (failure === "connect") return true;
  return (failure === "reset" || failure === "protocol") && IDEMPOTENT.has(method);
}

/**
 * Allows retries up to `percent` of the requests seen in the last `windowSec`
 * seconds, and always at least `minRetries` in that window: by default 10 a
 * second (Linkerd's floor), so that a quiet pool with one backend failing every
 * request still retries them until passive health ejects it, while a busy pool
 * in trouble is held to its share.
 */
export class RetryBudget {
  readonly #percent: number;
  readonly #clock: Clock;
  readonly #minRetries: number;
  readonly #requests: Int32Array;
  readonly #retries: Int32Array;
  readonly #epochs: Float64Array;

  constructor(
    percent: number,
    clock: Clock,
    options: { windowSec?: number; minRetries?: number } = {},
  ) {
    const windowSec = options.windowSec ?? 10;
    this.#percent = percent;
    this.#clock = clock;
    this.#minRetries = options.minRetries ?? 10 * windowSec;
    this.#requests = new Int32Array(windowSec);
    this.#retries = new Int32Array(windowSec);
    this.#epochs = new Float64Array(windowSec).fill(-1);
  }

  /** Counts one incoming request. */
  recordRequest(): void {
    this.#requests[this.#bucket()]++;
  }

  /** Takes one retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    const bucket = this.#bucket();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.#requests.length; i++) {
      requests += this.#requests[i];
      retries += this.#retries[i];
    }
    if (retries >= Math.max(this.#minRetries, Math.floor(requests * this.#percent / 100))) {
      return false;
    }
    this.#retries[bucket]++;
    return true;
  }

  #bucket(): number {
    const second = Math.floor(this.#clock.now() / 1000);
    const window = this.#requests.length;
    const bucket = second % window;
    if (this.#epochs[bucket] !== second) {
      // Clear every bucket that fell out of the window since it was last used.
      for (let i = 0; i < window; i++) {
        if (second - this.#epochs[i] >= window) {
          this.#requests[i] = 0;
          this.#retries[i] = 0;
          this.#epochs[i] = -1;
        }
      }
      this.#requests[bucket] = 0;
      this.#retries[bucket] = 0;
      this.#epochs[bucket] = second;
    }
    return bucket;
  }
}
