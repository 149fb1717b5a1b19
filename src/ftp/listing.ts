/**
 * Directory listing formats: the `ls -l` lines of LIST (what FileZilla, Windows Explorer and curl parse), NLST
 * names, RFC 3659 MLSx facts, and the strict `YYYYMMDDHHMMSS` UTC time of MDTM/MLSx.
 *
 * Names pass through unchanged (UTF-8 included) except control characters: CR, LF and NUL are stripped so a
 * file name can never start a new reply or listing line, and the other C0 and C1 controls and DEL (terminal
 * escape sequences) are shown as "?", as `ls -q` does.
 *
 * @module
 */

import type { FtpFileInfo, FtpPermissions } from "./ftp_file_system.ts";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** `ls` shows the time of day for files modified within the last half year (its 6 months: 15778476 s). */
const SIX_MONTHS_MS = 15_778_476_000;

/**
 * Strips CR, LF and NUL from client- or disk-derived text before it goes into a reply or listing, and shows
 * every other control character (C0, DEL, C1: terminal escape sequences) as "?".
 *
 * @example
 * ```ts
 * sanitizeForReply("a\r\nDELE b"); // "aDELE b"
 * sanitizeForReply("x\x1b[2Jy"); // "x?[2Jy"
 * ```
 */
export function sanitizeForReply(s: string): string {
  // deno-lint-ignore no-control-regex
  if (!/[\x00-\x1f\x7f-\x9f]/.test(s)) return s;
  // deno-lint-ignore no-control-regex
  return s.replace(/[\r\n\0]/g, "").replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * Formats a time as strict `YYYYMMDDHHMMSS` in UTC (MDTM replies and the MLSx modify fact).
 *
 * @example
 * ```ts
 * formatFtpTime(new Date(Date.UTC(2026, 10, 29, 12, 0, 0))); // "20261129120000"
 * ```
 */
export function formatFtpTime(d: Date): string {
  return String(d.getUTCFullYear()).padStart(4, "0") + pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) + pad2(d.getUTCMinutes()) + pad2(d.getUTCSeconds());
}

function typeChar(info: FtpFileInfo): string {
  switch (info.type) {
    case "dir":
      return "d";
    case "link":
      return "l";
    case "file":
      return "-";
  }
  const fmt = (info.mode ?? 0) & 0o170000;
  if (fmt === 0o010000) return "p";
  if (fmt === 0o140000) return "s";
  if (fmt === 0o020000) return "c";
  if (fmt === 0o060000) return "b";
  return "-";
}

function permString(info: FtpFileInfo): string {
  const m = info.mode ?? (info.type === "dir" ? 0o755 : info.type === "link" ? 0o777 : 0o644);
  const bit = (mask: number, ch: string): string => (m & mask ? ch : "-");
  const exec = (mask: number, special: number, on: string, off: string): string => {
    if (m & special) return m & mask ? on : off;
    return m & mask ? "x" : "-";
  };
  return typeChar(info) +
    bit(0o400, "r") + bit(0o200, "w") + exec(0o100, 0o4000, "s", "S") +
    bit(0o040, "r") + bit(0o020, "w") + exec(0o010, 0o2000, "s", "S") +
    bit(0o004, "r") + bit(0o002, "w") + exec(0o001, 0o1000, "t", "T");
}

function listDate(mtime: Date | null, now: Date): string {
  const d = mtime ?? new Date(0);
  const mon = MONTHS[d.getUTCMonth()];
  const day = String(d.getUTCDate()).padStart(2, " ");
  const age = now.getTime() - d.getTime();
  // Like ls: time of day when within the last six months (and not more than an hour in the future).
  if (age < SIX_MONTHS_MS && age > -3_600_000) {
    return `${mon} ${day} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  }
  return `${mon} ${day}  ${d.getUTCFullYear()}`;
}

/**
 * Formats one LIST line in the classic `ls -l` form (no CRLF). Owner and group are shown as "ftp" so no host
 * account names leak; times are UTC.
 *
 * @example
 * ```ts
 * import type { FtpFileInfo } from "./ftp_file_system.ts";
 *
 * declare const info: FtpFileInfo; // from FtpFileSystem.list
 * formatListLine(info, new Date());
 * // "-rw-r--r--   1 ftp      ftp          1234 Nov 29 12:00 name"
 * ```
 */
export function formatListLine(info: FtpFileInfo, now: Date): string {
  const nlink = String(info.nlink > 0 ? info.nlink : 1).padStart(3, " ");
  const size = String(info.size).padStart(8, " ");
  return `${permString(info)} ${nlink} ftp      ftp      ${size} ${listDate(info.mtime, now)} ${
    sanitizeForReply(info.name)
  }`;
}

/**
 * Formats one NLST line: the bare name (no CRLF).
 *
 * @example
 * ```ts
 * import type { FtpFileInfo } from "./ftp_file_system.ts";
 *
 * declare const info: FtpFileInfo; // from FtpFileSystem.list
 * formatNlstLine(info); // "report.txt"
 * ```
 */
export function formatNlstLine(info: FtpFileInfo): string {
  return sanitizeForReply(info.name);
}

function filePerm(p: FtpPermissions): string {
  return (p.append ? "a" : "") + (p.delete ? "d" : "") + (p.rename ? "f" : "") + (p.read ? "r" : "") +
    (p.write ? "w" : "");
}

function dirPerm(p: FtpPermissions): string {
  return (p.write ? "c" : "") + (p.delete ? "d" : "") + (p.list || p.read ? "e" : "") +
    (p.rename ? "f" : "") +
    (p.list ? "l" : "") + (p.mkdir ? "m" : "") + (p.delete ? "p" : "");
}

/**
 * Formats RFC 3659 facts plus the name for MLSD/MLST: "type=file;size=1234;modify=20261129120000;perm=adfrw;
 * unique=803g1a; name". `cdir`/`pdir` mark the listed directory itself and its parent.
 *
 * @example
 * ```ts
 * import { type FtpFileInfo, READ_ONLY } from "./ftp_file_system.ts";
 *
 * declare const info: FtpFileInfo; // from FtpFileSystem.list
 * formatMlsxFacts(info, READ_ONLY); // "type=file;size=3;modify=20260101000000;perm=r;unique=803g1a; a.txt"
 * ```
 */
export function formatMlsxFacts(
  info: FtpFileInfo,
  perms: FtpPermissions,
  opts: { cdir?: boolean; pdir?: boolean } = {},
): string {
  let type: string;
  let perm: string;
  if (info.type === "dir") {
    type = opts.cdir ? "cdir" : opts.pdir ? "pdir" : "dir";
    perm = dirPerm(perms);
  } else {
    type = info.type === "file" ? "file" : info.type === "link" ? "OS.unix=slink" : "OS.unix=special";
    perm = filePerm(perms);
  }
  let facts = `type=${type};size=${info.size};`;
  if (info.mtime) facts += `modify=${formatFtpTime(info.mtime)};`;
  facts += `perm=${perm};unique=${info.uniqueId};`;
  return `${facts} ${sanitizeForReply(info.name)}`;
}
