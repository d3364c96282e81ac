// A bound on how long a caller waits for a promise that may never settle (a
// library that loses a callback), with the timer on the injected clock.

import type { Clock } from "./clock.ts";

/** Rejected by `withTimeLimit` when the time ran out: "no answer within <n> ms". */
export class TimeLimitError extends Error {
  override name = "TimeLimitError";
}

/**
 * Settles as `promise` does, or rejects with a `TimeLimitError` after `limitMs`
 * milliseconds on `clock`. The work itself goes on: the caller only stops waiting for it.
 */
export function withTimeLimit<T>(
  promise: Promise<T>,
  limitMs: number,
  clock: Clock,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(
      () => reject(new TimeLimitError(`no answer within ${limitMs} ms`)),
      limitMs,
    );
    promise.then(
      (value) => {
        clock.clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clock.clearTimeout(timer);
        reject(error);
      },
    );
  });
}
