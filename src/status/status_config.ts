/**
 * The `[status]` table: the local status socket `outpost status` asks, and the optional status page with
 * `/metrics`.
 *
 * ```toml
 * [status]
 * socket = "/var/lib/outpost/status.sock"  # default <state_dir>/status.sock; "" turns it off
 * socket_mode = "0660"                     # owner and group (the admin group) may ask
 * http = false                             # the status page and /metrics (HTTP/1.1)
 * host = "127.0.0.1"                       # beyond loopback a login is required
 * port = 8021
 * user = "admin"                           # a login for the page ...
 * password_hash = "pbkdf2-sha256$..."      # ... from `outpost passwd`
 * ftp_logins = true                        # FTP accounts may log in to the page too
 * history = "24h"                          # sensor history kept in memory for the charts
 * save_history = true                      # written to <state_dir>/history.json on stop, read at start
 * ```
 *
 * The page is off by default; listening beyond loopback without any login is refused as a config problem.
 *
 * @module
 */

import { checkPasswordHash } from "../config/password.ts";
import { resolvePath, type Section } from "../config/section.ts";

/**
 * The resolved `[status]` table.
 *
 * @example
 * ```ts
 * const s: StatusConfig = { socket: "/var/lib/outpost/status.sock", socketMode: 0o660, http: false,
 *   host: "127.0.0.1", port: 8021, user: null, passwordHash: null, ftpLogins: true, historyMs: 86_400_000,
 *   historySlots: 288, saveHistory: true };
 * console.log(s.socket);
 * ```
 */
export interface StatusConfig {
  /** Unix socket `outpost status` connects to; null when off. */
  socket: string | null;
  /** Mode of the socket file (default 0660: the daemon's user and group). */
  socketMode: number;
  /** Serve the status page and /metrics over HTTP. */
  http: boolean;
  /** Address of the HTTP listener. */
  host: string;
  /** Port of the HTTP listener. */
  port: number;
  /** A login for the page (with `passwordHash`), or null. */
  user: string | null;
  /** Its password hash from `outpost passwd`. */
  passwordHash: string | null;
  /** FTP accounts (with a password) may log in to the page. */
  ftpLogins: boolean;
  /** How far back the sensor history goes, in ms. */
  historyMs: number;
  /** Points kept per sensor over `historyMs` (one per slot: the slot's latest reading). */
  historySlots: number;
  /** Save the history on stop and load it at start (one write per stop, never per sample). */
  saveHistory: boolean;
}

/** Default HTTP port of the status page. */
export const DEFAULT_STATUS_PORT = 8021;

/**
 * True when `host` is a loopback address or name, so the page needs no login.
 *
 * @example
 * ```ts
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("0.0.0.0");   // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || h === "::ffff:127.0.0.1";
}

/**
 * Reads `[status]` from its section (and finishes it). `stateDir` is the default folder of the socket; `ftpUsers`
 * counts FTP accounts with a password (they can log in to the page when `ftp_logins` is on).
 *
 * @example
 * ```ts
 * import { Section } from "../config/section.ts";
 *
 * const root = new Section({ status: { http: true, port: 8021 } }, "", []);
 * const status = readStatusConfig(root.section("status"), "/var/lib/outpost", 1);
 * console.log(status.host, status.port); // 127.0.0.1 8021
 * ```
 */
export function readStatusConfig(s: Section, stateDir: string, ftpUsers: number): StatusConfig {
  const socketRaw = s.string("socket");
  const socket = socketRaw === undefined
    ? `${stateDir}/status.sock`
    : socketRaw === ""
    ? null
    : resolvePath(s.baseDir, socketRaw);
  const modeText = s.string("socket_mode", { default: "0660" });
  let socketMode = 0o660;
  if (/^0?[0-7]{3}$/.test(modeText)) socketMode = parseInt(modeText, 8);
  else s.problem("socket_mode", `must be an octal mode such as "0660", got "${modeText}"`);
  if (socketMode & 0o007) {
    s.problem("socket_mode", "must not give access to others (the last digit must be 0)");
  }
  const http = s.bool("http", false);
  const host = s.string("host", { default: "127.0.0.1" });
  const port = s.int("port", { default: DEFAULT_STATUS_PORT, min: 0, max: 65535 });
  const user = s.string("user") ?? null;
  const passwordHash = s.string("password_hash") ?? null;
  if (passwordHash !== null) {
    const p = checkPasswordHash(passwordHash);
    if (p) s.problem("password_hash", p);
  }
  if ((user === null) !== (passwordHash === null)) {
    s.problem(
      user === null ? "user" : "password_hash",
      "user and password_hash go together: set both or neither",
    );
  }
  const ftpLogins = s.bool("ftp_logins", true);
  const historyMs = s.duration("history", 86_400_000, { min: 60_000, max: 7 * 86_400_000 });
  const saveHistory = s.bool("save_history", true);
  if (http && !isLoopbackHost(host) && user === null && !(ftpLogins && ftpUsers > 0)) {
    s.problem(
      "host",
      `"${host}" is beyond loopback, so the page needs a login: set status.user and status.password_hash ` +
        `(from \`outpost passwd\`), or add [[ftp.users]] with ftp_logins = true, or use host = "127.0.0.1"`,
    );
  }
  s.finish();
  return {
    socket,
    socketMode,
    http,
    host,
    port,
    user,
    passwordHash,
    ftpLogins,
    historyMs,
    historySlots: 288,
    saveHistory,
  };
}
