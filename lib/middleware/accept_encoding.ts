// Content negotiation for Accept-Encoding (RFC 9110 §12.5.3): codings are
// case-insensitive, weighted by q-values (§12.4.2), `*` matches any coding not
// listed, `x-gzip` is gzip (§8.4.1.3), and q=0 means "not acceptable".

/** The codings Strom can produce, in its order of preference on a tie. */
export const CODINGS = ["br", "zstd", "gzip", "deflate"] as const;
export type Coding = typeof CODINGS[number];

const QVALUE = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/;

/** Parses Accept-Encoding into coding → q; null when the header is absent. */
export function parseAcceptEncoding(header: string | null): Map<string, number> | null {
  if (header === null) return null;
  const weights = new Map<string, number>();
  for (const item of header.split(",")) {
    const [rawName, ...params] = item.split(";");
    let name = rawName.trim().toLowerCase();
    if (name === "") continue;
    if (name === "x-gzip") name = "gzip";
    let q = 1;
    for (const param of params) {
      const eq = param.indexOf("=");
      if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== "q") continue;
      const value = param.slice(eq + 1).trim();
      q = QVALUE.test(value) ? Number(value) : 0; // an invalid weight is not a yes
    }
    // The highest weight wins when a coding is listed twice.
    weights.set(name, Math.max(q, weights.get(name) ?? 0));
  }
  return weights;
}

/**
 * The coding to use among `offered` (in preference order): the highest q, ties
 * to the earlier offer; null for identity (no header, or nothing acceptable).
 */
export function negotiate(header: string | null, offered: readonly Coding[]): Coding | null {
  const weights = parseAcceptEncoding(header);
  if (weights === null) return null; // no header: any coding is allowed, identity is safest
  const star = weights.get("*");
  let best: Coding | null = null;
  let bestQ = 0;
  for (const coding of offered) {
    const q = weights.get(coding) ?? star ?? 0;
    if (q > bestQ) [best, bestQ] = [coding, q];
  }
  // Identity is acceptable unless excluded; a coding wins unless identity is weighted higher.
  const identity = weights.get("identity");
  return best !== null && (identity === undefined || bestQ >= identity) ? best : null;
}
