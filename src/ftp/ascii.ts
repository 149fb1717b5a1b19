/**
 * TYPE A (ASCII) line-ending conversion for streamed transfers, chunk by chunk, without allocating per call.
 *
 * Downloads turn the file's LF into the network's CRLF ({@link LfToCrlf}); uploads turn CRLF back into LF
 * ({@link CrlfToLf}). Both keep a little state so a CR and its LF may arrive in different chunks.
 *
 * @module
 */

const CR = 13;
const LF = 10;

/**
 * Converts bare LF to CRLF for sending in ASCII mode. An LF already preceded by CR (even in the previous chunk)
 * is left alone, so CRLF files are not doubled.
 *
 * @example
 * ```ts
 * const conv = new LfToCrlf();
 * const src = new TextEncoder().encode("a\nb\r\n");
 * const dst = new Uint8Array(src.length * 2);
 * const n = conv.convert(src, src.length, dst); // dst[0..n) is "a\r\nb\r\n"
 * console.log(n); // 6
 * ```
 */
export class LfToCrlf {
  #lastWasCr = false;

  /** Converts `src[0..len)` into `dst` (which must hold `2 * len` bytes); returns the bytes written. */
  convert(src: Uint8Array, len: number, dst: Uint8Array): number {
    if (dst.length < 2 * len) throw new RangeError("LfToCrlf needs a destination twice the source length.");
    let w = 0;
    let lastWasCr = this.#lastWasCr;
    for (let i = 0; i < len; i++) {
      const b = src[i];
      if (b === LF && !lastWasCr) dst[w++] = CR;
      dst[w++] = b;
      lastWasCr = b === CR;
    }
    this.#lastWasCr = lastWasCr;
    return w;
  }

  /** Forgets the state, for the next transfer. */
  reset(): void {
    this.#lastWasCr = false;
  }
}

/**
 * Converts CRLF to LF in place for receiving in ASCII mode. A CR at the end of a chunk is held back until the
 * next chunk shows whether an LF follows; {@link CrlfToLf.flush} writes it at the end of the stream. A bare CR
 * not followed by LF is kept.
 *
 * @example
 * ```ts
 * const conv = new CrlfToLf();
 * const buf = new TextEncoder().encode("a\r\nb\r");
 * const n = conv.convert(buf, buf.length); // buf[0..n) is "a\nb", the CR is held
 * console.log(n); // 3
 * const tail = new Uint8Array(1);
 * const t = conv.flush(tail); // 1: the held CR
 * console.log(t);
 * ```
 */
export class CrlfToLf {
  /** A byte read but not yet written (-1 for none): a CR awaiting its LF, or a byte that did not fit. */
  #held = -1;

  /** Converts `buf[0..len)` in place; returns the new length (never more than `buf.length`). */
  convert(buf: Uint8Array, len: number): number {
    let w = 0;
    let held = this.#held;
    for (let i = 0; i < len; i++) {
      const b = buf[i];
      if (held === CR && b === LF) {
        held = LF;
        continue;
      }
      // w <= i here, and buf[i] is already read, so writing never clobbers unread input.
      if (held !== -1) buf[w++] = held;
      held = b;
    }
    if (held !== -1 && held !== CR && w < buf.length) {
      buf[w++] = held;
      held = -1;
    }
    this.#held = held;
    return w;
  }

  /** Writes the held-back byte (if any) into `dst` at the end of the stream; returns 0 or 1. Resets the state. */
  flush(dst: Uint8Array): number {
    const held = this.#held;
    this.#held = -1;
    if (held === -1) return 0;
    dst[0] = held;
    return 1;
  }
}
