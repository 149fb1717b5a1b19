/**
 * A small disk for disk-full tests without root: a child Deno script run inside a private mount namespace
 * (`unshare -rm`) with a tmpfs of a given size mounted for it. Where user namespaces do not work the tests are
 * skipped outside CI and fail under CI.
 *
 * @module
 */

import { findPeer, requirePeer } from "./peers.ts";
import { run } from "./test_util.ts";

async function canUnshare(): Promise<boolean> {
  const unshare = findPeer("unshare");
  if (!unshare) return false;
  const out = await new Deno.Command(unshare, { args: ["-rm", "true"], stdout: "null", stderr: "null" })
    .output().catch(() => null);
  return out?.success ?? false;
}

/** True when `unshare -rm` works here (user namespaces). */
export const NAMESPACES: boolean = await canUnshare();

/**
 * Writes `script` to a temp folder and runs it with `deno run --allow-all` inside its own mount namespace, with a
 * fresh tmpfs of `sizeMiB` mounted at the path it gets as its first argument (`mnt`). Resolves to the last line the
 * script printed, parsed as JSON, and that path; throws with its stderr when it failed.
 *
 * @example
 * ```ts
 * const { res, mnt } = await runInTmpfs('console.log(JSON.stringify({ ok: true }));', 1);
 * console.log(res.ok, mnt);
 * ```
 */
export async function runInTmpfs(
  script: string,
  sizeMiB: number,
  // deno-lint-ignore no-explicit-any
): Promise<{ res: Record<string, any>; mnt: string }> {
  if (!NAMESPACES) {
    throw new Error("Interop setup missing: `unshare -rm` (user namespaces) does not work here.");
  }
  const dir = await Deno.makeTempDir({ prefix: "outpost_tmpfs_" });
  try {
    await Deno.writeTextFile(`${dir}/child.ts`, script);
    await Deno.mkdir(`${dir}/mnt`);
    const r = await run(requirePeer("unshare"), [
      "-rm",
      "sh",
      "-c",
      `mount -t tmpfs -o size=${sizeMiB}m tmpfs "$1" && exec "$2" run --allow-all "$3" "$1"`,
      "sh",
      `${dir}/mnt`,
      Deno.execPath(),
      `${dir}/child.ts`,
    ], { timeoutMs: 120_000, env: { OUTPOST_LOG: "off" } });
    if (r.code !== 0) throw new Error(`child failed: ${r.stderr}`);
    return { res: JSON.parse(r.stdout.trim().split("\n").pop()!), mnt: `${dir}/mnt` };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
