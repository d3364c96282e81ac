// Kernel TCP counters that explain tail latencies: a full listen queue drops
// the SYN and the client retries after 1 s (the initial RTO, RFC 6298 §2).

/** TcpExt ListenOverflows from /proc/net/netstat (machine-wide), or null when unreadable. */
export async function listenOverflows(): Promise<number | null> {
  try {
    return parseTcpExt(await Deno.readTextFile("/proc/net/netstat"), "ListenOverflows");
  } catch {
    return null;
  }
}

/** Reads one TcpExt field from /proc/net/netstat text (a header line, then a value line). */
export function parseTcpExt(text: string, field: string): number | null {
  const [names, values] = text.split("\n").filter((l) => l.startsWith("TcpExt:"));
  if (!names || !values) return null;
  const index = names.split(/\s+/).indexOf(field);
  return index < 0 ? null : Number(values.split(/\s+/)[index]);
}
