/**
 * One FTP control connection: login state, command dispatch and transfers.
 *
 * The session reads the control connection for its whole life, also while a transfer runs, so ABOR, STAT, NOOP
 * and QUIT are answered mid-transfer; any other command waits for the transfer to end (keeping pipelined commands
 * in order). Its login state is an explicit union, and every verb is checked against the table in
 * `ftp_commands.ts` (login, permission, argument) before its handler runs.
 *
 * @module
 */

import { type ChangeContext, logFtpChange } from "./change_log.ts";
import { isWildcardHost } from "../config/sandbox_needs.ts";
import type { ByteConn } from "../net/byte_conn.ts";
import { closeQuietly } from "../net/byte_conn.ts";
import { LineReader, LineTooLongError } from "../net/line_reader.ts";
import { NodeConn } from "../net/node_conn.ts";
import { type ServerTlsContext, TlsConn } from "../net/tls_server.ts";
import type { Logger } from "../log/logger.ts";
import type { FtpUser } from "./accounts.ts";
import { CrlfToLf, LfToCrlf } from "./ascii.ts";
import type { DataChannel } from "./data_channel.ts";
import { errorReply, SessionData, type XferEntry } from "./ftp_session_data.ts";
import { SessionTls } from "./ftp_session_tls.ts";
import {
  checkCommand,
  COMMANDS,
  featReply,
  filterFacts,
  helpReply,
  isUrgentAbort,
  isVerb,
  MLST_FACTS,
  parseCommandLine,
  type ParsedCommand,
  SITE_COMMANDS,
  siteHelpReply,
  stripListOptions,
  type Verb,
} from "./ftp_commands.ts";
import { type FtpFileInfo, FtpFileSystem } from "./ftp_file_system.ts";
import { DEFAULT_MIN_FREE_BYTES, type FtpServerOptions } from "./ftp_options.ts";
import type { FtpTlsOptions } from "./ftps.ts";
import {
  formatFtpTime,
  formatListLine,
  formatMlsxFacts,
  formatNlstLine,
  sanitizeForReply,
} from "./listing.ts";
import { type BufferPool, LineWriter, receiveFile, sendFile } from "./transfer.ts";

/**
 * What a session needs from its server (`FtpServer` builds one and shares it between all sessions).
 *
 * @example
 * ```ts
 * import { Logger } from "../log/logger.ts";
 * import type { FtpServerOptions } from "./ftp_options.ts";
 * import { BufferPool, TRANSFER_BUFFER_SIZE } from "./transfer.ts";
 *
 * declare const opts: FtpServerOptions; // the server's options
 * const ctx: SessionContext = {
 *   opts,
 *   log: new Logger("ftp"),
 *   buffers: new BufferPool(TRANSFER_BUFFER_SIZE, 4),
 *   loginFailed: () => false,
 *   loginSucceeded: () => {},
 *   isBanned: () => false,
 *   checkPassword: (_ip, job) => job(),
 *   xferlog: () => {},
 *   tls: null,
 * };
 * console.log(ctx.opts.maxSessions);
 * ```
 */
export interface SessionContext {
  /** The server's options (limits, timeouts, accounts, passive ports, TLS). */
  readonly opts: FtpServerOptions;
  /** The server's "ftp" logger; sessions log one line per event through it. */
  readonly log: Logger;
  /** Transfer buffers shared by all sessions; each running transfer borrows one and returns it. */
  readonly buffers: BufferPool;
  /** Records a failed login from `ip`; true when the address is now banned. */
  loginFailed(ip: string): boolean;
  /** Records a good login from `ip` (clears its failure count; an active ban stays). */
  loginSucceeded(ip: string): void;
  /** True while `ip` is banned after too many failed logins (checked at every USER and PASS). */
  isBanned(ip: string): boolean;
  /**
   * Runs a password check through the server-wide gate (a few at once, a short queue); the `FULL` symbol when
   * the queue is full.
   */
  checkPassword<T>(ip: string, job: () => Promise<T>): Promise<T | symbol>;
  /**
   * True while a connection from `ip` other than `self` is encrypted (or in its TLS handshake) but not logged in;
   * protected passive data connections wait while it is (see `TlsDataOptions.holdWhile`).
   */
  unauthenticatedTlsFrom?(ip: string, self: FtpSession): boolean;
  /**
   * Why this logged-in session may not become one that is not logged in (REIN): the same limits as at connect,
   * so REIN cannot take more such slots than an address may hold. Null when it may.
   */
  logoutRefusal?(ip: string): string | null;
  /** Takes one of the passive ports `ip` may hold at once; the function gives it back; null: none left. */
  holdPassive?(ip: string): (() => void) | null;
  /** Appends one transfer to the xferlog, if configured. */
  xferlog(entry: XferEntry): void;
  /** FTPS settings and the shared TLS context, or null when TLS is off. */
  tls: { opts: FtpTlsOptions; context: ServerTlsContext } | null;
}

export type { XferEntry } from "./ftp_session_data.ts";

/** The login state of a session. */
export type AuthState =
  | { kind: "awaiting-user" }
  | { kind: "awaiting-pass"; name: string }
  | { kind: "logged-in"; user: FtpUser; fs: FtpFileSystem };

const encoder = new TextEncoder();

/** A listing of one entry (LIST or STAT of a file), shaped like {@link FtpFileSystem.listBatches}. */
async function* oneBatch(info: FtpFileInfo): AsyncGenerator<FtpFileInfo[]> {
  yield [info];
}

function quotePath(p: string): string {
  return sanitizeForReply(p).replaceAll('"', '""');
}

/**
 * One FTP control connection.
 *
 * @example
 * ```ts
 * import type { Socket } from "node:net";
 * import { NodeConn } from "../net/node_conn.ts";
 *
 * declare const socket: Socket; // an accepted control connection
 * declare const context: SessionContext; // shared by the server's sessions
 * const session = new FtpSession(1, new NodeConn(socket), "192.168.1.7", "192.168.1.20", context);
 * await session.run(); // resolves when the connection ends
 * ```
 */
export class FtpSession {
  /** Session number, unique within the server (1, 2, ...), used in log lines. */
  readonly id: number;
  /** The control connection; `conn.socket` is the raw socket an AUTH TLS upgrade wraps. */
  readonly conn: NodeConn | TlsConn;
  /** The normalised peer address of the control connection. */
  readonly peerIp: string;
  /** The normalised local address of the control connection (passive listeners bind to it). */
  readonly localIp: string;
  /** Where replies go and commands come from; an upgrade replaces both (see {@link FtpSession.setControl}). */
  control: ByteConn;
  /** Reads command lines from `control`, at most `maxLineLength` bytes each. */
  readonly reader: LineReader;
  /** Where the login stands: waiting for USER, for PASS, or logged in with a jailed file system. */
  state: AuthState = { kind: "awaiting-user" };
  /** Current working directory, a virtual path ("/" is the user's root). */
  cwd = "/";
  /** When the control connection was accepted (ms since the epoch). */
  readonly openedAt: number = Date.now();
  /** When the last command arrived (ms since the epoch); the idle timeout counts from it. */
  lastActivity: number = Date.now();
  /** When a session that has not logged in is closed (ms since the epoch); reset by REIN and AUTH TLS. */
  loginDeadline: number;
  readonly #ctx: SessionContext;
  readonly #data: DataChannel;
  /** Data connection setup and the running transfer (`ftp_session_data.ts`). */
  readonly #dx: SessionData;
  #ascii = true;
  #rest = 0;
  #renameFrom: string | null = null;
  #facts: string[] = [...MLST_FACTS];
  #closed = false;
  /** The code of the last reply sent, for the change log. */
  #lastReply = "";
  /** FTPS: AUTH TLS, PBSZ, PROT and the data connections' TLS options (`ftp_session_tls.ts`). */
  readonly #tls: SessionTls;

  /**
   * Sets up a session on an accepted control connection; nothing is sent until {@link FtpSession.run}.
   * `peerIp` and `localIp` must be normalised. With `implicitTls` the connection is already TLS (implicit FTPS
   * port), so data connections are protected (PROT P) until the client asks for PROT C.
   *
   * @example
   * ```ts
   * import type { TlsConn } from "../net/tls_server.ts";
   *
   * declare const conn: TlsConn; // accepted on the implicit FTPS port
   * declare const ctx: SessionContext; // shared by the server's sessions
   * const session = new FtpSession(7, conn, "192.168.1.7", "192.168.1.20", ctx, { implicitTls: true });
   * await session.run();
   * ```
   */
  constructor(
    id: number,
    conn: NodeConn | TlsConn,
    peerIp: string,
    localIp: string,
    ctx: SessionContext,
    opts: { implicitTls?: boolean } = {},
  ) {
    this.id = id;
    this.conn = conn;
    this.control = conn;
    this.peerIp = peerIp;
    this.localIp = localIp;
    this.#ctx = ctx;
    this.loginDeadline = Date.now() + (ctx.opts.loginTimeoutMs ?? 60_000);
    this.reader = new LineReader(conn, {
      maxLineLength: ctx.opts.maxLineLength,
      acceptBareCr: isUrgentAbort,
    });
    // Passive listeners bind to the wildcard address the server listens on, never to the control connection's
    // own local address: the sandbox allows listening on the configured host only (a LAN address is not in it).
    const host = ctx.opts.hostname;
    const bindHost = host === "" ? "0.0.0.0" : host === "[::]" ? "::" : isWildcardHost(host) ? host : localIp;
    this.#dx = new SessionData({
      opts: ctx.opts,
      log: ctx.log,
      buffers: ctx.buffers,
      xferlog: (e) => ctx.xferlog(e),
      session: {
        peerIp,
        localIp,
        bindHost,
        reply: (text) => this.reply(text),
        holdPassive: ctx.holdPassive ? () => ctx.holdPassive!(peerIp) : undefined,
        who: () => ({
          user: this.userName ?? "",
          anonymous: this.state.kind === "logged-in" && this.state.user.passwordHash === null,
          ascii: this.#ascii,
        }),
      },
    });
    this.#data = this.#dx.channel;
    this.#tls = new SessionTls({
      tls: ctx.tls,
      log: ctx.log,
      timeoutMs: ctx.opts.dataTimeoutMs,
      data: this.#data,
      session: {
        id,
        peerIp,
        control: () => this.control,
        reply: (text) => this.reply(text),
        setControl: (c) => this.setControl(c),
        restartLogin: () => this.#reset(),
        fail: () => this.#closed = true,
        strangerPending: () => ctx.unauthenticatedTlsFrom?.(peerIp, this) ?? false,
      },
    });
    // Implicit FTPS: TLS from the first byte, and data protected unless the client asks for PROT C.
    if (opts.implicitTls) this.#tls.startImplicit();
  }

  /**
   * Replaces the control connection (after a TLS upgrade); buffered plaintext is discarded, never executed.
   * Returns how many bytes were discarded.
   */
  setControl(conn: ByteConn): number {
    this.control = conn;
    return this.reader.setSource(conn);
  }

  /** True when the control connection is encrypted. */
  get tlsControl(): boolean {
    return this.#tls.control;
  }

  /** The user name once logged in, else null. */
  get userName(): string | null {
    return this.state.kind === "logged-in" ? this.state.user.name : null;
  }

  /** The running transfer (kind, virtual path, bytes so far, start time), or null; for `outpost status`. */
  get activeTransfer(): { kind: string; path: string; bytes: number; started: number } | null {
    const t = this.#dx.transfer;
    return t ? { kind: t.kind, path: t.path, bytes: t.bytes, started: t.started } : null;
  }

  /** Sends one reply (a single line without CRLF, or a multi-line block ending in CRLF). */
  async reply(text: string): Promise<void> {
    if (this.#closed) return;
    this.#lastReply = text.slice(0, 3);
    try {
      await this.control.write(encoder.encode(text.endsWith("\r\n") ? text : text + "\r\n"));
    } catch {
      this.#closed = true;
      closeQuietly(this.control);
    }
  }

  /** Sends `421 <message>` and closes the connection (server shutdown, idle timeout). */
  async shutdown(message: string): Promise<void> {
    if (this.#closed) return;
    this.#dx.abortTransfer(false);
    // A client that never reads must not hold the session open: the 421 gets one second.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.reply(`421 ${message}`), new Promise((r) => timer = setTimeout(r, 1000))]);
    clearTimeout(timer);
    this.#closed = true;
    closeQuietly(this.control);
  }

  /** Called periodically by the server: enforces the idle timeout and the data-stall timeout. */
  tick(now: number): void {
    if (this.#closed) return;
    if (this.state.kind !== "logged-in" && now > this.loginDeadline) {
      this.#ctx.log.info("session.login_timeout", { id: this.id, ip: this.peerIp });
      this.shutdown("Login timed out; closing the control connection.").catch(() => {});
      return;
    }
    if (this.#dx.tickTransfer(now)) return;
    if (now - this.lastActivity > this.#ctx.opts.idleTimeoutMs) {
      this.#ctx.log.info("session.idle", { id: this.id, ip: this.peerIp });
      this.shutdown("Idle timeout; closing the control connection.").catch(() => {});
    }
  }

  /** Serves the connection until it ends; never throws. */
  async run(): Promise<void> {
    const log = this.#ctx.log;
    log.info("session.open", { id: this.id, ip: this.peerIp });
    try {
      await this.reply(`220 ${sanitizeForReply(this.#ctx.opts.banner ?? "outpost FTP server ready.")}`);
      while (!this.#closed) {
        let line: string | null;
        try {
          line = await this.reader.readLine();
        } catch (e) {
          if (e instanceof LineTooLongError) {
            await this.reply("500 Command line too long.");
            log.info("session.line_too_long", { id: this.id, ip: this.peerIp });
            break;
          }
          throw e;
        }
        if (line === null) break;
        this.lastActivity = Date.now();
        const cmd = parseCommandLine(line);
        if (!cmd) {
          // Empty after Telnet and control bytes are dropped: still one reply per line, or the client waits.
          await this.reply("500 Syntax error, command unrecognized.");
          continue;
        }
        if (this.#dx.transfer && !COMMANDS[cmd.verb]?.duringTransfer) await this.#dx.transfer.done;
        const renameFrom = this.#renameFrom;
        const more = await this.#dispatch(cmd);
        logFtpChange(log, cmd, this.#changeContext(renameFrom));
        if (!more) break;
      }
    } catch (e) {
      if (!this.#closed) log.warn("session.error", { id: this.id, ip: this.peerIp, error: String(e) });
    } finally {
      this.#dx.abortTransfer(false);
      if (this.#dx.transfer) await this.#dx.transfer.done;
      this.#data.close();
      this.#closed = true;
      if (this.control instanceof NodeConn || this.control instanceof TlsConn) await this.control.end(1000);
      closeQuietly(this.control);
      log.info("session.close", { id: this.id, ip: this.peerIp, user: this.userName ?? undefined });
    }
  }

  #changeContext(renameFrom: string | null): ChangeContext {
    const st = this.state;
    return {
      id: this.id,
      ip: this.peerIp,
      user: st.kind === "logged-in" ? st.user.name : null,
      cwd: this.cwd,
      resolve: (cwd, arg) => st.kind === "logged-in" ? st.fs.resolve(cwd, arg) : arg,
      renameFrom,
      reply: this.#lastReply,
    };
  }

  /** Runs one command; false ends the session. */
  async #dispatch(cmd: ParsedCommand): Promise<boolean> {
    const fs = this.state.kind === "logged-in" ? this.state : null;
    const refusal = checkCommand(cmd, fs !== null, fs ? fs.user.perms : null);
    const renameFrom = this.#renameFrom;
    if (cmd.verb !== "RNFR") this.#renameFrom = null;
    if (refusal) {
      await this.reply(refusal);
      return true;
    }
    try {
      return await this.#handle(cmd, renameFrom);
    } catch (e) {
      const r = errorReply(e);
      if (r) {
        await this.reply(r);
      } else {
        this.#ctx.log.warn("command.error", { id: this.id, verb: cmd.verb, error: String(e) });
        await this.reply("451 Requested action aborted: local error in processing.");
      }
      return true;
    }
  }

  #fs(): { fs: FtpFileSystem; user: FtpUser } {
    if (this.state.kind !== "logged-in") throw new Error("Command dispatched before login.");
    return this.state;
  }

  /**
   * The handler of every verb in {@link COMMANDS}: the mapped type makes the type checker refuse a verb without
   * one (and a handler for a verb the table does not know).
   */
  readonly #handlers: { readonly [V in Verb]: (arg: string, renameFrom: string | null) => Promise<boolean> } =
    {
      ABOR: (arg, renameFrom) => this.#onAbor(arg, renameFrom, "ABOR"),
      ACCT: (arg, renameFrom) => this.#onAcct(arg, renameFrom, "ACCT"),
      ALLO: (arg, renameFrom) => this.#onAllo(arg, renameFrom, "ALLO"),
      APPE: (arg, renameFrom) => this.#onAppe(arg, renameFrom, "APPE"),
      AUTH: (arg, renameFrom) => this.#onAuth(arg, renameFrom, "AUTH"),
      CCC: (arg, renameFrom) => this.#onCcc(arg, renameFrom, "CCC"),
      CDUP: (arg, renameFrom) => this.#onCdup(arg, renameFrom, "CDUP"),
      CWD: (arg, renameFrom) => this.#onCwd(arg, renameFrom, "CWD"),
      DELE: (arg, renameFrom) => this.#onDele(arg, renameFrom, "DELE"),
      EPRT: (arg, renameFrom) => this.#onPort(arg, renameFrom, "EPRT"),
      EPSV: (arg, renameFrom) => this.#onEpsv(arg, renameFrom, "EPSV"),
      FEAT: (arg, renameFrom) => this.#onFeat(arg, renameFrom, "FEAT"),
      HELP: (arg, renameFrom) => this.#onHelp(arg, renameFrom, "HELP"),
      LIST: (arg, renameFrom) => this.#onList(arg, renameFrom, "LIST"),
      MDTM: (arg, renameFrom) => this.#onMdtm(arg, renameFrom, "MDTM"),
      MKD: (arg, renameFrom) => this.#onMkd(arg, renameFrom, "MKD"),
      MLSD: (arg, renameFrom) => this.#onMlsd(arg, renameFrom, "MLSD"),
      MLST: (arg, renameFrom) => this.#onMlst(arg, renameFrom, "MLST"),
      MODE: (arg, renameFrom) => this.#onMode(arg, renameFrom, "MODE"),
      NLST: (arg, renameFrom) => this.#onNlst(arg, renameFrom, "NLST"),
      NOOP: (arg, renameFrom) => this.#onNoop(arg, renameFrom, "NOOP"),
      OPTS: (arg, renameFrom) => this.#onOpts(arg, renameFrom, "OPTS"),
      PASS: (arg, renameFrom) => this.#onUser(arg, renameFrom, "PASS"),
      PASV: (arg, renameFrom) => this.#onPasv(arg, renameFrom, "PASV"),
      PBSZ: (arg, renameFrom) => this.#onPbsz(arg, renameFrom, "PBSZ"),
      PORT: (arg, renameFrom) => this.#onPort(arg, renameFrom, "PORT"),
      PROT: (arg, renameFrom) => this.#onProt(arg, renameFrom, "PROT"),
      PWD: (arg, renameFrom) => this.#onPwd(arg, renameFrom, "PWD"),
      QUIT: (arg, renameFrom) => this.#onQuit(arg, renameFrom, "QUIT"),
      REIN: (arg, renameFrom) => this.#onRein(arg, renameFrom, "REIN"),
      REST: (arg, renameFrom) => this.#onRest(arg, renameFrom, "REST"),
      RETR: (arg, renameFrom) => this.#onRetr(arg, renameFrom, "RETR"),
      RMD: (arg, renameFrom) => this.#onRmd(arg, renameFrom, "RMD"),
      RNFR: (arg, renameFrom) => this.#onRnfr(arg, renameFrom, "RNFR"),
      RNTO: (arg, renameFrom) => this.#onRnto(arg, renameFrom, "RNTO"),
      SITE: (arg, renameFrom) => this.#onSite(arg, renameFrom, "SITE"),
      SIZE: (arg, renameFrom) => this.#onSize(arg, renameFrom, "SIZE"),
      STAT: (arg, renameFrom) => this.#onStat(arg, renameFrom, "STAT"),
      STOR: (arg, renameFrom) => this.#onStor(arg, renameFrom, "STOR"),
      STOU: (arg, renameFrom) => this.#onStou(arg, renameFrom, "STOU"),
      STRU: (arg, renameFrom) => this.#onStru(arg, renameFrom, "STRU"),
      SYST: (arg, renameFrom) => this.#onSyst(arg, renameFrom, "SYST"),
      TYPE: (arg, renameFrom) => this.#onType(arg, renameFrom, "TYPE"),
      USER: (arg, renameFrom) => this.#onUser(arg, renameFrom, "USER"),
      XCWD: (arg, renameFrom) => this.#onCwd(arg, renameFrom, "XCWD"),
      XMKD: (arg, renameFrom) => this.#onMkd(arg, renameFrom, "XMKD"),
      XPWD: (arg, renameFrom) => this.#onPwd(arg, renameFrom, "XPWD"),
      XRMD: (arg, renameFrom) => this.#onRmd(arg, renameFrom, "XRMD"),
    };

  async #handle(cmd: ParsedCommand, renameFrom: string | null): Promise<boolean> {
    if (!isVerb(cmd.verb)) {
      await this.reply("502 Command not implemented.");
      return true;
    }
    return await this.#handlers[cmd.verb](cmd.arg, renameFrom);
  }

  async #onUser(arg: string, _renameFrom: string | null, verb: Verb): Promise<boolean> {
    if (this.#ctx.tls?.opts.mode === "required" && !this.#tls.control) {
      await this.reply("530 TLS required: send AUTH TLS first, then log in.");
      return true;
    }
    return verb === "USER" ? await this.#user(arg) : await this.#pass(arg);
  }

  async #onAuth(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#tls.auth(arg);
    return true;
  }

  async #onPbsz(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#tls.pbsz(arg);
    return true;
  }

  async #onProt(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#tls.prot(arg);
    return true;
  }

  async #onCcc(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply("534 CCC refused: the control connection stays encrypted.");
    return true;
  }

  async #onQuit(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    if (this.#dx.transfer) await this.#dx.transfer.done;
    await this.reply("221 Goodbye.");
    return false;
  }

  async #onRein(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    if (this.state.kind === "logged-in") {
      const refused = this.#ctx.logoutRefusal?.(this.peerIp) ?? null;
      if (refused) {
        // Logged out, it would hold a slot for connections that are not logged in, past its address's share.
        this.#ctx.log.warn("session.rein_refused", { id: this.id, ip: this.peerIp, reason: refused });
        await this.reply("421 Too many connections are waiting to log in; closing this one.");
        return false;
      }
    }
    this.#data.close();
    this.#reset();
    await this.reply("220 Service ready for a new user.");
    return true;
  }

  async #onAcct(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply("502 ACCT is not implemented; no account is needed.");
    return true;
  }

  async #onNoop(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply("200 NOOP ok.");
    return true;
  }

  async #onSyst(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply("215 UNIX Type: L8");
    return true;
  }

  async #onFeat(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply(featReply(this.#facts, this.#ctx.tls !== null));
    return true;
  }

  async #onHelp(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply(helpReply(arg));
    return true;
  }

  async #onOpts(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#opts(arg);
    return true;
  }

  async #onType(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#type(arg);
    return true;
  }

  async #onMode(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply(
      arg.trim().toUpperCase() === "S" ? "200 Mode set to S." : "504 Only stream mode (MODE S) is supported.",
    );
    return true;
  }

  async #onStru(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply(
      arg.trim().toUpperCase() === "F"
        ? "200 Structure set to F."
        : "504 Only file structure (STRU F) is supported.",
    );
    return true;
  }

  async #onAllo(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply("202 No storage allocation necessary.");
    return true;
  }

  async #onAbor(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#dx.abor();
    return true;
  }

  async #onStat(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#stat(arg);
    return true;
  }

  async #onSite(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#site(arg);
    return true;
  }

  async #onPwd(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.reply(`257 "${quotePath(this.cwd)}" is the current directory.`);
    return true;
  }

  async #onCwd(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#cwd(arg);
    return true;
  }

  async #onCdup(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#cwd("..");
    return true;
  }

  async #onMkd(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    const p = fs.resolve(this.cwd, arg);
    await fs.mkdir(p);
    await this.reply(`257 "${quotePath(p)}" directory created.`);
    return true;
  }

  async #onRmd(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    const p = fs.resolve(this.cwd, arg);
    if (p === "/") {
      await this.reply("550 The root folder cannot be removed.");
      return true;
    }
    await fs.rmdir(p);
    await this.reply("250 Directory removed.");
    return true;
  }

  async #onDele(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    await fs.remove(fs.resolve(this.cwd, arg));
    await this.reply("250 File removed.");
    return true;
  }

  async #onRnfr(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    const p = fs.resolve(this.cwd, arg);
    if (p === "/" || !(await fs.exists(p))) {
      await this.reply("550 No such file or directory.");
      return true;
    }
    this.#renameFrom = p;
    await this.reply("350 Ready for destination name.");
    return true;
  }

  async #onRnto(arg: string, renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    if (renameFrom === null) {
      await this.reply("503 Bad sequence of commands: send RNFR first.");
      return true;
    }
    const to = fs.resolve(this.cwd, arg);
    if (to === "/") {
      await this.reply("553 Cannot rename over the root folder.");
      return true;
    }
    await fs.rename(renameFrom, to);
    await this.reply("250 Rename successful.");
    return true;
  }

  async #onSize(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    const info = await fs.stat(fs.resolve(this.cwd, arg));
    await this.reply(info.type === "file" ? `213 ${info.size}` : "550 Not a regular file.");
    return true;
  }

  async #onMdtm(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs } = this.#fs();
    const info = await fs.stat(fs.resolve(this.cwd, arg));
    if (info.type !== "file" || info.mtime === null) await this.reply("550 Not a regular file.");
    else await this.reply(`213 ${formatFtpTime(info.mtime)}`);
    return true;
  }

  async #onMlst(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const { fs, user } = this.#fs();
    const p = fs.resolve(this.cwd, arg || ".");
    const info = await fs.stat(p);
    const facts = filterFacts(formatMlsxFacts({ ...info, name: p }, user.perms), this.#facts);
    await this.reply(`250-Listing ${quotePath(p)}\r\n ${sanitizeForReply(facts)}\r\n250 End.\r\n`);
    return true;
  }

  async #onRest(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    const s = arg.trim();
    if (!/^[0-9]{1,15}$/.test(s)) {
      await this.reply("501 Invalid REST argument: expected a byte offset.");
    } else if (this.#ascii && s !== "0") {
      await this.reply("501 Resuming is only allowed in binary mode (TYPE I).");
    } else {
      this.#rest = Number(s);
      await this.reply(`350 Restarting at ${this.#rest}. Send STOR or RETR to continue.`);
    }
    return true;
  }

  async #onPasv(_arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#dx.pasv();
    return true;
  }

  async #onEpsv(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#dx.epsv(arg);
    return true;
  }

  async #onPort(arg: string, _renameFrom: string | null, verb: Verb): Promise<boolean> {
    await this.#dx.port(verb, arg);
    return true;
  }

  async #onRetr(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#retr(arg);
    return true;
  }

  async #onStor(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#store("stor", arg);
    return true;
  }

  async #onAppe(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#store("appe", arg);
    return true;
  }

  async #onStou(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#store("stou", arg);
    return true;
  }

  async #onList(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#list("list", arg);
    return true;
  }

  async #onNlst(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#list("nlst", arg);
    return true;
  }

  async #onMlsd(arg: string, _renameFrom: string | null, _verb: Verb): Promise<boolean> {
    await this.#list("mlsd", arg);
    return true;
  }

  #reset(): void {
    this.state = { kind: "awaiting-user" };
    this.loginDeadline = Date.now() + (this.#ctx.opts.loginTimeoutMs ?? 60_000);
    this.cwd = "/";
    this.#ascii = true;
    this.#rest = 0;
    this.#renameFrom = null;
    this.#dx.resetEpsvAll();
    this.#facts = [...MLST_FACTS];
  }

  /** Answers 421 and ends the session when the address is banned (at every USER and PASS). */
  async #refuseBanned(): Promise<boolean> {
    if (!this.#ctx.isBanned(this.peerIp)) return false;
    this.#ctx.log.info("login.refused", { id: this.id, ip: this.peerIp, reason: "banned" });
    await this.reply("421 Too many failed logins from your address; try again later.");
    return true;
  }

  async #user(name: string): Promise<boolean> {
    if (this.state.kind === "logged-in") {
      await this.reply("530 Already logged in; send REIN to change the user.");
      return true;
    }
    if (await this.#refuseBanned()) return false;
    this.state = { kind: "awaiting-pass", name };
    await this.reply("331 User name okay, need password.");
    return true;
  }

  async #pass(password: string): Promise<boolean> {
    const state = this.state;
    if (state.kind === "logged-in") {
      await this.reply("503 Already logged in.");
      return true;
    }
    if (state.kind === "awaiting-user") {
      await this.reply("503 Login with USER first.");
      return true;
    }
    const { opts, log } = this.#ctx;
    if (await this.#refuseBanned()) return false;
    const checked = await this.#ctx.checkPassword(
      this.peerIp,
      () => opts.accounts.authenticate(state.name, password),
    );
    this.state = { kind: "awaiting-user" };
    if (typeof checked === "symbol") {
      log.info("login.refused", { id: this.id, ip: this.peerIp, reason: "password_checks_busy" });
      await this.reply("421 Too many logins in progress; try again later.");
      return false;
    }
    // A ban that began while the password was being checked (other sessions of the address failed) holds.
    if (await this.#refuseBanned()) return false;
    const user = checked;
    if (user === null) {
      const banned = this.#ctx.loginFailed(this.peerIp);
      log.info("login.failed", { id: this.id, ip: this.peerIp, user: state.name, banned });
      await new Promise((resolve) => setTimeout(resolve, opts.loginFailDelayMs));
      await this.reply("530 Login incorrect.");
      if (banned) {
        await this.reply("421 Too many failed logins from your address; try again later.");
        return false;
      }
      return true;
    }
    let fs: FtpFileSystem;
    try {
      fs = await FtpFileSystem.open(user.root, {
        syncUploads: this.#ctx.opts.syncUploads ?? true,
        minFreeBytes: this.#ctx.opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES,
      });
    } catch (e) {
      log.error("login.root_missing", { id: this.id, user: user.name, error: String(e) });
      await this.reply("530 Login refused: the home folder is not available.");
      return true;
    }
    this.state = { kind: "logged-in", user, fs };
    this.cwd = "/";
    this.#ctx.loginSucceeded(this.peerIp);
    log.info("login.ok", { id: this.id, ip: this.peerIp, user: user.name });
    await this.reply("230 Login successful.");
    return true;
  }

  async #opts(arg: string): Promise<void> {
    const [what, ...rest] = arg.trim().split(/\s+/);
    const option = rest.join(" ");
    switch (what.toUpperCase()) {
      case "UTF8":
      case "UTF-8":
        await this.reply(
          option.toUpperCase() === "ON" || option === ""
            ? "200 Always in UTF8 mode."
            : "504 UTF8 cannot be turned off.",
        );
        return;
      case "MLST": {
        const wanted = option.toLowerCase().split(";").filter((f) => f !== "");
        this.#facts = MLST_FACTS.filter((f) => wanted.includes(f));
        await this.reply(`200 MLST OPTS ${this.#facts.map((f) => f + ";").join("")}`);
        return;
      }
    }
    await this.reply("501 Unknown OPTS option.");
  }

  async #type(arg: string): Promise<void> {
    const t = arg.trim().toUpperCase().replace(/\s+/g, " ");
    if (t === "A" || t === "A N") {
      this.#ascii = true;
      await this.reply("200 Type set to A.");
    } else if (t === "I" || t === "L 8" || t === "L8") {
      this.#ascii = false;
      await this.reply("200 Type set to I.");
    } else {
      await this.reply("504 Only TYPE A, A N, I and L 8 are supported.");
    }
  }

  async #cwd(arg: string): Promise<void> {
    const { fs } = this.#fs();
    const p = fs.resolve(this.cwd, arg);
    const info = await fs.stat(p);
    if (info.type !== "dir") {
      await this.reply("550 Not a directory.");
      return;
    }
    this.cwd = p;
    await this.reply(`250 "${quotePath(p)}" is the current directory.`);
  }

  async #site(arg: string): Promise<void> {
    const trimmed = arg.trim();
    const sp = trimmed.search(/\s/);
    const sub = (sp < 0 ? trimmed : trimmed.slice(0, sp)).toUpperCase();
    const rest = sp < 0 ? "" : trimmed.slice(sp).trim();
    const spec = SITE_COMMANDS[sub];
    if (!spec) {
      await this.reply("500 Unknown SITE command; try SITE HELP.");
      return;
    }
    if (sub === "HELP") {
      await this.reply(siteHelpReply());
      return;
    }
    if (this.state.kind !== "logged-in") {
      await this.reply("530 Please log in with USER and PASS first.");
      return;
    }
    if (spec.perm && !this.state.user.perms[spec.perm]) {
      await this.reply("550 Permission denied.");
      return;
    }
    const m = /^([0-7]{1,4})\s+(.+)$/.exec(rest);
    if (!m) {
      await this.reply("501 Syntax: SITE CHMOD <octal mode> <path>.");
      return;
    }
    const { fs } = this.state;
    await fs.chmod(fs.resolve(this.cwd, m[2]), parseInt(m[1], 8));
    await this.reply("200 SITE CHMOD successful.");
  }

  async #stat(arg: string): Promise<void> {
    if (arg.trim() === "" || this.#dx.transfer) {
      const t = this.#dx.transfer;
      let out = "211-outpost FTP server status:\r\n";
      out += ` Connected from ${this.peerIp}\r\n`;
      out += this.state.kind === "logged-in"
        ? ` Logged in as ${sanitizeForReply(this.state.user.name)}\r\n`
        : " Not logged in\r\n";
      out += ` TYPE: ${this.#ascii ? "ASCII" : "BINARY"}; STRUcture: File; MODE: Stream\r\n`;
      if (t) {
        out +=
          ` Transfer in progress: ${t.kind.toUpperCase()} ${
            quotePath(t.path)
          }, ${t.bytes} bytes transferred` +
          ` in ${Date.now() - t.started} ms\r\n`;
      } else {
        out += ` Data connection: ${this.#data.mode === "none" ? "none" : this.#data.mode + " mode set"}\r\n`;
        out += " No transfer in progress\r\n";
      }
      await this.reply(out + "211 End of status.\r\n");
      return;
    }
    if (this.state.kind !== "logged-in") {
      await this.reply("530 Please log in with USER and PASS first.");
      return;
    }
    const { fs, user } = this.state;
    if (!user.perms.list) {
      await this.reply("550 Permission denied.");
      return;
    }
    const p = fs.resolve(this.cwd, stripListOptions(arg) || ".");
    const info = await fs.stat(p);
    const batches = info.type === "dir" ? fs.listBatches(p) : oneBatch(info);
    const now = new Date();
    let out = `213-Status of "${quotePath(p)}":\r\n`;
    // Streamed in batches: a directory of any size costs one batch and ~16 KiB of reply text at a time.
    for await (const batch of batches) {
      for (const e of batch) out += ` ${sanitizeForReply(formatListLine(e, now))}\r\n`;
      if (out.length > 16384) {
        await this.reply(out);
        out = "";
      }
    }
    await this.reply(out + "213 End of status.\r\n");
  }

  #takeRest(): number {
    const r = this.#rest;
    this.#rest = 0;
    return r;
  }

  async #needDataSetup(): Promise<boolean> {
    if (this.#ctx.tls?.opts.mode === "required" && !this.#tls.protectedData) {
      this.#data.close();
      await this.reply("521 Data connections must be encrypted here: send PBSZ 0 and PROT P first.");
      return false;
    }
    if (this.#data.mode !== "none") return true;
    await this.reply("425 Use PASV, EPSV, PORT or EPRT first.");
    return false;
  }

  async #retr(arg: string): Promise<void> {
    const offset = this.#takeRest();
    const { fs } = this.#fs();
    if (!(await this.#needDataSetup())) return;
    const p = fs.resolve(this.cwd, arg);
    // One open + fstat instead of stat then open: each async fs call is a thread-pool hop (small-file mirrors).
    const { file, size } = await fs.openDownload(p, offset);
    if (offset > size) {
      closeQuietly(file);
      await this.reply("554 Restart offset is past the end of the file.");
      return;
    }
    const ascii = this.#ascii;
    this.#dx.start("retr", p, `150 Opening ${ascii ? "ASCII" : "BINARY"} mode data connection.`, {
      body: (conn, buf, t) => sendFile(conn, file, buf, ascii ? new LfToCrlf() : null, t, size - offset),
      cleanup: () => closeQuietly(file),
    });
  }

  async #store(kind: "stor" | "appe" | "stou", arg: string): Promise<void> {
    const offset = this.#takeRest();
    const { fs } = this.#fs();
    if (!(await this.#needDataSetup())) return;
    // STOU: only the base name of a hint counts, in the current directory; the name is reserved atomically.
    const hint = kind === "stou"
      ? (arg.trim() ? fs.resolve(this.cwd, arg).split("/").pop() || "file" : "file")
      : "";
    const wanted = fs.resolve(this.cwd, kind === "stou" ? hint : arg);
    const mode = kind === "appe" ? "append" : kind === "stou" ? "unique" : "replace";
    // The REST copy waits for the data connection: REST + STOR alone writes nothing (see FtpUpload.prepare).
    const upload = await fs.openUpload(wanted, { mode, offset, deferCopy: true });
    const p = upload.vpath;
    const ascii = this.#ascii;
    let committed = false;
    const opening = kind === "stou"
      ? `150 FILE: ${sanitizeForReply(p.split("/").pop() ?? p)}`
      : `150 Ok to send data.`;
    this.#dx.start(kind, p, opening, {
      body: async (conn, buf, t) => {
        await upload.prepare();
        await receiveFile(conn, upload.file, buf, ascii ? new CrlfToLf() : null, t);
        if (t.aborted || t.timedOut) throw new Error("Upload aborted.");
        await upload.commit();
        committed = true;
      },
      cleanup: async () => {
        if (!committed) await upload.abort().catch(() => {});
      },
      success: kind === "stou" ? `226 Transfer complete (unique file name: ${quotePath(p)}).` : undefined,
    });
  }

  async #list(kind: "list" | "nlst" | "mlsd", arg: string): Promise<void> {
    this.#takeRest();
    const { fs, user } = this.#fs();
    if (!(await this.#needDataSetup())) return;
    const p = fs.resolve(this.cwd, kind === "mlsd" ? arg : stripListOptions(arg) || ".");
    const info = await fs.stat(p);
    if (kind === "mlsd" && info.type !== "dir") {
      await this.reply("501 MLSD needs a directory; use MLST for a file.");
      return;
    }
    const facts = this.#facts;
    // The directory is read while it is sent, one batch of entries at a time (bounded memory for any size).
    const batches = info.type === "dir" ? fs.listBatches(p) : oneBatch(info);
    this.#dx.start(kind, p, "150 Here comes the directory listing.", {
      body: async (conn, buf, t) => {
        const out = new LineWriter(conn, buf, t);
        const now = new Date();
        for await (const batch of batches) {
          if (t.aborted || t.timedOut) break;
          for (const e of batch) {
            if (kind === "list") await out.line(formatListLine(e, now));
            else if (kind === "nlst") await out.line(formatNlstLine(e));
            else await out.line(filterFacts(formatMlsxFacts(e, user.perms), facts));
          }
        }
        await out.flush();
      },
      cleanup: async () => {
        await batches.return(undefined);
      },
      success: "226 Directory send OK.",
    });
  }
}
