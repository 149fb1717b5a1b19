/**
 * Root-free access to a disk image holding a FAT boot partition and an ext2/3/4 root partition.
 *
 * No loop devices and no mounts: the partition table comes from `sfdisk -J` (MBR and GPT), the FAT side is
 * edited with mtools (`img@@offset`), the ext side with `debugfs -w "img?offset=N"`, and both are checked with
 * `fsck.fat -n` and `e2fsck -fn`. Partitions are recognised by their on-disk magic, not only by type codes.
 *
 * @module
 */

/** One partition of an image, with byte offsets. */
export interface ImagePartition {
  /** 1-based index in the table. */
  index: number;
  /** Byte offset of the partition in the image. */
  offset: number;
  /** Size in bytes. */
  size: number;
  /** Type code or GUID as sfdisk prints it. */
  type: string;
  /** What the first sectors contain. */
  fs: "fat" | "ext" | "other";
}

/** The layout outpost needs: a FAT boot partition and an ext root partition. */
export interface ImageLayout {
  /** "dos" (MBR) or "gpt". */
  label: "dos" | "gpt";
  sectorSize: number;
  partitions: ImagePartition[];
  boot: ImagePartition;
  root: ImagePartition;
}

/** The image cannot be used; the message says why in plain words. */
export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageError";
  }
}

/** Result of a finished tool run. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Finds `cmd` on PATH, then in /usr/sbin and /sbin (not on a normal user's PATH, but where sfdisk, debugfs,
 * e2fsck and mkfs.fat live and work fine without root on image files).
 *
 * @example
 * ```ts
 * resolveTool("sfdisk"); // "/usr/sbin/sfdisk"
 * ```
 */
export function resolveTool(cmd: string): string {
  if (cmd.includes("/")) return cmd;
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    try {
      if (Deno.statSync(`${d}/${cmd}`).isFile) return `${d}/${cmd}`;
    } catch {
      // Not in this folder.
    }
  }
  return cmd;
}

/**
 * Runs a tool and collects its output; never throws for a non-zero exit (callers decide).
 *
 * @example
 * ```ts
 * const r = await runTool("sfdisk", ["-J", "disk.img"]);
 * console.log(r.code === 0 ? r.stdout : r.stderr);
 * ```
 */
export async function runTool(
  cmd: string,
  args: string[],
  opts: { stdin?: string } = {},
): Promise<ToolResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(resolveTool(cmd), {
      args,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      env: { LC_ALL: "C", MTOOLS_SKIP_CHECK: "1" },
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ImageError(`Cannot run ${cmd}: it is not installed (see the README for the apt packages).`);
    }
    throw e;
  }
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Runs a tool and throws an {@link ImageError} naming `what` when it fails.
 *
 * @example
 * ```ts
 * await mustRun("mcopy", ["-i", "disk.img@@1048576", "a.txt", "::/a.txt"], "copying a.txt to the boot partition");
 * ```
 */
export async function mustRun(cmd: string, args: string[], what: string, stdin?: string): Promise<string> {
  const r = await runTool(cmd, args, { stdin });
  if (r.code !== 0) {
    const detail = (r.stderr || r.stdout).trim().split("\n").slice(-3).join(" / ");
    throw new ImageError(`Failed ${what}: ${cmd} exited with ${r.code}${detail ? ` (${detail})` : ""}.`);
  }
  return r.stdout;
}

async function readAt(file: Deno.FsFile, offset: number, buf: Uint8Array): Promise<number> {
  await file.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/**
 * Looks at the first bytes of a partition: a FAT boot sector, an ext superblock, or something else.
 *
 * @example
 * ```ts
 * const f = await Deno.open("disk.img");
 * console.log(await sniffFilesystem(f, 1048576));
 * f.close();
 * ```
 */
export async function sniffFilesystem(file: Deno.FsFile, offset: number): Promise<"fat" | "ext" | "other"> {
  const sector = new Uint8Array(512);
  if (await readAt(file, offset, sector) === 512 && sector[510] === 0x55 && sector[511] === 0xaa) {
    const ascii = (a: number, b: number) => String.fromCharCode(...sector.subarray(a, b));
    if (ascii(0x52, 0x57) === "FAT32" || ascii(0x36, 0x39) === "FAT") return "fat";
  }
  const sb = new Uint8Array(2);
  if (await readAt(file, offset + 1024 + 0x38, sb) === 2 && sb[0] === 0x53 && sb[1] === 0xef) return "ext";
  return "other";
}

/**
 * Reads the partition table of `image` and finds the FAT boot and ext root partitions.
 * Throws {@link ImageError} with a plain explanation when the image is not such a disk image.
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("raspios-lite-arm64.img");
 * console.log(layout.boot.offset, layout.root.offset);
 * ```
 */
export async function readImageLayout(image: string): Promise<ImageLayout> {
  const info = await Deno.stat(image).catch(() => null);
  if (!info?.isFile) throw new ImageError(`Cannot use ${image}: it is not a file.`);
  const r = await runTool("sfdisk", ["-J", image]);
  if (r.code !== 0 || !r.stdout.trim()) {
    throw new ImageError(
      `Cannot use ${image}: it has no partition table that sfdisk understands, so it is not a disk image ` +
        `(expected a Raspberry Pi OS .img or .img.xz).`,
    );
  }
  let table: {
    label?: string;
    sectorsize?: number;
    partitions?: { start: number; size: number; type: string }[];
  };
  try {
    table = JSON.parse(r.stdout).partitiontable;
  } catch {
    throw new ImageError(`Cannot use ${image}: sfdisk printed a partition table that could not be read.`);
  }
  const label = table.label;
  if (label !== "dos" && label !== "gpt") {
    throw new ImageError(
      `Cannot use ${image}: its partition table is "${label}", only MBR (dos) and GPT are known.`,
    );
  }
  const sectorSize = table.sectorsize ?? 512;
  const partitions: ImagePartition[] = [];
  const file = await Deno.open(image, { read: true });
  try {
    for (const [i, p] of (table.partitions ?? []).entries()) {
      const offset = p.start * sectorSize;
      const size = p.size * sectorSize;
      if (offset + size > info.size) {
        throw new ImageError(
          `Cannot use ${image}: partition ${i + 1} ends beyond the end of the file (the image is truncated).`,
        );
      }
      partitions.push({ index: i + 1, offset, size, type: p.type, fs: await sniffFilesystem(file, offset) });
    }
  } finally {
    file.close();
  }
  const boot = partitions.find((p) => p.fs === "fat");
  const root = partitions.find((p) => p.fs === "ext");
  if (!boot || !root) {
    const found = partitions.map((p) => `${p.index}: ${p.fs}`).join(", ") || "no partitions";
    throw new ImageError(
      `Cannot use ${image}: expected a FAT boot partition and an ext4 root partition (as in Raspberry Pi OS), ` +
        `found ${found}.`,
    );
  }
  return { label, sectorSize, partitions, boot, root };
}

/** The `img@@offset` argument mtools takes for a partition. */
export function mtoolsImage(image: string, part: ImagePartition): string {
  return `${image}@@${part.offset}`;
}

/** The `img?offset=N` argument e2fsprogs take for a partition. */
export function extImage(image: string, part: ImagePartition): string {
  return `${image}?offset=${part.offset}`;
}

/**
 * Runs a batch of debugfs commands against the ext partition. Every stderr line except the version banner is
 * an error; `tolerate` lists substrings of errors that are expected (e.g. "already exists").
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * await debugfsBatch("disk.img", layout.root, ["mkdir /opt/outpost"], { write: true, tolerate: ["already exists"] });
 * ```
 */
export async function debugfsBatch(
  image: string,
  root: ImagePartition,
  commands: string[],
  opts: { write?: boolean; tolerate?: string[] } = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-debugfs-" });
  try {
    const cmdFile = `${dir}/commands`;
    await Deno.writeTextFile(cmdFile, commands.join("\n") + "\n");
    const args = [...(opts.write ? ["-w"] : []), "-f", cmdFile, extImage(image, root)];
    const r = await runTool("debugfs", args);
    const errors = r.stderr.split("\n").filter((l) =>
      l.trim() !== "" && !l.startsWith("debugfs ") && !(opts.tolerate ?? []).some((t) => l.includes(t))
    );
    // A failed command prints two lines ("ext2fs_x: why" and "x: why"); both are reported once.
    if (r.code !== 0 || errors.length > 0) {
      throw new ImageError(
        `Failed editing the root partition with debugfs: ${errors.join(" / ") || r.stderr}`,
      );
    }
    return r.stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Returns the `stat` text of a path inside the ext partition, or null when it does not exist.
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const st = await extStat("disk.img", layout.root, "/etc/systemd/system");
 * console.log(st ?? "no such file");
 * ```
 */
export async function extStat(image: string, root: ImagePartition, path: string): Promise<string | null> {
  const r = await runTool("debugfs", ["-R", `stat "${path}"`, extImage(image, root)]);
  if (r.code !== 0 || /not found|File not found/i.test(r.stderr) || !r.stdout.includes("Inode:")) return null;
  return r.stdout;
}

/** Mode, owner, type and (for symlinks) target of one inode, parsed from debugfs `stat`. */
export interface ExtInode {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Symlink target ("Fast link dest"), if any. */
  target: string | null;
}

/**
 * Parses debugfs `stat` output into type, mode, owner and symlink target.
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const inode = parseExtStat(await extStat("disk.img", layout.root, "/opt/outpost/bin/deno") ?? "");
 * console.log(inode.type, inode.mode.toString(8), inode.uid);
 * ```
 */
export function parseExtStat(text: string): ExtInode {
  const type = /Type:\s*(\S+)/.exec(text)?.[1] ?? "unknown";
  const mode = parseInt(/Mode:\s*([0-7]+)/.exec(text)?.[1] ?? "0", 8);
  const uid = Number(/User:\s*(\d+)/.exec(text)?.[1] ?? -1);
  const gid = Number(/Group:\s*(\d+)/.exec(text)?.[1] ?? -1);
  const size = Number(/Size:\s*(\d+)/.exec(text)?.[1] ?? -1);
  const target = /Fast link dest:\s*"(.*)"/.exec(text)?.[1] ?? null;
  return { type, mode, uid, gid, size, target };
}

/**
 * Free bytes in the ext partition (free blocks times block size, from the superblock).
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const free = await extFreeBytes("disk.img", layout.root);
 * console.log(free);
 * ```
 */
export async function extFreeBytes(image: string, root: ImagePartition): Promise<number> {
  const out = await mustRun("dumpe2fs", ["-h", extImage(image, root)], "reading the root file system's size");
  const free = Number(/^Free blocks:\s*(\d+)/m.exec(out)?.[1] ?? NaN);
  const block = Number(/^Block size:\s*(\d+)/m.exec(out)?.[1] ?? NaN);
  const reserved = Number(/^Reserved block count:\s*(\d+)/m.exec(out)?.[1] ?? 0);
  if (!Number.isFinite(free) || !Number.isFinite(block)) {
    throw new ImageError(
      "Cannot read the free space of the root file system (dumpe2fs printed no block counts).",
    );
  }
  // Root may use the reserved blocks, but the board needs them at run time; count them as used.
  return Math.max(0, free - reserved) * block;
}

/**
 * Free bytes in the FAT partition (from `mdir`'s "bytes free" line).
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const free = await fatFreeBytes("disk.img", layout.boot);
 * console.log(free);
 * ```
 */
export async function fatFreeBytes(image: string, boot: ImagePartition): Promise<number> {
  const out = await mustRun("mdir", ["-i", mtoolsImage(image, boot), "::/"], "listing the boot partition");
  const m = /([\d ]+) bytes free/.exec(out);
  if (!m) {
    throw new ImageError("Cannot read the free space of the boot partition (mdir printed no free count).");
  }
  return Number(m[1].replace(/ /g, ""));
}

/**
 * Checks both file systems read-only (`fsck.fat -n`, `e2fsck -fn`) and throws when either reports a problem.
 *
 * @example
 * ```ts
 * await checkFilesystems("disk.img", await readImageLayout("disk.img"));
 * ```
 */
export async function checkFilesystems(image: string, layout: ImageLayout): Promise<void> {
  const ext = await runTool("e2fsck", ["-fn", extImage(image, layout.root)]);
  if (ext.code !== 0) {
    throw new ImageError(
      `The root file system is not clean (e2fsck -fn exited with ${ext.code}): ${ext.stdout}`,
    );
  }
  // fsck.fat has no offset option; mtools' own check (mdir plus a FAT read) is used via a partition copy-free
  // trick: fsck.fat reads a file, so the partition is checked through a sparse slice.
  const dir = await Deno.makeTempDir({ prefix: "outpost-fatck-" });
  try {
    const slice = `${dir}/boot.img`;
    await mustRun(
      "dd",
      [
        `if=${image}`,
        `of=${slice}`,
        "bs=1M",
        `skip=${layout.boot.offset}`,
        `count=${layout.boot.size}`,
        "iflag=skip_bytes,count_bytes",
        "conv=sparse",
        "status=none",
      ],
      "copying the boot partition for checking",
    );
    const fat = await runTool("fsck.fat", ["-n", slice]);
    if (fat.code !== 0) {
      throw new ImageError(
        `The boot file system is not clean (fsck.fat -n exited with ${fat.code}): ${fat.stdout}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Reads a file from the ext partition (following symlinks in the path), or returns null when it does not exist.
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const passwd = await extReadFile("disk.img", layout.root, "/etc/passwd");
 * console.log(passwd ? new TextDecoder().decode(passwd) : "no /etc/passwd");
 * ```
 */
export async function extReadFile(
  image: string,
  root: ImagePartition,
  path: string,
): Promise<Uint8Array | null> {
  const st = await extStat(image, root, path);
  if (!st) return null;
  const dir = await Deno.makeTempDir({ prefix: "outpost-debugfs-" });
  try {
    const r = await runTool("debugfs", ["-R", `dump -p "${path}" ${dir}/file`, extImage(image, root)]);
    try {
      return await Deno.readFile(`${dir}/file`);
    } catch {
      throw new ImageError(`Cannot read ${path} from the root partition: ${r.stderr.trim()}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Names in a folder of the ext partition (empty when the folder does not exist).
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const confs = await extListDir("disk.img", layout.root, "/usr/lib/sysusers.d");
 * console.log(confs);
 * ```
 */
export async function extListDir(image: string, root: ImagePartition, dir: string): Promise<string[]> {
  if (!await extStat(image, root, dir)) return [];
  const r = await runTool("debugfs", ["-R", `ls -p "${dir}"`, extImage(image, root)]);
  return r.stdout.split("\n").map((l) => l.split("/")[5]).filter((n): n is string =>
    n !== undefined && n !== "" && n !== "." && n !== ".."
  );
}

/** What the root file system's programs are built for. */
export interface ImageArch {
  arch: "arm64" | "armhf" | "x86-64" | "other" | "unknown";
  /** The file that told, e.g. "/usr/bin/ls is a 32-bit ARM program". */
  evidence: string;
}

function elfArch(head: Uint8Array): { arch: ImageArch["arch"]; what: string } | null {
  if (head.length < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) {
    return null;
  }
  const bits = head[4] === 2 ? 64 : 32;
  const machine = head[18] | (head[19] << 8);
  if (machine === 0xb7 && bits === 64) return { arch: "arm64", what: "a 64-bit ARM (aarch64) program" };
  if (machine === 0x28) return { arch: "armhf", what: "a 32-bit ARM program" };
  if (machine === 0x3e && bits === 64) return { arch: "x86-64", what: "an x86-64 (PC) program" };
  return { arch: "other", what: `a ${bits}-bit program for ELF machine ${machine}` };
}

/**
 * Tells the root file system's architecture from the ELF header of `ls`, else from which dynamic loader is
 * present (a 64-bit Raspberry Pi OS may also carry 32-bit libraries, so the aarch64 loader wins).
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("disk.img");
 * const { arch } = await detectImageArch("disk.img", layout.root);
 * console.log(arch); // "arm64"
 * ```
 */
export async function detectImageArch(image: string, root: ImagePartition): Promise<ImageArch> {
  for (const p of ["/usr/bin/ls", "/bin/ls"]) {
    const data = await extReadFile(image, root, p);
    const elf = data ? elfArch(data.subarray(0, 64)) : null;
    if (elf) return { arch: elf.arch, evidence: `${p} is ${elf.what}` };
  }
  const loaders: [string, ImageArch["arch"]][] = [
    ["/usr/lib/ld-linux-aarch64.so.1", "arm64"],
    ["/lib/ld-linux-aarch64.so.1", "arm64"],
    ["/usr/lib/ld-linux-armhf.so.3", "armhf"],
    ["/lib/ld-linux-armhf.so.3", "armhf"],
    ["/usr/lib64/ld-linux-x86-64.so.2", "x86-64"],
    ["/lib64/ld-linux-x86-64.so.2", "x86-64"],
  ];
  for (const [p, arch] of loaders) {
    if (await extStat(image, root, p)) return { arch, evidence: `it has ${p}` };
  }
  return { arch: "unknown", evidence: "it has neither /usr/bin/ls nor a known dynamic loader" };
}

/** Where to get the image outpost needs; part of every refusal of a wrong-architecture image. */
export const ARM64_IMAGE_ADVICE = 'Download "Raspberry Pi OS Lite (64-bit)" (a file named like ' +
  "2024-11-19-raspios-bookworm-arm64-lite.img.xz) from raspberrypi.com/software/operating-systems and build " +
  "from that; it runs on every board outpost supports (Pi 3, 4, 5 and Zero 2 W).";

/**
 * Throws an {@link ImageError} unless the image is arm64 (an image it cannot tell is let through; `warn` says so).
 *
 * @example
 * ```ts
 * const layout = await readImageLayout("raspios.img");
 * await requireArm64("raspios.img", layout.root, console.error);
 * ```
 */
export async function requireArm64(
  image: string,
  root: ImagePartition,
  warn: (line: string) => void,
  shownName = image,
): Promise<void> {
  const { arch, evidence } = await detectImageArch(image, root);
  if (arch === "arm64") return;
  if (arch === "unknown") {
    warn(`      warning: cannot tell the image's architecture (${evidence}); assuming arm64`);
    return;
  }
  if (arch === "armhf") {
    throw new ImageError(
      `Cannot use ${shownName}: it is a 32-bit (armhf) image (${evidence}), and Deno, which runs outpost, has ` +
        `no 32-bit ARM build. ${ARM64_IMAGE_ADVICE}`,
    );
  }
  throw new ImageError(
    `Cannot use ${shownName}: it is not an arm64 image (${evidence}). ${ARM64_IMAGE_ADVICE}`,
  );
}
