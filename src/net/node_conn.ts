/**
 * Adapts a paused `node:net` (or `node:tls`) socket to {@link ByteConn}; the one adapter for the FTP control
 * connection and the SMTP client.
 *
 * The FTP control connection is accepted with `node:net` because a later `AUTH TLS` must wrap the raw socket with
 * `new tls.TLSSocket(socket, { isServer: true })`, which Deno's own TLS API cannot do on the server side; the SMTP
 * client uses `node:net`/`node:tls` for STARTTLS and its certificate pin (see `smtp_socket.ts`). The adapter keeps
 * the socket in paused mode (no `'data'` events): `read(buf)` waits for `'readable'`, takes one chunk with
 * `socket.read()`, copies what fits into the caller's buffer and keeps the remainder for the next call. `write`
 * resolves only once node's write callback fired, so the caller may reuse its buffer right away.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { ByteConn } from "./byte_conn.ts";

/**
 * How a {@link NodeConn} reports socket errors to its reader.
 *
 * @example
 * ```ts
 * import type { Socket } from "node:net";
 * declare const socket: Socket;
 * const smtp = new NodeConn(socket, { throwPeerErrors: true });
 * console.log(smtp.remoteAddress);
 * ```
 */
export interface NodeConnOptions {
  /**
   * `true`: `read` throws a socket error as soon as it happened, a reset peer included, before any bytes still
   * buffered (the SMTP client reports it with the stage). Default `false`: buffered bytes are read first, and a
   * peer that reset or vanished (ECONNRESET, EPIPE, ETIMEDOUT) reads as end of stream (an FTP client that goes away
   * has simply left).
   */
  throwPeerErrors?: boolean;
}

/**
 * A {@link ByteConn} over a `node:net` socket in paused mode.
 *
 * @example
 * ```ts
 * import { createServer } from "node:net";
 * createServer({ pauseOnConnect: true }, async (socket) => {
 *   const conn = new NodeConn(socket);
 *   await conn.write(new TextEncoder().encode("220 ready\r\n"));
 *   conn.close();
 * });
 * ```
 */
export class NodeConn implements ByteConn {
  /** The wrapped socket; an upgrade calls {@link NodeConn.detach} first and then wraps this socket. */
  readonly socket: Socket;
  readonly #throwPeerErrors: boolean;
  #rest: Uint8Array | null = null;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  readonly #writes = new Set<{ reject: (e: Error) => void }>();
  #closed = false;
  #detached = false;
  readonly #onReadable = () => this.#notify();
  readonly #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  readonly #onClose = () => {
    this.#ended = true;
    this.#notify();
    this.#failWrites(new Error("Write failed: the connection closed."));
  };
  readonly #onError = (e: Error) => {
    this.#error = e;
    this.#notify();
    this.#failWrites(e);
  };

  /**
   * Adapts `socket`, which must be paused: accepted with `pauseOnConnect: true`, or `pause()`d right after
   * `net.connect`/`tls.connect` (Deno's `node:tls` stops delivering data when a TLS socket is paused after its
   * handshake). The adapter listens to it until {@link NodeConn.detach}; `close()` destroys it.
   *
   * @example
   * ```ts
   * import type { Socket } from "node:net";
   * declare const socket: Socket;
   * const conn = new NodeConn(socket);
   * console.log(conn.remoteAddress);
   * ```
   */
  constructor(socket: Socket, opts: NodeConnOptions = {}) {
    this.socket = socket;
    this.#throwPeerErrors = opts.throwPeerErrors ?? false;
    socket.on("readable", this.#onReadable);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onClose);
    socket.on("error", this.#onError);
  }

  /** The peer's address as the socket reports it (may be IPv4-mapped IPv6), or "" once closed. */
  get remoteAddress(): string {
    return this.socket.remoteAddress ?? "";
  }

  /** The local address the peer connected to, or "" once closed. */
  get localAddress(): string {
    return this.socket.localAddress ?? "";
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #failWrites(e: Error): void {
    for (const w of this.#writes) w.reject(e);
    this.#writes.clear();
  }

  /** Reads into `buf`; resolves to the byte count, or `null` at end of stream or after {@link NodeConn.close}. */
  async read(buf: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#rest) {
        const r = this.#rest;
        const n = Math.min(r.length, buf.length);
        buf.set(n === r.length ? r : r.subarray(0, n));
        this.#rest = n === r.length ? null : r.subarray(n);
        return n;
      }
      if (this.#closed || this.#detached) return null;
      if (this.#error && this.#throwPeerErrors) throw this.#error;
      const chunk = this.socket.read() as Uint8Array | null;
      if (chunk !== null && chunk.length > 0) {
        this.#rest = chunk;
        continue;
      }
      if (this.#ended || this.socket.destroyed) return null;
      if (this.#error) {
        // A peer that resets or vanishes has simply gone away.
        const code = (this.#error as { code?: string }).code;
        if (code === "ECONNRESET" || code === "EPIPE" || code === "ETIMEDOUT") return null;
        throw this.#error;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /**
   * Writes all of `data` and resolves once the socket has handed it to the kernel (so closing afterwards does not
   * drop it) and node no longer holds `data`, so the caller may reuse its buffer. Rejects when the connection
   * closes first, or after {@link NodeConn.detach}.
   */
  write(data: Uint8Array): Promise<number> {
    if (this.#closed || this.#detached || this.socket.destroyed) {
      return Promise.reject(new Error("Write failed: the connection is closed."));
    }
    if (this.#error) return Promise.reject(this.#error);
    return new Promise<number>((resolve, reject) => {
      const pending = { reject };
      this.#writes.add(pending);
      this.socket.write(data, (err?: Error | null) => {
        this.#writes.delete(pending);
        if (err) reject(err);
        else resolve(data.length);
      });
    });
  }

  /**
   * Closes gracefully: sends FIN, discards whatever the peer still sends until it closes too (so the kernel does
   * not answer unread input with a reset that would destroy our last reply), then destroys the socket.
   * Waits at most `timeoutMs`.
   */
  async end(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    if (this.#detached) {
      // The socket belongs to its new owner now: no FIN or draining through this adapter.
      this.close();
      return;
    }
    try {
      this.socket.end();
    } catch {
      // Already half-closed or destroyed.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const timeout = new Promise<void>((resolve) =>
      timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, timeoutMs)
    );
    try {
      while (!timedOut && !this.#closed) {
        this.#rest = null;
        if (this.socket.read() !== null) continue;
        if (this.#ended || this.socket.destroyed || this.#error) break;
        await Promise.race([new Promise<void>((resolve) => this.#wake = resolve), timeout]);
      }
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }

  /**
   * Stops listening to the socket and hands it back paused, with any bytes this adapter had buffered discarded;
   * the caller (a TLS upgrade: FTP `AUTH TLS` with `new tls.TLSSocket(socket)`, SMTP STARTTLS with
   * `tls.connect({ socket })`) then owns it. Pausing keeps the bytes the peer sends next (its TLS handshake) for
   * the TLS layer. Afterwards reads resolve to `null` and writes reject; `close()` still destroys the socket, so
   * a shutdown in the middle of the handshake aborts it.
   */
  detach(): Socket {
    this.socket.pause();
    this.socket.off("readable", this.#onReadable);
    this.socket.off("end", this.#onEnd);
    this.socket.off("close", this.#onClose);
    this.socket.off("error", this.#onError);
    this.#rest = null;
    this.#detached = true;
    this.#notify();
    return this.socket;
  }

  /** Destroys the socket; pending reads resolve to `null`. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rest = null;
    this.socket.destroy();
    this.#notify();
    this.#failWrites(new Error("Write failed: the connection was closed."));
  }
}
