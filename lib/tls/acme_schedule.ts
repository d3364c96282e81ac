// When to order an ACME certificate: pure functions of the certificate held,
// the time and the failures so far, so the timing is testable without waiting.

const DAY_MS = 86_400_000;

/** Timing of renewals: how often to look, and the backoff after a failed order. */
export interface RenewalTiming {
  /** Time between checks of a certificate that is not due yet. Default 12 h. */
  readonly checkEveryMs: number;
  /** Wait after the first failed order; doubles with each further failure. Default 5 min. */
  readonly retryMinMs: number;
  /** Longest wait between failed orders. Default 12 h. */
  readonly retryMaxMs: number;
}

/**
 * The default timing. The first retry waits 5 minutes so that a name that keeps
 * failing stays under Let's Encrypt's limit of 5 failed validations per hour.
 */
export const DEFAULT_TIMING: RenewalTiming = {
  checkEveryMs: 12 * 3_600_000,
  retryMinMs: 5 * 60_000,
  retryMaxMs: 12 * 3_600_000,
};

/**
 * When a certificate valid from `notBefore` to `notAfter` becomes due, in ms:
 * `renewBeforeDays` before it expires, or, for a certificate whose whole
 * lifetime is shorter than that (a CA issuing short-lived certificates), once
 * two thirds of its lifetime are over, not at once and over and over again.
 */
export function renewalDueAt(
  notAfter: Date,
  renewBeforeDays: number,
  notBefore: Date | null = null,
): number {
  const due = notAfter.getTime() - renewBeforeDays * DAY_MS;
  if (notBefore === null || due > notBefore.getTime()) return due;
  return notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) * 2 / 3;
}

/** Whether to order now: there is no certificate, or fewer than `renewBeforeDays` are left. */
export function renewalDue(
  notAfter: Date | null,
  options: { now: number; renewBeforeDays: number; notBefore?: Date | null },
): boolean {
  return notAfter === null ||
    options.now >= renewalDueAt(notAfter, options.renewBeforeDays, options.notBefore);
}

/** The wait before the next check of a certificate that is not due: a check interval at most. */
export function nextCheckDelayMs(
  notAfter: Date,
  options: { now: number; renewBeforeDays: number; timing: RenewalTiming; notBefore?: Date | null },
): number {
  const untilDue = renewalDueAt(notAfter, options.renewBeforeDays, options.notBefore) -
    options.now;
  return Math.max(0, Math.min(options.timing.checkEveryMs, untilDue));
}

/** The wait after `failures` consecutive failed orders (1 or more): exponential, capped. */
export function retryDelayMs(failures: number, timing: RenewalTiming): number {
  const exponent = Math.max(0, failures - 1);
  return Math.min(timing.retryMaxMs, timing.retryMinMs * 2 ** Math.min(exponent, 30));
}
