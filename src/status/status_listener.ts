/**
 * The status page's HTTP/1.1 listener: small, bounded and ours, because `Deno.serve` takes any number of
 * connections, never closes one that sends nothing, and past the descriptor limit its accept loop rejects
 * uncaught, which ended the whole daemon (FTP, mail and alerts with it).
 *
 * Here every connection must send its request head within a deadline through the bounded line reader (one
 * request per connection, `connection: close`), connections are capped in total and per address, a refused one
 * is closed at once, and an accept that fails (EMFILE) is logged and retried after a pause, never thrown.
 *
 * @module
 */

import { LineReader, LineTooLongError } from "../net/line_reader.ts";
import { closeAfter } from "../util/deadline.ts";
import { Logger } from "../log/logger.ts";

const log = new Logger("status");

/** Limits of {@link StatusListener}; the defaults fit a board. */
export interface StatusListenerLimits {
  /** Open connections in total (default 32). */
  maxConnections: number;
  /** Open connections from one address (default 8). */
  maxPerAddress: number;
  /** Time to send the request line and headers, and to take the response (default 10 s). */
  timeoutMs: number;
  /** Longest request line or header line (default 8 KiB). */
  maxLineBytes: number;
  /** Most header lines (default 64). */
  maxHeaders: number;
}

/** The defaults: 32 connections, 8 per address, 10 s, 8 KiB lines, 64 headers. */
export const STATUS_LISTENER_LIMITS: StatusListenerLimits = {
  maxConnections: 32,
  maxPerAddress: 8,
  timeoutMs: 10_000,
  maxLineBytes: 8192,
  maxHeaders: 64,
};

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Largest request body read (and dropped) rather than refused. */
const MAX_DROPPED_BODY = 65536;

/** Answers one request; `ip` is the peer's address. */
export type StatusHandler = (req: Request, ip: string) => Promise<Response>;

/**
 * A bounded HTTP/1.1 listener for the status page.
 *
 * @example
 * ```ts
 * const l = await StatusListener.start("127.0.0.1", 0, () => Promise.resolve(new Response("ok\n")));
 * console.log(l.addr.port);
 * await l.close();
 * ```
 */
export class StatusListener {
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #handler: StatusHandler;
  readonly #limits: StatusListenerLimits;
  readonly #open = new Set<Deno.TcpConn>();
  readonly #perAddress = new Map<string, number>();
  readonly #served: Promise<void>[] = [];
  #closing = false;
  #loop: Promise<void> = Promise.resolve();

  private constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    handler: StatusHandler,
    limits: StatusListenerLimits,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#handler = handler;
    this.#limits = limits;
  }

  /** Listens on `host:port` (0: any free port); throws when the address cannot be bound. */
  static start(
    host: string,
    port: number,
    handler: StatusHandler,
    limits: Partial<StatusListenerLimits> = {},
  ): Promise<StatusListener> {
    const listener = Deno.listen({ hostname: host, port, transport: "tcp" });
    const l = new StatusListener(listener, handler, { ...STATUS_LISTENER_LIMITS, ...limits });
    l.#loop = l.#acceptLoop();
    return Promise.resolve(l);
  }

  /** Open connections now. */
  get connections(): number {
    return this.#open.size;
  }

  async #acceptLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
        failures = 0;
      } catch (e) {
        if (this.#closing || e instanceof Deno.errors.BadResource) return;
        // Out of descriptors (or another passing error): say so once in a while, pause, and accept again.
        if (failures++ % 50 === 0) log.warn("http.accept_failed", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * failures)));
        continue;
      }
      const ip = conn.remoteAddr.hostname;
      const fromIp = this.#perAddress.get(ip) ?? 0;
      if (this.#open.size >= this.#limits.maxConnections || fromIp >= this.#limits.maxPerAddress) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
        continue;
      }
      this.#open.add(conn);
      this.#perAddress.set(ip, fromIp + 1);
      const served = this.#serve(conn, ip).finally(() => {
        this.#open.delete(conn);
        const n = (this.#perAddress.get(ip) ?? 1) - 1;
        if (n <= 0) this.#perAddress.delete(ip);
        else this.#perAddress.set(ip, n);
        const i = this.#served.indexOf(served);
        if (i >= 0) this.#served.splice(i, 1);
      });
      this.#served.push(served);
    }
  }

  async #serve(conn: Deno.TcpConn, ip: string): Promise<void> {
    // One deadline for the whole exchange: a client that sends slowly or reads slowly is closed.
    using _limit = closeAfter(conn, this.#limits.timeoutMs);
    try {
      const head = await this.#readHead(conn);
      const res = typeof head === "number"
        ? new Response(`${REASONS[head] ?? "Bad Request"}.\n`, { status: head })
        : await this.#handler(head, ip).catch((e) => {
          log.warn("http.error", { error: (e as Error).message });
          return new Response("Internal error.\n", { status: 500 });
        });
      await this.#write(conn, res, typeof head !== "number" && head.method === "HEAD");
    } catch {
      // The client went away, or the deadline closed the connection.
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  /** The request, or the status to answer with when it is not one we serve. */
  async #readHead(conn: Deno.TcpConn): Promise<Request | number> {
    const reader = new LineReader(conn, { maxLineLength: this.#limits.maxLineBytes });
    let line: string | null;
    try {
      line = await reader.readLine();
    } catch (e) {
      if (e instanceof LineTooLongError) return 431;
      throw e;
    }
    if (line === null) throw new Error("closed before a request");
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (!m) return 400;
    const headers = new Headers();
    for (let i = 0;; i++) {
      let h: string | null;
      try {
        h = await reader.readLine();
      } catch (e) {
        if (e instanceof LineTooLongError) return 431;
        throw e;
      }
      if (h === null) throw new Error("closed in the headers");
      if (h === "") break;
      if (i >= this.#limits.maxHeaders) return 431;
      const colon = h.indexOf(":");
      if (colon <= 0) return 400;
      try {
        headers.append(h.slice(0, colon).trim(), h.slice(colon + 1).trim());
      } catch {
        return 400;
      }
    }
    // Only GET and HEAD are served. A small body (a stray POST) is read and dropped, so that closing the
    // connection after the answer does not reset it under the client; a large or chunked one is refused.
    if (headers.has("transfer-encoding")) return 413;
    const length = Number(headers.get("content-length") ?? "0");
    if (!Number.isSafeInteger(length) || length < 0) return 400;
    if (length > MAX_DROPPED_BODY) return 413;
    if (length > 0) {
      let left = length - reader.discardBuffered(); // what the reader already took past the headers is body
      const sink = new Uint8Array(Math.max(1, Math.min(left, 16384)));
      while (left > 0) {
        const n = await conn.read(sink.subarray(0, Math.min(left, sink.length)));
        if (n === null) throw new Error("closed in the body");
        left -= n;
      }
    }
    const target = m[2];
    if (!target.startsWith("/")) return 400;
    try {
      return new Request(`http://status.invalid${target}`, { method: m[1], headers });
    } catch {
      return 400;
    }
  }

  async #write(conn: Deno.TcpConn, res: Response, head: boolean): Promise<void> {
    const body = new Uint8Array(await res.arrayBuffer());
    let text = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Status"}\r\n`;
    res.headers.forEach((v, k) => {
      if (k !== "content-length" && k !== "connection") text += `${k}: ${v}\r\n`;
    });
    text += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    const headBytes = new TextEncoder().encode(text);
    for (const part of head ? [headBytes] : [headBytes, body]) {
      for (let off = 0; off < part.length;) off += await conn.write(part.subarray(off));
    }
  }

  /** Stops accepting, closes open connections and waits for them. */
  async close(): Promise<void> {
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const c of this.#open) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
    await this.#loop;
    await Promise.allSettled([...this.#served]);
  }
}
