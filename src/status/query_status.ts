/**
 * The client side of the status socket: connect, read one JSON document (bounded size and time), parse it.
 *
 * @module
 */

import type { StatusSnapshot } from "./status_snapshot.ts";

/**
 * Why the daemon could not be asked: `not-running` (no socket, or nothing listens), `denied` (no permission on the
 * socket), `broken` (it answered something that is not a status document, or too slowly).
 *
 * @example
 * ```ts
 * try { await queryStatus(path); } catch (e) { if (e instanceof StatusQueryError) console.error(e.kind); }
 * ```
 */
export class StatusQueryError extends Error {
  /** What went wrong, for the exit status and advice. */
  readonly kind: "not-running" | "denied" | "broken";
  /** Makes the error. */
  constructor(kind: "not-running" | "denied" | "broken", message: string) {
    super(message);
    this.name = "StatusQueryError";
    this.kind = kind;
  }
}

/** Largest answer accepted. */
const MAX_ANSWER = 8 << 20;

/**
 * Asks the daemon listening on `path` for its status.
 *
 * @example
 * ```ts
 * const snap = await queryStatus("/var/lib/outpost/status.sock");
 * console.log(snap.daemon.uptimeMs);
 * ```
 */
export async function queryStatus(path: string, timeoutMs = 10_000): Promise<StatusSnapshot> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      throw new StatusQueryError("not-running", `No outpost daemon is running: nothing answers on ${path}.`);
    }
    if (e instanceof Deno.errors.PermissionDenied || (e as Error).message.includes("ermission denied")) {
      throw new StatusQueryError(
        "denied",
        `Cannot ask the daemon: permission denied on ${path} (run as root, as the daemon's user, or as a member ` +
          `of its group).`,
      );
    }
    throw new StatusQueryError("not-running", `Cannot connect to ${path}: ${(e as Error).message}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const timer = setTimeout(() => conn.close(), timeoutMs);
  let timedOut = true;
  try {
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) {
        timedOut = false;
        break;
      }
      total += n;
      if (total > MAX_ANSWER) {
        throw new StatusQueryError("broken", `The answer on ${path} is larger than 8 MiB.`);
      }
      chunks.push(buf.slice(0, n));
    }
  } catch (e) {
    if (e instanceof StatusQueryError) throw e;
    if (timedOut) {
      throw new StatusQueryError(
        "broken",
        `The daemon did not answer on ${path} within ${timeoutMs / 1000} s.`,
      );
    }
    throw e;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
  const text = new TextDecoder().decode(concat(chunks, total));
  try {
    const doc = JSON.parse(text) as StatusSnapshot;
    if (doc?.v !== 1) throw new Error("unknown format");
    return doc;
  } catch {
    throw new StatusQueryError("broken", `The answer on ${path} is not an outpost status document.`);
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
