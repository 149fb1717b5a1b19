/**
 * Bounded reading of standard input for the CLI (`sendmail`, `send`, `passwd`).
 *
 * @module
 */

/**
 * Reads all of standard input; resolves to null as soon as it exceeds `limit` bytes (the rest is not read).
 *
 * @example
 * ```ts
 * const raw = await readStdin(25 << 20);
 * if (raw === null) console.error("too large");
 * ```
 */
export async function readStdin(limit: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null) break;
    total += n;
    if (total > limit) return null;
    chunks.push(buf.slice(0, n));
  }
  const all = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  return all;
}
