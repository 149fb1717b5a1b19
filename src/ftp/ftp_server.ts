/**
 * The FTP server: the control-connection listener, session and per-address limits, temporary bans after failed
 * logins, the xferlog, and an orderly close.
 *
 * Control connections are accepted with `node:net` (paused on connect) so an FTPS upgrade can later wrap the raw
 * socket; data connections use Deno's own sockets (see `data_channel.ts`).
 *
 * @module
 */

import { createServer, type Server, type Socket } from "node:net";
import { Logger } from "../log/logger.ts";
import { NodeConn } from "../net/node_conn.ts";
import { type ServerTlsContext, type TlsConn, upgradeServerSocket } from "../net/tls_server.ts";
import { type FtpTlsOptions, loadFtpTlsContext } from "./ftps.ts";
import type { Accounts } from "./accounts.ts";
import { normalizeIp } from "./address.ts";
import { FtpSession, type SessionContext, type XferEntry } from "./ftp_session.ts";
import { BufferPool, TRANSFER_BUFFER_SIZE } from "./transfer.ts";

/**
 * Everything the FTP server can be told. Start from {@link defaultFtpServerOptions} (or read the `[ftp]`
 * config table with `readFtpConfig`) and override what you need.
 *
 * @example
 * ```ts
 * const opts: FtpServerOptions = {
 *   ...defaultFtpServerOptions(accounts),
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   passive: { portMin: 50000, portMax: 50100 },
 * };
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
 * const opts = { ...defaultFtpServerOptions(accounts), hostname: "127.0.0.1", port: 0 };
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

/** Failed-login counts and temporary bans per address, bounded (oldest entries are evicted first). */
class BanTable {
  readonly #max: number;
  readonly #entries = new Map<string, { fails: number; until: number }>();

  constructor(max: number) {
    this.#max = max;
  }

  isBanned(ip: string, now: number): boolean {
    const e = this.#entries.get(ip);
    if (!e || e.until === 0) return false;
    if (now < e.until) return true;
    this.#entries.delete(ip);
    return false;
  }

  fail(ip: string, now: number, maxFailures: number, banMs: number): boolean {
    const e = this.#entries.get(ip) ?? { fails: 0, until: 0 };
    this.#entries.delete(ip);
    this.#entries.set(ip, e);
    if (e.until !== 0 && now >= e.until) {
      e.until = 0;
      e.fails = 0;
    }
    e.fails++;
    if (e.fails >= maxFailures) {
      e.until = now + banMs;
      e.fails = 0;
    }
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return e.until !== 0;
  }

  clear(ip: string): void {
    this.#entries.delete(ip);
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/**
 * Formats one xferlog line (wu-ftpd format): current-time transfer-time remote-host file-size filename
 * transfer-type special-action direction access-mode username service-name authentication-method
 * authenticated-user-id completion-status.
 *
 * @example
 * ```ts
 * formatXferlogLine({ ip: "127.0.0.1", user: "bob", anonymous: false, path: "/a.txt", bytes: 3, ms: 10,
 *   ascii: false, incoming: false, complete: true }, new Date());
 * ```
 */
export function formatXferlogLine(e: XferEntry, now: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const date = `${DAYS[now.getDay()]} ${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, " ")} ` +
    `${p2(now.getHours())}:${p2(now.getMinutes())}:${p2(now.getSeconds())} ${now.getFullYear()}`;
  // deno-lint-ignore no-control-regex
  const clean = (s: string) => s.replace(/[\s\x00-\x1f\x7f]/g, "_") || "_";
  return [
    date,
    Math.max(1, Math.round(e.ms / 1000)),
    e.ip,
    e.bytes,
    clean(e.path),
    e.ascii ? "a" : "b",
    "_",
    e.incoming ? "i" : "o",
    e.anonymous ? "a" : "r",
    clean(e.user),
    "ftp",
    "0",
    "*",
    e.complete ? "c" : "i",
  ].join(" ");
}

/**
 * What {@link FtpServer.status} reports.
 *
 * @example
 * ```ts
 * const st: FtpServerStatus = server.status();
 * for (const s of st.sessions) if (s.transfer) console.log(s.user, s.transfer.path, s.transfer.bytes);
 * ```
 */
export interface FtpServerStatus {
  /** Bound listeners: the control port (tls = the `[ftp.tls] mode`) and the implicit FTPS port. */
  listeners: { host: string; port: number; tls: string }[];
  /** Open control connections; `transfer` is the running transfer or null. */
  sessions: {
    id: number;
    ip: string;
    user: string | null;
    tls: boolean;
    since: number;
    idleMs: number;
    transfer: { kind: string; path: string; bytes: number; started: number } | null;
  }[];
  /** Totals since the server started (file transfers only, not listings). */
  counters: {
    sessions: number;
    transfersOk: number;
    transfersFailed: number;
    bytesIn: number;
    bytesOut: number;
    loginFailures: number;
  };
}

/**
 * An FTP server.
 *
 * @example
 * ```ts
 * const server = new FtpServer({ ...defaultFtpServerOptions(accounts), hostname: "127.0.0.1", port: 0 });
 * await server.listen();
 * console.log(`listening on ${server.port}`);
 * await server.close();
 * ```
 */
export class FtpServer {
  readonly #opts: FtpServerOptions;
  readonly #log = new Logger("ftp");
  readonly #sessions = new Map<FtpSession, Promise<void>>();
  readonly #handshakes = new Set<Promise<void>>();
  readonly #perIp = new Map<string, number>();
  readonly #bans = new BanTable(10_000);
  readonly #buffers: BufferPool;
  readonly #ctx: SessionContext;
  #server: Server | null = null;
  #implicitServer: Server | null = null;
  #implicitPort: number | null = null;
  #port = 0;
  #nextId = 1;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closing = false;
  #xferChain: Promise<void> = Promise.resolve();
  #counters: FtpServerStatus["counters"] = {
    sessions: 0,
    transfersOk: 0,
    transfersFailed: 0,
    bytesIn: 0,
    bytesOut: 0,
    loginFailures: 0,
  };

  /**
   * Makes a server; nothing is bound or loaded until {@link FtpServer.listen}. The options object is kept,
   * not copied.
   *
   * @example
   * ```ts
   * const server = new FtpServer(defaultFtpServerOptions(accounts));
   * ```
   */
  constructor(opts: FtpServerOptions) {
    this.#opts = opts;
    this.#buffers = new BufferPool(
      opts.transferBufferSize ?? TRANSFER_BUFFER_SIZE,
      4,
      opts.largeTransferBufferSize,
      opts.largeTransferBuffers,
    );
    this.#ctx = {
      opts,
      log: this.#log,
      buffers: this.#buffers,
      loginFailed: (ip) => this.#bans.fail(ip, Date.now(), this.#opts.maxLoginFailures, this.#opts.banMs),
      loginSucceeded: (ip) => this.#bans.clear(ip),
      xferlog: (e) => this.#xferlog(e),
      tls: null,
    };
    // Count failed logins for `outpost status` and /metrics.
    const loginFailed = this.#ctx.loginFailed;
    this.#ctx.loginFailed = (ip) => {
      this.#counters.loginFailures++;
      return loginFailed(ip);
    };
  }

  /** The implicit FTPS port (after {@link FtpServer.listen}), or null when there is none. */
  get implicitPort(): number | null {
    return this.#implicitPort;
  }

  /** The port the server listens on (after {@link FtpServer.listen}). */
  get port(): number {
    return this.#port;
  }

  /** The address the server listens on. */
  get hostname(): string {
    return this.#opts.hostname;
  }

  /** Open control connections. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Starts listening; rejects when the address cannot be bound. */
  async listen(): Promise<void> {
    if (this.#server) throw new Error("FTP server not started: it is already listening.");
    const tlsOpts = this.#opts.tls;
    if (tlsOpts && tlsOpts.mode !== "off") {
      const context: ServerTlsContext = await loadFtpTlsContext(tlsOpts, this.#log);
      this.#ctx.tls = { opts: tlsOpts, context };
      if (tlsOpts.implicitPort !== null) {
        const implicit = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket, true));
        const host = tlsOpts.implicitHost ?? this.#opts.hostname;
        await new Promise<void>((resolve, reject) => {
          const onError = (e: Error) =>
            reject(new Error(`Implicit FTPS not started on port ${tlsOpts.implicitPort}: ${e.message}`));
          implicit.once("error", onError);
          implicit.listen({ host, port: tlsOpts.implicitPort }, () => {
            implicit.off("error", onError);
            resolve();
          });
        });
        implicit.on("error", (e) => this.#log.error("listener.error", { error: String(e) }));
        this.#implicitServer = implicit;
        const a = implicit.address();
        this.#implicitPort = typeof a === "object" && a ? a.port : tlsOpts.implicitPort;
        this.#log.info("listening.implicit_tls", { host, port: this.#implicitPort });
      }
    }
    const server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket, false));
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`FTP server not started: ${e.message}`));
      server.once("error", onError);
      server.listen({ host: this.#opts.hostname, port: this.#opts.port }, () => {
        server.off("error", onError);
        resolve();
      });
    });
    server.on("error", (e) => this.#log.error("listener.error", { error: String(e) }));
    this.#server = server;
    const addr = server.address();
    this.#port = typeof addr === "object" && addr ? addr.port : this.#opts.port;
    const period = Math.max(
      50,
      Math.min(1000, Math.floor(Math.min(this.#opts.idleTimeoutMs, this.#opts.dataTimeoutMs) / 4)),
    );
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const s of this.#sessions.keys()) s.tick(now);
    }, period);
    this.#log.info("listening", { host: this.#opts.hostname, port: this.#port });
  }

  #refuse(socket: Socket, reply: string): void {
    socket.on("error", () => {});
    const timer = setTimeout(() => socket.destroy(), 1000);
    socket.once("close", () => clearTimeout(timer));
    socket.end(reply + "\r\n", () => socket.destroy());
  }

  #accept(socket: Socket, implicitTls: boolean): void {
    const peerIp = normalizeIp(socket.remoteAddress ?? "");
    const localIp = normalizeIp(socket.localAddress ?? this.#opts.hostname);
    if (implicitTls) {
      // No plaintext may be sent on an implicit-TLS port: refusals just close.
      const refuse = (reason: string) => {
        this.#log.info("session.refused", { ip: peerIp, reason, tls: "implicit" });
        socket.destroy();
      };
      if (this.#closing) return refuse("shutting_down");
      if (this.#bans.isBanned(peerIp, Date.now())) return refuse("banned");
      if (this.#sessions.size >= this.#opts.maxSessions) return refuse("max_sessions");
      if ((this.#perIp.get(peerIp) ?? 0) >= this.#opts.maxSessionsPerIp) return refuse("max_sessions_per_ip");
      const tls = this.#ctx.tls!;
      this.#perIp.set(peerIp, (this.#perIp.get(peerIp) ?? 0) + 1);
      socket.setNoDelay(true);
      socket.on("error", () => {});
      const pending = upgradeServerSocket(socket, tls.context, { timeoutMs: this.#opts.dataTimeoutMs }).then(
        (conn) => {
          if (this.#closing) {
            conn.close();
            this.#release(peerIp);
            return;
          }
          this.#startSession(conn, peerIp, localIp, true);
        },
        (e) => {
          this.#release(peerIp);
          this.#log.info("tls.handshake_failed", { ip: peerIp, error: (e as Error).message });
        },
      );
      this.#handshakes.add(pending);
      pending.finally(() => this.#handshakes.delete(pending));
      return;
    }
    if (this.#closing) {
      this.#refuse(socket, "421 Server is shutting down.");
      return;
    }
    if (this.#bans.isBanned(peerIp, Date.now())) {
      this.#log.info("session.refused", { ip: peerIp, reason: "banned" });
      this.#refuse(socket, "421 Too many failed logins from your address; try again later.");
      return;
    }
    if (this.#sessions.size >= this.#opts.maxSessions) {
      this.#log.info("session.refused", { ip: peerIp, reason: "max_sessions" });
      this.#refuse(socket, "421 Too many users are connected; try again later.");
      return;
    }
    const count = this.#perIp.get(peerIp) ?? 0;
    if (count >= this.#opts.maxSessionsPerIp) {
      this.#log.info("session.refused", { ip: peerIp, reason: "max_sessions_per_ip" });
      this.#refuse(socket, "421 Too many connections from your address; try again later.");
      return;
    }
    this.#perIp.set(peerIp, count + 1);
    // Replies are small and often back to back (150 then 226): without this, Nagle's algorithm and the client's
    // delayed ACK add ~40 ms per transfer.
    socket.setNoDelay(true);
    this.#startSession(new NodeConn(socket), peerIp, localIp, false);
  }

  #startSession(conn: NodeConn | TlsConn, peerIp: string, localIp: string, implicitTls: boolean): void {
    const session = new FtpSession(this.#nextId++, conn, peerIp, localIp, this.#ctx, { implicitTls });
    this.#counters.sessions++;
    const done = session.run().finally(() => {
      this.#sessions.delete(session);
      this.#release(peerIp);
    });
    this.#sessions.set(session, done);
  }

  #release(peerIp: string): void {
    const n = (this.#perIp.get(peerIp) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(peerIp);
    else this.#perIp.set(peerIp, n);
  }

  #xferlog(e: XferEntry): void {
    const c = this.#counters;
    if (e.incoming) c.bytesIn += e.bytes;
    else c.bytesOut += e.bytes;
    if (e.complete) c.transfersOk++;
    else c.transfersFailed++;
    const path = this.#opts.xferlogPath;
    if (!path) return;
    const line = formatXferlogLine(e, new Date()) + "\n";
    this.#xferChain = this.#xferChain.then(() => Deno.writeTextFile(path, line, { append: true })).catch(
      (err) => {
        this.#log.warn("xferlog.error", { error: String(err) });
      },
    );
  }

  /**
   * Stops accepting, lets sessions finish for up to `graceMs`, then ends the rest with 421 and closes everything.
   */
  async close(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const server = this.#server;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const implicit = this.#implicitServer;
    const implicitClosed = implicit
      ? new Promise<void>((resolve) => implicit.close(() => resolve()))
      : Promise.resolve();
    await Promise.all(this.#handshakes);
    const grace = opts.graceMs ?? 0;
    if (grace > 0 && this.#sessions.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.#sessions.values()),
        new Promise<void>((resolve) => timer = setTimeout(resolve, grace)),
      ]);
      clearTimeout(timer);
    }
    for (const s of this.#sessions.keys()) await s.shutdown("Server is shutting down.");
    await Promise.all(this.#sessions.values());
    clearInterval(this.#timer);
    await closed;
    await implicitClosed;
    await this.#xferChain;
    this.#log.info("closed", { port: this.#port });
  }

  /**
   * Listeners, open sessions with their transfers, and counters since start, for `outpost status` and /metrics.
   *
   * @example
   * ```ts
   * const st = server.status();
   * console.log(`${st.sessions.length} sessions, ${st.counters.bytesIn} bytes uploaded`);
   * ```
   */
  status(): FtpServerStatus {
    const listeners: FtpServerStatus["listeners"] = [];
    const tls = this.#opts.tls;
    if (this.port > 0) listeners.push({ host: this.hostname, port: this.port, tls: tls?.mode ?? "off" });
    if (this.implicitPort !== null) {
      listeners.push({ host: tls?.implicitHost ?? this.hostname, port: this.implicitPort, tls: "implicit" });
    }
    const sessions = [...this.#sessions.keys()].map((s) => ({
      id: s.id,
      ip: s.peerIp,
      user: s.userName,
      tls: s.tlsControl,
      since: s.openedAt,
      idleMs: Math.max(0, Date.now() - s.lastActivity),
      transfer: s.activeTransfer,
    }));
    return { listeners, sessions, counters: { ...this.#counters } };
  }
}
