/**
 * Free space on a file system, for the reserves that keep room for the device itself (the maildrop's
 * 1.5 x `max_message_size`, the FTP uploads' `min_free`).
 *
 * @module
 */

import { statfs } from "node:fs/promises";

/**
 * Bytes an unprivileged writer may still use on the file system holding `path` (statfs `bavail`), or null where
 * it cannot be asked (no `--allow-sys=statfs`, an odd file system): a reserve is then not enforced, and a write
 * still stops at a full disk.
 *
 * @example
 * ```ts
 * const free = await availableBytes("/var/lib/outpost");
 * if (free !== null && free < 64 << 20) console.log("less than 64 MiB free");
 * ```
 */
export async function availableBytes(path: string): Promise<number | null> {
  try {
    const st = await statfs(path);
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return null;
  }
}
