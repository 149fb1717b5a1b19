/**
 * Builds a small synthetic Raspberry Pi OS-like disk image without root: a partition table (MBR or GPT), a
 * FAT32 boot partition (`mkfs.fat --offset`) and an ext4 root partition with a minimal tree
 * (`fakeroot mke2fs -d`). Sparse, so a 64 + 128 MiB image costs a few MiB of disk.
 *
 * @module
 */

import { resolveTool } from "../../scripts/disk_image.ts";

/** Options for {@link makeBaseImage}. */
export interface BaseImageOptions {
  label?: "dos" | "gpt";
  bootMiB?: number;
  rootMiB?: number;
  /** Create /boot/firmware in the root tree (Bookworm layout). Default true. */
  firmwareDir?: boolean;
}

async function run(cmd: string, args: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(resolveTool(cmd), {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/**
 * Creates `path` as a two-partition image and returns the partitions' byte offsets.
 *
 * @example
 * ```ts
 * const img = await makeBaseImage(`${dir}/base.img`);
 * ```
 */
export async function makeBaseImage(
  path: string,
  opts: BaseImageOptions = {},
): Promise<{ bootOffset: number; rootOffset: number }> {
  const label = opts.label ?? "dos";
  const bootMiB = opts.bootMiB ?? 64;
  const rootMiB = opts.rootMiB ?? 128;
  const bootStart = 2048; // 1 MiB, in 512-byte sectors
  const bootSectors = bootMiB * 2048;
  const rootStart = bootStart + bootSectors;
  const rootSectors = rootMiB * 2048;
  const total = (rootStart + rootSectors) * 512 + (label === "gpt" ? 1024 * 1024 : 0);
  await run("truncate", ["-s", String(total), path]);
  const types = label === "gpt"
    ? ["EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "0FC63DAF-8483-4772-8E79-3D47D8E4E4FA"]
    : ["c", "83"];
  await run(
    "sfdisk",
    ["-q", path],
    [
      `label: ${label}`,
      `start=${bootStart}, size=${bootSectors}, type=${types[0]}`,
      `start=${rootStart}, size=${rootSectors}, type=${types[1]}`,
      "",
    ].join("\n"),
  );
  const bootOffset = bootStart * 512;
  const rootOffset = rootStart * 512;
  await run("mkfs.fat", [
    "-F",
    "32",
    "-n",
    "bootfs",
    "--offset",
    String(bootStart),
    path,
    String(bootMiB * 1024),
  ]);
  const tree = await Deno.makeTempDir({ prefix: "outpost-rootfs-" });
  try {
    for (
      const d of ["etc/systemd/system/multi-user.target.wants", "usr/sbin", "usr/bin", "usr/local/bin", "opt"]
    ) {
      await Deno.mkdir(`${tree}/${d}`, { recursive: true });
    }
    if (opts.firmwareDir ?? true) await Deno.mkdir(`${tree}/boot/firmware`, { recursive: true });
    await Deno.writeTextFile(`${tree}/etc/os-release`, 'PRETTY_NAME="Synthetic test image"\nID=debian\n');
    await Deno.writeTextFile(`${tree}/etc/passwd`, "root:x:0:0:root:/root:/bin/bash\n");
    await run("fakeroot", [
      resolveTool("mke2fs"),
      "-q",
      "-F",
      "-t",
      "ext4",
      "-L",
      "rootfs",
      "-E",
      `offset=${rootOffset}`,
      "-d",
      tree,
      path,
      `${rootMiB * 1024}k`,
    ]);
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
  return { bootOffset, rootOffset };
}

/**
 * SHA-256 of a file as hex, streamed through `sha256sum` (images are large and sparse).
 *
 * @example
 * ```ts
 * const before = await fileSha256("base.img");
 * ```
 */
export async function fileSha256(path: string): Promise<string> {
  return (await run("sha256sum", ["--", path])).split(" ")[0];
}
