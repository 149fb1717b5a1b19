/**
 * The data side of an FTP session, split from `ftp_session.ts` as pyftpdlib splits its handler: data connection
 * setup (PASV, EPSV, PORT, EPRT), the lifecycle of the one running transfer (150, data connection, body, 226 or
 * 4xx, xferlog), ABOR and the data-stall timeout.
 *
 * @module
 */

import type { ByteConn } from "../net/byte_conn.ts";
import { closeQuietly } from "../net/byte_conn.ts";
import { TlsConn } from "../net/tls_server.ts";
import type { Logger } from "../log/logger.ts";
import {
  cidrContains,
  formatEpsvReply,
  formatPasvReply,
  normalizeIp,
  parseEprtArg,
  parsePortArg,
} from "./address.ts";
import { DataChannel, DataChannelError } from "./data_channel.ts";
import { FtpFsError, toFtpFsError } from "./ftp_file_system.ts";
import type { FtpServerOptions } from "./ftp_options.ts";
import { sanitizeForReply } from "./listing.ts";
import { type BufferPool, LocalIoError, type TransferProgress } from "./transfer.ts";

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
 * console.log(entry.path);
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

/** What a transfer moves: a file (RETR, STOR, APPE, STOU) or a listing. */
export type TransferKind = "retr" | "stor" | "appe" | "stou" | "list" | "nlst" | "mlsd";

/** A transfer in progress. */
export interface Transfer extends TransferProgress {
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

/**
 * The reply for a failed file or data operation, or null when the error is not one the client may see.
 *
 * @example
 * ```ts
 * import { FtpFsError } from "./ftp_file_system.ts";
 *
 * errorReply(new FtpFsError(550, "No such file or directory.")); // "550 No such file or directory."
 * ```
 */
export function errorReply(e: unknown): string | null {
  if (e instanceof LocalIoError) e = toFtpFsError(e.original);
  if (e instanceof FtpFsError) return `${e.code} ${sanitizeForReply(e.message)}`;
  if (e instanceof DataChannelError) return `425 ${e.message}`;
  return null;
}

/** What the data side needs from its session. */
export interface DataSessionHooks {
  /** The normalised control peer address (the only address data connections may come from or go to). */
  readonly peerIp: string;
  /** The normalised local address of the control connection (PASV advertises it unless configured). */
  readonly localIp: string;
  /** The address passive ports bind to (the server's wildcard listen address, else `localIp`). */
  readonly bindHost: string;
  /** Sends one reply on the control connection. */
  reply(text: string): Promise<void>;
  /** Who and how, for the transfer log and the xferlog. */
  who(): { user: string; anonymous: boolean; ascii: boolean };
  /** Takes one of the passive ports the peer's address may hold (see `DataChannelOptions.holdPassive`). */
  holdPassive?(): (() => void) | null;
}

/** A transfer's body and what to do around it. */
export interface TransferSpec {
  /** Moves the data over `conn` with the transfer buffer `buf`, counting bytes in `t.bytes`. */
  body: (conn: ByteConn, buf: Uint8Array, t: Transfer) => Promise<void>;
  /** Runs after the data connection closed, whatever happened (close the file, drop an unfinished upload). */
  cleanup?: () => void | Promise<void>;
  /** The final reply on success (default "226 Transfer complete."). */
  success?: string;
}

/**
 * One session's data connections and its running transfer.
 *
 * @example
 * ```ts
 * import type { Logger } from "../log/logger.ts";
 * import type { FtpServerOptions } from "./ftp_options.ts";
 * import type { BufferPool } from "./transfer.ts";
 *
 * declare const opts: FtpServerOptions; // the server's options
 * declare const log: Logger; // the session's logger
 * declare const buffers: BufferPool; // the server's buffer pool
 * declare const hooks: DataSessionHooks; // implemented by the session
 * declare const xferlog: (e: XferEntry) => void; // writes the xferlog line
 * declare const send: TransferSpec["body"]; // sends the file
 * const data = new SessionData({ opts, log, buffers, xferlog, session: hooks });
 * await data.pasv();
 * data.start("retr", "/a.txt", "150 Opening BINARY mode data connection.", { body: send });
 * ```
 */
export class SessionData {
  /** The session's data connection setup (passive port or active target), TLS-wrapped under PROT P. */
  readonly channel: DataChannel;
  readonly #opts: FtpServerOptions;
  readonly #log: Logger;
  readonly #buffers: BufferPool;
  readonly #xferlog: (e: XferEntry) => void;
  readonly #s: DataSessionHooks;
  #epsvAll = false;
  #transfer: Transfer | null = null;

  /**
   * Makes the data side of one session; nothing is opened until PASV/EPSV/PORT.
   *
   * @example
   * ```ts
   * import type { Logger } from "../log/logger.ts";
   * import type { FtpServerOptions } from "./ftp_options.ts";
   * import type { BufferPool } from "./transfer.ts";
   *
   * declare const opts: FtpServerOptions; // the server's options
   * declare const log: Logger; // the session's logger
   * declare const buffers: BufferPool; // the server's buffer pool
   * declare const hooks: DataSessionHooks; // implemented by the session
   * const data = new SessionData({ opts, log, buffers, xferlog: () => {}, session: hooks });
   * await data.pasv();
   * ```
   */
  constructor(o: {
    opts: FtpServerOptions;
    log: Logger;
    buffers: BufferPool;
    xferlog: (e: XferEntry) => void;
    session: DataSessionHooks;
  }) {
    this.#opts = o.opts;
    this.#log = o.log;
    this.#buffers = o.buffers;
    this.#xferlog = o.xferlog;
    this.#s = o.session;
    this.channel = new DataChannel({
      peerIp: o.session.peerIp,
      bindHost: o.session.bindHost,
      portMin: o.opts.passive.portMin,
      portMax: o.opts.passive.portMax,
      timeoutMs: o.opts.dataTimeoutMs,
      holdPassive: o.session.holdPassive ? () => o.session.holdPassive!() : undefined,
    });
  }

  /** The running transfer, or null. */
  get transfer(): Transfer | null {
    return this.#transfer;
  }

  /** REIN: EPSV ALL no longer applies. */
  resetEpsvAll(): void {
    this.#epsvAll = false;
  }

  /**
   * Data-stall check (called by the session's tick): a transfer whose byte count has not moved for the data
   * timeout is closed. True while a transfer runs (the idle timeout does not apply then).
   */
  tickTransfer(now: number): boolean {
    const t = this.#transfer;
    if (!t) return false;
    if (t.bytes !== t.seenBytes || t.conn === null) {
      t.seenBytes = t.bytes;
      t.seenAt = now;
    } else if (now - t.seenAt > this.#opts.dataTimeoutMs) {
      t.timedOut = true;
      closeQuietly(t.conn);
    }
    return true;
  }

  /** ABOR: ends the running transfer (426 then 226) or drops the data setup (225/226). */
  async abor(): Promise<void> {
    const t = this.#transfer;
    if (!t) {
      const hadSetup = this.channel.mode !== "none";
      this.channel.close();
      await this.#s.reply(
        hadSetup ? "225 ABOR command successful; data connection closed." : "226 ABOR command successful.",
      );
      return;
    }
    this.abortTransfer(true);
    await t.done;
    await this.#s.reply("226 ABOR command successful.");
  }

  /** Stops the running transfer: by the client (ABOR) or by the server (shutdown, timeout). */
  abortTransfer(byClient: boolean): void {
    const t = this.#transfer;
    if (!t) return;
    t.aborted = byClient || t.aborted;
    if (!byClient) t.timedOut = true;
    closeQuietly(t.conn);
    this.channel.close();
  }

  #advertisedIpv4(): string {
    const { passive } = this.#opts;
    for (const m of passive.addressMap ?? []) {
      if (cidrContains(m.subnet, this.#s.peerIp)) return m.address;
    }
    return passive.address ?? this.#s.localIp;
  }

  /** PASV: opens a passive port (IPv4 only, not after EPSV ALL). */
  async pasv(): Promise<void> {
    if (this.#epsvAll) {
      await this.#s.reply("501 PASV is not allowed after EPSV ALL.");
      return;
    }
    if (this.#s.localIp.includes(":")) {
      await this.#s.reply("501 PASV works over IPv4 only; use EPSV.");
      return;
    }
    const port = await this.channel.openPassive();
    await this.#s.reply(formatPasvReply(this.#advertisedIpv4(), port));
  }

  /** EPSV [1|2|ALL]: opens a passive port. */
  async epsv(arg: string): Promise<void> {
    const a = arg.trim().toUpperCase();
    if (a === "ALL") {
      this.#epsvAll = true;
      await this.#s.reply("200 EPSV ALL ok; only EPSV will be accepted now.");
      return;
    }
    const family = this.#s.peerIp.includes(":") ? "2" : "1";
    if (a !== "" && a !== family) {
      await this.#s.reply(`522 Network protocol not supported, use (${family})`);
      return;
    }
    const port = await this.channel.openPassive();
    await this.#s.reply(formatEpsvReply(port));
  }

  /** PORT/EPRT: active mode, only to the control peer's own address and a port >= 1024. */
  async port(verb: string, arg: string): Promise<void> {
    if (this.#epsvAll) {
      await this.#s.reply(`501 ${verb} is not allowed after EPSV ALL.`);
      return;
    }
    if (!this.#opts.allowActive) {
      await this.#s.reply("502 Active mode is disabled on this server; use PASV or EPSV.");
      return;
    }
    let target: { host: string; port: number } | null;
    if (verb === "PORT") {
      target = parsePortArg(arg);
    } else {
      const e = parseEprtArg(arg);
      const family = this.#s.peerIp.includes(":") ? 6 : 4;
      if (e && e.family !== family) {
        await this.#s.reply(`522 Network protocol not supported, use (${family === 6 ? 2 : 1})`);
        return;
      }
      target = e;
    }
    if (!target) {
      await this.#s.reply(`501 Invalid ${verb} argument.`);
      return;
    }
    if (normalizeIp(target.host) !== this.#s.peerIp) {
      await this.#s.reply("501 Rejected: the data connection must go to your own address.");
      return;
    }
    if (target.port < 1024) {
      await this.#s.reply("501 Rejected: the data port must be 1024 or above.");
      return;
    }
    this.channel.setActive(target.host, target.port);
    await this.#s.reply(`200 ${verb} command successful.`);
  }

  /**
   * Starts a transfer in the background: replies `opening` (150), waits for the data connection, runs the body,
   * then logs it and sends the final reply. {@link SessionData.transfer} is set until then.
   */
  start(
    kind: TransferKind,
    path: string,
    opening: string,
    spec: TransferSpec,
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
    t.done = this.#run(t, opening, spec);
  }

  async #run(
    t: Transfer,
    opening: string,
    spec: TransferSpec,
  ): Promise<void> {
    const buffers = this.#buffers;
    const log = this.#log;
    let status: "ok" | "aborted" | "failed" = "failed";
    let final: string;
    const buf = buffers.acquire(t.kind !== "list" && t.kind !== "nlst" && t.kind !== "mlsd");
    try {
      await this.#s.reply(opening);
      const conn = await this.channel.connect();
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
    const who = this.#s.who();
    const user = who.user;
    log.info("transfer", { dir: t.kind, user, path: t.path, bytes: t.bytes, ms, status });
    if (t.kind === "retr" || t.kind === "stor" || t.kind === "appe" || t.kind === "stou") {
      this.#xferlog({
        ip: this.#s.peerIp,
        user,
        anonymous: who.anonymous,
        path: t.path,
        bytes: t.bytes,
        ms,
        ascii: who.ascii,
        incoming: t.kind !== "retr",
        complete: status === "ok",
      });
    }
    this.#transfer = null;
    await this.#s.reply(final);
  }
}
