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
  /**
   * What `/usr/bin/ls` is: "arm64" (an aarch64 ELF header, the default), "armhf" (a 32-bit ARM one, plus
   * `/usr/lib/ld-linux-armhf.so.3`) or "none" (no programs at all).
   */
  arch?: "arm64" | "armhf" | "none";
  /** Extra `/etc/passwd` lines (the file always has root). */
  passwd?: string[];
  /** Extra `/etc/group` lines (the file always has root and shadow). */
  group?: string[];
  /** Extra files in the root tree, by absolute path. */
  files?: Record<string, string>;
}

/** The first 64 bytes of an ELF executable: class (1 = 32-bit, 2 = 64-bit) and machine (0x28 ARM, 0xb7 AArch64). */
export function elfHeader(arch: "arm64" | "armhf"): Uint8Array {
  const h = new Uint8Array(64);
  h.set([0x7f, 0x45, 0x4c, 0x46, arch === "arm64" ? 2 : 1, 1, 1, 0]);
  h[16] = 3; // ET_DYN
  h[18] = arch === "arm64" ? 0xb7 : 0x28;
  h[20] = 1; // EV_CURRENT
  return h;
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
    const lines = (xs: string[]) => xs.map((l) => `${l}\n`).join("");
    await Deno.writeTextFile(
      `${tree}/etc/passwd`,
      lines(["root:x:0:0:root:/root:/bin/bash", ...opts.passwd ?? []]),
    );
    await Deno.writeTextFile(`${tree}/etc/group`, lines(["root:x:0:", "shadow:x:42:", ...opts.group ?? []]));
    await Deno.writeTextFile(`${tree}/etc/shadow`, "root:*:20000:0:99999:7:::\n", { mode: 0o640 });
    await Deno.writeTextFile(`${tree}/etc/gshadow`, "root:*::\nshadow:*::\n", { mode: 0o640 });
    const arch = opts.arch ?? "arm64";
    if (arch !== "none") await Deno.writeFile(`${tree}/usr/bin/ls`, elfHeader(arch), { mode: 0o755 });
    if (arch === "armhf") {
      await Deno.mkdir(`${tree}/usr/lib`, { recursive: true });
      await Deno.writeFile(`${tree}/usr/lib/ld-linux-armhf.so.3`, elfHeader("armhf"), { mode: 0o755 });
    }
    for (const [p, text] of Object.entries(opts.files ?? {})) {
      await Deno.mkdir(`${tree}${p.slice(0, p.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${tree}${p}`, text);
    }
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
    // As on Debian: the shadow files belong to group shadow (42), mode 0640.
    await run("debugfs", [
      "-w",
      "-R",
      "sif /etc/shadow gid 42",
      `${path}?offset=${rootOffset}`,
    ]);
    await run("debugfs", ["-w", "-R", "sif /etc/gshadow gid 42", `${path}?offset=${rootOffset}`]);
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
