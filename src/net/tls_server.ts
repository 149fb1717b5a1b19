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
 * import type { NodeConn } from "./node_conn.ts";
 * import type { LineReader } from "./line_reader.ts";
 * declare const control: NodeConn;
 * declare const reader: LineReader;
 * declare const context: ServerTlsContext;
 * // The upgrade point of a STARTTLS-style protocol (FTP AUTH TLS):
 * const raw = control.detach();                 // paused, listeners off, adapter buffer dropped
 * raw.write("234 Proceed with negotiation.\r\n");
 * const tlsConn = await upgradeServerSocket(raw, context);
 * const dropped = reader.setSource(tlsConn);   // plaintext pipelined after AUTH TLS: discarded, never executed
 * if (dropped > 0) console.log(`discarded ${dropped} bytes sent before the TLS handshake`);
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
import process from "node:process";
import * as tls from "node:tls";
import type { ByteConn } from "./byte_conn.ts";
import {
  type ClientHelloInfo,
  firstRecordLength,
  parseClientHello,
  TLS_MAX_FIRST_RECORD,
} from "./client_hello.ts";

/** Certificate and key (PEM text) and protocol limits for {@link createServerTlsContext}. */
export interface ServerTlsOptions {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** PEM private key (PKCS#8, SEC1 or PKCS#1). */
  key: string;
  /** Oldest protocol accepted; default and floor "TLSv1.2". */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /**
   * Newest protocol offered; default "TLSv1.3". "TLSv1.2" keeps a server from sending TLS 1.3 session tickets
   * after each handshake (Deno's node:tls has no switch for those), which FTPS data connections need: see
   * `src/ftp/ftps.ts`. With rustls, TLS 1.2 offers only ECDHE key exchange with AEAD ciphers (AES-GCM,
   * ChaCha20-Poly1305).
   */
  maxVersion?: "TLSv1.2" | "TLSv1.3";
  /** How long a session can be resumed, in seconds; default 3600. */
  sessionTimeoutS?: number;
}

/** A shared server context: one per process (or per certificate), reused by every connection. */
export interface ServerTlsContext {
  /** The node:tls secure context. */
  readonly secureContext: tls.SecureContext;
  /** Session lifetime in seconds, applied to each socket. */
  readonly sessionTimeoutS: number;
  /**
   * When set, {@link upgradeServerSocket} first reads the client's ClientHello (without consuming it: the bytes
   * are handed to the TLS layer afterwards) and handshakes with the context this returns; `null` means the
   * first record was not a parsable ClientHello. The chosen context is {@link TlsConn.context}.
   */
  readonly select?: (hello: ClientHelloInfo | null) => ServerTlsContext;
}

/**
 * Builds the shared TLS context (TLS 1.2 to 1.3 unless limited, session resumption on).
 * Throws with a sentence-case message when the certificate or key cannot be used or the versions conflict.
 *
 * @example
 * ```ts
 * const ctx = createServerTlsContext({
 *   cert: await Deno.readTextFile("cert.pem"),
 *   key: await Deno.readTextFile("key.pem"),
 *   maxVersion: "TLSv1.2",
 * });
 * console.log(ctx.sessionTimeoutS); // 3600
 * ```
 */
export function createServerTlsContext(opts: ServerTlsOptions): ServerTlsContext {
  const minVersion = opts.minVersion ?? "TLSv1.2", maxVersion = opts.maxVersion ?? "TLSv1.3";
  if (minVersion === "TLSv1.3" && maxVersion === "TLSv1.2") {
    throw new Error(
      "TLS not configured: the oldest allowed version (TLS 1.3) is newer than the newest (TLS 1.2).",
    );
  }
  try {
    const secureContext = tls.createSecureContext({
      cert: opts.cert,
      key: opts.key,
      minVersion,
      maxVersion,
      sessionTimeout: opts.sessionTimeoutS ?? 3600,
      sessionIdContext: "outpost-ftps",
    });
    return { secureContext, sessionTimeoutS: opts.sessionTimeoutS ?? 3600 };
  } catch (e) {
    throw new Error(`TLS not configured: the certificate or key cannot be used (${(e as Error).message}).`);
  }
}

/**
 * Decrypted bytes a {@link TlsConn} holds unread before it stops reading the TCP socket beneath the TLS layer.
 *
 * @example
 * ```ts
 * console.log(TLS_READ_HIGH_WATER); // 131072
 * ```
 */
export const TLS_READ_HIGH_WATER = 128 << 10;

/** Size of the per-connection buffers: ciphertext from TCP, plaintext from TLS, and the unread-bytes queue. */
const CIPHER_BUF = 64 << 10;
const PLAIN_BUF = 64 << 10;
const QUEUE_BUF = 2 * TLS_READ_HIGH_WATER;

/** The internals of Deno's node:tls that allow reads into buffers we own; null when this Deno lacks them. */
interface ReadHooks {
  /** net.Socket's symbols for the `onread: { buffer, callback }` option. */
  kBuffer: symbol;
  kBufferCb: symbol;
  kBufferGen: symbol;
  /** stream_wrap's shared state array and the index of the last read's byte count. */
  state: Int32Array;
  kNread: number;
}

let hooksCache: ReadHooks | null | undefined;

/** Finds (once) the net.Socket `onread` symbols and the stream_wrap read state; null when any is missing. */
function readHooks(): ReadHooks | null {
  if (hooksCache !== undefined) return hooksCache;
  hooksCache = null;
  try {
    const buf = new Uint8Array(1), cb = () => true, gen = () => buf;
    const a = new net.Socket({ onread: { buffer: buf, callback: cb } });
    const b = new net.Socket({ onread: { buffer: gen, callback: cb } });
    const rec = (o: object) => o as Record<symbol, unknown>;
    const find = (o: object, v: unknown) => Object.getOwnPropertySymbols(o).find((k) => rec(o)[k] === v);
    const kBuffer = find(a, buf), kBufferCb = find(a, cb), kBufferGen = find(b, gen);
    a.destroy();
    b.destroy();
    const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    const sw = binding?.("stream_wrap");
    const state = sw?.streamBaseState, kNread = sw?.kReadBytesOrError;
    if (
      kBuffer && kBufferCb && kBufferGen && state instanceof Int32Array && typeof kNread === "number"
    ) {
      hooksCache = { kBuffer, kBufferCb, kBufferGen, state, kNread };
    }
  } catch {
    // Not this Deno's internals: fall back to 'data' events.
  }
  return hooksCache;
}

/** The slice of a native stream handle (TCPWrap, TLSWrap) this module drives. */
interface NativeHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer?(buf: Uint8Array): void;
  receive?(data: Uint8Array): void;
  onread?: (buf?: unknown) => unknown;
  _nativeTcpHandle?: NativeHandle | null;
}

/**
 * A {@link ByteConn} over a server-side `TLSSocket`.
 *
 * Deno 2.9's server-side TLSSocket mishandles the usual node ways of reading: `pause()` neither stops the TCP
 * reads beneath it (the decrypted data keeps piling up in the stream's buffer) nor keeps the end of the stream
 * (close_notify or FIN arriving while paused is never reported, so an upload never finishes), and every chunk is
 * a fresh buffer that V8 collects only after hundreds of megabytes. So this adapter:
 *
 * - never pauses the TLSSocket; backpressure stops and restarts reading on the **TCP handle** beneath the TLS
 *   layer when more than {@link TLS_READ_HIGH_WATER} decrypted bytes wait unread, so the peer is held back by
 *   TCP flow control and the end of the stream is always seen;
 * - reads into buffers it owns (node's `onread: { buffer, callback }` mode on the TLS handle, and a user buffer
 *   on the TCP handle), allocated once per connection: ciphertext goes kernel -> our 64 KiB buffer -> rustls,
 *   plaintext rustls -> our 64 KiB buffer -> the caller's buffer (one copy in JS), or into a fixed 256 KiB
 *   queue when no read is waiting. When this Deno lacks those internals it falls back to `'data'` events (one
 *   allocation per chunk) with the same TCP-level backpressure.
 *
 * {@link TlsConn.write} resolves once the TLS layer has consumed the bytes, so a data transfer can refill the same
 * buffer right after each write (the one-reused-buffer rule).
 *
 * @example
 * ```ts
 * import type { Socket } from "node:net";
 * declare const rawSocket: Socket;
 * declare const ctx: ServerTlsContext;
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
  /**
   * The context this connection handshook with (the one a selecting context chose), or null when not given.
   * FTPS data connections use their control connection's, so that they can resume its session.
   */
  readonly context: ServerTlsContext | null;
  readonly #remoteAddress: string;
  readonly #localAddress: string;
  readonly #tcp: NativeHandle | null;
  #reused = false;
  #protocol: string | null = null;
  /** Unread plaintext: [#head, #tail) of #queue, then #overflow (only if the TCP stop came too late). */
  #queue: Uint8Array | null = null;
  #head = 0;
  #tail = 0;
  readonly #overflow: Uint8Array[] = [];
  #overflowBytes = 0;
  #peakQueued = 0;
  /** The caller's buffer of the read in progress, filled straight from the TLS layer. */
  #target: Uint8Array | null = null;
  #targetN = 0;
  #tcpStopped = false;
  #ended = false;
  #closed = false;
  #draining = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  /**
   * Wraps a TLSSocket made over `raw` (a connected, paused node:net socket) before its handshake, so that no
   * byte is read another way. {@link upgradeServerSocket} is the usual way to get one.
   */
  constructor(
    socket: tls.TLSSocket,
    raw: net.Socket,
    remote: { address: string; local: string },
    context: ServerTlsContext | null = null,
  ) {
    this.tlsSocket = socket;
    this.context = context;
    this.#remoteAddress = remote.address;
    this.#localAddress = remote.local;
    const wrap = (socket as unknown as { _handle?: NativeHandle })._handle;
    this.#tcp = wrap?._nativeTcpHandle ?? (raw as unknown as { _handle?: NativeHandle })._handle ?? null;
    const hooks = readHooks();
    const tcp = this.#tcp;
    const nodeOnread = tcp?.onread;
    if (hooks && wrap?.useUserBuffer && wrap.receive && tcp?.useUserBuffer && nodeOnread) {
      // Plaintext: node's onread mode on the TLSSocket; the TLS handle decrypts into `plain`.
      const plain = new Uint8Array(PLAIN_BUF);
      const rec = socket as unknown as Record<symbol, unknown>;
      rec[hooks.kBuffer] = plain;
      rec[hooks.kBufferGen] = null;
      rec[hooks.kBufferCb] = (n: number) => {
        this.#onPlain(plain, n);
        return true; // never let node pause the TLS handle: backpressure is ours, on the TCP handle
      };
      wrap.useUserBuffer(plain);
      // Ciphertext: the TCP handle reads into `cipher`; positive reads go to rustls, EOF and errors to node.
      const cipher = new Uint8Array(CIPHER_BUF);
      const receive = wrap.receive.bind(wrap);
      tcp.useUserBuffer(cipher);
      tcp.onread = function (this: unknown, b?: unknown): unknown {
        const n = hooks.state[hooks.kNread];
        if (n > 0) {
          receive(cipher.subarray(0, n));
          return undefined;
        }
        return nodeOnread.call(this, b);
      };
    } else {
      socket.on("data", (chunk: Uint8Array) => this.#onPlain(chunk, chunk.length));
    }
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

  /** Records what the handshake negotiated (node:tls forgets both once the socket is destroyed). */
  secured(): void {
    this.#reused = this.tlsSocket.isSessionReused();
    this.#protocol = this.tlsSocket.getProtocol?.() ?? null;
  }

  /** Decrypted bytes `src[0..n)` arrived: fill the waiting read, queue the rest, stop TCP above the high water. */
  #onPlain(src: Uint8Array, n: number): void {
    if (this.#draining || this.#closed || n <= 0) return;
    let off = 0;
    const t = this.#target;
    if (t !== null && this.#queued() === 0) {
      off = Math.min(n, t.length);
      t.set(off === src.length ? src : src.subarray(0, off));
      this.#target = null;
      this.#targetN = off;
    }
    if (off < n) this.#enqueue(src.subarray(off, n));
    const q = this.#queued();
    if (q > this.#peakQueued) this.#peakQueued = q;
    if (q >= TLS_READ_HIGH_WATER && !this.#tcpStopped && this.#tcp) {
      this.#tcpStopped = true;
      this.#tcp.readStop();
    }
    this.#notify();
  }

  #queued(): number {
    return this.#tail - this.#head + this.#overflowBytes;
  }

  #enqueue(data: Uint8Array): void {
    if (this.#overflowBytes === 0) {
      const q = this.#queue ??= new Uint8Array(QUEUE_BUF);
      if (this.#tail + data.length > q.length && this.#head > 0) {
        q.copyWithin(0, this.#head, this.#tail);
        this.#tail -= this.#head;
        this.#head = 0;
      }
      if (this.#tail + data.length <= q.length) {
        q.set(data, this.#tail);
        this.#tail += data.length;
        return;
      }
    }
    // Only when bytes already in flight arrive after the TCP stop: a copy, bounded by one TCP read.
    this.#overflow.push(data.slice());
    this.#overflowBytes += data.length;
  }

  /** Copies queued bytes into `buf`; returns the count (0 when nothing is queued). */
  #dequeue(buf: Uint8Array): number {
    if (this.#tail > this.#head) {
      const n = Math.min(buf.length, this.#tail - this.#head);
      buf.set(this.#queue!.subarray(this.#head, this.#head + n));
      this.#head += n;
      if (this.#head === this.#tail) this.#head = this.#tail = 0;
      return n;
    }
    const head = this.#overflow[0];
    if (head === undefined) return 0;
    const n = Math.min(head.length, buf.length);
    buf.set(n === head.length ? head : head.subarray(0, n));
    if (n === head.length) this.#overflow.shift();
    else this.#overflow[0] = head.subarray(n);
    this.#overflowBytes -= n;
    return n;
  }

  #restartTcp(): void {
    if (!this.#tcpStopped || this.#closed) return;
    this.#tcpStopped = false;
    this.#tcp?.readStart();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** The most decrypted bytes that were ever waiting unread (bounded by the high water plus one TCP read). */
  get peakQueued(): number {
    return this.#peakQueued;
  }

  /** The peer's address as seen at accept time (IPv4-mapped form normalised to plain IPv4); kept after close. */
  get remoteAddress(): string {
    return this.#remoteAddress;
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
    if (buf.length === 0) return 0;
    for (;;) {
      if (this.#closed) return null;
      const n = this.#dequeue(buf);
      if (n > 0) {
        if (this.#queued() <= TLS_READ_HIGH_WATER / 2) this.#restartTcp();
        return n;
      }
      // A reset is an error, not an end: an upload cut short must not be committed as complete.
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      this.#restartTcp();
      this.#target = buf;
      this.#targetN = 0;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#target = null;
      if (this.#targetN > 0) {
        const got = this.#targetN;
        this.#targetN = 0;
        return got;
      }
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
    this.#head = this.#tail = this.#overflowBytes = 0;
    this.#overflow.length = 0;
    this.#restartTcp();
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
    this.#head = this.#tail = this.#overflowBytes = 0;
    this.#overflow.length = 0;
    this.#queue = null;
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
 * With a selecting context (`ctx.select`), the first TLS record (the ClientHello, at most 16 KiB + 5 bytes) is
 * read from the TCP handle first, within the same time limit, parsed, and then handed to the TLS layer of the
 * chosen context exactly as if it had just arrived, so the handshake sees every byte once and in order.
 *
 * @example
 * ```ts
 * import { createServer } from "node:net";
 * declare const ctx: ServerTlsContext;
 * createServer({ pauseOnConnect: true }, async (sock) => {
 *   const conn = await upgradeServerSocket(sock, ctx);
 *   console.log(conn.protocol, conn.sessionReused);
 * });
 * ```
 */
export async function upgradeServerSocket(
  socket: net.Socket,
  ctx: ServerTlsContext,
  opts: HandshakeOptions = {},
): Promise<TlsConn> {
  const remote = {
    address: plainIp(socket.remoteAddress),
    local: plainIp(socket.localAddress),
  };
  // Bytes the plain socket read ahead would bypass TLS: pausing keeps the rest in the kernel for the TLS layer.
  socket.pause();
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let chosen = ctx, prefix: Uint8Array | null = null, left = timeoutMs;
  if (ctx.select) {
    const started = Date.now();
    const peek = await peekFirstRecord(socket, timeoutMs);
    if (peek === "timeout" || peek === "closed") {
      socket.destroy();
      throw new Error(
        peek === "timeout"
          ? "TLS handshake failed: the peer did not finish it in time."
          : "TLS handshake failed: the peer closed the connection.",
      );
    }
    if (peek !== null && firstRecordLength(peek) < 0) {
      socket.destroy();
      throw new Error("TLS handshake failed: the peer did not start with a TLS ClientHello.");
    }
    prefix = peek;
    chosen = ctx.select(peek === null ? null : parseClientHello(peek));
    if (chosen.select) {
      chosen = { secureContext: chosen.secureContext, sessionTimeoutS: chosen.sessionTimeoutS };
    }
    left = Math.max(1, timeoutMs - (Date.now() - started));
  }
  return handshake(socket, chosen, remote, prefix, left);
}

function handshake(
  socket: net.Socket,
  ctx: ServerTlsContext,
  remote: { address: string; local: string },
  prefix: Uint8Array | null,
  timeoutMs: number,
): Promise<TlsConn> {
  const t = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: ctx.secureContext,
    requestCert: false,
  } as tls.TLSSocketOptions);
  if (prefix !== null && prefix.length > 0) feedAfterStart(t, prefix);
  const conn = new TlsConn(t, socket, remote, ctx);
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
        conn.close();
        socket.destroy();
        reject(err);
      } else {
        conn.secured();
        resolve(conn);
      }
    };
    const onSecure = () => finish(null);
    const onError = (e: Error) => finish(new Error(`TLS handshake failed: ${e.message}`));
    const onClose = () => finish(new Error("TLS handshake failed: the peer closed the connection."));
    const timer = setTimeout(
      () => finish(new Error("TLS handshake failed: the peer did not finish it in time.")),
      timeoutMs,
    );
    t.on("secure", onSecure);
    t.on("error", onError);
    t.on("close", onClose);
  });
}

/** The slice of Deno's TLSWrap used to hand it bytes read before it existed. */
interface FeedableWrap {
  start(...args: unknown[]): unknown;
  receive(data: Uint8Array): unknown;
}

let feedCache: boolean | undefined;

/** Whether this Deno's server TLSSocket handle can be given ciphertext directly (`start` and `receive`). */
function canFeed(): boolean {
  if (feedCache !== undefined) return feedCache;
  feedCache = false;
  try {
    const s = new net.Socket();
    const t = new tls.TLSSocket(s, { isServer: true } as tls.TLSSocketOptions);
    const w = (t as unknown as { _handle?: Partial<FeedableWrap> })._handle;
    feedCache = typeof w?.start === "function" && typeof w.receive === "function";
    t.destroy();
    s.destroy();
  } catch {
    // Not this Deno's internals: no peeking, the fallback context is used.
  }
  return feedCache;
}

/**
 * Hands `prefix` (ciphertext read from the TCP handle before the TLS layer existed) to the TLS handle right after
 * it starts, before it reads the TCP handle itself, so the handshake sees those bytes first.
 */
function feedAfterStart(t: tls.TLSSocket, prefix: Uint8Array): void {
  const wrap = (t as unknown as { _handle?: FeedableWrap })._handle;
  if (!wrap) return;
  const rec = wrap as unknown as Record<string, unknown>;
  const start = wrap.start;
  rec.start = function (this: unknown, ...args: unknown[]): unknown {
    delete rec.start;
    const r = start.apply(this, args);
    // After start() returns (an error inside start's caller would find the handle gone), but before any TCP read
    // callback, which comes from the event loop after this microtask.
    queueMicrotask(() => {
      if (!t.destroyed) wrap.receive(prefix);
    });
    return r;
  };
}

/**
 * Reads the first TLS record from the paused socket's TCP handle (bounded: {@link TLS_MAX_FIRST_RECORD} plus at
 * most one read beyond it) and returns every byte read, or null without reading anything when this Deno's
 * internals do not allow handing the bytes to the TLS layer afterwards. Bytes that cannot start a TLS record end
 * the peek early (the handshake then fails on them). Restores the handle's own read callback in every case.
 */
function peekFirstRecord(
  socket: net.Socket,
  timeoutMs: number,
): Promise<Uint8Array | null | "timeout" | "closed"> {
  const tcp = (socket as unknown as { _handle?: NativeHandle | null })._handle;
  const hooks = readHooks();
  const nodeOnread = tcp?.onread;
  if (!tcp || !hooks || !nodeOnread || !canFeed()) return Promise.resolve(null);
  return new Promise((resolve) => {
    let acc = new Uint8Array(TLS_MAX_FIRST_RECORD), got = 0;
    const done = (result: Uint8Array | "timeout" | "closed") => {
      clearTimeout(timer);
      tcp.readStop();
      tcp.onread = nodeOnread;
      resolve(result);
    };
    const timer = setTimeout(() => done("timeout"), timeoutMs);
    tcp.onread = (b?: unknown): unknown => {
      const n = hooks.state[hooks.kNread];
      if (n <= 0 || !b) {
        if (n < 0) done("closed");
        return undefined;
      }
      const chunk = b instanceof ArrayBuffer ? new Uint8Array(b, 0, n) : (b as Uint8Array).subarray(0, n);
      if (got + n > acc.length) {
        const bigger = new Uint8Array(got + n);
        bigger.set(acc.subarray(0, got));
        acc = bigger;
      }
      acc.set(chunk, got);
      got += n;
      const need = firstRecordLength(acc.subarray(0, got));
      if (need < 0 || (need > 0 && got >= need)) done(acc.slice(0, got));
      return undefined;
    };
    tcp.readStart();
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
 * declare const ctx: ServerTlsContext;
 * const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
 * await l.listen();
 * const conn = await l.accept();   // null once closed
 * console.log(conn?.remoteAddress);
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

  /**
   * Makes a listener; nothing is bound until {@link TlsListener.listen}.
   *
   * @example
   * ```ts
   * declare const ctx: ServerTlsContext;
   * const l = new TlsListener({ hostname: "127.0.0.1", port: 0, context: ctx });
   * await l.listen();
   * console.log(l.port);
   * ```
   */
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
 * declare const ctx: ServerTlsContext;
 * const conn = await connectTlsData("127.0.0.1", 40000, ctx, { timeoutMs: 10_000 });
 * console.log(conn.protocol, conn.sessionReused);
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
