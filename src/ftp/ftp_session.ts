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
import { type ServerTlsContext, TlsConn, upgradeServerSocket } from "../net/tls_server.ts";
import type { Logger } from "../log/logger.ts";
import type { FtpUser } from "./accounts.ts";
import {
  cidrContains,
  formatEpsvReply,
  formatPasvReply,
  normalizeIp,
  parseEprtArg,
  parsePortArg,
} from "./address.ts";
import { CrlfToLf, LfToCrlf } from "./ascii.ts";
import { DataChannel, DataChannelError } from "./data_channel.ts";
import {
  checkCommand,
  COMMANDS,
  featReply,
  filterFacts,
  helpReply,
  isUrgentAbort,
  MLST_FACTS,
  parseCommandLine,
  type ParsedCommand,
  SITE_COMMANDS,
  siteHelpReply,
  stripListOptions,
} from "./ftp_commands.ts";
import { type FtpFileInfo, FtpFileSystem, FtpFsError, toFtpFsError } from "./ftp_file_system.ts";
import type { FtpServerOptions } from "./ftp_server.ts";
import type { FtpTlsOptions, TlsDataOptions } from "./ftps.ts";
import {
  formatFtpTime,
  formatListLine,
  formatMlsxFacts,
  formatNlstLine,
  sanitizeForReply,
} from "./listing.ts";
import {
  type BufferPool,
  LineWriter,
  LocalIoError,
  receiveFile,
  sendFile,
  type TransferProgress,
} from "./transfer.ts";

/**
 * What a session needs from its server (`FtpServer` builds one and shares it between all sessions).
 *
 * @example
 * ```ts
 * const ctx: SessionContext = {
 *   opts,
 *   log: new Logger("ftp"),
 *   buffers: new BufferPool(TRANSFER_BUFFER_SIZE, 4),
 *   loginFailed: () => false,
 *   loginSucceeded: () => {},
 *   xferlog: () => {},
 *   tls: null,
 * };
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
  /** Records a good login from `ip` (clears its failure count). */
  loginSucceeded(ip: string): void;
  /** Appends one transfer to the xferlog, if configured. */
  xferlog(entry: XferEntry): void;
  /** FTPS settings and the shared TLS context, or null when TLS is off. */
  tls: { opts: FtpTlsOptions; context: ServerTlsContext } | null;
}

/**
 * One finished file transfer (RETR, STOR, APPE, STOU; not listings), for the xferlog.
 *
 * @example
 * ```ts
 * const entry: XferEntry = {
 *   ip: "127.0.0.1",
 *   user: "bob",
 *   anonymous: false,
 *   path: "/a.txt",
 *   bytes: 3,
 *   ms: 10,
 *   ascii: false,
 *   incoming: false,
 *   complete: true,
 * };
 * ```
 */
export interface XferEntry {
  /** The client's (normalised) address. */
  ip: string;
  /** The login name ("" if none). */
  user: string;
  /** Whether the user logged in anonymously. */
  anonymous: boolean;
  /** The file's virtual path (never a host path). */
  path: string;
  /** Bytes sent or received over the data connection. */
  bytes: number;
  /** Milliseconds the transfer took. */
  ms: number;
  /** TYPE A (ASCII) rather than TYPE I (binary). */
  ascii: boolean;
  /** An upload (STOR, APPE, STOU) rather than a download (RETR). */
  incoming: boolean;
  /** The transfer finished successfully (226); false when it failed or was aborted. */
  complete: boolean;
}

/** The login state of a session. */
export type AuthState =
  | { kind: "awaiting-user" }
  | { kind: "awaiting-pass"; name: string }
  | { kind: "logged-in"; user: FtpUser; fs: FtpFileSystem };

type TransferKind = "retr" | "stor" | "appe" | "stou" | "list" | "nlst" | "mlsd";

/** A transfer in progress. */
interface Transfer extends TransferProgress {
  kind: TransferKind;
  path: string;
  started: number;
  conn: ByteConn | null;
  aborted: boolean;
  timedOut: boolean;
  done: Promise<void>;
  /** Watchdog bookkeeping: bytes at the last check and when they last changed. */
  seenBytes: number;
  seenAt: number;
}

const encoder = new TextEncoder();

function quotePath(p: string): string {
  return sanitizeForReply(p).replaceAll('"', '""');
}

function errorReply(e: unknown): string | null {
  if (e instanceof LocalIoError) e = toFtpFsError(e.original);
  if (e instanceof FtpFsError) return `${e.code} ${sanitizeForReply(e.message)}`;
  if (e instanceof DataChannelError) return `425 ${e.message}`;
  return null;
}

/**
 * One FTP control connection.
 *
 * @example
 * ```ts
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
  readonly #ctx: SessionContext;
  readonly #data: DataChannel;
  #ascii = true;
  #rest = 0;
  #renameFrom: string | null = null;
  #epsvAll = false;
  #facts: string[] = [...MLST_FACTS];
  #transfer: Transfer | null = null;
  #closed = false;
  /** The code of the last reply sent, for the change log. */
  #lastReply = "";
  /** The control connection is TLS (after AUTH TLS, or from the start on the implicit port). */
  #tlsControl = false;
  /** PROT P: data connections use TLS. */
  #protP = false;

  /**
   * Sets up a session on an accepted control connection; nothing is sent until {@link FtpSession.run}.
   * `peerIp` and `localIp` must be normalised. With `implicitTls` the connection is already TLS (implicit FTPS
   * port), so data connections are protected (PROT P) until the client asks for PROT C.
   *
   * @example
   * ```ts
   * const session = new FtpSession(7, conn, "192.168.1.7", "192.168.1.20", ctx, { implicitTls: true });
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
    this.reader = new LineReader(conn, {
      maxLineLength: ctx.opts.maxLineLength,
      acceptBareCr: isUrgentAbort,
    });
    // Passive listeners bind to the wildcard address the server listens on, never to the control connection's
    // own local address: the sandbox allows listening on the configured host only (a LAN address is not in it).
    const host = ctx.opts.hostname;
    const bindHost = host === "" ? "0.0.0.0" : host === "[::]" ? "::" : isWildcardHost(host) ? host : localIp;
    this.#data = new DataChannel({
      peerIp,
      bindHost,
      portMin: ctx.opts.passive.portMin,
      portMax: ctx.opts.passive.portMax,
      timeoutMs: ctx.opts.dataTimeoutMs,
    });
    if (opts.implicitTls) {
      // Implicit FTPS: TLS from the first byte, and data protected unless the client asks for PROT C.
      this.#tlsControl = true;
      this.#setProt(true);
    }
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
    return this.#tlsControl;
  }

  #setProt(protect: boolean): void {
    const tls = this.#ctx.tls;
    this.#protP = protect && tls !== null;
    if (!this.#protP || !tls) {
      this.#data.setTls(null);
      return;
    }
    // Data connections handshake with the control connection's context (the TLS version chosen for this client),
    // so that they can resume its session.
    const control = this.control;
    const data: TlsDataOptions = {
      context: (control instanceof TlsConn ? control.context : null) ?? tls.context,
      peerIp: this.peerIp,
      requireSessionReuse: tls.opts.requireSessionReuse,
      timeoutMs: this.#ctx.opts.dataTimeoutMs,
      onRefused: (ip, reason) => this.#ctx.log.warn("tls.data_refused", { id: this.id, ip, reason }),
    };
    this.#data.setTls(data);
  }

  /** The session's data connections; FTPS sets its TLS hook with `dataChannel.setWrap(...)`. */
  get dataChannel(): DataChannel {
    return this.#data;
  }

  /** The user name once logged in, else null. */
  get userName(): string | null {
    return this.state.kind === "logged-in" ? this.state.user.name : null;
  }

  /** True while a transfer runs. */
  get transferring(): boolean {
    return this.#transfer !== null;
  }

  /** The running transfer (kind, virtual path, bytes so far, start time), or null; for `outpost status`. */
  get activeTransfer(): { kind: string; path: string; bytes: number; started: number } | null {
    const t = this.#transfer;
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
    this.#abortTransfer(false);
    await this.reply(`421 ${message}`);
    this.#closed = true;
    closeQuietly(this.control);
  }

  /** Called periodically by the server: enforces the idle timeout and the data-stall timeout. */
  tick(now: number): void {
    if (this.#closed) return;
    const t = this.#transfer;
    if (t) {
      if (t.bytes !== t.seenBytes || t.conn === null) {
        t.seenBytes = t.bytes;
        t.seenAt = now;
      } else if (now - t.seenAt > this.#ctx.opts.dataTimeoutMs) {
        t.timedOut = true;
        closeQuietly(t.conn);
      }
      return;
    }
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
        if (!cmd) continue;
        if (this.#transfer && !COMMANDS[cmd.verb]?.duringTransfer) await this.#transfer.done;
        const renameFrom = this.#renameFrom;
        const more = await this.#dispatch(cmd);
        logFtpChange(log, cmd, this.#changeContext(renameFrom));
        if (!more) break;
      }
    } catch (e) {
      if (!this.#closed) log.warn("session.error", { id: this.id, ip: this.peerIp, error: String(e) });
    } finally {
      this.#abortTransfer(false);
      if (this.#transfer) await this.#transfer.done;
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

  async #handle(cmd: ParsedCommand, renameFrom: string | null): Promise<boolean> {
    const { arg } = cmd;
    switch (cmd.verb) {
      case "USER":
      case "PASS":
        if (this.#ctx.tls?.opts.mode === "required" && !this.#tlsControl) {
          await this.reply("530 TLS required: send AUTH TLS first, then log in.");
          return true;
        }
        return cmd.verb === "USER" ? await this.#user(arg) : await this.#pass(arg);
      case "AUTH":
        await this.#auth(arg);
        return true;
      case "PBSZ":
        await this.#pbszCmd(arg);
        return true;
      case "PROT":
        await this.#prot(arg);
        return true;
      case "CCC":
        await this.reply("534 CCC refused: the control connection stays encrypted.");
        return true;
      case "QUIT":
        if (this.#transfer) await this.#transfer.done;
        await this.reply("221 Goodbye.");
        return false;
      case "REIN":
        this.#data.close();
        this.#reset();
        await this.reply("220 Service ready for a new user.");
        return true;
      case "ACCT":
        await this.reply("502 ACCT is not implemented; no account is needed.");
        return true;
      case "NOOP":
        await this.reply("200 NOOP ok.");
        return true;
      case "SYST":
        await this.reply("215 UNIX Type: L8");
        return true;
      case "FEAT":
        await this.reply(featReply(this.#facts, this.#ctx.tls !== null));
        return true;
      case "HELP":
        await this.reply(helpReply(arg));
        return true;
      case "OPTS":
        await this.#opts(arg);
        return true;
      case "TYPE":
        await this.#type(arg);
        return true;
      case "MODE":
        await this.reply(
          arg.trim().toUpperCase() === "S"
            ? "200 Mode set to S."
            : "504 Only stream mode (MODE S) is supported.",
        );
        return true;
      case "STRU":
        await this.reply(
          arg.trim().toUpperCase() === "F"
            ? "200 Structure set to F."
            : "504 Only file structure (STRU F) is supported.",
        );
        return true;
      case "ALLO":
        await this.reply("202 No storage allocation necessary.");
        return true;
      case "ABOR":
        await this.#abor();
        return true;
      case "STAT":
        await this.#stat(arg);
        return true;
      case "SITE":
        await this.#site(arg);
        return true;
      case "PWD":
      case "XPWD":
        await this.reply(`257 "${quotePath(this.cwd)}" is the current directory.`);
        return true;
      case "CWD":
      case "XCWD":
        await this.#cwd(arg);
        return true;
      case "CDUP":
        await this.#cwd("..");
        return true;
      case "MKD":
      case "XMKD": {
        const { fs } = this.#fs();
        const p = fs.resolve(this.cwd, arg);
        await fs.mkdir(p);
        await this.reply(`257 "${quotePath(p)}" directory created.`);
        return true;
      }
      case "RMD":
      case "XRMD": {
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
      case "DELE": {
        const { fs } = this.#fs();
        await fs.remove(fs.resolve(this.cwd, arg));
        await this.reply("250 File removed.");
        return true;
      }
      case "RNFR": {
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
      case "RNTO": {
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
      case "SIZE": {
        const { fs } = this.#fs();
        const info = await fs.stat(fs.resolve(this.cwd, arg));
        await this.reply(info.type === "file" ? `213 ${info.size}` : "550 Not a regular file.");
        return true;
      }
      case "MDTM": {
        const { fs } = this.#fs();
        const info = await fs.stat(fs.resolve(this.cwd, arg));
        if (info.type !== "file" || info.mtime === null) await this.reply("550 Not a regular file.");
        else await this.reply(`213 ${formatFtpTime(info.mtime)}`);
        return true;
      }
      case "MLST": {
        const { fs, user } = this.#fs();
        const p = fs.resolve(this.cwd, arg || ".");
        const info = await fs.stat(p);
        const facts = filterFacts(formatMlsxFacts({ ...info, name: p }, user.perms), this.#facts);
        await this.reply(`250-Listing ${quotePath(p)}\r\n ${sanitizeForReply(facts)}\r\n250 End.\r\n`);
        return true;
      }
      case "REST": {
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
      case "PASV":
        await this.#pasv();
        return true;
      case "EPSV":
        await this.#epsv(arg);
        return true;
      case "PORT":
      case "EPRT":
        await this.#port(cmd.verb, arg);
        return true;
      case "RETR":
        await this.#retr(arg);
        return true;
      case "STOR":
        await this.#store("stor", arg);
        return true;
      case "APPE":
        await this.#store("appe", arg);
        return true;
      case "STOU":
        await this.#store("stou", arg);
        return true;
      case "LIST":
        await this.#list("list", arg);
        return true;
      case "NLST":
        await this.#list("nlst", arg);
        return true;
      case "MLSD":
        await this.#list("mlsd", arg);
        return true;
    }
    await this.reply("502 Command not implemented.");
    return true;
  }

  #reset(): void {
    this.state = { kind: "awaiting-user" };
    this.cwd = "/";
    this.#ascii = true;
    this.#rest = 0;
    this.#renameFrom = null;
    this.#epsvAll = false;
    this.#facts = [...MLST_FACTS];
  }

  async #user(name: string): Promise<boolean> {
    if (this.state.kind === "logged-in") {
      await this.reply("530 Already logged in; send REIN to change the user.");
      return true;
    }
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
    const user = await opts.accounts.authenticate(state.name, password);
    this.state = { kind: "awaiting-user" };
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
      fs = await FtpFileSystem.open(user.root, { syncUploads: this.#ctx.opts.syncUploads ?? true });
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

  /** AUTH TLS / AUTH SSL: answers 234, then upgrades the paused control socket; pipelined plaintext is dropped. */
  async #auth(arg: string): Promise<void> {
    const tls = this.#ctx.tls;
    if (!tls) {
      await this.reply("502 TLS is not enabled on this server.");
      return;
    }
    const mech = arg.trim().toUpperCase();
    if (!["TLS", "SSL", "TLS-C", "TLS-P"].includes(mech)) {
      await this.reply("504 Unknown AUTH mechanism; use AUTH TLS.");
      return;
    }
    if (this.#tlsControl) {
      await this.reply("503 The control connection is already encrypted.");
      return;
    }
    if (!(this.control instanceof NodeConn)) {
      await this.reply("431 TLS cannot be started on this connection.");
      return;
    }
    // Pause and detach first, so nothing the client sends after the 234 (its ClientHello) is read as plaintext.
    const raw = this.control.detach();
    raw.write("234 Proceed with TLS negotiation.\r\n");
    let conn: TlsConn;
    try {
      conn = await upgradeServerSocket(raw, tls.context, { timeoutMs: this.#ctx.opts.dataTimeoutMs });
    } catch (e) {
      this.#ctx.log.info("tls.upgrade_failed", { id: this.id, ip: this.peerIp, error: (e as Error).message });
      this.#closed = true;
      raw.destroy();
      return;
    }
    const discarded = this.setControl(conn);
    this.#tlsControl = true;
    // RFC 4217: after AUTH the user must log in again; SSL historically implies protected data.
    this.#reset();
    this.#setProt(mech === "SSL" || mech === "TLS-P");
    this.#ctx.log.info("tls.upgrade", {
      id: this.id,
      ip: this.peerIp,
      protocol: conn.protocol ?? undefined,
      discarded,
    });
  }

  async #pbszCmd(arg: string): Promise<void> {
    if (!this.#ctx.tls) {
      await this.reply("502 TLS is not enabled on this server.");
      return;
    }
    if (!this.#tlsControl) {
      await this.reply("503 Send AUTH TLS first.");
      return;
    }
    if (!/^\d{1,10}$/.test(arg.trim())) {
      await this.reply("501 Syntax: PBSZ 0.");
      return;
    }
    await this.reply("200 PBSZ=0");
  }

  async #prot(arg: string): Promise<void> {
    if (!this.#ctx.tls) {
      await this.reply("502 TLS is not enabled on this server.");
      return;
    }
    if (!this.#tlsControl) {
      await this.reply("503 Send AUTH TLS first.");
      return;
    }
    const level = arg.trim().toUpperCase();
    if (level === "P") {
      this.#setProt(true);
      await this.reply("200 Data connections will be encrypted (PROT P).");
    } else if (level === "C") {
      if (this.#ctx.tls.opts.mode === "required") {
        await this.reply("534 Clear data connections are not allowed here; use PROT P.");
        return;
      }
      this.#setProt(false);
      await this.reply("200 Data connections will be in clear text (PROT C).");
    } else if (level === "S" || level === "E") {
      await this.reply("536 Only PROT P and PROT C are supported.");
    } else {
      await this.reply("504 Unknown protection level; use PROT P or PROT C.");
    }
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
    if (arg.trim() === "" || this.#transfer) {
      const t = this.#transfer;
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
    const entries = info.type === "dir" ? await fs.list(p) : [info];
    const now = new Date();
    let out = `213-Status of "${quotePath(p)}":\r\n`;
    for (const e of entries) {
      out += ` ${sanitizeForReply(formatListLine(e, now))}\r\n`;
      if (out.length > 16384) {
        await this.reply(out);
        out = "";
      }
    }
    await this.reply(out + "213 End of status.\r\n");
  }

  async #abor(): Promise<void> {
    const t = this.#transfer;
    if (!t) {
      const hadSetup = this.#data.mode !== "none";
      this.#data.close();
      await this.reply(
        hadSetup ? "225 ABOR command successful; data connection closed." : "226 ABOR command successful.",
      );
      return;
    }
    this.#abortTransfer(true);
    await t.done;
    await this.reply("226 ABOR command successful.");
  }

  #abortTransfer(byClient: boolean): void {
    const t = this.#transfer;
    if (!t) return;
    t.aborted = byClient || t.aborted;
    if (!byClient) t.timedOut = true;
    closeQuietly(t.conn);
    this.#data.close();
  }

  #advertisedIpv4(): string {
    const { passive } = this.#ctx.opts;
    for (const m of passive.addressMap ?? []) {
      if (cidrContains(m.subnet, this.peerIp)) return m.address;
    }
    return passive.address ?? this.localIp;
  }

  async #pasv(): Promise<void> {
    if (this.#epsvAll) {
      await this.reply("501 PASV is not allowed after EPSV ALL.");
      return;
    }
    if (this.localIp.includes(":")) {
      await this.reply("501 PASV works over IPv4 only; use EPSV.");
      return;
    }
    const port = await this.#data.openPassive();
    await this.reply(formatPasvReply(this.#advertisedIpv4(), port));
  }

  async #epsv(arg: string): Promise<void> {
    const a = arg.trim().toUpperCase();
    if (a === "ALL") {
      this.#epsvAll = true;
      await this.reply("200 EPSV ALL ok; only EPSV will be accepted now.");
      return;
    }
    const family = this.peerIp.includes(":") ? "2" : "1";
    if (a !== "" && a !== family) {
      await this.reply(`522 Network protocol not supported, use (${family})`);
      return;
    }
    const port = await this.#data.openPassive();
    await this.reply(formatEpsvReply(port));
  }

  async #port(verb: string, arg: string): Promise<void> {
    if (this.#epsvAll) {
      await this.reply(`501 ${verb} is not allowed after EPSV ALL.`);
      return;
    }
    if (!this.#ctx.opts.allowActive) {
      await this.reply("502 Active mode is disabled on this server; use PASV or EPSV.");
      return;
    }
    let target: { host: string; port: number } | null;
    if (verb === "PORT") {
      target = parsePortArg(arg);
    } else {
      const e = parseEprtArg(arg);
      const family = this.peerIp.includes(":") ? 6 : 4;
      if (e && e.family !== family) {
        await this.reply(`522 Network protocol not supported, use (${family === 6 ? 2 : 1})`);
        return;
      }
      target = e;
    }
    if (!target) {
      await this.reply(`501 Invalid ${verb} argument.`);
      return;
    }
    if (normalizeIp(target.host) !== this.peerIp) {
      await this.reply("501 Rejected: the data connection must go to your own address.");
      return;
    }
    if (target.port < 1024) {
      await this.reply("501 Rejected: the data port must be 1024 or above.");
      return;
    }
    this.#data.setActive(target.host, target.port);
    await this.reply(`200 ${verb} command successful.`);
  }

  #takeRest(): number {
    const r = this.#rest;
    this.#rest = 0;
    return r;
  }

  async #needDataSetup(): Promise<boolean> {
    if (this.#ctx.tls?.opts.mode === "required" && !this.#protP) {
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
    this.#startTransfer("retr", p, `150 Opening ${ascii ? "ASCII" : "BINARY"} mode data connection.`, {
      body: (conn, buf, t) => sendFile(conn, file, buf, ascii ? new LfToCrlf() : null, t, size - offset),
      cleanup: () => closeQuietly(file),
    });
  }

  async #store(kind: "stor" | "appe" | "stou", arg: string): Promise<void> {
    const offset = this.#takeRest();
    const { fs } = this.#fs();
    if (!(await this.#needDataSetup())) return;
    let p: string;
    if (kind === "stou") {
      const hint = arg.trim() ? fs.resolve(this.cwd, arg).split("/").pop() : undefined;
      p = await fs.uniqueName(this.cwd, hint || undefined);
    } else {
      p = fs.resolve(this.cwd, arg);
    }
    const upload = await fs.openUpload(p, { mode: kind === "appe" ? "append" : "replace", offset });
    const ascii = this.#ascii;
    let committed = false;
    const opening = kind === "stou"
      ? `150 FILE: ${sanitizeForReply(p.split("/").pop() ?? p)}`
      : `150 Ok to send data.`;
    this.#startTransfer(kind, p, opening, {
      body: async (conn, buf, t) => {
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
    const entries: FtpFileInfo[] = info.type === "dir" ? await fs.list(p) : [info];
    const facts = this.#facts;
    this.#startTransfer(kind, p, "150 Here comes the directory listing.", {
      body: async (conn, buf, t) => {
        const out = new LineWriter(conn, buf, t);
        const now = new Date();
        for (const e of entries) {
          if (kind === "list") await out.line(formatListLine(e, now));
          else if (kind === "nlst") await out.line(formatNlstLine(e));
          else await out.line(filterFacts(formatMlsxFacts(e, user.perms), facts));
        }
        await out.flush();
      },
      success: "226 Directory send OK.",
    });
  }

  /** Starts a transfer in the background: replies 150, waits for the data connection, runs `body`, replies. */
  #startTransfer(
    kind: TransferKind,
    path: string,
    opening: string,
    spec: {
      body: (conn: ByteConn, buf: Uint8Array, t: Transfer) => Promise<void>;
      cleanup?: () => void | Promise<void>;
      success?: string;
    },
  ): void {
    const now = Date.now();
    const t: Transfer = {
      kind,
      path,
      bytes: 0,
      started: now,
      conn: null,
      aborted: false,
      timedOut: false,
      done: Promise.resolve(),
      seenBytes: 0,
      seenAt: now,
    };
    this.#transfer = t;
    t.done = this.#runTransfer(t, opening, spec);
  }

  async #runTransfer(
    t: Transfer,
    opening: string,
    spec: {
      body: (conn: ByteConn, buf: Uint8Array, t: Transfer) => Promise<void>;
      cleanup?: () => void | Promise<void>;
      success?: string;
    },
  ): Promise<void> {
    const { buffers, log } = this.#ctx;
    let status: "ok" | "aborted" | "failed" = "failed";
    let final: string;
    const buf = buffers.acquire(t.kind !== "list" && t.kind !== "nlst" && t.kind !== "mlsd");
    try {
      await this.reply(opening);
      const conn = await this.#data.connect();
      t.conn = conn;
      if (t.aborted || t.timedOut) closeQuietly(conn);
      await spec.body(conn, buf, t);
      if (t.aborted || t.timedOut) throw new Error("aborted");
      // TLS data: send close_notify and let the client close first, so it sees a clean end of the data.
      if (conn instanceof TlsConn) await conn.end(5000);
      status = "ok";
      final = spec.success ?? "226 Transfer complete.";
    } catch (e) {
      if (t.aborted) {
        status = "aborted";
        final = "426 Connection closed; transfer aborted.";
      } else if (t.timedOut) {
        final = "426 Connection closed; the data connection stalled or was shut down.";
      } else {
        final = errorReply(e) ?? "426 Connection closed; transfer aborted.";
        if (final.startsWith("425")) status = "failed";
      }
    } finally {
      closeQuietly(t.conn);
      try {
        await spec.cleanup?.();
      } catch {
        // The upload temp file or the read handle was already gone.
      }
      buffers.release(buf);
    }
    const ms = Date.now() - t.started;
    const user = this.userName ?? "";
    log.info("transfer", { dir: t.kind, user, path: t.path, bytes: t.bytes, ms, status });
    if (t.kind === "retr" || t.kind === "stor" || t.kind === "appe" || t.kind === "stou") {
      this.#ctx.xferlog({
        ip: this.peerIp,
        user,
        anonymous: this.state.kind === "logged-in" && this.state.user.passwordHash === null,
        path: t.path,
        bytes: t.bytes,
        ms,
        ascii: this.#ascii,
        incoming: t.kind !== "retr",
        complete: status === "ok",
      });
    }
    this.#transfer = null;
    await this.reply(final);
  }
}
