/**
 * The smallest connection shape the protocol code needs: read into a caller's buffer, write a buffer, close.
 *
 * `Deno.Conn` and `Deno.TlsConn` satisfy it as they are; sockets from `node:net`/`node:tls` are adapted to it
 * (see `node_conn.ts`), so the FTP and SMTP code never sees which one it talks to.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "./byte_conn.ts";
 * async function greet(conn: ByteConn): Promise<void> {
 *   await writeAll(conn, new TextEncoder().encode("220 ready\r\n"));
 * }
 * declare const socket: ByteConn;
 * await greet(socket);
 * ```
 */
export interface ByteConn {
  /** Reads into `buf`; resolves to the byte count, or `null` at end of stream. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves to the count written. Use {@link writeAll} for all of it. */
  write(data: Uint8Array): Promise<number>;
  /** Closes the connection; safe to call twice. */
  close(): void;
}

/**
 * Writes every byte of `data` to `conn`, looping over short writes.
 *
 * @example
 * ```ts
 * declare const conn: ByteConn;
 * await writeAll(conn, new TextEncoder().encode("221 Bye\r\n"));
 * ```
 */
export async function writeAll(conn: Pick<ByteConn, "write">, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await conn.write(off === 0 ? data : data.subarray(off));
    if (n <= 0) throw new Error("Write failed: the connection accepted no bytes.");
    off += n;
  }
}

/**
 * Closes `conn`, ignoring the error a second close or a reset peer raises.
 *
 * @example
 * ```ts
 * declare const conn: ByteConn;
 * closeQuietly(conn);
 * ```
 */
export function closeQuietly(conn: { close(): void } | null | undefined): void {
  if (!conn) return;
  try {
    conn.close();
  } catch {
    // Already closed or reset: nothing left to release.
  }
}
