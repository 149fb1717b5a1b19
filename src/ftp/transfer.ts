/**
 * The byte-moving loops of FTP transfers: file to data connection (RETR), data connection to file
 * (STOR/APPE/STOU), and listings written line by line. Each loop works in ONE caller-supplied buffer, reading into
 * it and writing from it, so a transfer allocates nothing per chunk; TYPE A conversion happens inside the same
 * buffer.
 *
 * @module
 */

import type { FtpFile } from "./fd_file.ts";
import type { ByteConn } from "../net/byte_conn.ts";
import { writeAll } from "../net/byte_conn.ts";
import type { CrlfToLf, LfToCrlf } from "./ascii.ts";

/**
 * Default size of the one buffer a data connection uses while many transfers run at once (and for listings).
 * Measured on loopback (noisy shared VM): Deno's async file ops cost a thread hop each, so 64 KiB gave ~640 MB/s
 * RETR and ~300 MB/s STOR, 128-256 KiB about twice that; 100 concurrent 8 MiB downloads peaked at idle +23 MB
 * RSS with 128 KiB but +41 MB with 256 KiB.
 */
export const TRANSFER_BUFFER_SIZE = 128 * 1024;

/**
 * Size of the bigger buffer the first {@link LARGE_TRANSFER_BUFFERS} concurrent file transfers get. Each chunk
 * costs a fixed amount of op and thread-hop overhead, so the chunk size sets the throughput: 256 MiB RETR on
 * loopback went 1111 MB/s (128 KiB) → 1538 (256 KiB) → 1777 (512 KiB) → 1954 (1 MiB) → 2001 (2 MiB) → 1634
 * (4 MiB); overlapping the next read with the previous write in two halves of the buffer was no faster than
 * one serial buffer of the same total size (2 cores: there is no idle core to overlap on).
 */
export const LARGE_TRANSFER_BUFFER_SIZE = 1024 * 1024;

/** How many transfers at once may hold a {@link LARGE_TRANSFER_BUFFER_SIZE} buffer; the rest get the small one. */
export const LARGE_TRANSFER_BUFFERS = 4;

/** Progress of a running transfer, shown by STAT and used by the stall watchdog. */
export interface TransferProgress {
  /** Bytes moved over the data connection so far. */
  bytes: number;
}

/**
 * A small pool of transfer buffers shared by a server's sessions, so sequential transfers reuse buffers instead
 * of allocating one each, and idle sessions hold none. File transfers may ask for a large buffer: at most
 * `maxLarge` are handed out at once (then callers get a small one), so a few transfers run with big chunks while
 * the memory of many concurrent ones stays bounded at `maxLarge × largeSize + n × size`. One large buffer is kept
 * for reuse when free.
 *
 * @example
 * ```ts
 * const pool = new BufferPool(64 * 1024, 8);
 * const buf = pool.acquire(true);
 * pool.release(buf);
 * ```
 */
export class BufferPool {
  /** Bytes of a normal buffer. */
  readonly size: number;
  /** Bytes of a large buffer (large buffers are off when this is not bigger than `size`). */
  readonly largeSize: number;
  readonly #maxFree: number;
  readonly #maxLarge: number;
  readonly #free: Uint8Array[] = [];
  readonly #freeLarge: Uint8Array[] = [];
  #largeInUse = 0;

  /**
   * Makes an empty pool (buffers are allocated on first use): `size` bytes per normal buffer (default
   * 128 KiB), at most `maxFree` idle ones kept (default 4), and at most `maxLarge` buffers of `largeSize`
   * bytes in use at once (defaults 4 and 1 MiB; 0 turns large buffers off).
   *
   * @example
   * ```ts
   * const pool = new BufferPool(128 * 1024, 4, 1024 * 1024, 4);
   * console.log(pool.size); // 131072
   * ```
   */
  constructor(
    size = TRANSFER_BUFFER_SIZE,
    maxFree = 4,
    largeSize = LARGE_TRANSFER_BUFFER_SIZE,
    maxLarge = LARGE_TRANSFER_BUFFERS,
  ) {
    this.size = size;
    this.#maxFree = maxFree;
    this.largeSize = largeSize;
    this.#maxLarge = largeSize > size ? maxLarge : 0;
  }

  /**
   * A buffer of {@link BufferPool.size} bytes, reused when one is free; with `large`, one of
   * {@link BufferPool.largeSize} bytes while fewer than `maxLarge` are in use.
   */
  acquire(large = false): Uint8Array {
    if (large && this.#largeInUse < this.#maxLarge) {
      this.#largeInUse++;
      return this.#freeLarge.pop() ?? new Uint8Array(this.largeSize);
    }
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  /** Gives a buffer back; kept for reuse while fewer than `maxFree` (one, for large buffers) are idle. */
  release(buf: Uint8Array): void {
    if (this.#maxLarge > 0 && buf.length === this.largeSize) {
      this.#largeInUse--;
      if (this.#freeLarge.length < 1) this.#freeLarge.push(buf);
    } else if (buf.length === this.size && this.#free.length < this.#maxFree) this.#free.push(buf);
  }
}

/**
 * A transfer failed on the local file, not on the network (disk full, read error); `original` is the file
 * system's error, for mapping to a reply.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "../net/byte_conn.ts";
 *
 * declare const conn: ByteConn; // the data connection
 * declare const file: Deno.FsFile; // the file being stored
 * declare const buf: Uint8Array; // the transfer buffer
 * declare const progress: TransferProgress; // the transfer's byte count
 * try {
 *   await receiveFile(conn, file, buf, null, progress);
 * } catch (e) {
 *   if (e instanceof LocalIoError) console.log(e.original); // map it with toFtpFsError
 * }
 * ```
 */
export class LocalIoError extends Error {
  /** The file system's error as thrown (map it with `toFtpFsError` for the reply). */
  readonly original: unknown;

  /**
   * Wraps a failed read or write of the local file.
   *
   * @example
   * ```ts
   * declare const file: Deno.FsFile; // the file being stored
   * declare const chunk: Uint8Array; // bytes received
   * try {
   *   await file.write(chunk);
   * } catch (e) {
   *   throw new LocalIoError(e);
   * }
   * ```
   */
  constructor(original: unknown) {
    super(
      `Transfer failed on the local file: ${original instanceof Error ? original.message : String(original)}`,
    );
    this.name = "LocalIoError";
    this.original = original;
  }
}

/** Writes all of `data` to a file, looping over short writes. */
async function writeFileAll(file: FtpFile, data: Uint8Array): Promise<void> {
  let off = 0;
  try {
    while (off < data.length) {
      off += await file.write(off === 0 ? data : data.subarray(off));
    }
  } catch (e) {
    throw new LocalIoError(e);
  }
}

async function readFile(file: FtpFile, buf: Uint8Array): Promise<number | null> {
  try {
    return await file.read(buf);
  } catch (e) {
    throw new LocalIoError(e);
  }
}

/**
 * Sends `file` from its current position to `conn`, until end of file or, in binary mode, once `length` bytes
 * (the size when the file was opened) are sent; that saves the extra read that would only see the end of file
 * (a thread-pool hop per file). With `ascii`, LF becomes CRLF: the buffer is split into a
 * read third and a two-thirds conversion area, so the conversion also needs no extra memory.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "../net/byte_conn.ts";
 *
 * declare const conn: ByteConn; // the data connection
 * await sendFile(conn, await Deno.open("a.bin"), new Uint8Array(65536), null, { bytes: 0 });
 * ```
 */
export async function sendFile(
  conn: ByteConn,
  file: FtpFile,
  buf: Uint8Array,
  ascii: LfToCrlf | null,
  progress: TransferProgress,
  length = Infinity,
): Promise<void> {
  if (ascii) {
    const third = Math.floor(buf.length / 3);
    const src = buf.subarray(0, third);
    const dst = buf.subarray(third);
    for (;;) {
      const n = await readFile(file, src);
      if (n === null) return;
      const w = ascii.convert(src, n, dst);
      await writeAll(conn, dst.subarray(0, w));
      progress.bytes += w;
    }
  }
  let left = length;
  while (left > 0) {
    const n = await readFile(file, left < buf.length ? buf.subarray(0, left) : buf);
    if (n === null) return;
    await writeAll(conn, n === buf.length ? buf : buf.subarray(0, n));
    progress.bytes += n;
    left -= n;
  }
}

/**
 * Receives from `conn` until the peer closes, writing to `file`. Socket reads are cheap but each file write is
 * a thread-pool hop (plus a dup/close of the descriptor inside Deno), and a loopback read returns only what the
 * socket holds (~300 KB), so the buffer is filled by several reads before each file write. With `ascii`, CRLF
 * becomes LF in place.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "../net/byte_conn.ts";
 *
 * declare const conn: ByteConn; // the data connection
 * declare const file: Deno.FsFile; // opened for writing
 * await receiveFile(conn, file, new Uint8Array(65536), null, { bytes: 0 });
 * ```
 */
export async function receiveFile(
  conn: ByteConn,
  file: FtpFile,
  buf: Uint8Array,
  ascii: CrlfToLf | null,
  progress: TransferProgress,
): Promise<void> {
  let eof = false;
  while (!eof) {
    let used = 0;
    while (used < buf.length) {
      const n = await conn.read(used === 0 ? buf : buf.subarray(used));
      if (n === null) {
        eof = true;
        break;
      }
      used += n;
      progress.bytes += n;
    }
    const w = ascii ? ascii.convert(buf, used) : used;
    if (w > 0) await writeFileAll(file, w === buf.length ? buf : buf.subarray(0, w));
  }
  if (ascii) {
    const w = ascii.flush(buf);
    if (w > 0) await writeFileAll(file, buf.subarray(0, w));
  }
}

const encoder = new TextEncoder();

/**
 * Writes text lines (each followed by CRLF) to a connection through one buffer, flushing when it fills.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "../net/byte_conn.ts";
 *
 * declare const conn: ByteConn; // the data connection
 * const out = new LineWriter(conn, new Uint8Array(65536), { bytes: 0 });
 * await out.line("-rw-r--r--   1 ftp ftp 3 Jan 01 00:00 a.txt");
 * await out.flush();
 * ```
 */
export class LineWriter {
  readonly #conn: ByteConn;
  readonly #buf: Uint8Array;
  readonly #progress: TransferProgress;
  #used = 0;

  /**
   * Writes to `conn` through `buf` (the caller's transfer buffer; a line too long for it is encoded and sent
   * on its own), adding every byte sent to `progress.bytes`.
   *
   * @example
   * ```ts
   * import type { ByteConn } from "../net/byte_conn.ts";
   *
   * declare const conn: ByteConn; // the data connection
   * declare const pool: BufferPool; // the server's buffer pool
   * const out = new LineWriter(conn, pool.acquire(), { bytes: 0 });
   * await out.flush();
   * ```
   */
  constructor(conn: ByteConn, buf: Uint8Array, progress: TransferProgress) {
    this.#conn = conn;
    this.#buf = buf;
    this.#progress = progress;
  }

  /** Appends `text` and CRLF. */
  async line(text: string): Promise<void> {
    const s = text + "\r\n";
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (this.#buf.length - this.#used < s.length * 3) await this.flush();
    if (this.#buf.length < s.length * 3) {
      const bytes = encoder.encode(s);
      await writeAll(this.#conn, bytes);
      this.#progress.bytes += bytes.length;
      return;
    }
    this.#used += encoder.encodeInto(s, this.#buf.subarray(this.#used)).written;
  }

  /** Sends what is buffered. */
  async flush(): Promise<void> {
    if (this.#used === 0) return;
    await writeAll(this.#conn, this.#buf.subarray(0, this.#used));
    this.#progress.bytes += this.#used;
    this.#used = 0;
  }
}
