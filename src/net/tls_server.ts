/**
 * Server-side TLS for FTPS: upgrading a plain `node:net` socket after `AUTH TLS`, accepting implicit-TLS and
 * TLS data connections, and connecting TLS data channels for active mode.
 *
 * Deno's own `Deno.startTls` is client-only, so the server side uses `node:tls`:
 * `new TLSSocket(socket, { isServer: true })`. The socket must be **paused** before it is wrapped (accept with
 * `pauseOnConnect`, and {@link NodeConn.detach} pauses it), otherwise bytes the stream already read, such as the
 * ClientHello, bypass the TLS layer. Plaintext a client pipelined after `AUTH TLS` must never be executed: drop
 * what the line reader buffered with `LineReader.setSource(tlsConn)` (it returns the count to log).
 *
 * ```ts
 * // The upgrade point of a STARTTLS-style protocol (FTP AUTH TLS):
 * const raw = control.detach();                 // paused, listeners off, adapter buffer dropped
 * raw.write("234 Proceed with negotiation.\r\n");
 * const tlsConn = await upgradeServerSocket(raw, context);
 * const dropped = reader.setSource(tlsConn);   // plaintext pipelined after AUTH TLS: discarded, never executed
 * ```
 *
 * Data connections prove they belong to a control session partly by TLS session resumption
 * ({@link TlsConn.sessionReused}); every connection of one process shares one {@link ServerTlsContext} so that a
 * data connection can resume the session its control connection negotiated. The session cache is process-wide, so
 * resumption alone does not prove the same client: the FTP server also checks the peer address and the passive
 * port's owner.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import type { ByteConn } from "./byte_conn.ts";

/** Certificate and key (PEM text) and protocol limits for {@link createServerTlsContext}. */
export interface ServerTlsOptions {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** PEM private key (PKCS#8, SEC1 or PKCS#1). */
  key: string;
  /** Oldest protocol accepted; default and floor "TLSv1.2". */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** How long a session can be resumed, in seconds; default 3600. */
  sessionTimeoutS?: number;
}

/** A shared server context: one per process (or per certificate), reused by every connection. */
export interface ServerTlsContext {
  /** The node:tls secure context. */
  readonly secureContext: tls.SecureContext;
  /** Session lifetime in seconds, applied to each socket. */
  readonly sessionTimeoutS: number;
}

/**
 * Builds the shared TLS context (TLS 1.2 minimum, session tickets and ids on).
 * Throws with a sentence-case message when the certificate or key cannot be used.
 *
 * @example
 * ```ts
 * const ctx = createServerTlsContext({ cert: await Deno.readTextFile("cert.pem"), key: await Deno.readTextFile("key.pem") });
 * ```
 */
export function createServerTlsContext(opts: ServerTlsOptions): ServerTlsContext {
  try {
    const secureContext = tls.createSecureContext({
      cert: opts.cert,
      key: opts.key,
      minVersion: opts.minVersion ?? "TLSv1.2",
      sessionTimeout: opts.sessionTimeoutS ?? 3600,
      sessionIdContext: "outpost-ftps",
    });
    return { secureContext, sessionTimeoutS: opts.sessionTimeoutS ?? 3600 };
  } catch (e) {
    throw new Error(`TLS not configured: the certificate or key cannot be used (${(e as Error).message}).`);
  }
}

/**
 * Unread decrypted bytes a {@link TlsConn} holds before it pauses its socket.
 *
 * @example
 * ```ts
 * console.log(TLS_READ_HIGH_WATER); // 8388608
 * ```
 */
export const TLS_READ_HIGH_WATER = 8 << 20;

/**
 * A {@link ByteConn} over a server-side `TLSSocket`.
 *
 * Reads copy decrypted chunks into the caller's buffer and keep the remainder (node:tls allocates the decrypted
 * chunks itself). This adapter uses the flowing mode (`'data'` events) instead of paused-mode `read()`, because
 * Deno 2.9's server-side TLSSocket never reports the end of the stream (close_notify or FIN) in paused mode, nor
 * when the end arrives while the socket is paused: an upload would never finish. So the socket is paused only when
 * more than {@link TLS_READ_HIGH_WATER} bytes wait unread (a consumer slower than the network), and resumed below
 * a quarter of it; memory per connection stays bounded, and in that overload case a lost end of stream is caught
 * by the caller's stall timeout instead of hanging.
 *
 * {@link TlsConn.write} resolves once the TLS layer has consumed the bytes, so a data transfer can refill the same
 * buffer right after each write (the one-reused-buffer rule).
 *
 * @example
 * ```ts
 * const conn = await upgradeServerSocket(rawSocket, ctx);
 * const buf = new Uint8Array(64 * 1024);
 * const n = await conn.read(buf);
 * if (n !== null) await conn.write(buf.subarray(0, n));
 * await conn.end(2000);
 * ```
 */
export class TlsConn implements ByteConn {
  /** The wrapped TLS socket. */
  readonly tlsSocket: tls.TLSSocket;
  readonly #remoteAddress: string;
  readonly #remotePort: number;
  readonly #localAddress: string;
  readonly #reused: boolean;
  readonly #protocol: string | null;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #closed = false;
  #draining = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(socket: tls.TLSSocket, remote: { address: string; port: number; local: string }) {
    this.tlsSocket = socket;
    this.#remoteAddress = remote.address;
    this.#remotePort = remote.port;
    this.#localAddress = remote.local;
    // Read once at handshake time: node:tls forgets both once the socket is destroyed.
    this.#reused = socket.isSessionReused();
    this.#protocol = socket.getProtocol?.() ?? null;
    socket.on("data", (chunk: Uint8Array) => {
      if (this.#draining || this.#closed) return;
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > TLS_READ_HIGH_WATER && !this.#paused) {
        this.#paused = true;
        socket.pause();
      }
      this.#notify();
    });
    const onEnd = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", (e: Error) => {
      this.#error = e;
      this.#notify();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** The peer's address as seen at accept time (IPv4-mapped form normalised to plain IPv4); kept after close. */
  get remoteAddress(): string {
    return this.#remoteAddress;
  }

  /** The peer's port, kept after close. */
  get remotePort(): number {
    return this.#remotePort;
  }

  /** The local address the peer connected to; kept after close. */
  get localAddress(): string {
    return this.#localAddress;
  }

  /** True when the handshake resumed an earlier session (ticket or session id) instead of a full handshake. */
  get sessionReused(): boolean {
    return this.#reused;
  }

  /** Same as {@link TlsConn.sessionReused}, named as in node:tls. */
  isSessionReused(): boolean {
    return this.#reused;
  }

  /** The negotiated protocol, e.g. "TLSv1.3", or null when unknown. */
  get protocol(): string | null {
    return this.#protocol;
  }

  /** The negotiated cipher name, e.g. "TLS_AES_256_GCM_SHA384", or "" when unknown. */
  get cipher(): string {
    try {
      return this.tlsSocket.getCipher()?.name ?? "";
    } catch {
      return "";
    }
  }

  /** Reads into `buf`; resolves to the byte count, or `null` at the end of the stream or after close(). */
  async read(buf: Uint8Array): Promise<number | null> {
    for (;;) {
      const head = this.#chunks[0];
      if (head !== undefined) {
        const n = Math.min(head.length, buf.length);
        buf.set(n === head.length ? head : head.subarray(0, n));
        if (n === head.length) this.#chunks.shift();
        else this.#chunks[0] = head.subarray(n);
        this.#queued -= n;
        if (this.#paused && this.#queued < TLS_READ_HIGH_WATER / 4) {
          this.#paused = false;
          this.tlsSocket.resume();
        }
        return n;
      }
      if (this.#closed) return null;
      // A reset is an error, not an end: an upload cut short must not be committed as complete.
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /**
   * Writes all of `data` and resolves when the TLS layer has taken it, so the caller may reuse `data` at once.
   * Rejects when the connection fails or closes first.
   */
  write(data: Uint8Array): Promise<number> {
    const s = this.tlsSocket;
    if (this.#closed || s.destroyed || !s.writable) {
      return Promise.reject(new Error("Write failed: the TLS connection is closed."));
    }
    return new Promise<number>((resolve, reject) => {
      const onClose = () => {
        s.off("close", onClose);
        reject(new Error("Write failed: the TLS connection closed during the write."));
      };
      s.on("close", onClose);
      s.write(data, (err?: Error | null) => {
        s.off("close", onClose);
        if (err) reject(new Error(`Write failed: ${err.message}`));
        else resolve(data.length);
      });
    });
  }

  /**
   * Ends the connection cleanly: sends TLS close_notify and FIN, discards what the peer still sends until it
   * closes too (clients such as Python's ftplib wait for the close_notify), at most `timeoutMs`, then destroys it.
   */
  async end(timeoutMs = 2000): Promise<void> {
    if (this.#closed) return;
    const s = this.tlsSocket;
    this.#draining = true;
    this.#chunks.length = 0;
    this.#queued = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      if (s.destroyed) return resolve();
      // Once the peer has ended, wait only for our close_notify to be flushed; else for the peer to end too.
      const peerDone = this.#ended;
      const events = peerDone ? ["close", "finish", "error"] : ["close", "end", "error"];
      const done = () => {
        for (const ev of events) s.off(ev, done);
        resolve();
      };
      for (const ev of events) s.on(ev, done);
      timer = setTimeout(done, timeoutMs);
      s.resume();
      try {
        if (s.writableEnded) {
          if (s.writableFinished) done();
        } else {
          s.end();
        }
      } catch {
        done();
      }
    });
    clearTimeout(timer);
    this.close();
  }

  /** Same as {@link TlsConn.end}. */
  shutdown(timeoutMs = 2000): Promise<void> {
    return this.end(timeoutMs);
  }

  /** Destroys the connection at once (no close_notify); pending reads resolve to null. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#chunks.length = 0;
    this.tlsSocket.destroy();
    this.#notify();
  }
}

/** Options for one handshake. */
export interface HandshakeOptions {
  /** Give up (and destroy the socket) when the handshake has not finished in this time; default 10 000 ms. */
  timeoutMs?: number;
}

/** "::ffff:127.0.0.1" -> "127.0.0.1"; other addresses unchanged. */
function plainIp(ip: string | undefined): string {
  const s = ip ?? "";
  return s.toLowerCase().startsWith("::ffff:") && s.includes(".") ? s.slice(7) : s;
}

/**
 * Upgrades a paused plain socket to server-side TLS and resolves to a {@link TlsConn} once the handshake is done.
 * The socket must not be read from any more by its previous owner (see {@link NodeConn.detach}). Rejects (and
 * destroys the socket) on a failed or timed-out handshake, with a sentence-case message.
 *
 * @example
 * ```ts
 * import { createServer } from "node:net";
 * createServer({ pauseOnConnect: true }, async (sock) => {
 *   const conn = await upgradeServerSocket(sock, ctx);
 *   console.log(conn.protocol, conn.sessionReused);
 * });
 * ```
 */
export function upgradeServerSocket(
  socket: net.Socket,
  ctx: ServerTlsContext,
  opts: HandshakeOptions = {},
): Promise<TlsConn> {
  const remote = {
    address: plainIp(socket.remoteAddress),
    port: socket.remotePort ?? 0,
    local: plainIp(socket.localAddress),
  };
  // Bytes the plain socket read ahead would bypass TLS: pausing keeps the rest in the kernel for the TLS layer.
  socket.pause();
  const t = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: ctx.secureContext,
    requestCert: false,
  } as tls.TLSSocketOptions);
  return new Promise<TlsConn>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      t.off("secure", onSecure);
      t.off("error", onError);
      t.off("close", onClose);
      if (err) {
        t.destroy();
        socket.destroy();
        reject(err);
      } else {
        resolve(new TlsConn(t, remote));
      }
    };
    const onSecure = () => finish(null);
    const onError = (e: Error) => finish(new Error(`TLS handshake failed: ${e.message}`));
    const onClose = () => finish(new Error("TLS handshake failed: the peer closed the connection."));
    const timer = setTimeout(
      () => finish(new Error("TLS handshake failed: the peer did not finish it in time.")),
      opts.timeoutMs ?? 10_000,
    );
    t.on("secure", onSecure);
    t.on("error", onError);
    t.on("close", onClose);
  });
}

/** Options for {@link TlsListener}. */
export interface TlsListenerOptions extends HandshakeOptions {
  /** Address to bind, e.g. "127.0.0.1", "::", "0.0.0.0". */
  hostname: string;
  /** Port to bind; 0 = ephemeral. */
  port: number;
  /** The shared context (see {@link createServerTlsContext}). */
  context: ServerTlsContext;
  /**
   * Called with the peer address before the handshake; return false to drop the connection without spending a
   * handshake on it (a passive data port accepts only the control peer's address).
   */
  admit?: (remoteAddress: string, remotePort: number) => boolean;
  /**
   * Called after the handshake; return a reason to drop the connection, or null to accept it. FTPS data ports use
   * it to require that the data connection resumed a TLS session.
   */
  verify?: (conn: TlsConn) => string | null;
  /** Called when a connection is dropped by `admit` or `verify` or fails its handshake (for a log line). */
  onReject?: (remoteAddress: string, reason: string) => void;
  /** Accepted connections waiting for {@link TlsListener.accept}; more are refused. Default 8. */
  backlog?: number;
}

/**
 * A `node:net` listener whose sockets are upgraded to TLS immediately: the implicit-FTPS control port (990), and
 * the passive data port of a session that sent `PROT P`.
 *
 * @example
 * ```ts
 * const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
 * await l.listen();
 * const conn = await l.accept();   // null once closed
 * await l.close();
 * ```
 */
export class TlsListener {
  readonly #opts: TlsListenerOptions;
  readonly #server: net.Server;
  readonly #ready: TlsConn[] = [];
  readonly #pending = new Set<net.Socket>();
  #waiter: ((c: TlsConn | null) => void) | null = null;
  #closed = false;
  #port = 0;

  constructor(opts: TlsListenerOptions) {
    this.#opts = opts;
    this.#server = net.createServer({ pauseOnConnect: true }, (sock) => this.#onSocket(sock));
  }

  /** The bound port (after {@link TlsListener.listen}). */
  get port(): number {
    return this.#port;
  }

  /** Connections accepted and handshaken but not yet taken. */
  get queued(): number {
    return this.#ready.length;
  }

  /** Binds and starts accepting. Rejects with a sentence-case message when the address cannot be bound. */
  listen(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        reject(
          new Error(`TLS listener not started on ${this.#opts.hostname}:${this.#opts.port}: ${e.message}`),
        );
      };
      this.#server.once("error", onError);
      this.#server.listen({ host: this.#opts.hostname, port: this.#opts.port }, () => {
        this.#server.off("error", onError);
        this.#port = (this.#server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  async #onSocket(sock: net.Socket): Promise<void> {
    const ip = plainIp(sock.remoteAddress);
    const port = sock.remotePort ?? 0;
    if (this.#closed || (this.#ready.length + this.#pending.size) >= (this.#opts.backlog ?? 8)) {
      this.#opts.onReject?.(ip, "too many pending connections");
      sock.destroy();
      return;
    }
    if (this.#opts.admit && !this.#opts.admit(ip, port)) {
      this.#opts.onReject?.(ip, "not admitted");
      sock.destroy();
      return;
    }
    sock.on("error", () => {}); // reported through the handshake
    this.#pending.add(sock);
    try {
      const conn = await upgradeServerSocket(sock, this.#opts.context, this.#opts);
      this.#pending.delete(sock);
      if (this.#closed) {
        conn.close();
        return;
      }
      const refusal = this.#opts.verify?.(conn) ?? null;
      if (refusal !== null) {
        this.#opts.onReject?.(ip, refusal);
        conn.close();
        return;
      }
      const w = this.#waiter;
      if (w) {
        this.#waiter = null;
        w(conn);
      } else {
        this.#ready.push(conn);
      }
    } catch (e) {
      this.#pending.delete(sock);
      this.#opts.onReject?.(ip, (e as Error).message);
    }
  }

  /** Resolves to the next handshaken connection, or null once the listener is closed. One caller at a time. */
  accept(): Promise<TlsConn | null> {
    const c = this.#ready.shift();
    if (c) return Promise.resolve(c);
    if (this.#closed) return Promise.resolve(null);
    if (this.#waiter) return Promise.reject(new Error("Accept failed: another accept() is already waiting."));
    return new Promise((resolve) => this.#waiter = resolve);
  }

  /**
   * Stops listening, closes queued and handshaking connections; a waiting accept() resolves to null. Connections
   * already taken with accept() stay open.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const c of this.#ready.splice(0)) c.close();
    for (const s of this.#pending) s.destroy();
    this.#pending.clear();
    const w = this.#waiter;
    this.#waiter = null;
    w?.(null);
    // net.Server.close() calls back only when every accepted socket has closed too; the accepted connections
    // belong to their takers, so the listener is done as soon as it stops accepting.
    this.#server.close();
    return Promise.resolve();
  }
}

/**
 * Active-mode FTPS data channel: connects to the client's `PORT`/`EPRT` address and acts as the TLS **server**
 * on that connection (RFC 4217: the FTP client is always the TLS client).
 *
 * @example
 * ```ts
 * const conn = await connectTlsData("127.0.0.1", 40000, ctx, { timeoutMs: 10_000 });
 * ```
 */
export function connectTlsData(
  host: string,
  port: number,
  ctx: ServerTlsContext,
  opts: HandshakeOptions = {},
): Promise<TlsConn> {
  return new Promise<net.Socket>((resolve, reject) => {
    // Paused before connecting: the client's ClientHello must stay in the kernel until TLS reads it.
    const sock = new net.Socket();
    sock.pause();
    sock.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`Data connection failed: ${host} port ${port} did not answer in time.`));
    }, opts.timeoutMs ?? 10_000);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.off("error", onError);
      sock.pause();
      resolve(sock);
    });
    const onError = (e: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new Error(`Data connection failed: ${e.message}`));
    };
    sock.once("error", onError);
  }).then((sock) => upgradeServerSocket(sock, ctx, opts));
}
