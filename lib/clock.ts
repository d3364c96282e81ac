// Time as an injected dependency, so timing logic is testable without sleeps.

/** A source of time and timers, in milliseconds. */
export interface Clock {
  /**
   * Milliseconds since the epoch on a clock that only moves forward: the real
   * one reads the wall clock once, at start, and counts on with the monotonic
   * clock. A wall clock stepped by NTP or a resumed VM would otherwise stretch
   * or cut short every timeout, cooldown and rate limit window in flight.
   */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): number;
  clearTimeout(handle: number): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs) as unknown as number,
  clearTimeout: (handle) => clearTimeout(handle),
};
