/**
 * A bounded line reader shared by the FTP server and the SMTP client.
 *
 * It owns one fixed buffer of `maxLineLength + 2` bytes for the life of the connection: it reads into the free
 * tail of that buffer, hands out complete lines (CRLF or bare LF), and refuses a line that does not fit instead of
 * growing. Lines split across TCP segments and several lines in one segment both work.
 *
 * @module
 */

import type { ByteConn } from "./byte_conn.ts";

const LF = 0x0a;
const CR = 0x0d;
const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * Thrown by {@link LineReader.readLine} when a line is longer than the configured maximum.
 *
 * The reader then skips the rest of that line by itself, so a caller that wants to keep the connection may go on
 * reading; the FTP server answers 500 and closes instead.
 *
 * @example
 * ```ts
 * declare const reader: LineReader;
 * try { await reader.readLine(); } catch (e) { if (e instanceof LineTooLongError) console.log(e.limit); }
 * ```
 */
export class LineTooLongError extends Error {
  /** The limit that was exceeded, in bytes, without the line ending. */
  readonly limit: number;
  /** Makes the error for a line longer than `limit` bytes. */
  constructor(limit: number) {
    super(`Line rejected: it is longer than ${limit} bytes.`);
    this.name = "LineTooLongError";
    this.limit = limit;
  }
}

/**
 * Options for {@link LineReader}.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "./byte_conn.ts";
 * declare const conn: ByteConn;
 * const opts: LineReaderOptions = { maxLineLength: 512, acceptBareCr: (p) => p.length === 5 };
 * const reader = new LineReader(conn, opts);
 * console.log(await reader.readLine());
 * ```
 */
export interface LineReaderOptions {
  /** Longest accepted line in bytes, without its line ending. Default 4096. */
  maxLineLength?: number;
  /**
   * Called when the buffered bytes end in a bare CR and no LF has arrived; return true to take them as a complete
   * line. The FTP server uses it for `ABOR\r`, whose LF the kernel drops when a client sends it as urgent data.
   * A LF that arrives later anyway is skipped.
   */
  acceptBareCr?: (pending: Uint8Array) => boolean;
}

/**
 * Reads CRLF- or LF-terminated lines from a {@link ByteConn} without unbounded growth.
 *
 * @example
 * ```ts
 * import type { ByteConn } from "./byte_conn.ts";
 * declare const conn: ByteConn;
 * const reader = new LineReader(conn, { maxLineLength: 1024 });
 * for (let line = await reader.readLine(); line !== null; line = await reader.readLine()) {
 *   console.log(line);
 * }
 * ```
 */
export class LineReader {
  #src: Pick<ByteConn, "read">;
  readonly #buf: Uint8Array;
  readonly #max: number;
  readonly #acceptBareCr?: (pending: Uint8Array) => boolean;
  #start = 0;
  #end = 0;
  #scanned = 0;
  #skipLf = false;
  #discarding = false;

  /**
   * Makes a reader over `src` with one buffer of `maxLineLength + 2` bytes; throws a RangeError when
   * `maxLineLength` is not a positive integer.
   */
  constructor(src: Pick<ByteConn, "read">, options: LineReaderOptions = {}) {
    this.#src = src;
    this.#max = options.maxLineLength ?? 4096;
    if (!Number.isInteger(this.#max) || this.#max < 1) {
      throw new RangeError(
        `Line reader not created: maxLineLength must be a positive integer, got ${this.#max}.`,
      );
    }
    this.#buf = new Uint8Array(this.#max + 2);
    this.#acceptBareCr = options.acceptBareCr;
  }

  /**
   * Drops everything buffered and returns how many bytes that was. Use it when the stream changes meaning, such
   * as after STARTTLS or AUTH TLS, so that plaintext sent before the upgrade is never taken as a command or reply.
   */
  discardBuffered(): number {
    const n = this.#end - this.#start;
    this.#start = this.#end = this.#scanned = 0;
    this.#skipLf = false;
    return n;
  }

  /** Reads from `src` from now on, after dropping the buffer (see {@link LineReader.discardBuffered}). */
  setSource(src: Pick<ByteConn, "read">): number {
    this.#src = src;
    return this.discardBuffered();
  }

  /**
   * Resolves to the next line without its line ending, or `null` at end of stream (a partial last line is
   * dropped). Throws {@link LineTooLongError} for a line over the limit.
   */
  async readLine(): Promise<string | null> {
    const buf = this.#buf;
    for (;;) {
      if (this.#skipLf && this.#end > this.#start) {
        if (buf[this.#start] === LF) this.#start++;
        this.#skipLf = false;
      }
      const from = Math.max(this.#start, this.#scanned);
      const i = buf.subarray(from, this.#end).indexOf(LF);
      if (i >= 0) {
        const lf = from + i;
        const wasDiscarding = this.#discarding;
        let stop = lf;
        if (stop > this.#start && buf[stop - 1] === CR) stop--;
        const line = wasDiscarding ? "" : decoder.decode(buf.subarray(this.#start, stop));
        this.#consume(lf + 1);
        this.#discarding = false;
        if (wasDiscarding) continue;
        return line;
      }
      this.#scanned = this.#end;
      if (
        !this.#discarding && this.#acceptBareCr && this.#end > this.#start && buf[this.#end - 1] === CR &&
        this.#acceptBareCr(buf.subarray(this.#start, this.#end))
      ) {
        const line = decoder.decode(buf.subarray(this.#start, this.#end - 1));
        this.#consume(this.#end);
        this.#skipLf = true;
        return line;
      }
      if (this.#start > 0) {
        buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#scanned -= this.#start;
        this.#start = 0;
      }
      if (this.#end === buf.length) {
        // Keep the last byte: it may be the CR of a CRLF split across reads.
        const keepCr = buf[this.#end - 1] === CR;
        this.#start = 0;
        this.#end = this.#scanned = 0;
        if (keepCr) {
          buf[0] = CR;
          this.#end = 1;
        }
        if (!this.#discarding) {
          this.#discarding = true;
          throw new LineTooLongError(this.#max);
        }
      }
      const n = await this.#src.read(buf.subarray(this.#end));
      if (n === null) {
        this.discardBuffered();
        return null;
      }
      this.#end += n;
    }
  }

  #consume(to: number): void {
    this.#start = to;
    if (this.#start >= this.#end) this.#start = this.#end = 0;
    this.#scanned = this.#start;
  }
}
