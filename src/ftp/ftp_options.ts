/**
 * The FTP server's options and their defaults (kept apart from `ftp_server.ts` so that sessions can read them
 * without importing the server).
 *
 * @module
 */

import type { Accounts } from "./accounts.ts";
import type { FtpTlsOptions } from "./ftps.ts";
import { TRANSFER_BUFFER_SIZE } from "./transfer.ts";

/**
 * Default `[ftp] min_free`: 64 MiB kept free by uploads.
 *
 * @example
 * ```ts
 * console.log(DEFAULT_MIN_FREE_BYTES / 1048576); // 64
 * ```
 */
export const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

/**
 * Everything the FTP server can be told. Start from {@link defaultFtpServerOptions} (or read the `[ftp]`
 * config table with `readFtpConfig`) and override what you need.
 *
 * @example
 * ```ts
 * import type { Accounts } from "./accounts.ts";
 *
 * declare const accounts: Accounts; // see Accounts
 * const opts: FtpServerOptions = {
 *   ...defaultFtpServerOptions(accounts),
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   passive: { portMin: 50000, portMax: 50100 },
 * };
 * console.log(opts.maxSessions); // 300
 * ```
 */
export interface FtpServerOptions {
  /** Address to listen on: "127.0.0.1", "::1", "0.0.0.0", "::". */
  hostname: string;
  /** Port to listen on; 0 picks a free one (tests). */
  port: number;
  /** Who may log in, with which password, root directory and permissions. */
  accounts: Accounts;
  /** Passive mode (PASV/EPSV) data connections. */
  passive: {
    /** Lowest passive data port; `portMin` and `portMax` both 0 means any free port. */
    portMin: number;
    /** Highest passive data port (inclusive). */
    portMax: number;
    /** Advertised IPv4 address for PASV (default: the address the client connected to). */
    address?: string;
    /** Per-client-subnet advertised addresses, first match wins (LAN clients get the LAN address, ...). */
    addressMap?: { subnet: string; address: string }[];
  };
  /** Allow PORT/EPRT (only ever to the control peer's address and a port >= 1024). */
  allowActive: boolean;
  /** Most control connections at once (default 300); more are answered "421 Too many users" and closed. */
  maxSessions: number;
  /** Most control connections from one address (default 50); more get 421 and are closed. */
  maxSessionsPerIp: number;
  /**
   * Most connections at once that have not logged in yet, TLS handshakes on the implicit port included
   * (default 50); more get 421 (or, on the implicit port, are closed).
   */
  maxUnauthenticated?: number;
  /** Most not-yet-logged-in connections from one address (default 10). */
  maxUnauthenticatedPerIp?: number;
  /** Most TLS handshakes in progress at once on the implicit port (default 32). */
  maxHandshakes?: number;
  /** Most TLS handshakes in progress from one address on the implicit port (default 4). */
  maxHandshakesPerIp?: number;
  /**
   * Password checks (PBKDF2) computed at once, all sessions together (default 1); more wait in a queue as long
   * as the unauthenticated limits (a login that finds it full gets 421 at once).
   */
  maxPasswordChecks?: number;
  /** Milliseconds a connection may take from connect (or REIN, or AUTH TLS) to a good login (default 60 s). */
  loginTimeoutMs?: number;
  /**
   * Milliseconds between self-checks of the listeners (default 10 s): the server connects to each of its own
   * ports and re-creates a listener that no longer accepts (after EMFILE/ENFILE). 0 turns the check off.
   */
  selfCheckMs?: number;
  /** Milliseconds without a command or a running transfer before a session is closed (default 5 min). */
  idleTimeoutMs: number;
  /**
   * Milliseconds a data connection may take to connect or go without progress, and a TLS handshake may take,
   * before it is given up (default 30 s).
   */
  dataTimeoutMs: number;
  /** Milliseconds to wait before answering a wrong password with 530, to slow guessing (default 1000). */
  loginFailDelayMs: number;
  /** Failed logins from one address before it is banned for `banMs`. */
  maxLoginFailures: number;
  /** Milliseconds an address stays banned (connections refused) after too many failures (default 5 min). */
  banMs: number;
  /** Longest accepted command line in bytes; an overlong line gets 500 and the session closes. */
  maxLineLength: number;
  /** Text of the 220 greeting. */
  banner?: string;
  /** Append a wu-ftpd style xferlog line per file transfer to this file. */
  xferlogPath?: string;
  /**
   * Flush each finished upload to the medium before renaming it into place (default true). Off makes uploads about
   * 1.5x faster, but a power cut shortly after an upload may leave the file empty or short.
   */
  syncUploads?: boolean;
  /**
   * Free space an upload must leave on the disk it writes to (default {@link DEFAULT_MIN_FREE_BYTES}; 0: none), so
   * that one FTP user cannot take the room the device's state, mail queue and logs need. Past it, `452`.
   */
  minFreeBytes?: number;
  /** Bytes of the one buffer each running transfer uses (default {@link TRANSFER_BUFFER_SIZE}). */
  transferBufferSize?: number;
  /** Bytes of the bigger buffer the first few concurrent file transfers get (default 1 MiB). */
  largeTransferBufferSize?: number;
  /** How many transfers at once may hold a large buffer (default 4; 0 = never). */
  largeTransferBuffers?: number;
  /** FTPS (`[ftp.tls]`): AUTH TLS, PROT P, implicit port; absent or mode "off" = plain FTP only. */
  tls?: FtpTlsOptions;
}

/**
 * Defaults for every limit (the config file and CLI override them).
 *
 * @example
 * ```ts
 * import type { Accounts } from "./accounts.ts";
 *
 * declare const accounts: Accounts; // see Accounts
 * const opts = { ...defaultFtpServerOptions(accounts), hostname: "127.0.0.1", port: 0 };
 * console.log(opts.banner); // "outpost FTP server ready."
 * ```
 */
export function defaultFtpServerOptions(accounts: Accounts): FtpServerOptions {
  return {
    hostname: "0.0.0.0",
    port: 2121,
    accounts,
    passive: { portMin: 0, portMax: 0 },
    allowActive: true,
    maxSessions: 300,
    maxSessionsPerIp: 50,
    maxUnauthenticated: 50,
    maxUnauthenticatedPerIp: 10,
    maxHandshakes: 32,
    maxHandshakesPerIp: 4,
    loginTimeoutMs: 60_000,
    maxPasswordChecks: 1,
    selfCheckMs: 10_000,
    idleTimeoutMs: 300_000,
    dataTimeoutMs: 30_000,
    loginFailDelayMs: 1000,
    maxLoginFailures: 5,
    banMs: 300_000,
    maxLineLength: 512,
    banner: "outpost FTP server ready.",
    transferBufferSize: TRANSFER_BUFFER_SIZE,
  };
}

/**
 * Default limits for the options that are optional in {@link FtpServerOptions}.
 *
 * @example
 * ```ts
 * declare const opts: FtpServerOptions; // the server's options
 * const perIp = opts.maxUnauthenticatedPerIp ?? LIMIT_DEFAULTS.maxUnauthenticatedPerIp;
 * console.log(perIp);
 * ```
 */
export const LIMIT_DEFAULTS = {
  maxUnauthenticated: 50,
  maxUnauthenticatedPerIp: 10,
  maxHandshakes: 32,
  maxHandshakesPerIp: 4,
  loginTimeoutMs: 60_000,
  selfCheckMs: 10_000,
};
