/**
 * The arm64 Deno runtime for the board, fetched from the npm registry (`@deno/linux-arm64-glibc`), pinned to the
 * same version as the x64 Deno the project is built and tested with, and checked against a pinned integrity hash.
 *
 * @module
 */

import { ImageError, mustRun } from "./disk_image.ts";

/** The pinned runtime version (matches `npx deno@2.9.6` in .ci/run). */
export const DENO_ARM64_VERSION = "2.9.6";
/** The npm package that carries the Linux arm64 (glibc) `deno` binary. */
export const DENO_ARM64_PACKAGE = "@deno/linux-arm64-glibc";
/** npm integrity (SHA-512, base64) of the pinned tarball; a mismatch is refused. */
export const DENO_ARM64_INTEGRITY =
  "sha512-poqhoH9B3nYloigEMPT5t8HY+wBeiuea1An5Q7fqgJzP0SYmWsoS/oUnWO/pEiA4ofzIBy1Elt/in58xKtxEoQ==";

/** Default cache folder: `$OUTPOST_CACHE`, else `$XDG_CACHE_HOME/outpost`, else `~/.cache/outpost`. */
export function defaultCacheDir(): string {
  const explicit = Deno.env.get("OUTPOST_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/outpost`;
  return `${Deno.env.get("HOME") ?? "/tmp"}/.cache/outpost`;
}

async function sha512Base64(path: string): Promise<string> {
  // The tarball is ~40 MB; hashing it whole once per build is fine in a build script (not a serving path).
  const data = await Deno.readFile(path);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", data));
  let bin = "";
  for (const b of digest) bin += String.fromCharCode(b);
  return `sha512-${btoa(bin)}`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the path of the cached arm64 `deno` binary, fetching it with `npm pack` on first use.
 *
 * Safe under concurrent callers, in one process or many (the device tests ask at once on a fresh machine): one
 * fetcher at a time holds an exclusive lock on `<cache>/deno-arm64-<version>.lock`, and the tarball and the binary
 * each appear under their final names only by a rename of a complete file, so no caller ever sees half of one.
 *
 * @example
 * ```ts
 * const deno = await fetchDenoArm64(defaultCacheDir());
 * console.log(deno);
 * ```
 */
export async function fetchDenoArm64(
  cacheDir: string = defaultCacheDir(),
  log: (line: string) => void = () => {},
): Promise<string> {
  const dir = `${cacheDir}/deno-arm64-${DENO_ARM64_VERSION}`;
  const bin = `${dir}/package/deno`;
  if (await exists(bin)) return bin;
  await Deno.mkdir(dir, { recursive: true });
  const lock = await Deno.open(`${dir}.lock`, { create: true, write: true });
  try {
    await lock.lock(true);
    if (await exists(bin)) return bin;
    // Under the lock nobody else is mid-fetch: what a killed fetcher left is swept.
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".fetch-")) await Deno.remove(`${dir}/${e.name}`, { recursive: true });
    }
    const work = await Deno.makeTempDir({ dir, prefix: ".fetch-" });
    try {
      const name = `deno-linux-arm64-glibc-${DENO_ARM64_VERSION}.tgz`;
      const tarball = `${dir}/${name}`;
      if (!await exists(tarball)) {
        log(`Fetching ${DENO_ARM64_PACKAGE}@${DENO_ARM64_VERSION} from the npm registry (about 40 MB)...`);
        await mustRun(
          "npm",
          ["pack", `${DENO_ARM64_PACKAGE}@${DENO_ARM64_VERSION}`, "--pack-destination", work, "--silent"],
          `fetching the arm64 Deno runtime (${DENO_ARM64_PACKAGE}@${DENO_ARM64_VERSION}) with npm pack`,
        );
        await Deno.rename(`${work}/${name}`, tarball);
      }
      const integrity = await sha512Base64(tarball);
      if (integrity !== DENO_ARM64_INTEGRITY) {
        await Deno.remove(tarball);
        throw new ImageError(
          `Refusing the arm64 Deno tarball: its SHA-512 (${integrity}) is not the pinned ${DENO_ARM64_INTEGRITY}.`,
        );
      }
      await mustRun("tar", ["-xzf", tarball, "-C", work, "package/deno"], "unpacking the arm64 Deno runtime");
      await Deno.chmod(`${work}/package/deno`, 0o755);
      await Deno.mkdir(`${dir}/package`, { recursive: true });
      await Deno.rename(`${work}/package/deno`, bin);
      return bin;
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  } finally {
    lock.close();
  }
}

if (import.meta.main) {
  console.log(await fetchDenoArm64(Deno.args[0] ?? defaultCacheDir(), (l) => console.error(l)));
}
