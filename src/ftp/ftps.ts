/**
 * FTPS (RFC 4217) for the FTP server: the `[ftp.tls]` config, the server's TLS context and certificate, and the
 * TLS data connections of one session, bound to that session.
 *
 * ```toml
 * [ftp.tls]
 * mode = "optional"                  # "off" | "optional" (AUTH TLS offered) | "required" (no plaintext login)
 * cert = "/etc/outpost/cert.pem"     # optional: default <state_dir>/tls/cert.pem, created at first start
 * key = "/etc/outpost/key.pem"       # optional, together with cert
 * implicit_port = 990                # implicit FTPS (ftps://) listener; 0 = off. Default 990 when mode != "off"
 * cert_dir = "/var/lib/outpost/tls"  # where the self-signed pair is created when cert/key are not given
 * require_tls_session_reuse = true   # data connections must resume the control connection's TLS session
 * max_version = "auto"               # "auto" (default): per client, see below; "1.2" or "1.3" forces it
 * ```
 *
 * Which TLS version, and why it is chosen per client: a TLS 1.3 server sends session tickets after every
 * handshake, data connections included, and Deno's node:tls cannot be told not to. Clients that close a data
 * connection without reading them (lftp/GnuTLS does) leave those bytes unread, so their kernel answers with a TCP
 * reset instead of a clean close, and a reset makes this server's kernel throw away the end of an upload it had
 * not read yet: the upload is cut short (refused, never committed). TLS 1.2 sends nothing after the handshake
 * (its ticket comes inside it), and is still strong here: rustls offers only ECDHE key exchange with AEAD
 * ciphers (AES-GCM, ChaCha20-Poly1305), no RSA key exchange, no CBC, no RC4/3DES. But Deno's TLS server resumes
 * TLS 1.2 sessions by session ticket only, not by session id, and curl turns TLS 1.2 tickets off: over TLS 1.2
 * its data connections resume nothing, while over TLS 1.3 it reads the tickets and resumes.
 *
 * So with `max_version = "auto"` (the default) the server reads each control connection's ClientHello (AUTH TLS
 * and the implicit port) before the handshake (`src/net/client_hello.ts`) and picks: TLS 1.2 when the client
 * offers the TLS 1.2 `session_ticket` extension (lftp and FileZilla via GnuTLS, Python's ftplib via OpenSSL),
 * TLS 1.3 when it does not but offers TLS 1.3 (curl), TLS 1.2 otherwise. The session's data connections use the
 * same context as its control connection (one context per version; nothing relies on the two sharing ticket
 * keys), so they can resume its session. `"1.2"` or `"1.3"` forces one version for every client; over a forced
 * 1.2 curl cannot resume (a refused data connection's log line names the fix).
 *
 * A data connection belongs to the session that set it up only when all of these hold: its peer address is the
 * control connection's (checked before the handshake), it arrived on the passive port this session opened (a
 * port serves one connection of one session and then closes), and, with `require_tls_session_reuse`, its TLS
 * handshake resumed a session rather than starting afresh. The TLS session cache is process-wide, so resumption
 * alone would not prove the same client; together with the address and the one-time port it stops data-port
 * theft by another client.
 *
 * @module
 */

import type { Section } from "../config/section.ts";
import type { Logger } from "../log/logger.ts";
import type { ByteConn } from "../net/byte_conn.ts";
import { closeQuietly } from "../net/byte_conn.ts";
import { certificateFingerprint, ensureCertificate } from "../net/certificate.ts";
import { preferredMaxVersion } from "../net/client_hello.ts";
import {
  connectTlsData,
  createServerTlsContext,
  type ServerTlsContext,
  type TlsConn,
  TlsListener,
} from "../net/tls_server.ts";

/** `[ftp.tls]` as the server uses it. */
export interface FtpTlsOptions {
  /** "off": plain FTP only; "optional": AUTH TLS offered; "required": login and data need TLS. */
  mode: "off" | "optional" | "required";
  /** PEM certificate path; when absent, `<certDir>/cert.pem`, created at first start. */
  certPath?: string;
  /** PEM key path; when absent, `<certDir>/key.pem`. */
  keyPath?: string;
  /** Where a self-signed certificate is kept when none is configured (default /var/lib/outpost/tls). */
  certDir: string;
  /** Host name for a created certificate (default: this machine's). */
  certHostname?: string;
  /** Implicit FTPS port (clients' `ftps://`); null = no implicit listener, 0 = any free port (tests). */
  implicitPort: number | null;
  /** Address for the implicit listener (default: the FTP server's). */
  implicitHost?: string;
  /** Data connections must resume a TLS session (vsftpd's require_ssl_reuse). */
  requireSessionReuse: boolean;
  /** Newest TLS version offered (`max_version`): "auto" (per client, the default), "1.2" or "1.3"; see above. */
  maxVersion: "auto" | "1.2" | "1.3";
}

/**
 * Defaults: TLS off; when turned on, implicit FTPS on 990, session reuse required, TLS version chosen per client.
 *
 * @example
 * ```ts
 * const tls = { ...defaultFtpTlsOptions(), mode: "optional", implicitPort: 0 };
 * console.log(tls.certDir); // "/var/lib/outpost/tls"
 * ```
 */
export function defaultFtpTlsOptions(): FtpTlsOptions {
  return {
    mode: "off",
    certDir: "/var/lib/outpost/tls",
    implicitPort: null,
    requireSessionReuse: true,
    maxVersion: "auto",
  };
}

/**
 * Reads `[ftp.tls]`; problems are recorded in the section as `ftp.tls.key: problem`.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * declare const ftp: Section; // the [ftp] table
 * const tls = readFtpTlsConfig(ftp.section("tls"));
 * console.log(tls.mode);
 * ```
 */
export function readFtpTlsConfig(tls: Section): FtpTlsOptions {
  const d = defaultFtpTlsOptions();
  const mode = tls.string("mode", { default: "off", oneOf: ["off", "optional", "required"] }) as
    | "off"
    | "optional"
    | "required";
  const certPath = tls.filePath("cert");
  const keyPath = tls.filePath("key");
  if ((certPath === undefined) !== (keyPath === undefined)) {
    tls.problem(certPath === undefined ? "cert" : "key", "cert and key must be given together");
  }
  const port = tls.int("implicit_port", { default: mode === "off" ? 0 : 990, min: 0, max: 65535 });
  const implicitPort = port === 0 || mode === "off" ? null : port;
  const requireSessionReuse = tls.bool("require_tls_session_reuse", true);
  const certDir = tls.filePath("cert_dir", { default: d.certDir });
  const maxVersion = readMaxVersion(tls, d.maxVersion);
  tls.finish();
  return { mode, certPath, keyPath, certDir, implicitPort, requireSessionReuse, maxVersion };
}

/** `max_version`: "auto", "1.2" or "1.3"; a bare TOML number (1.2, 1.3) is accepted too. */
function readMaxVersion(tls: Section, fallback: FtpTlsOptions["maxVersion"]): FtpTlsOptions["maxVersion"] {
  const v = tls.raw("max_version");
  if (v === undefined) return fallback;
  const s = typeof v === "number" ? v.toFixed(1) : v;
  if (s === "auto" || s === "1.2" || s === "1.3") return s;
  tls.problem("max_version", `must be "1.2" or "1.3" (or "auto"), got ${JSON.stringify(v)}`);
  return fallback;
}

/**
 * Loads (or creates, at first start) the certificate and builds the shared TLS context. Logs the fingerprint.
 * Throws with a sentence-case message when the files cannot be read or used.
 *
 * @example
 * ```ts
 * import type { Logger } from "../log/logger.ts";
 *
 * declare const opts: { tls: FtpTlsOptions }; // the FTP server's options
 * declare const log: Logger; // the server's logger
 * const ctx = await loadFtpTlsContext(opts.tls, log);
 * console.log(ctx);
 * ```
 */
export async function loadFtpTlsContext(opts: FtpTlsOptions, log: Logger): Promise<ServerTlsContext> {
  let certPath = opts.certPath, keyPath = opts.keyPath;
  if (!certPath || !keyPath) {
    const hostname = opts.certHostname ?? safeHostname();
    const c = await ensureCertificate(opts.certDir, hostname);
    ({ certPath, keyPath } = c);
    if (c.created) log.info("tls.certificate_created", { path: certPath, hostname, sha256: c.fingerprint });
  }
  let cert: string, key: string;
  try {
    [cert, key] = [await Deno.readTextFile(certPath), await Deno.readTextFile(keyPath)];
  } catch (e) {
    throw new Error(`FTPS not started: the certificate or key cannot be read (${(e as Error).message}).`);
  }
  const tls12 = createServerTlsContext({ cert, key, maxVersion: "TLSv1.2" });
  let ctx = tls12;
  if (opts.maxVersion === "1.3") ctx = createServerTlsContext({ cert, key, maxVersion: "TLSv1.3" });
  if (opts.maxVersion === "auto") {
    // One context per version: a session's data connections handshake with its control connection's context.
    const tls13 = createServerTlsContext({ cert, key, maxVersion: "TLSv1.3" });
    ctx = {
      ...tls12,
      select: (hello) => preferredMaxVersion(hello) === "TLSv1.3" ? tls13 : tls12,
    };
  }
  log.info("tls.certificate", {
    path: certPath,
    sha256: certificateFingerprint(cert),
    max_version: opts.maxVersion,
  });
  return ctx;
}

function safeHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "outpost";
  }
}

/**
 * A TLS data connection could not be made or was refused (no port free, timed out, not resumed); the message
 * is safe for the client, and `DataChannel` sends it with 425.
 *
 * @example
 * ```ts
 * throw new TlsDataRefused("Can't open data connection: it was already used.");
 * ```
 */
export class TlsDataRefused extends Error {
  /**
   * Makes the refusal; `reason` becomes the message, so it must not contain host details.
   *
   * @example
   * ```ts
   * const e = new TlsDataRefused("Can't open data connection: no secure data connection arrived in time.");
   * console.log(`425 ${e.message}`);
   * ```
   */
  constructor(reason: string) {
    super(reason);
    this.name = "TlsDataRefused";
  }
}

/**
 * How one session's TLS data connections are made and checked (after PROT P).
 *
 * @example
 * ```ts
 * import type { Logger } from "../log/logger.ts";
 * import type { ServerTlsContext } from "../net/tls_server.ts";
 *
 * declare const context: ServerTlsContext; // from loadFtpTlsContext
 * declare const log: Logger; // the session's logger
 * const tlsData: TlsDataOptions = {
 *   context,
 *   peerIp: "192.168.1.7",
 *   requireSessionReuse: true,
 *   timeoutMs: 30_000,
 *   onRefused: (ip, reason) => log.warn("tls.data_refused", { ip, reason }),
 * };
 * console.log(tlsData.timeoutMs);
 * ```
 */
export interface TlsDataOptions {
  /**
   * The TLS context of the session's control connection (certificate, key, TLS versions, session lifetime), so
   * that data connections can resume its session.
   */
  context: ServerTlsContext;
  /** The control peer's normalised address. */
  peerIp: string;
  /** Refuse a data connection that does not resume the control connection's TLS session (425). */
  requireSessionReuse: boolean;
  /** Handshake and connect time limit, in milliseconds. */
  timeoutMs: number;
  /** A line for each refused data connection. */
  onRefused: (ip: string, reason: string) => void;
  /**
   * While this returns true, a passive data connection is held before it is used; still true after `timeoutMs`,
   * it is refused. The session passes "another connection from this address is encrypted but not logged in":
   * Deno's TLS server resumes any session of the process, so such a client could otherwise resume a TLS session
   * of its own on this session's passive port and take its data.
   */
  holdWhile?: () => boolean;
}

/**
 * One passive TLS data port: accepts connections from the control peer only, handshakes, checks session reuse,
 * and hands the first good connection over once; strays are refused and logged while it keeps waiting.
 *
 * @example
 * ```ts
 * import { formatEpsvReply } from "./address.ts";
 *
 * declare const tlsData: TlsDataOptions; // the session's TLS data options
 * declare function reply(text: string): Promise<void>; // sends a control reply
 * const slot = await TlsPassiveSlot.open("127.0.0.1", 0, 0, tlsData);
 * await reply(formatEpsvReply(slot.port));
 * const conn = await slot.take();
 * conn.close();
 * ```
 */
export class TlsPassiveSlot {
  /** The bound port, for the PASV/EPSV reply. */
  readonly port: number;
  readonly #listener: TlsListener;
  readonly #timer: ReturnType<typeof setTimeout>;
  #conn: Promise<TlsConn | null>;
  #used = false;

  readonly #hold: (() => boolean) | undefined;
  readonly #timeoutMs: number;
  readonly #onRefused: (reason: string) => void;

  /** Set when the control peer's own data connection was refused: `take()` answers at once instead of waiting. */
  #refusal: string | null = null;

  private constructor(
    listener: TlsListener,
    timeoutMs: number,
    o: TlsDataOptions,
    refused: Promise<string>,
  ) {
    this.#hold = o.holdWhile;
    this.#timeoutMs = timeoutMs;
    this.#onRefused = (reason) => o.onRefused(o.peerIp, reason);
    this.#listener = listener;
    this.port = listener.port;
    this.#timer = setTimeout(() => this.close(), timeoutMs);
    this.#conn = Promise.race([
      listener.accept(),
      refused.then((why) => {
        this.#refusal = why;
        return null;
      }),
    ]).then(async (c) => {
      clearTimeout(this.#timer);
      await listener.close();
      return c;
    });
  }

  /** Binds a free port in [portMin, portMax] (0/0 = any) on `bindHost`. */
  static async open(
    bindHost: string,
    portMin: number,
    portMax: number,
    o: TlsDataOptions,
  ): Promise<TlsPassiveSlot> {
    // A connection from the control peer that fails the session check is the client's own data connection in
    // all likelihood: refuse the transfer now (425) rather than after the data timeout, so the user sees the
    // reason at once. A stranger's connection is only logged.
    const refused = Promise.withResolvers<string>();
    const make = (port: number) =>
      new TlsListener({
        hostname: bindHost,
        port,
        context: o.context,
        timeoutMs: o.timeoutMs,
        backlog: 2,
        admit: (ip) => ip === o.peerIp,
        verify: (c) => o.requireSessionReuse && !c.sessionReused ? notResumed(c.protocol) : null,
        onReject: (ip, why) => {
          o.onRefused(ip, ip === o.peerIp ? why : "the data peer is not the control peer");
          if (ip === o.peerIp) refused.resolve(why);
        },
      });
    if (portMin === 0 && portMax === 0) {
      const l = make(0);
      await l.listen();
      return new TlsPassiveSlot(l, o.timeoutMs, o, refused.promise);
    }
    const span = portMax - portMin + 1;
    const start = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const l = make(portMin + ((start + i) % span));
      try {
        await l.listen();
        return new TlsPassiveSlot(l, o.timeoutMs, o, refused.promise);
      } catch {
        await l.close();
      }
    }
    throw new TlsDataRefused("Can't open passive connection: every port in the passive range is busy.");
  }

  /** Resolves to the session's data connection (once); throws when none came or it was already taken. */
  async take(): Promise<ByteConn> {
    if (this.#used) throw new TlsDataRefused("Can't open data connection: it was already used.");
    this.#used = true;
    const c = await this.#conn;
    if (!c && this.#refusal !== null) {
      throw new TlsDataRefused(
        "Can't open data connection: it did not resume the control connection's TLS session.",
      );
    }
    if (!c) {
      throw new TlsDataRefused("Can't open data connection: no secure data connection arrived in time.");
    }
    const hold = this.#hold;
    if (hold) {
      // Bounded: checked every 50 ms until the data timeout.
      const until = Date.now() + this.#timeoutMs;
      while (hold() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      if (hold()) {
        closeQuietly(c);
        this.#onRefused(
          "another connection from the same address is encrypted but has not logged in: the data connection " +
            "could be its own",
        );
        throw new TlsDataRefused(
          "Can't open data connection: another connection from your address has not logged in yet.",
        );
      }
    }
    return c;
  }

  /** Closes the port and any connection nobody took. */
  close(): void {
    clearTimeout(this.#timer);
    this.#listener.close();
    if (!this.#used) {
      this.#used = true;
      this.#conn.then((c) => closeQuietly(c), () => {});
    }
  }
}

/** The refusal reason for the log, with the setting that fixes each likely cause. */
function notResumed(protocol: string | null): string {
  const why = "the data connection did not resume the control connection's TLS session";
  // A client that never resumes (Python's ftplib by default, many small libraries) needs the check off. Deno's
  // TLS server resumes TLS 1.2 sessions by ticket only, so a client resuming by session id (curl) must get 1.3.
  const never = "a client that never resumes its data connections (Python's ftplib by default) needs " +
    "[ftp.tls] require_tls_session_reuse = false";
  return protocol === "TLSv1.2"
    ? `${why}: ${never}; one that resumes by session id (curl) needs TLS 1.3: remove max_version (default ` +
      `"auto") or set max_version = "1.3"`
    : `${why}: ${never}`;
}

/**
 * Active mode with PROT P: connects to the client and is the TLS server on that connection, then applies the
 * same session-reuse rule.
 *
 * @example
 * ```ts
 * declare const tlsData: TlsDataOptions; // the session's TLS data options
 * const conn = await connectTlsActive("127.0.0.1", 40000, tlsData);
 * conn.close();
 * ```
 */
export async function connectTlsActive(host: string, port: number, o: TlsDataOptions): Promise<ByteConn> {
  const conn = await connectTlsData(host, port, o.context, { timeoutMs: o.timeoutMs });
  if (o.requireSessionReuse && !conn.sessionReused) {
    o.onRefused(host, notResumed(conn.protocol));
    conn.close();
    throw new TlsDataRefused(
      "Can't open data connection: it did not resume the control connection's TLS session.",
    );
  }
  return conn;
}
