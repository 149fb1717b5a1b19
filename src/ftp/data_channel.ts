/**
 * FTP data connections for one session: passive listeners (PASV/EPSV) and active connections (PORT/EPRT).
 *
 * A passive listener accepts in the background from the moment PASV is answered, and hands the accepted
 * connection to the waiting transfer through a promise (no polling). Only a connection from the control peer's
 * address is taken; any other is closed and the listener keeps waiting. The listener is used once: it closes after
 * the first good connection, on a new PASV/PORT, or when nobody connects within the data timeout.
 *
 * Connections are plain `Deno.Conn` (whose `read(buf)` fills the caller's buffer), or, after PROT P, TLS
 * connections made by `ftps.ts` (`setTls`); transfers see one `ByteConn` either way.
 *
 * @module
 */

import type { ByteConn } from "../net/byte_conn.ts";
import { closeQuietly } from "../net/byte_conn.ts";
import { normalizeIp } from "./address.ts";
import { connectTlsActive, type TlsDataOptions, TlsPassiveSlot } from "./ftps.ts";

/**
 * A data connection could not be set up; the message is safe to show the client (the session answers 425).
 *
 * @example
 * ```ts
 * throw new DataChannelError("Cannot open data connection: use PASV or PORT first.");
 * ```
 */
export class DataChannelError extends Error {
  /**
   * Makes the error; `message` goes to the client after "425 ", so it must not contain host details.
   *
   * @example
   * ```ts
   * const e = new DataChannelError("Data connection timed out.");
   * console.log(`425 ${e.message}`);
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "DataChannelError";
  }
}

/**
 * How one session opens its data connections.
 *
 * @example
 * ```ts
 * const opts: DataChannelOptions = {
 *   peerIp: "192.168.1.7",
 *   bindHost: "192.168.1.20",
 *   portMin: 50000,
 *   portMax: 50100,
 *   timeoutMs: 30_000,
 * };
 * console.log(opts.portMax - opts.portMin + 1); // 101 passive ports
 * ```
 */
export interface DataChannelOptions {
  /** The control connection's peer address (normalised); data peers must match it. */
  peerIp: string;
  /** The address passive listeners bind to (normally the control connection's local address). */
  bindHost: string;
  /** Lowest passive port; `portMin` and `portMax` both 0 means any free port. */
  portMin: number;
  /** Highest passive port (inclusive). */
  portMax: number;
  /** Milliseconds a passive listener waits for its connection, and an active connect may take. */
  timeoutMs: number;
  /**
   * Takes one of the passive ports the peer's address may hold at once (with a port range); resolves to the
   * function that gives it back, or null when the address holds its share already.
   */
  holdPassive?: () => (() => void) | null;
}

/** One passive listener waiting for its single connection. */
class PassiveSlot {
  readonly port: number;
  #listener: Deno.Listener;
  #conn: Deno.Conn | null = null;
  #error: string | null = null;
  #done = false;
  #waiters: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout>;

  constructor(listener: Deno.Listener, peerIp: string, timeoutMs: number) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#timer = setTimeout(
      () => this.#finish(null, "Can't open data connection: nobody connected in time."),
      timeoutMs,
    );
    this.#acceptLoop(peerIp);
  }

  async #acceptLoop(peerIp: string): Promise<void> {
    // Bounded by the listener: it closes on success, on timeout and on close().
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        this.#finish(null, "Can't open data connection: the passive listener was closed.");
        return;
      }
      if (this.#done) {
        closeQuietly(conn);
        return;
      }
      const ip = normalizeIp((conn.remoteAddr as Deno.NetAddr).hostname);
      if (ip === peerIp) {
        this.#finish(conn, null);
        return;
      }
      closeQuietly(conn);
    }
  }

  #finish(conn: Deno.Conn | null, error: string | null): void {
    if (this.#done) {
      closeQuietly(conn);
      return;
    }
    this.#done = true;
    this.#conn = conn;
    this.#error = error;
    clearTimeout(this.#timer);
    closeQuietly(this.#listener);
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  /** Resolves to the accepted connection (once), or throws {@link DataChannelError}. */
  async take(): Promise<Deno.Conn> {
    if (!this.#done) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    const conn = this.#conn;
    this.#conn = null;
    if (conn) return conn;
    throw new DataChannelError(this.#error ?? "Can't open data connection: it was already used.");
  }

  /** Closes the listener and any connection nobody took. */
  close(): void {
    this.#finish(null, "Can't open data connection: the passive listener was closed.");
    closeQuietly(this.#conn);
    this.#conn = null;
  }
}

/**
 * The data-connection state of one FTP session.
 *
 * @example
 * ```ts
 * const dc = new DataChannel({ peerIp: "127.0.0.1", bindHost: "127.0.0.1", portMin: 0, portMax: 0, timeoutMs: 30_000 });
 * const port = await dc.openPassive(); // reply 227/229 with it
 * console.log(port);
 * const conn = await dc.connect(); // when RETR arrives
 * await conn.write(new TextEncoder().encode("file contents"));
 * dc.close();
 * ```
 */
export class DataChannel {
  readonly #opts: DataChannelOptions;
  #passive: PassiveSlot | TlsPassiveSlot | null = null;
  #tls: TlsDataOptions | null = null;
  #active: { host: string; port: number } | null = null;
  #connecting: Promise<Deno.Conn> | null = null;

  /**
   * Makes an idle channel (the options are copied); nothing is opened until PASV/EPSV or PORT/EPRT.
   *
   * @example
   * ```ts
   * const dc = new DataChannel({
   *   peerIp: "127.0.0.1",
   *   bindHost: "127.0.0.1",
   *   portMin: 0,
   *   portMax: 0,
   *   timeoutMs: 30_000,
   * });
   * dc.close();
   * ```
   */
  constructor(opts: DataChannelOptions) {
    this.#opts = { ...opts };
  }

  #release: (() => void) | null = null;

  /**
   * Turns TLS on (PROT P) or off (PROT C) for the data connections set up from now on. With TLS, passive ports
   * and active connections are `node:net` sockets upgraded server-side, bound to this session (see `ftps.ts`).
   */
  setTls(tls: TlsDataOptions | null): void {
    this.#tls = tls;
  }

  /** "passive" after PASV/EPSV, "active" after PORT/EPRT, "none" before or after a transfer used it. */
  get mode(): "none" | "passive" | "active" {
    return this.#passive ? "passive" : this.#active ? "active" : "none";
  }

  /** Opens a passive listener in the port range (closing any previous one) and resolves to its port. */
  async openPassive(): Promise<number> {
    this.close();
    const release = this.#opts.holdPassive ? this.#opts.holdPassive() : () => {};
    if (release === null) {
      throw new DataChannelError(
        "Can't open passive connection: your address holds its share of the passive ports; " +
          "finish or close its other transfers first.",
      );
    }
    try {
      const port = await this.#openPassive();
      this.#release = release;
      return port;
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Gives back the passive port share taken for the current passive listener, if any. */
  #releasePassive(): void {
    const r = this.#release;
    this.#release = null;
    r?.();
  }

  async #openPassive(): Promise<number> {
    const { portMin, portMax, bindHost, peerIp, timeoutMs } = this.#opts;
    if (this.#tls) {
      try {
        this.#passive = await TlsPassiveSlot.open(bindHost, portMin, portMax, this.#tls);
      } catch (e) {
        throw new DataChannelError((e as Error).message);
      }
      return this.#passive.port;
    }
    let listener: Deno.Listener | null = null;
    if (portMin === 0 && portMax === 0) {
      listener = Deno.listen({ hostname: bindHost, port: 0, transport: "tcp" });
    } else {
      const span = portMax - portMin + 1;
      const start = Math.floor(Math.random() * span);
      for (let i = 0; i < span && listener === null; i++) {
        try {
          listener = Deno.listen({
            hostname: bindHost,
            port: portMin + ((start + i) % span),
            transport: "tcp",
          });
        } catch (e) {
          if (!(e instanceof Deno.errors.AddrInUse)) throw e;
        }
      }
      if (listener === null) {
        throw new DataChannelError("Can't open passive connection: every port in the passive range is busy.");
      }
    }
    await Promise.resolve();
    this.#passive = new PassiveSlot(listener, peerIp, timeoutMs);
    return this.#passive.port;
  }

  /** Remembers an active-mode target (already checked by the caller), closing any passive listener. */
  setActive(host: string, port: number): void {
    this.close();
    this.#active = { host, port };
  }

  /**
   * Resolves to the data connection for one transfer: the passive one (waiting for it if needed) or a new
   * active connection. The setup is used up; the next transfer needs a new PASV/PORT. Throws
   * {@link DataChannelError} when no connection can be made.
   */
  async connect(): Promise<ByteConn> {
    let conn: Deno.Conn;
    if (this.#passive instanceof TlsPassiveSlot) {
      const slot = this.#passive;
      try {
        return await slot.take();
      } catch (e) {
        throw new DataChannelError((e as Error).message);
      } finally {
        if (this.#passive === slot) {
          this.#passive = null;
          this.#releasePassive();
        }
        slot.close();
      }
    }
    if (this.#active && this.#tls) {
      const { host, port } = this.#active;
      this.#active = null;
      try {
        return await connectTlsActive(host, port, this.#tls);
      } catch (e) {
        const m = (e as Error).message;
        throw new DataChannelError(
          m.startsWith("Can't") ? m : "Can't open data connection: the secure connection failed.",
        );
      }
    }
    if (this.#passive) {
      const slot = this.#passive;
      try {
        conn = await slot.take();
      } finally {
        if (this.#passive === slot) {
          this.#passive = null;
          this.#releasePassive();
        }
      }
    } else if (this.#active) {
      const { host, port } = this.#active;
      this.#active = null;
      conn = await this.#connectActive(host, port);
    } else {
      throw new DataChannelError("Can't open data connection: use PASV, EPSV, PORT or EPRT first.");
    }
    return conn;
  }

  async #connectActive(hostname: string, port: number): Promise<Deno.Conn> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt = Deno.connect({ hostname, port, transport: "tcp" });
    this.#connecting = attempt;
    const timeout = new Promise<null>((resolve) =>
      timer = setTimeout(() => resolve(null), this.#opts.timeoutMs)
    );
    try {
      const conn = await Promise.race([attempt, timeout]);
      if (conn === null || this.#connecting !== attempt) {
        attempt.then(closeQuietly, () => {});
        throw new DataChannelError("Can't open data connection: the client did not accept it in time.");
      }
      return conn;
    } catch (e) {
      if (e instanceof DataChannelError) throw e;
      throw new DataChannelError("Can't open data connection: the client refused it.");
    } finally {
      clearTimeout(timer);
      if (this.#connecting === attempt) this.#connecting = null;
    }
  }

  /** Closes any passive listener or pending connection; forgets an active target. */
  close(): void {
    this.#passive?.close();
    this.#passive = null;
    this.#releasePassive();
    this.#active = null;
    this.#connecting = null;
  }
}
