// ACME HTTP-01 challenge answers (RFC 8555 8.3): token → key authorization.
// Served on the HTTP listener at /.well-known/acme-challenge/<token> before routing.

/** The path prefix of HTTP-01 challenges. */
export const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** Pending challenge answers; survives reloads. */
export class ChallengeStore {
  readonly #answers = new Map<string, string>();
  /** Told about every change (the primary forwards them to its workers). */
  onChange: ((token: string, keyAuthorization: string | null) => void) | null = null;

  set(token: string, keyAuthorization: string): void {
    this.#answers.set(token, keyAuthorization);
    this.onChange?.(token, keyAuthorization);
  }

  delete(token: string): void {
    this.#answers.delete(token);
    this.onChange?.(token, null);
  }

  /** Whether no challenge waits for its answer (the usual case: none is under way). */
  get empty(): boolean {
    return this.#answers.size === 0;
  }

  /** The answer for a request path, or null when it is not a known challenge. */
  answer(path: string): string | null {
    if (!path.startsWith(CHALLENGE_PREFIX)) return null;
    return this.#answers.get(path.slice(CHALLENGE_PREFIX.length)) ?? null;
  }
}
