/** A short reason for a failed network call: "connect refused", "connection reset", ... */
export function describeNetError(e: unknown): string {
  if (e instanceof Deno.errors.ConnectionRefused) return "connect refused";
  if (e instanceof Deno.errors.ConnectionReset) return "connection reset";
  if (e instanceof Deno.errors.ConnectionAborted) return "connection aborted";
  if (e instanceof Deno.errors.BrokenPipe) return "connection closed by the backend";
  if (e instanceof Deno.errors.NotFound) return "host not found";
  if (e instanceof Deno.errors.TimedOut) return "connect timed out";
  return e instanceof Error ? e.message : String(e);
}
