// Address parsing: listener socket addresses, backend authorities, IPs and CIDRs.
// Pure functions; each parser returns a value or a string describing the problem.

/** A listener address: an IP literal and a port (RustStrom accepts no host names here). */
export interface SocketAddress {
  /** IP literal; IPv6 without brackets. */
  readonly hostname: string;
  readonly port: number;
  /** As written in the config, for messages. */
  readonly text: string;
}

/** An IP network: 16 bytes (IPv4 mapped into ::ffff:0:0/96) and a prefix length over them. */
export interface Cidr {
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly text: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses an IPv4 or IPv6 literal (no brackets) into 16 bytes; IPv4 becomes ::ffff:a.b.c.d. */
export function parseIp(text: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const v4 = parseIpv4(text);
  if (v4) {
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(v4, 12);
    return out;
  }
  return parseIpv6(text, out);
}

/**
 * An address as one client is always written (RFC 5952 for IPv6: lower case,
 * no leading zeros, the longest run of zero groups as `::`; an IPv4-mapped
 * one as plain IPv4), from 16 bytes as parseIp gives them.
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let best = -1;
  let bestLength = 1; // a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) [best, bestLength] = [i, end - i];
    i = end;
  }
  const hex = (from: number, to: number) =>
    groups.slice(from, to).map((g) => g.toString(16)).join(":");
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLength, 8)}`;
}

/**
 * The address in one X-Forwarded-For hop, in canonical form, or null when the
 * hop is not an address. Some proxies write a port (`1.2.3.4:5555`,
 * `[2001:db8::1]:443`, Azure's gateways) or brackets alone.
 */
export function hopAddress(hop: string): string | null {
  let text = hop;
  const port = (suffix: string) => {
    const m = /^:(\d{1,5})$/.exec(suffix);
    return m !== null && Number(m[1]) <= 65535;
  };
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || (close + 1 < text.length && !port(text.slice(close + 1)))) return null;
    text = text.slice(1, close);
  } else if (text.includes(".") && text.indexOf(":") === text.lastIndexOf(":")) {
    const colon = text.indexOf(":");
    if (colon >= 0) {
      if (!port(text.slice(colon))) return null;
      text = text.slice(0, colon);
    }
  }
  const bytes = parseIp(text);
  if (bytes === null) return null;
  // The common case, an IPv4 hop as written, is already canonical.
  return text === hop && !text.includes(":") ? text : formatIp(bytes);
}

function parseIpv4(text: string): number[] | null {
  const m = IPV4.exec(text);
  if (!m) return null;
  const parts = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  if (parts.some((p, i) => p > 255 || (m[i + 1].length > 1 && m[i + 1][0] === "0"))) return null;
  return parts;
}

function parseIpv6(text: string, out: Uint8Array): Uint8Array | null {
  if (text.length < 2 || text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = parseGroups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1], true) : [];
  if (!head || !tail) return null;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return null;
  const groups = [...head, ...new Array(8 - count).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i] >> 8;
    out[i * 2 + 1] = groups[i] & 0xff;
  }
  return out;
}

/** Parses colon-separated hex groups; the last may be an IPv4 tail when `allowV4`. */
function parseGroups(text: string, allowV4: boolean): number[] | null {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const g = parts[i];
    if (allowV4 && i === parts.length - 1 && g.includes(".")) {
      const v4 = parseIpv4(g);
      if (!v4) return null;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) groups.push(parseInt(g, 16));
    else return null;
  }
  return groups;
}

/** Parses `IP:port` or `[IPv6]:port` for a listener. */
export function parseSocketAddress(text: string): SocketAddress | string {
  const split = splitHostPort(text);
  if (typeof split === "string") return split;
  if (split.port === null) return 'expected IP:port, e.g. "127.0.0.1:8000" or "[::]:80"';
  if (!parseIp(split.host)) return "expected an IP address, not a host name";
  return { hostname: split.host, port: split.port, text };
}

/** Parses a backend `host[:port]` (DNS name or IP literal; port 80 when omitted). */
export function parseBackendAuthority(
  text: string,
): { host: string; port: number; tls: boolean } | string {
  // RustStrom takes `host[:port]`; Strom also takes `http://host[:port]` and `https://host[:port]`.
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text);
  if (scheme && scheme[1] !== "http" && scheme[1] !== "https") {
    return `unsupported scheme "${scheme[1]}" (expected host:port, http:// or https://)`;
  }
  const tls = scheme?.[1] === "https";
  const rest = scheme ? text.slice(scheme[0].length).replace(/\/$/, "") : text;
  if (rest.includes("@")) return "a backend address takes no user or password";
  const extra = scheme ? /[/?#]/.exec(rest) : null;
  if (extra) return `a backend address takes no path, query or fragment ("${extra[0]}...")`;
  const split = splitHostPort(rest);
  if (typeof split === "string") return split;
  const { host, port } = split;
  if (!parseIp(host) && !isHostName(host)) return "expected host:port";
  if (port === 0) return "port 0 cannot be connected to";
  return { host, port: port ?? (tls ? 443 : 80), tls };
}

/**
 * A backend address as written in the config, without its scheme: what goes
 * into a Host field Strom writes for that backend (`example.com` stays
 * `example.com`, not `example.com:80`), as RustStrom's hyper client took Host
 * from the URI `http://<address>`.
 */
export function writtenAuthority(id: string): string {
  return id.replace(/^https?:\/\//i, "").replace(/\/$/, "");
}

/** Formats host and port as an authority, bracketing IPv6. */
export function formatAuthority(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function isHostName(host: string): boolean {
  // A fully qualified name may end in a dot (`example.com.`): DNS resolves it as written.
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) =>
    /^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$/.test(label)
  );
}

function splitHostPort(text: string): { host: string; port: number | null } | string {
  if (text.length === 0) return "expected host:port, found an empty string";
  let host: string;
  let portText: string | null = null;
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    if (end < 0) return 'missing "]" after IPv6 address';
    host = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return 'expected ":port" after "]"';
      portText = rest.slice(1);
    }
    if (!parseIpv6(host, new Uint8Array(16))) return "invalid IPv6 address";
  } else {
    const colon = text.lastIndexOf(":");
    if (colon >= 0 && text.indexOf(":") !== colon) {
      return 'IPv6 addresses must be written in brackets, e.g. "[::1]:8080"';
    }
    host = colon >= 0 ? text.slice(0, colon) : text;
    portText = colon >= 0 ? text.slice(colon + 1) : null;
  }
  if (portText === null) return { host, port: null };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    return `invalid port "${portText}"`;
  }
  return { host, port: Number(portText) };
}

/** Parses an IP (`10.0.0.1`) or CIDR (`10.0.0.0/8`, `fd00::/8`). */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const ipText = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseIp(ipText);
  if (!bytes) return 'expected an IP address or CIDR, e.g. "10.0.0.0/8"';
  const isV4 = parseIpv4(ipText) !== null;
  const max = isV4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `invalid prefix length "${p}"`;
    prefix = Number(p);
  }
  return { bytes, prefix: isV4 ? prefix + 96 : prefix, text };
}

/**
 * Whether `ip` (16 bytes from parseIp) lies inside `cidr`. An IPv6 network
 * wider than the IPv4-mapped range (`::/0`, `::/8`) holds IPv6 clients only, as
 * in nginx: IPv4 clients are matched by IPv4 networks (or `::ffff:0:0/96` and
 * narrower), so `deny = ["::/0"]` does not shut out every IPv4 client.
 */
export function cidrContains(cidr: Cidr, ip: Uint8Array): boolean {
  if (cidr.prefix < 96 && isIpv4Mapped(ip)) return false;
  let bits = cidr.prefix;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((cidr.bytes[i] & mask) !== (ip[i] & mask)) return false;
  }
  return true;
}

function isIpv4Mapped(ip: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return ip[10] === 0xff && ip[11] === 0xff;
}

/** Strips the IPv4-mapped prefix a dual-stack listener reports (`::ffff:1.2.3.4` → `1.2.3.4`). */
export function plainIp(ip: string): string {
  return ip.length > 7 && ip.charCodeAt(0) === 58 && ip.toLowerCase().startsWith("::ffff:") &&
      ip.includes(".")
    ? ip.slice(7)
    : ip;
}

/**
 * A URL as logs and config problems show it: a password in it (`redis://user:secret@host`)
 * becomes `***` (`redis://user:***@host`), since anyone who reaches the admin API may read the
 * logs without the token.
 */
export function withPasswordHidden(text: string): string {
  // The user information ends at the last "@" (as URL parsers read it: a password may hold
  // "@"). The last of the whole text, not of a parsed authority: a password with an unescaped
  // "/", "?" or "#" makes the URL invalid, and the config problem that says so must not show it.
  // After `scheme://`. Without "//" (`user:secret@host`, a backend address, whose "user:" only
  // looks like a scheme), from the first colon: more may be hidden, never part of a password.
  const start = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text)?.[0].length ?? 0;
  const at = text.lastIndexOf("@");
  const colon = text.indexOf(":", start);
  if (at < start || colon < 0 || colon > at) return text; // no password
  return `${text.slice(0, colon)}:***${text.slice(at)}`;
}
