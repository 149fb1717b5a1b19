/**
 * Reads the `[ftp]` table of `outpost.toml` into {@link FtpServerOptions}.
 *
 * ```toml
 * [ftp]
 * enabled = true                 # whether `outpost serve` runs the FTP server
 * host = "0.0.0.0"               # "::" for IPv4 + IPv6
 * port = 2121
 * banner = "outpost FTP server ready."
 * active = true                  # allow PORT/EPRT (only to the client's own address, port >= 1024)
 * xferlog = "/var/log/outpost-xferlog"   # optional wu-ftpd style transfer log
 * sync_uploads = true            # fdatasync each upload before it replaces the target (SD cards lose power)
 * min_free = "64MiB"             # uploads leave this much free on their disk (452 past it; 0 = no reserve)
 *
 * [[ftp.users]]
 * name = "alice"
 * password_hash = "pbkdf2-sha256$200000$...$..."   # from `outpost passwd`
 * root = "/srv/ftp/alice"
 * permissions = ["all"]          # or any of list, read, write, append, delete, mkdir, rename, chmod; "read-only"
 *
 * [ftp.anonymous]
 * enabled = false                # read-only and confined to its own root when on
 * root = "/srv/ftp/pub"
 *
 * [ftp.passive]
 * ports = "50000-50100"          # "0" = any free port
 * address = "203.0.113.7"        # advertised IPv4 for PASV (default: the address the client connected to)
 * [[ftp.passive.address_map]]    # per-client-subnet advertised address, first match wins
 * subnet = "192.168.0.0/16"
 * address = "192.168.1.20"
 *
 * [ftp.limits]
 * max_sessions = 300
 * max_sessions_per_ip = 50
 * max_unauthenticated = 50        # connections not logged in yet (TLS handshakes included)
 * max_unauthenticated_per_ip = 10
 * max_handshakes = 32             # TLS handshakes in progress on the implicit FTPS port
 * max_handshakes_per_ip = 4
 * login_timeout = "60s"           # from connect (or REIN / AUTH TLS) to a good login
 * max_password_checks = 1         # password hashes computed at once (PBKDF2), all sessions together
 * idle_timeout = "5m"
 * data_timeout = "30s"
 * login_fail_delay = "1s"
 * max_login_failures = 5
 * ban_time = "5m"
 * max_line_length = 512
 * transfer_buffer = "128KiB"     # the one buffer each running transfer uses (16KiB..4MiB)
 * ```
 *
 * @module
 */

import { checkPasswordHash } from "../config/password.ts";
import type { Section } from "../config/section.ts";
import { Accounts, type FtpUser } from "./accounts.ts";
import { cidrContains, normalizeIp, parsePortRange } from "./address.ts";
import { defaultFtpServerOptions, type FtpServerOptions } from "./ftp_server.ts";
import { DEFAULT_MIN_FREE_BYTES } from "./ftp_options.ts";
import { parsePermissions } from "./ftp_file_system.ts";
import { readFtpTlsConfig } from "./ftps.ts";

/**
 * The FTP part of the config: whether to run it, and the server options.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 * import { FtpServer } from "./ftp_server.ts";
 *
 * declare const root: Section; // the whole config file
 * const { enabled, options }: FtpConfig = readFtpSection(root.section("ftp"));
 * if (enabled) await new FtpServer(options).listen();
 * ```
 */
export interface FtpConfig {
  /** `[ftp] enabled` (default true); the options are still read and checked when false. */
  enabled: boolean;
  /** The server options, defaults filled in. */
  options: FtpServerOptions;
}

function isIp(s: string): boolean {
  return cidrContains(s, s);
}

/**
 * Reads `[ftp]` (problems are recorded in the section, as `ftp.key: problem`) and returns the server options.
 *
 * @example
 * ```ts
 * import { ConfigError, Section } from "../config/section.ts";
 *
 * declare const table: Record<string, unknown>; // the parsed TOML file
 * const problems: string[] = [];
 * const root = new Section(table, "", problems);
 * const ftp = readFtpConfig(root.section("ftp"));
 * if (problems.length) throw new ConfigError(problems);
 * console.log(ftp.hostname);
 * ```
 */
export function readFtpConfig(ftp: Section): FtpServerOptions {
  return readFtpSection(ftp).options;
}

/**
 * Like {@link readFtpConfig}, also returning the `enabled` switch.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * declare const root: Section; // the whole config file
 * const { enabled, options } = readFtpSection(root.section("ftp"));
 * console.log(enabled, options.hostname);
 * ```
 */
export function readFtpSection(ftp: Section): FtpConfig {
  const enabled = ftp.bool("enabled", true);
  const hostname = ftp.string("host", { default: "0.0.0.0" });
  if (!isIp(hostname)) {
    ftp.problem("host", `must be an IP address such as "0.0.0.0" or "::", got "${hostname}"`);
  }
  const port = ftp.int("port", { default: 2121, min: 1, max: 65535 });
  const banner = ftp.string("banner", { default: "outpost FTP server ready." });
  if (/[\r\n\0]/.test(banner)) ftp.problem("banner", "must be one line");
  const allowActive = ftp.bool("active", true);
  const xferlogPath = ftp.filePath("xferlog");
  const syncUploads = ftp.bool("sync_uploads", true);
  const minFreeBytes = ftp.size("min_free", DEFAULT_MIN_FREE_BYTES, { min: 0 });

  const users: FtpUser[] = [];
  const names = new Set<string>();
  for (const u of ftp.sections("users")) {
    const name = u.string("name", { required: true }) ?? "";
    if (name && !/^[A-Za-z0-9._@-]{1,64}$/.test(name)) {
      u.problem("name", "must be 1-64 letters, digits, dots, dashes, underscores or @");
    }
    if (names.has(name)) u.problem("name", `"${name}" is defined twice`);
    names.add(name);
    const hash = u.string("password_hash", { required: true }) ?? "";
    if (u.has("password")) {
      u.problem("password", "plain passwords are not allowed; use password_hash from `outpost passwd`");
    }
    u.raw("password");
    if (hash) {
      const why = checkPasswordHash(hash);
      if (why) u.problem("password_hash", why);
    }
    const root = u.filePath("root", { required: true }) ?? "/";
    const perms = parsePermissions(u.strings("permissions", ["read-only"]));
    if (typeof perms === "string") u.problem("permissions", perms);
    u.finish();
    if (typeof perms !== "string") users.push({ name, passwordHash: hash, root, perms });
  }

  const anon = ftp.section("anonymous");
  const anonEnabled = anon.bool("enabled", false);
  const anonRoot = anon.filePath("root");
  if (anonEnabled && !anonRoot) anon.problem("root", "is required when anonymous access is enabled");
  anon.finish();

  const passive = ftp.section("passive");
  let portMin = 0, portMax = 0;
  const ports = passive.string("ports", { default: "0" });
  const range = parsePortRange(ports);
  if (typeof range === "string") passive.problem("ports", range);
  else ({ min: portMin, max: portMax } = range);
  const address = passive.string("address");
  if (address !== undefined && (!isIp(address) || normalizeIp(address).includes(":"))) {
    passive.problem("address", `must be an IPv4 address, got "${address}"`);
  }
  const addressMap: { subnet: string; address: string }[] = [];
  for (const m of passive.sections("address_map")) {
    const subnet = m.string("subnet", { required: true }) ?? "";
    const addr = m.string("address", { required: true }) ?? "";
    const base = subnet.split("/")[0];
    if (subnet && !cidrContains(subnet, base)) {
      m.problem("subnet", `must be a subnet such as "192.168.0.0/16"`);
    }
    if (addr && (!isIp(addr) || normalizeIp(addr).includes(":"))) {
      m.problem("address", `must be an IPv4 address, got "${addr}"`);
    }
    m.finish();
    addressMap.push({ subnet, address: addr });
  }
  passive.finish();

  const limits = ftp.section("limits");
  const accounts = new Accounts({
    users,
    anonymous: anonEnabled && anonRoot ? { enabled: true, root: anonRoot } : null,
  });
  const d = defaultFtpServerOptions(accounts);
  const options: FtpServerOptions = {
    ...d,
    hostname,
    port,
    banner,
    allowActive,
    xferlogPath,
    syncUploads,
    minFreeBytes,
    passive: { portMin, portMax, address, addressMap },
    maxSessions: limits.int("max_sessions", { default: d.maxSessions, min: 1, max: 100_000 }),
    maxSessionsPerIp: limits.int("max_sessions_per_ip", {
      default: d.maxSessionsPerIp,
      min: 1,
      max: 100_000,
    }),
    maxUnauthenticated: limits.int("max_unauthenticated", {
      default: d.maxUnauthenticated ?? 50,
      min: 1,
      max: 100_000,
    }),
    maxUnauthenticatedPerIp: limits.int("max_unauthenticated_per_ip", {
      default: d.maxUnauthenticatedPerIp ?? 10,
      min: 1,
      max: 100_000,
    }),
    maxHandshakes: limits.int("max_handshakes", { default: d.maxHandshakes ?? 32, min: 1, max: 100_000 }),
    maxHandshakesPerIp: limits.int("max_handshakes_per_ip", {
      default: d.maxHandshakesPerIp ?? 4,
      min: 1,
      max: 100_000,
    }),
    loginTimeoutMs: limits.duration("login_timeout", d.loginTimeoutMs ?? 60_000, { min: 1000 }),
    maxPasswordChecks: limits.int("max_password_checks", {
      default: d.maxPasswordChecks ?? 1,
      min: 1,
      max: 64,
    }),
    idleTimeoutMs: limits.duration("idle_timeout", d.idleTimeoutMs, { min: 1000 }),
    dataTimeoutMs: limits.duration("data_timeout", d.dataTimeoutMs, { min: 1000 }),
    loginFailDelayMs: limits.duration("login_fail_delay", d.loginFailDelayMs, { max: 60_000 }),
    maxLoginFailures: limits.int("max_login_failures", { default: d.maxLoginFailures, min: 1, max: 1000 }),
    banMs: limits.duration("ban_time", d.banMs),
    maxLineLength: limits.int("max_line_length", { default: d.maxLineLength, min: 64, max: 65536 }),
    transferBufferSize: limits.size("transfer_buffer", d.transferBufferSize ?? 131072, {
      min: 16384,
      max: 4 << 20,
    }),
  };
  limits.finish();
  options.tls = readFtpTlsConfig(ftp.section("tls"));
  ftp.finish();
  return { enabled, options };
}
