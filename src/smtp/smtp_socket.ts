/**
 * The SMTP client's transport: TCP via `node:net`, implicit TLS and STARTTLS via `node:tls`, each adapted to
 * `ByteConn` (`src/net/byte_conn.ts`) so the protocol code reads replies with the shared `LineReader`.
 *
 * Why `node:tls` rather than `Deno.startTls`: outpost supports a SHA-256 certificate fingerprint pin, and a
 * `Deno.TlsConn` does not expose the peer certificate. `tls.connect({ socket })` upgrades the existing TCP socket
 * (STARTTLS) and `getPeerCertificate().fingerprint256` gives the pin check; it runs before a byte is written over
 * TLS. Certificates are verified against the configured CA file, else the runtime's root store; with a pin set the
 * pin alone decides (as msmtp's `tls_fingerprint`), so a self-signed relay can be pinned.
 *
 * Sockets are adapted by the shared {@link NodeConn} (paused mode, `'readable'` + `socket.read()`, no `'data'`
 * events; `write` resolves only once the socket has taken the bytes, so callers may reuse their buffer right after
 * `await write(...)`), with `throwPeerErrors` so a reset server surfaces as an error naming the stage. Every socket
 * is paused right after it is created: Deno's `node:tls` stops delivering data when a TLS socket is paused after
 * its handshake.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { NodeConn } from "../net/node_conn.ts";

/** The SMTP client's connection: a {@link NodeConn} that throws socket errors (see `throwPeerErrors`). */
function adapt(socket: net.Socket): NodeConn {
  return new NodeConn(socket, { throwPeerErrors: true });
}

/**
 * TLS settings for {@link connectSocket} and {@link upgradeSocket}.
 *
 * @example
 * ```ts
 * const opts: SmtpTlsOptions = { servername: "smtp.gmail.com", ca: undefined, fingerprintSha256: undefined };
 * console.log(opts.servername);
 * ```
 */
export interface SmtpTlsOptions {
  /** Name checked against the certificate and sent as SNI (omitted from SNI when it is an IP address). */
  servername: string;
  /** PEM text of the CA certificates to trust instead of the default root store. */
  ca?: string;
  /** Expected SHA-256 fingerprint of the server certificate, hex with or without colons. */
  fingerprintSha256?: string;
}

/**
 * Normalises a fingerprint to upper-case hex pairs joined by colons, or null if it is not 32 bytes of hex.
 *
 * @example
 * ```ts
 * normalizeFingerprint("ab".repeat(32)); // "AB:AB:...:AB"
 * ```
 */
export function normalizeFingerprint(fp: string): string | null {
  const hex = fp.replace(/[:\s]/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return null;
  return hex.match(/../g)!.join(":");
}

function timeoutError(what: string, ms: number): Error {
  return new Error(`${what} timed out after ${ms} ms.`);
}

function tlsConnectOptions(opts: SmtpTlsOptions): tls.ConnectionOptions {
  const isIp = net.isIP(opts.servername) !== 0;
  const o: tls.ConnectionOptions = {
    servername: isIp ? undefined : opts.servername,
    rejectUnauthorized: !opts.fingerprintSha256,
    minVersion: "TLSv1.2",
  };
  if (opts.ca) o.ca = opts.ca;
  if (isIp) {
    // Node checks IP SANs when the host is an IP; pass it explicitly since SNI must not carry an IP.
    o.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(opts.servername, cert);
  }
  return o;
}

function handshake(sock: tls.TLSSocket, opts: SmtpTlsOptions, timeoutMs: number): Promise<NodeConn> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.off("secureConnect", onSecure);
      sock.off("error", onError);
      if (err) {
        sock.destroy();
        reject(err);
      } else {
        resolve(adapt(sock));
      }
    };
    const onSecure = () => {
      if (opts.fingerprintSha256) {
        const want = normalizeFingerprint(opts.fingerprintSha256);
        const got = sock.getPeerCertificate()?.fingerprint256 ?? "";
        if (!want || got.toUpperCase() !== want) {
          finish(
            new Error(
              `the server certificate's SHA-256 fingerprint ${got || "(none)"} does not match the pin`,
            ),
          );
          return;
        }
      }
      finish(null);
    };
    const onError = (e: Error) => finish(e);
    const timer = setTimeout(() => finish(timeoutError("The TLS handshake", timeoutMs)), timeoutMs);
    sock.once("secureConnect", onSecure);
    sock.once("error", onError);
  });
}

/**
 * Opens a TCP connection, wrapped in TLS from the first byte when `tlsOpts` is given (implicit TLS, port 465).
 *
 * @example
 * ```ts
 * const conn = await connectSocket("smtp.gmail.com", 465, { servername: "smtp.gmail.com" }, 10_000);
 * console.log(conn.remoteAddress);
 * conn.close();
 * ```
 */
export function connectSocket(
  host: string,
  port: number,
  tlsOpts: SmtpTlsOptions | null,
  timeoutMs: number,
): Promise<NodeConn> {
  if (tlsOpts) {
    const sock = tls.connect({ host, port, ...tlsConnectOptions(tlsOpts) });
    sock.pause();
    return handshake(sock, tlsOpts, timeoutMs);
  }
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    sock.pause();
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.off("connect", onConnect);
      sock.off("error", finish);
      if (err) {
        sock.destroy();
        reject(err);
      } else {
        resolve(adapt(sock));
      }
    };
    const onConnect = () => finish(null);
    const timer = setTimeout(() => finish(timeoutError("Connecting", timeoutMs)), timeoutMs);
    sock.once("connect", onConnect);
    sock.once("error", finish);
  });
}

/**
 * Upgrades a plain connection to TLS after the server accepted STARTTLS. The old adapter is detached (its
 * buffered bytes are dropped); the returned connection reads and writes through TLS.
 *
 * @example
 * ```ts
 * const plain = await connectSocket("smtp.example.com", 587, null, 10_000); // after EHLO and STARTTLS
 * const secure = await upgradeSocket(plain, { servername: "smtp.example.com" }, 10_000);
 * secure.close();
 * ```
 */
export function upgradeSocket(
  conn: NodeConn,
  opts: SmtpTlsOptions,
  timeoutMs: number,
): Promise<NodeConn> {
  const raw = conn.detach();
  const sock = tls.connect({ socket: raw, ...tlsConnectOptions(opts) });
  sock.pause();
  return handshake(sock, opts, timeoutMs).catch((e) => {
    raw.destroy();
    throw e;
  });
}
