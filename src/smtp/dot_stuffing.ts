/**
 * The DATA writer: turns message bytes into what goes on the wire after `DATA` (RFC 5321 section 4.5.2).
 *
 * Every line ending becomes CRLF (bare LF and bare CR included, so no bare LF ever reaches the server), a line
 * that starts with "." gets a second "." (including the very first line), and {@link DataWriter.end} finishes the
 * last line and sends the lone "." that ends the message. Output goes through one reused buffer.
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/**
 * Where {@link DataWriter} sends its output; `write` must be done with the buffer when it resolves.
 *
 * @example
 * ```ts
 * const chunks: Uint8Array[] = [];
 * const sink: ByteSink = { write: async (d) => void chunks.push(d.slice()) };
 * await sink.write(new TextEncoder().encode("hi\r\n"));
 * console.log(chunks.length); // 1
 * ```
 */
export interface ByteSink {
  /** Writes all of `data`; the buffer is reused by the caller once the promise resolves. */
  write(data: Uint8Array): Promise<number | void>;
}

/**
 * Options for {@link DataWriter}.
 *
 * @example
 * ```ts
 * const opts: DataWriterOptions = { dotStuff: false, bufferSize: 8192 };
 * console.log(opts);
 * ```
 */
export interface DataWriterOptions {
  /** Double leading dots and end with ".\r\n" (true for SMTP DATA; false to only normalise line endings). */
  dotStuff?: boolean;
  /** Size of the reused output buffer. Default 16 KiB. */
  bufferSize?: number;
}

/**
 * Streams message bytes to a sink with CRLF line endings and, for SMTP, dot-stuffing.
 *
 * @example
 * ```ts
 * declare const conn: ByteSink; // the SMTP connection
 * const w = new DataWriter(conn, { dotStuff: true });
 * await w.write(new TextEncoder().encode(".hidden line\nnext\n"));
 * await w.end(); // sent: "..hidden line\r\nnext\r\n.\r\n"
 * ```
 */
export class DataWriter {
  readonly #sink: ByteSink;
  readonly #out: Uint8Array;
  readonly #dotStuff: boolean;
  #len = 0;
  #lineStart = true;
  #pendingCr = false;
  #eightBit = false;

  /** Makes a writer to `sink` with one reused output buffer (dot-stuffing on unless `opts.dotStuff` is false). */
  constructor(sink: ByteSink, opts: DataWriterOptions = {}) {
    this.#sink = sink;
    this.#dotStuff = opts.dotStuff ?? true;
    this.#out = new Uint8Array(Math.max(64, opts.bufferSize ?? 16384));
  }

  /** True once any byte with the high bit set passed through. */
  get eightBit(): boolean {
    return this.#eightBit;
  }

  async #flush(): Promise<void> {
    if (this.#len === 0) return;
    await this.#sink.write(this.#out.subarray(0, this.#len));
    this.#len = 0;
  }

  /** Converts and buffers `chunk`, flushing to the sink whenever the buffer fills. */
  async write(chunk: Uint8Array): Promise<void> {
    const out = this.#out;
    const limit = out.length - 4;
    for (let i = 0; i < chunk.length; i++) {
      if (this.#len >= limit) await this.#flush();
      const b = chunk[i];
      if (this.#pendingCr) {
        this.#pendingCr = false;
        out[this.#len++] = CR;
        out[this.#len++] = LF;
        this.#lineStart = true;
        if (b === LF) continue;
      }
      if (b === CR) {
        this.#pendingCr = true;
        continue;
      }
      if (b === LF) {
        out[this.#len++] = CR;
        out[this.#len++] = LF;
        this.#lineStart = true;
        continue;
      }
      if (this.#lineStart) {
        this.#lineStart = false;
        if (b === DOT && this.#dotStuff) out[this.#len++] = DOT;
      }
      if (b >= 0x80) this.#eightBit = true;
      out[this.#len++] = b;
    }
  }

  /**
   * Ends the last line if it is open and flushes; when dot-stuffing, then awaits `beforeDot` (the outbox writes
   * its "sending" marker there) and sends the terminating ".\r\n" that commits the message.
   */
  async end(beforeDot?: () => Promise<void>): Promise<void> {
    if (this.#len >= this.#out.length - 8) await this.#flush();
    const out = this.#out;
    if (this.#pendingCr || !this.#lineStart) {
      out[this.#len++] = CR;
      out[this.#len++] = LF;
      this.#pendingCr = false;
      this.#lineStart = true;
    }
    if (!this.#dotStuff) return await this.#flush();
    if (beforeDot) {
      await this.#flush();
      await beforeDot();
    }
    out[this.#len++] = DOT;
    out[this.#len++] = CR;
    out[this.#len++] = LF;
    await this.#flush();
  }
}
