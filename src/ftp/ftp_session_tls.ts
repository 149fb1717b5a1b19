/**
 * The FTPS part of a control connection (RFC 4217), split from `ftp_session.ts` as pyftpdlib splits its handler:
 * `AUTH TLS` (upgrading the paused control socket; plaintext pipelined after it is discarded, never executed),
 * `PBSZ` and `PROT` (in that order), and the TLS options the session's data connections use.
 *
 * @module
 */

import type { ByteConn } from "../net/byte_conn.ts";
import { NodeConn } from "../net/node_conn.ts";
import { type ServerTlsContext, TlsConn, upgradeServerSocket } from "../net/tls_server.ts";
import type { Logger } from "../log/logger.ts";
import type { DataChannel } from "./data_channel.ts";
import type { FtpTlsOptions, TlsDataOptions } from "./ftps.ts";

/** What the FTPS part needs from its session. */
export interface TlsSessionHooks {
  /** Session number, for log lines. */
  readonly id: number;
  /** The normalised control peer address. */
  readonly peerIp: string;
  /** The control connection now. */
  control(): ByteConn;
  /** Sends one reply on the control connection. */
  reply(text: string): Promise<void>;
  /** Replaces the control connection after the upgrade; returns how many buffered plaintext bytes were dropped. */
  setControl(conn: ByteConn): number;
  /** RFC 4217: after AUTH the user logs in again. */
  restartLogin(): void;
  /** The upgrade failed: the session ends. */
  fail(): void;
  /** True while another connection from this address is encrypted (or handshaking) but not logged in. */
  strangerPending(): boolean;
}

/**
 * One session's FTPS state: whether the control connection is encrypted, whether PBSZ was sent, and PROT.
 *
 * @example
 * ```ts
 * import type { Logger } from "../log/logger.ts";
 * import type { ServerTlsContext } from "../net/tls_server.ts";
 * import type { DataChannel } from "./data_channel.ts";
 * import type { FtpTlsOptions } from "./ftps.ts";
 *
 * declare const ctx: { tls: { opts: FtpTlsOptions; context: ServerTlsContext } | null }; // the server's FTPS setup
 * declare const log: Logger; // the session's logger
 * declare const dataChannel: DataChannel; // the session's data channel
 * declare const hooks: TlsSessionHooks; // implemented by the session
 * const tls = new SessionTls({ tls: ctx.tls, log, timeoutMs: 30_000, data: dataChannel, session: hooks });
 * await tls.auth("TLS");
 * ```
 */
export class SessionTls {
  readonly #tls: { opts: FtpTlsOptions; context: ServerTlsContext } | null;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #data: DataChannel;
  readonly #s: TlsSessionHooks;
  /** The control connection is TLS (after AUTH TLS, or from the start on the implicit port). */
  #control = false;
  /** PROT P: data connections use TLS. */
  #protP = false;
  /** PBSZ was sent on the encrypted control connection (RFC 4217: PROT before PBSZ is 503). */
  #pbsz = false;

  /**
   * Makes the FTPS state of one session (TLS off until AUTH TLS or {@link SessionTls.startImplicit}).
   *
   * @example
   * ```ts
   * import type { Logger } from "../log/logger.ts";
   * import type { DataChannel } from "./data_channel.ts";
   *
   * declare const log: Logger; // the session's logger
   * declare const dataChannel: DataChannel; // the session's data channel
   * declare const hooks: TlsSessionHooks; // implemented by the session
   * const tls = new SessionTls({ tls: null, log, timeoutMs: 30_000, data: dataChannel, session: hooks });
   * console.log(tls.control); // false: no TLS configured
   * ```
   */
  constructor(o: {
    tls: { opts: FtpTlsOptions; context: ServerTlsContext } | null;
    log: Logger;
    timeoutMs: number;
    data: DataChannel;
    session: TlsSessionHooks;
  }) {
    this.#tls = o.tls;
    this.#log = o.log;
    this.#timeoutMs = o.timeoutMs;
    this.#data = o.data;
    this.#s = o.session;
  }

  /** True when the control connection is encrypted. */
  get control(): boolean {
    return this.#control;
  }

  /** True while data connections are protected (PROT P). */
  get protectedData(): boolean {
    return this.#protP;
  }

  /** Implicit FTPS: the control connection is TLS from the first byte, and data is protected until PROT C. */
  startImplicit(): void {
    this.#control = true;
    this.#setProt(true);
  }

  #setProt(protect: boolean): void {
    const tls = this.#tls;
    this.#protP = protect && tls !== null;
    if (!this.#protP || !tls) {
      this.#data.setTls(null);
      return;
    }
    // Data connections handshake with the control connection's context (the TLS version chosen for this client),
    // so that they can resume its session.
    const control = this.#s.control();
    const data: TlsDataOptions = {
      context: (control instanceof TlsConn ? control.context : null) ?? tls.context,
      peerIp: this.#s.peerIp,
      requireSessionReuse: tls.opts.requireSessionReuse,
      timeoutMs: this.#timeoutMs,
      onRefused: (ip, reason) => this.#log.warn("tls.data_refused", { id: this.#s.id, ip, reason }),
      holdWhile: () => this.#s.strangerPending(),
    };
    this.#data.setTls(data);
  }

  /** AUTH TLS / AUTH SSL: answers 234, then upgrades the paused control socket; pipelined plaintext is dropped. */
  async auth(arg: string): Promise<void> {
    const tls = this.#tls;
    const s = this.#s;
    if (!tls) {
      await s.reply("502 TLS is not enabled on this server.");
      return;
    }
    const mech = arg.trim().toUpperCase();
    if (!["TLS", "SSL", "TLS-C", "TLS-P"].includes(mech)) {
      await s.reply("504 Unknown AUTH mechanism; use AUTH TLS.");
      return;
    }
    if (this.#control) {
      await s.reply("503 The control connection is already encrypted.");
      return;
    }
    const control = s.control();
    if (!(control instanceof NodeConn)) {
      await s.reply("431 TLS cannot be started on this connection.");
      return;
    }
    // Pause and detach first, so nothing the client sends after the 234 (its ClientHello) is read as plaintext.
    const raw = control.detach();
    raw.write("234 Proceed with TLS negotiation.\r\n");
    let conn: TlsConn;
    try {
      conn = await upgradeServerSocket(raw, tls.context, { timeoutMs: this.#timeoutMs });
    } catch (e) {
      this.#log.info("tls.upgrade_failed", { id: s.id, ip: s.peerIp, error: (e as Error).message });
      s.fail();
      raw.destroy();
      return;
    }
    const discarded = s.setControl(conn);
    this.#control = true;
    this.#pbsz = false;
    // RFC 4217: after AUTH the user must log in again; SSL historically implies protected data.
    s.restartLogin();
    this.#setProt(mech === "SSL" || mech === "TLS-P");
    this.#log.info("tls.upgrade", {
      id: s.id,
      ip: s.peerIp,
      protocol: conn.protocol ?? undefined,
      discarded,
    });
  }

  /** PBSZ: only 0 exists for TLS; needs an encrypted control connection. */
  async pbsz(arg: string): Promise<void> {
    const s = this.#s;
    if (!this.#tls) {
      await s.reply("502 TLS is not enabled on this server.");
      return;
    }
    if (!this.#control) {
      await s.reply("503 Send AUTH TLS first.");
      return;
    }
    if (!/^\d{1,10}$/.test(arg.trim())) {
      await s.reply("501 Syntax: PBSZ 0.");
      return;
    }
    this.#pbsz = true;
    await s.reply("200 PBSZ=0");
  }

  /** PROT P or C, after PBSZ (503 before it); clear data is refused in "required" mode. */
  async prot(arg: string): Promise<void> {
    const s = this.#s;
    const tls = this.#tls;
    if (!tls) {
      await s.reply("502 TLS is not enabled on this server.");
      return;
    }
    if (!this.#control) {
      await s.reply("503 Send AUTH TLS first.");
      return;
    }
    if (!this.#pbsz) {
      await s.reply("503 Send PBSZ 0 first.");
      return;
    }
    const level = arg.trim().toUpperCase();
    if (level === "P") {
      this.#setProt(true);
      await s.reply("200 Data connections will be encrypted (PROT P).");
    } else if (level === "C") {
      if (tls.opts.mode === "required") {
        await s.reply("534 Clear data connections are not allowed here; use PROT P.");
        return;
      }
      this.#setProt(false);
      await s.reply("200 Data connections will be in clear text (PROT C).");
    } else if (level === "S" || level === "E") {
      await s.reply("536 Only PROT P and PROT C are supported.");
    } else {
      await s.reply("504 Unknown protection level; use PROT P or PROT C.");
    }
  }
}
