/**
 * Builds a flashable SD-card image with outpost from a stock Raspberry Pi OS Lite (arm64) image, without root,
 * loop devices or mounts.
 *
 * The input (`.img` or `.img.xz`) is never modified: it is copied (or decompressed) to the output first. Into the
 * output's ext4 root go the arm64 Deno runtime, the bundled app, the systemd units and the first-boot step; onto
 * its FAT boot partition goes a commented `outpost.toml` the user edits from any PC.
 *
 * ```sh
 * deno run -A scripts/build_image.ts --base 2024-11-19-raspios-bookworm-arm64-lite.img.xz --board rpi4 \
 *   --out outpost-rpi4.img
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseConfig } from "../src/config/config.ts";
import { ConfigError } from "../src/config/section.ts";
import { bundleOutpost, BUNDLES } from "./bundle_outpost.ts";
import { defaultCacheDir, fetchDenoArm64 } from "./deno_arm64.ts";
import {
  checkFilesystems,
  debugfsBatch,
  extFreeBytes,
  extStat,
  fatFreeBytes,
  ImageError,
  type ImageLayout,
  mtoolsImage,
  mustRun,
  readImageLayout,
  runTool,
} from "./disk_image.ts";
import { type BoardPaths, DEFAULT_BOARD_PATHS, makeUnits, readBoardProfile } from "./make_unit.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MIB = 1024 * 1024;

/** Options of {@link buildImage}. */
export interface BuildImageOptions {
  /** The stock image (`.img` or `.img.xz`); read only. */
  base: string;
  /** The image to write; must not exist unless `force`. */
  out: string;
  /** Board profile id in `boards/` (default "generic-arm64"). */
  board?: string;
  /** Folder of board profiles (default: the repo's `boards/`). */
  boardsDir?: string;
  /** A config file to put on the boot partition instead of the board's template. */
  config?: string;
  /** The arm64 `deno` binary to install (default: fetched from npm into the cache). */
  deno?: string;
  /** Cache folder for the fetched runtime. */
  cacheDir?: string;
  /** Overwrite `out` if it exists. */
  force?: boolean;
  /** Progress lines go here (default: stderr). */
  log?: (line: string) => void;
}

/** What went into the image. */
export interface BuildImageResult {
  layout: ImageLayout;
  /** Where the boot partition is mounted on the board (the config path there). */
  configPathOnBoard: string;
  /** Files written into the root partition, with mode and owner. */
  files: { path: string; mode: number; bytes: number }[];
}

/** A config used when the board profile has no template (the board's defaults, all commented). */
export const FALLBACK_TEMPLATE =
  `# outpost configuration. Edit it on the SD card's boot partition from any PC; the board
# reads it at every start. A file with mistakes is reported in the journal and the last good copy keeps running.
# Full reference: /opt/outpost/README.md

[device]
# name = "pi-freezer"        # shown in mail subjects; default: the host name
board = "generic"

[ftp]
port = 21
active = false                # passive only: keeps the sandbox's network access narrow
[ftp.passive]
ports = "50000-50031"
# [[ftp.users]]
# name = "alice"
# password_hash = "pbkdf2-sha256$..."   # make one with: outpost passwd
# root = "/srv/outpost"

# [smtp]
# host = "smtp.example.com"
# port = 587
# from = "pi@example.com"
`;

async function availableBytes(dir: string): Promise<number> {
  const out = await mustRun("df", ["-B1", "--output=avail", dir], `checking free space in ${dir}`);
  return Number(out.trim().split("\n").pop()?.trim() ?? NaN);
}

async function xzUncompressedSize(path: string): Promise<number> {
  const out = await mustRun("xz", ["--robot", "--list", path], `reading ${path} (is it an .xz file?)`);
  const totals = out.split("\n").find((l) => l.startsWith("totals\t"));
  const size = Number(totals?.split("\t")[4] ?? NaN);
  if (!Number.isFinite(size)) {
    throw new ImageError(`Cannot use ${path}: xz does not report its uncompressed size.`);
  }
  return size;
}

function mib(n: number): string {
  return `${(n / MIB).toFixed(1)} MiB`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

function dirOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : p.slice(0, i);
}

function ancestors(path: string): string[] {
  const parts = path.split("/").filter(Boolean);
  return parts.map((_, i) => "/" + parts.slice(0, i + 1).join("/"));
}

/**
 * Builds the image (see the module doc). Throws {@link ImageError} with a plain message when it cannot, and then
 * leaves no partial output behind.
 *
 * @example
 * ```ts
 * await buildImage({ base: "raspios-lite-arm64.img.xz", out: "outpost.img", board: "rpi4" });
 * ```
 */
export async function buildImage(opts: BuildImageOptions): Promise<BuildImageResult> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const steps = 8;
  let step = 0;
  const progress = (msg: string) => log(`[${++step}/${steps}] ${msg}`);

  const baseInfo = await Deno.stat(opts.base).catch(() => null);
  if (!baseInfo?.isFile) throw new ImageError(`Cannot use ${opts.base}: no such file.`);
  const baseReal = await Deno.realPath(opts.base);
  if (await exists(opts.out)) {
    if ((await Deno.realPath(opts.out)) === baseReal) {
      throw new ImageError(
        "The output image must be a new file: the input image is never modified in place.",
      );
    }
    if (!opts.force) throw new ImageError(`${opts.out} already exists (pass --force to replace it).`);
  }
  const compressed = opts.base.endsWith(".xz");

  progress(`Checking ${opts.base}`);
  if (!compressed) await readImageLayout(opts.base); // refuse a garbage input before writing anything
  const outBytes = compressed ? await xzUncompressedSize(opts.base) : baseInfo.size;
  const avail = await availableBytes(dirOf(opts.out));
  if (avail < outBytes + 64 * MIB) {
    throw new ImageError(
      `Not enough free space in ${dirOf(opts.out)}: the image needs ${mib(outBytes)} and ${
        mib(avail)
      } is free.`,
    );
  }

  // Everything that can fail without touching the output is prepared first.
  progress("Preparing the runtime, the bundle and the config");
  const profile = await readBoardProfile(opts.board ?? "generic-arm64", opts.boardsDir);
  const denoBin = opts.deno ?? await fetchDenoArm64(opts.cacheDir ?? defaultCacheDir(), log);
  const configText = opts.config
    ? await Deno.readTextFile(opts.config)
    : profile.configTemplate ?? FALLBACK_TEMPLATE;
  const work = await Deno.makeTempDir({ prefix: "outpost-image-" });
  let outCreated = false;
  try {
    let config;
    try {
      config = parseConfig(configText, "/boot/firmware/outpost.toml");
    } catch (e) {
      if (e instanceof ConfigError) {
        throw new ImageError(`The config for the image is not valid:\n  ${e.problems.join("\n  ")}`);
      }
      throw e;
    }
    for (const name of Object.keys(BUNDLES)) await bundleOutpost(`${work}/${name}`, BUNDLES[name]);

    progress(`${compressed ? "Decompressing" : "Copying"} ${opts.base} to ${opts.out} (${mib(outBytes)})`);
    outCreated = true;
    if (compressed) {
      await mustRun(
        "sh",
        ["-c", 'xz -dc -- "$1" > "$2"', "sh", opts.base, opts.out],
        `decompressing ${opts.base}`,
      );
    } else {
      await mustRun("cp", ["--sparse=always", "--", opts.base, opts.out], `copying ${opts.base}`);
    }
    await Deno.chmod(opts.out, 0o644);
    const layout = await readImageLayout(opts.out);
    log(
      `      ${layout.label === "dos" ? "MBR" : "GPT"}: boot FAT at ${mib(layout.boot.offset)} (${
        mib(layout.boot.size)
      }), root ext4 at ${mib(layout.root.offset)} (${mib(layout.root.size)})`,
    );

    // Bookworm mounts the boot partition at /boot/firmware; older releases at /boot.
    const firmwareDir = await extStat(opts.out, layout.root, "/boot/firmware");
    const bootMount = firmwareDir ? "/boot/firmware" : "/boot";
    const paths: BoardPaths = { ...DEFAULT_BOARD_PATHS, configPath: `${bootMount}/outpost.toml` };
    const units = makeUnits({ ...config, path: paths.configPath }, profile, paths);
    const wrapper = `#!/bin/sh\n# outpost CLI for administrators (check-config, sensors, passwd, ...).\n` +
      `export OUTPOST_BOARDS_DIR=${paths.prefix}/boards OUTPOST_CONFIG=\${OUTPOST_CONFIG:-${paths.configPath}}\n` +
      `exec ${paths.prefix}/bin/deno run --no-config --no-npm --no-remote --no-prompt -A ` +
      `${paths.prefix}/outpost.js "$@"\n`;
    const files: { path: string; source: string; mode: number }[] = [
      { path: `${paths.prefix}/bin/deno`, source: denoBin, mode: 0o755 },
      ...Object.keys(BUNDLES).map((n) => ({
        path: `${paths.prefix}/${n}`,
        source: `${work}/${n}`,
        mode: 0o644,
      })),
      { path: `${paths.prefix}/firstboot.sh`, source: `${work}/firstboot.sh`, mode: 0o755 },
      { path: "/usr/local/bin/outpost", source: `${work}/outpost-cli`, mode: 0o755 },
      { path: "/etc/systemd/system/outpost.service", source: `${work}/outpost.service`, mode: 0o644 },
      {
        path: "/etc/systemd/system/outpost-firstboot.service",
        source: `${work}/outpost-firstboot.service`,
        mode: 0o644,
      },
    ];
    const boardsSrc = opts.boardsDir ?? `${REPO}/boards`;
    for await (const e of Deno.readDir(boardsSrc)) {
      if (e.isFile && e.name.endsWith(".toml")) {
        files.push({
          path: `${paths.prefix}/boards/${e.name}`,
          source: `${boardsSrc}/${e.name}`,
          mode: 0o644,
        });
      }
    }
    if (await exists(`${REPO}/README.md`)) {
      files.push({ path: `${paths.prefix}/README.md`, source: `${REPO}/README.md`, mode: 0o644 });
    }
    await Deno.writeTextFile(`${work}/firstboot.sh`, units.firstbootScript);
    await Deno.writeTextFile(`${work}/outpost-cli`, wrapper);
    await Deno.writeTextFile(`${work}/outpost.service`, units.service);
    await Deno.writeTextFile(`${work}/outpost-firstboot.service`, units.firstboot);
    await Deno.writeTextFile(`${work}/outpost.toml`, configText);
    const links = [
      {
        path: "/etc/systemd/system/multi-user.target.wants/outpost.service",
        target: "/etc/systemd/system/outpost.service",
      },
      {
        path: "/etc/systemd/system/multi-user.target.wants/outpost-firstboot.service",
        target: "/etc/systemd/system/outpost-firstboot.service",
      },
    ];

    progress("Checking free space in the image");
    const sizes = await Promise.all(files.map(async (f) => (await Deno.stat(f.source)).size));
    const need = sizes.reduce((a, b) => a + b, 0) + 4 * MIB;
    const extFree = await extFreeBytes(opts.out, layout.root);
    if (extFree < need) {
      throw new ImageError(
        `The root partition has ${mib(extFree)} free but outpost needs ${mib(need)} (the Deno runtime is ` +
          `${mib(sizes[0])}). Use an image with more free space on its root partition.`,
      );
    }
    const fatFree = await fatFreeBytes(opts.out, layout.boot);
    if (fatFree < configText.length + 64 * 1024) {
      throw new ImageError(`The boot partition has only ${fatFree} bytes free; outpost.toml does not fit.`);
    }
    log(`      root: ${mib(extFree)} free, ${mib(need)} needed; boot: ${mib(fatFree)} free`);

    progress(`Writing ${files.length} files and ${links.length} unit links to the root partition`);
    const dirs = [...new Set([...files, ...links].flatMap((f) => ancestors(dirOf(f.path))))].sort();
    const newDirs: string[] = [];
    for (const d of dirs) if (!await extStat(opts.out, layout.root, d)) newDirs.push(d);
    if (newDirs.length > 0) {
      await debugfsBatch(
        opts.out,
        layout.root,
        newDirs.flatMap((d) => [`mkdir ${d}`, `sif ${d} mode 040755`]),
        {
          write: true,
        },
      );
    }
    const ownDirs = [paths.prefix, `${paths.prefix}/bin`, `${paths.prefix}/boards`];
    await debugfsBatch(
      opts.out,
      layout.root,
      [...files, ...links].map((f) => `rm ${f.path}`),
      { write: true, tolerate: ["File not found", "rm: "] },
    );
    const cmds: string[] = [];
    for (const d of ownDirs) cmds.push(`sif ${d} mode 040755`, `sif ${d} uid 0`, `sif ${d} gid 0`);
    for (const f of files) {
      cmds.push(`write ${f.source} ${f.path}`, `sif ${f.path} mode 0100${f.mode.toString(8)}`);
      cmds.push(`sif ${f.path} uid 0`, `sif ${f.path} gid 0`);
    }
    for (const l of links) cmds.push(`symlink ${l.path} ${l.target}`);
    for (const [i, f] of files.entries()) log(`      ${f.path} (${mib(sizes[i])}, ${f.mode.toString(8)})`);
    await debugfsBatch(opts.out, layout.root, cmds, { write: true });

    progress(`Writing outpost.toml to the boot partition (${bootMount}/outpost.toml on the board)`);
    const fat = mtoolsImage(opts.out, layout.boot);
    const existing = await runTool("mdir", ["-b", "-i", fat, "::/outpost.toml"]);
    if (existing.code === 0 && !opts.config) {
      log("      keeping the outpost.toml already on the boot partition");
    } else {
      await mustRun(
        "mcopy",
        ["-o", "-i", fat, `${work}/outpost.toml`, "::/outpost.toml"],
        "writing outpost.toml",
      );
    }

    if (profile.configTxt.length > 0) {
      const current = await runTool("mtype", ["-i", fat, "::/config.txt"]);
      const text = current.code === 0 ? current.stdout.replace(/\r\n/g, "\n") : "";
      const have = new Set(text.split("\n").map((l) => l.trim()));
      const add = profile.configTxt.filter((l) => !have.has(l.trim()));
      if (add.length > 0) {
        log(`      config.txt: adding ${add.join(", ")} (board ${profile.id})`);
        const body =
          `${text}${
            text && !text.endsWith("\n") ? "\n" : ""
          }\n# Added by outpost for board ${profile.id}:\n` +
          `[all]\n${add.join("\n")}\n`;
        await Deno.writeTextFile(`${work}/config.txt`, body);
        await mustRun(
          "mcopy",
          ["-o", "-i", fat, `${work}/config.txt`, "::/config.txt"],
          "updating config.txt",
        );
      }
    }

    progress("Checking both file systems (fsck.fat -n, e2fsck -fn)");
    await checkFilesystems(opts.out, layout);

    progress(`Done: ${opts.out}`);
    return {
      layout,
      configPathOnBoard: paths.configPath,
      files: files.map((f, i) => ({ path: f.path, mode: f.mode, bytes: sizes[i] })),
    };
  } catch (e) {
    if (outCreated) await Deno.remove(opts.out).catch(() => {});
    throw e;
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

const USAGE = `Usage: deno run -A scripts/build_image.ts --base RASPIOS.img[.xz] --out OUT.img [--board ID]
                                      [--config outpost.toml] [--deno ARM64_DENO] [--cache DIR] [--force]

Builds a flashable image with outpost from a stock Raspberry Pi OS Lite (arm64) image. The input is never
modified. Needs: sfdisk (fdisk), mtools, dosfstools, e2fsprogs, xz-utils, npm (first run, to fetch the runtime).`;

/**
 * The builder's CLI; resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await buildImageMain(["--base", "raspios.img.xz", "--out", "outpost.img"]));
 * ```
 */
export async function buildImageMain(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        base: { type: "string" },
        out: { type: "string" },
        board: { type: "string", default: "generic-arm64" },
        config: { type: "string" },
        "boards-dir": { type: "string" },
        deno: { type: "string" },
        cache: { type: "string" },
        force: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (e) {
    console.error(`build_image: ${(e as Error).message}\n${USAGE}`);
    return 64;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.base || !values.out) {
    console.error(`build_image: --base and --out are required.\n${USAGE}`);
    return 64;
  }
  try {
    const r = await buildImage({
      base: values.base,
      out: values.out,
      board: values.board,
      config: values.config,
      boardsDir: values["boards-dir"],
      deno: values.deno,
      cacheDir: values.cache,
      force: values.force,
    });
    console.log(`Image ready: ${values.out}`);
    console.log(`Edit ${r.configPathOnBoard.split("/").pop()} on the boot partition, then flash, e.g.:`);
    console.log(`  sudo dd if=${values.out} of=/dev/sdX bs=4M conv=fsync status=progress`);
    return 0;
  } catch (e) {
    if (e instanceof ImageError || e instanceof Deno.errors.NotFound) {
      console.error(`build_image: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await buildImageMain(Deno.args));
}
