/**
 * FTP address arguments and replies: PORT/EPRT parsing, PASV/EPSV reply text, passive port ranges and the
 * subnet matching used by the passive address map.
 *
 * Everything here is pure and strict: a malformed argument yields `null` (or a problem string), never a guess.
 *
 * @module
 */

/** Parses a dotted-quad IPv4 address into 4 bytes, or null. Leading zeros ("010") are refused as ambiguous. */
function parseIpv4(s: string): number[] | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** Parses an IPv6 address (with optional embedded IPv4 tail, no zone) into 16 bytes, or null. */
function parseIpv6(input: string): number[] | null {
  let s = input;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.includes("%")) s = s.slice(0, s.indexOf("%"));
  if (s.length < 2 || !/^[0-9a-fA-F:.]+$/.test(s)) return null;
  let tail: number[] = [];
  if (s.includes(".")) {
    const lastColon = s.lastIndexOf(":");
    if (lastColon < 0) return null;
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith("::")) s = s.slice(0, -1);
  }
  const groupsWanted = (16 - tail.length) / 2;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parseGroups = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    for (const g of h.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]);
  if (!head) return null;
  let groups: number[];
  if (halves.length === 2) {
    const rest = parseGroups(halves[1]);
    if (!rest || head.length + rest.length > groupsWanted - 1) return null;
    groups = [...head, ...new Array<number>(groupsWanted - head.length - rest.length).fill(0), ...rest];
  } else {
    if (head.length !== groupsWanted) return null;
    groups = head;
  }
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return [...bytes, ...tail];
}

function formatIpv6(bytes: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on a tie.
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" + hex.slice(bestStart + bestLen).join(":");
}

function parseAny(ip: string): { family: 4 | 6; bytes: number[] } | null {
  const n = normalizeIp(ip);
  const v4 = parseIpv4(n);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(n);
  return v6 ? { family: 6, bytes: v6 } : null;
}

/**
 * Normalises an address for comparison: strips brackets and zone, maps IPv4-mapped IPv6 ("::ffff:1.2.3.4") to
 * plain IPv4, and prints IPv6 in the RFC 5952 canonical form. Unparseable input is returned trimmed and lowercased.
 *
 * @example
 * ```ts
 * normalizeIp("::ffff:127.0.0.1"); // "127.0.0.1"
 * normalizeIp("[0:0:0:0:0:0:0:1]"); // "::1"
 * ```
 */
export function normalizeIp(ip: string): string {
  const s = ip.trim().toLowerCase();
  if (parseIpv4(s)) return s;
  const v6 = parseIpv6(s);
  if (!v6) return s;
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  if (mapped) return v6.slice(12).join(".");
  return formatIpv6(v6);
}

function parsePortNumber(s: string): number | null {
  if (!/^[0-9]{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

/**
 * Parses a PORT argument "h1,h2,h3,h4,p1,p2" (RFC 959). Returns null when malformed or when the port is 0.
 * The caller still checks that the host is the control peer and the port is unprivileged.
 *
 * @example
 * ```ts
 * parsePortArg("127,0,0,1,4,1"); // { host: "127.0.0.1", port: 1025 }
 * ```
 */
export function parsePortArg(arg: string): { host: string; port: number } | null {
  const parts = arg.trim().split(",");
  if (parts.length !== 6) return null;
  const nums: number[] = [];
  for (const p of parts) {
    const t = p.trim();
    if (!/^[0-9]{1,3}$/.test(t)) return null;
    const n = Number(t);
    if (n > 255) return null;
    nums.push(n);
  }
  const port = nums[4] * 256 + nums[5];
  if (port === 0) return null;
  return { host: nums.slice(0, 4).join("."), port };
}

/**
 * Parses an EPRT argument "|1|132.235.1.2|6275|" or "|2|::1|5282|" (RFC 2428). Any printable delimiter works.
 * Returns null when malformed, when the family does not match the address, or when the port is 0.
 *
 * @example
 * ```ts
 * parseEprtArg("|2|::1|5282|"); // { host: "::1", port: 5282, family: 6 }
 * ```
 */
export function parseEprtArg(arg: string): { host: string; port: number; family: 4 | 6 } | null {
  const s = arg.trim();
  if (s.length < 7) return null;
  const d = s[0];
  const code = d.charCodeAt(0);
  if (code < 33 || code > 126 || /[0-9a-fA-F:.]/.test(d)) return null;
  const parts = s.split(d);
  // "", family, host, port, ""
  if (parts.length !== 5 || parts[0] !== "" || parts[4] !== "") return null;
  const port = parsePortNumber(parts[3]);
  if (port === null) return null;
  if (parts[1] === "1") {
    return parseIpv4(parts[2]) ? { host: parts[2], port, family: 4 } : null;
  }
  if (parts[1] === "2") {
    const v6 = parseIpv6(parts[2]);
    if (!v6 || parts[2].includes("%") || parts[2].includes("[")) return null;
    return { host: formatIpv6(v6), port, family: 6 };
  }
  return null;
}

/**
 * Formats the 227 reply to PASV for an IPv4 address.
 *
 * @example
 * ```ts
 * formatPasvReply("127.0.0.1", 1025); // "227 Entering Passive Mode (127,0,0,1,4,1)."
 * ```
 */
export function formatPasvReply(ipv4: string, port: number): string {
  const host = normalizeIp(ipv4).replaceAll(".", ",");
  return `227 Entering Passive Mode (${host},${port >> 8},${port & 0xff}).`;
}

/**
 * Formats the 229 reply to EPSV.
 *
 * @example
 * ```ts
 * formatEpsvReply(5282); // "229 Entering Extended Passive Mode (|||5282|)"
 * ```
 */
export function formatEpsvReply(port: number): string {
  return `229 Entering Extended Passive Mode (|||${port}|)`;
}

/**
 * Parses a passive port range "50000-50100" (or one port "50000"); "0" or "0-0" means ephemeral ports.
 * Returns the problem as text when the range is malformed, privileged or reversed.
 *
 * @example
 * ```ts
 * parsePortRange("50000-50100"); // { min: 50000, max: 50100 }
 * parsePortRange("80-90"); // "must use ports 1024..65535 (or 0 for any free port)"
 * ```
 */
export function parsePortRange(s: string): { min: number; max: number } | string {
  const m = /^\s*([0-9]{1,5})\s*(?:-\s*([0-9]{1,5})\s*)?$/.exec(s);
  if (!m) return `must be a port range like "50000-50100", not ${JSON.stringify(s)}`;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min === 0 && max === 0) return { min: 0, max: 0 };
  if (min < 1024 || max > 65535 || min > 65535) return "must use ports 1024..65535 (or 0 for any free port)";
  if (min > max) return `has its lower port ${min} above its upper port ${max}`;
  return { min, max };
}

/**
 * True when `ip` lies in `cidr` ("192.168.0.0/16", "fd00::/8", or a single address). IPv4-mapped IPv6 addresses
 * count as IPv4. Malformed input never matches.
 *
 * @example
 * ```ts
 * cidrContains("192.168.0.0/16", "192.168.4.7"); // true
 * cidrContains("fd00::/8", "fd12::1"); // true
 * ```
 */
export function cidrContains(cidr: string, ip: string): boolean {
  const slash = cidr.indexOf("/");
  const netPart = slash < 0 ? cidr : cidr.slice(0, slash);
  const net = parseAny(netPart);
  const addr = parseAny(ip);
  if (!net || !addr || net.family !== addr.family) return false;
  const maxBits = net.family === 4 ? 32 : 128;
  let bits = maxBits;
  if (slash >= 0) {
    const b = cidr.slice(slash + 1).trim();
    if (!/^[0-9]{1,3}$/.test(b)) return false;
    bits = Number(b);
    if (bits > maxBits) return false;
  }
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((net.bytes[i] & mask) !== (addr.bytes[i] & mask)) return false;
  }
  return true;
}
