/**
 * The local status socket: a unix socket that answers every connection with one JSON document (the
 * {@link StatusSnapshot}) and closes. `outpost status` reads it. The socket file gets `socketMode` (0660 by default:
 * the daemon's user and group), so the admin group can ask without sudo and others cannot.
 *
 * A leftover socket from a crashed daemon is replaced; one that still answers belongs to a running daemon and is
 * left alone (the status socket is then off for this one, logged).
 *
 * @module
 */

import { Logger } from "../log/logger.ts";
import { closeAfter } from "../util/deadline.ts";

const log = new Logger("status");
const encoder = new TextEncoder();
/** Connections answered at once; more are closed at once. */
const MAX_CONNECTIONS = 16;

/**
 * A listening status socket.
 *
 * @example
 * ```ts
 * const sock = await StatusSocket.listen("/var/lib/outpost/status.sock", 0o660, async () => ({ ok: true }));
 * // ...
 * await sock.close();
 * ```
 */
export class StatusSocket {
  /** The socket's path. */
  readonly path: string;
  readonly #listener: Deno.UnixListener;
  readonly #answer: () => Promise<unknown>;
  readonly #conns = new Set<Deno.Conn>();
  #loop: Promise<void>;
  #closed = false;

  private constructor(path: string, listener: Deno.UnixListener, answer: () => Promise<unknown>) {
    this.path = path;
    this.#listener = listener;
    this.#answer = answer;
    this.#loop = this.#accept();
  }

  /** Binds `path` (replacing a stale socket), sets its mode, and answers each connection with `answer()`. */
  static async listen(path: string, mode: number, answer: () => Promise<unknown>): Promise<StatusSocket> {
    await removeStale(path);
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true });
    const listener = Deno.listen({ transport: "unix", path });
    try {
      await Deno.chmod(path, mode);
    } catch (e) {
      listener.close();
      throw new Error(`Status socket ${path} not started: cannot set its mode: ${(e as Error).message}`);
    }
    log.info("socket.listening", { path, mode: `0${mode.toString(8)}` });
    return new StatusSocket(path, listener, answer);
  }

  async #accept(): Promise<void> {
    let failures = 0;
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
        failures = 0;
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || this.#closed) return; // closed by close()
        // Out of descriptors (or another passing error): a pause, then accept again, rather than never again.
        if (failures++ % 50 === 0) log.warn("socket.error", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * failures)));
        continue;
      }
      if (this.#conns.size >= MAX_CONNECTIONS) {
        conn.close(); // a flood of local clients gets no answer rather than unbounded work
        continue;
      }
      this.#conns.add(conn);
      this.#serve(conn).finally(() => this.#conns.delete(conn));
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    using _limit = closeAfter(conn, 10_000);
    try {
      const data = encoder.encode(JSON.stringify(await this.#answer()) + "\n");
      let off = 0;
      while (off < data.length) off += await conn.write(data.subarray(off));
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) {
        log.warn("socket.answer_failed", { error: (e as Error).message });
      }
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the timer.
      }
    }
  }

  /** Stops listening and removes the socket file. */
  async close(): Promise<void> {
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
    await this.#loop;
    await Deno.remove(this.path).catch(() => {});
  }
}

async function removeStale(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new Error(
      `Status socket not started: ${path} exists and is not a socket (remove it or set [status] socket)`,
    );
  }
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    throw new Error(`Status socket not started: another outpost daemon answers on ${path}`);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("Status socket not started")) throw e;
    await Deno.remove(path).catch(() => {}); // Nobody listens: left by a crashed daemon.
  }
}
