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
import { parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError } from "../src/config/section.ts";
import { bundleOutpost, BUNDLES } from "./bundle_outpost.ts";
import { defaultCacheDir, fetchDenoArm64 } from "./deno_arm64.ts";
import {
  ARM64_IMAGE_ADVICE,
  checkFilesystems,
  debugfsBatch,
  extFreeBytes,
  type ExtInode,
  extListDir,
  extReadFile,
  extStat,
  fatFreeBytes,
  ImageError,
  type ImageLayout,
  mtoolsImage,
  mustRun,
  parseExtStat,
  readImageLayout,
  requireArm64,
  runTool,
} from "./disk_image.ts";
import { type AccountFiles, planAccount } from "./image_account.ts";
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
  const steps = 9;
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
  if (/armhf/i.test(opts.base.slice(opts.base.lastIndexOf("/") + 1))) {
    throw new ImageError(
      `Cannot use ${opts.base}: its name says it is a 32-bit (armhf) image, and Deno, which runs outpost, has no ` +
        `32-bit ARM build. ${ARM64_IMAGE_ADVICE}`,
    );
  }
  if (!compressed) {
    // Refuse a garbage or 32-bit input before writing anything.
    const layout = await readImageLayout(opts.base);
    await requireArm64(opts.base, layout.root, log);
  }
  const outBytes = compressed ? await xzUncompressedSize(opts.base) : baseInfo.size;
  const avail = await availableBytes(dirOf(opts.out));
  if (avail < outBytes + 64 * MIB) {
    throw new ImageError(
      `Not enough free space in ${dirOf(opts.out)}: the image needs ${mib(outBytes)} and ${
        mib(avail)
      } is free.`,
    );
  }

  // The image is built under a hidden name next to the output and renamed into place only when complete, so a
  // refused or failed build leaves nothing that looks like an image.
  const partial = `${dirOf(opts.out)}/.${opts.out.slice(opts.out.lastIndexOf("/") + 1)}.partial-${Deno.pid}`;
  const work = await Deno.makeTempDir({ prefix: "outpost-image-" });
  let outCreated = false;
  try {
    progress(`${compressed ? "Decompressing" : "Copying"} ${opts.base} (${mib(outBytes)})`);
    outCreated = true;
    if (compressed) {
      await mustRun(
        "sh",
        ["-c", 'xz -dc -- "$1" > "$2"', "sh", opts.base, partial],
        `decompressing ${opts.base}`,
      );
    } else {
      await mustRun("cp", ["--sparse=always", "--", opts.base, partial], `copying ${opts.base}`);
    }
    await Deno.chmod(partial, 0o644);
    const layout = await readImageLayout(partial);
    if (compressed) await requireArm64(partial, layout.root, log, opts.base);
    log(
      `      ${layout.label === "dos" ? "MBR" : "GPT"}: boot FAT at ${mib(layout.boot.offset)} (${
        mib(layout.boot.size)
      }), root ext4 at ${mib(layout.root.offset)} (${mib(layout.root.size)})`,
    );

    progress("Preparing the runtime, the bundle and the config");
    const profile = await readBoardProfile(opts.board ?? "generic-arm64", opts.boardsDir);
    const denoBin = opts.deno ?? await fetchDenoArm64(opts.cacheDir ?? defaultCacheDir(), log);
    const configText = opts.config
      ? await Deno.readTextFile(opts.config)
      : profile.configTemplate ?? FALLBACK_TEMPLATE;
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
    const img = partial;

    // Bookworm mounts the boot partition at /boot/firmware; older releases at /boot.
    const firmwareDir = await extStat(img, layout.root, "/boot/firmware");
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
    const account = await readAccountFiles(img, layout);
    const stateDir = config.device.stateDir;
    const plan = planAccount(account.files, {
      name: paths.user,
      home: stateDir,
      shell: "/usr/sbin/nologin",
      gecos: "outpost FTP server and alert monitor",
      today: Math.floor(Date.now() / 86_400_000),
    });
    await Deno.writeTextFile(`${work}/sysusers.conf`, plan.sysusersConf);
    files.push({
      path: `/usr/lib/sysusers.d/${paths.user}.conf`,
      source: `${work}/sysusers.conf`,
      mode: 0o644,
    });
    // Pi OS Lite has no MTA: cron's MAILTO and scripts get /usr/sbin/sendmail through outpost's outbox (any user
    // may submit: the outbox's maildrop).
    const sendmailWrapper = "/usr/local/libexec/outpost-sendmail";
    await Deno.writeTextFile(
      `${work}/outpost-sendmail`,
      `#!/bin/sh\n# sendmail drop-in written by the outpost image builder: queues the message in outpost's durable\n` +
        `# outbox; the outpost daemon delivers it.\nexec /usr/local/bin/outpost sendmail "$@"\n`,
    );
    files.push({ path: sendmailWrapper, source: `${work}/outpost-sendmail`, mode: 0o755 });
    const baseSendmail = await extStat(img, layout.root, "/usr/sbin/sendmail");
    const ownSendmail = baseSendmail !== null && parseExtStat(baseSendmail).target === sendmailWrapper;
    const links = [
      ...(baseSendmail === null || ownSendmail
        ? [{ path: "/usr/sbin/sendmail", target: sendmailWrapper }]
        : []),
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
    // Files already there (an image built before, being upgraded) are replaced, so their space comes back.
    const replaced = await Promise.all(files.map(async (f) => {
      const st = await extStat(img, layout.root, f.path);
      return st ? Math.max(0, parseExtStat(st).size) : 0;
    }));
    const need = sizes.reduce((a, b) => a + b, 0) - replaced.reduce((a, b) => a + b, 0) + 4 * MIB;
    const extFree = await extFreeBytes(img, layout.root);
    if (extFree < need) {
      throw new ImageError(
        `The root partition has ${mib(extFree)} free but outpost needs ${mib(need)} (the Deno runtime is ` +
          `${mib(sizes[0])}). Use an image with more free space on its root partition.`,
      );
    }
    const fatFree = await fatFreeBytes(img, layout.boot);
    if (fatFree < configText.length + 64 * 1024) {
      throw new ImageError(`The boot partition has only ${fatFree} bytes free; outpost.toml does not fit.`);
    }
    log(`      root: ${mib(extFree)} free, ${mib(need)} needed; boot: ${mib(fatFree)} free`);

    progress(`Writing ${files.length} files and ${links.length} links to the root partition`);
    const dirs = [...new Set([...files, ...links].flatMap((f) => ancestors(dirOf(f.path))))].sort();
    const newDirs: string[] = [];
    for (const d of dirs) if (!await extStat(img, layout.root, d)) newDirs.push(d);
    if (newDirs.length > 0) {
      await debugfsBatch(
        img,
        layout.root,
        newDirs.flatMap((d) => [`mkdir ${d}`, `sif ${d} mode 040755`]),
        {
          write: true,
        },
      );
    }
    const ownDirs = [paths.prefix, `${paths.prefix}/bin`, `${paths.prefix}/boards`];
    await debugfsBatch(
      img,
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
    await debugfsBatch(img, layout.root, cmds, { write: true });

    progress(
      `${
        plan.existed ? "Keeping" : "Declaring"
      } the ${paths.user} account (uid ${plan.uid}, gid ${plan.gid}) ` +
        "and its folders",
    );
    const accountCmds: string[] = [];
    for (const name of ["passwd", "group", "shadow", "gshadow"] as const) {
      const text = plan[name];
      if (text === account.files[name]) continue;
      const target = `/etc/${name}`;
      const src = `${work}/account-${name}`;
      await Deno.writeTextFile(src, text);
      const old = account.inodes[name];
      const secret = name === "shadow" || name === "gshadow";
      const mode = old?.mode ?? (secret ? (account.shadowGid === null ? 0o600 : 0o640) : 0o644);
      const gid = old?.gid ?? (secret ? account.shadowGid ?? 0 : 0);
      if (old) accountCmds.push(`rm ${target}`);
      accountCmds.push(
        `write ${src} ${target}`,
        `sif ${target} mode 0100${mode.toString(8)}`,
        `sif ${target} uid ${old?.uid ?? 0}`,
        `sif ${target} gid ${gid}`,
      );
    }
    // The account's folders, as the first-boot step (kept as a fallback) would make them; the state folder is
    // searchable (0751) so that any user's sendmail reaches the outbox's maildrop.
    const owned: { path: string; mode: number; always: boolean }[] = [
      { path: stateDir, mode: 0o751, always: true },
      { path: "/var/cache/outpost", mode: 0o750, always: true },
      ...units.perms.dataDirs.filter((d) => d !== stateDir).map((d) => ({
        path: d,
        mode: 0o755,
        always: false,
      })),
    ];
    const made = new Set<string>();
    for (const d of owned) {
      for (const a of ancestors(dirOf(d.path))) {
        if (!made.has(a) && !await extStat(img, layout.root, a)) {
          made.add(a);
          accountCmds.push(`mkdir ${a}`, `sif ${a} mode 040755`, `sif ${a} uid 0`, `sif ${a} gid 0`);
        }
      }
      const existed = made.has(d.path) || !!await extStat(img, layout.root, d.path);
      if (!existed) accountCmds.push(`mkdir ${d.path}`);
      made.add(d.path);
      if (!existed || d.always) {
        accountCmds.push(
          `sif ${d.path} mode 040${d.mode.toString(8)}`,
          `sif ${d.path} uid ${plan.uid}`,
          `sif ${d.path} gid ${plan.gid}`,
        );
      }
    }
    await debugfsBatch(img, layout.root, accountCmds, { write: true });

    progress(`Writing outpost.toml to the boot partition (${bootMount}/outpost.toml on the board)`);
    const fat = mtoolsImage(img, layout.boot);
    const existing = await runTool("mdir", ["-b", "-i", fat, "::/outpost.toml"]);
    if (existing.code === 0 && !opts.config) {
      log("      keeping the outpost.toml already on the boot partition");
    } else {
      await mustRun(
        "mcopy",
        ["-o", "-i", fat, `${work}/outpost.toml`, "::/outpost.toml"],
        "writing outpost.toml",
      );
      // The config just written (validated above) is also the first "last good" copy: a mistake made on the
      // boot partition before the first boot then falls back to it, as every later one does, instead of
      // leaving the service failed with nothing to run.
      const lastGood = `${stateDir}/last-good.toml`;
      if (!await extStat(img, layout.root, lastGood)) {
        await debugfsBatch(img, layout.root, [
          `write ${work}/outpost.toml ${lastGood}`,
          `sif ${lastGood} mode 0100640`,
          `sif ${lastGood} uid ${plan.uid}`,
          `sif ${lastGood} gid ${plan.gid}`,
        ], { write: true });
      }
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
    await checkFilesystems(img, layout);

    await Deno.rename(partial, opts.out);
    progress(`Done: ${opts.out}`);
    return {
      layout,
      configPathOnBoard: paths.configPath,
      files: files.map((f, i) => ({ path: f.path, mode: f.mode, bytes: sizes[i] })),
    };
  } catch (e) {
    if (outCreated) await Deno.remove(partial).catch(() => {});
    throw e;
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** The base image's account files, their inodes (to keep mode and owner) and the gid of group `shadow`. */
async function readAccountFiles(image: string, layout: ImageLayout): Promise<{
  files: AccountFiles;
  inodes: Record<"passwd" | "group" | "shadow" | "gshadow", ExtInode | null>;
  shadowGid: number | null;
}> {
  const dec = new TextDecoder();
  const text = async (p: string) => {
    const b = await extReadFile(image, layout.root, p);
    return b === null ? null : dec.decode(b);
  };
  const inode = async (p: string) => {
    const st = await extStat(image, layout.root, p);
    return st ? parseExtStat(st) : null;
  };
  const sysusers: string[] = [];
  for (const dir of ["/usr/lib/sysusers.d", "/etc/sysusers.d"]) {
    for (const name of await extListDir(image, layout.root, dir)) {
      if (name.endsWith(".conf") && name !== "outpost.conf") {
        sysusers.push(await text(`${dir}/${name}`) ?? "");
      }
    }
  }
  const files: AccountFiles = {
    passwd: await text("/etc/passwd") ?? "",
    group: await text("/etc/group") ?? "",
    shadow: await text("/etc/shadow"),
    gshadow: await text("/etc/gshadow"),
    loginDefs: await text("/etc/login.defs"),
    sysusers,
  };
  if (!files.passwd.includes("root:")) {
    throw new ImageError("Cannot use the image: its root partition has no /etc/passwd with a root user.");
  }
  const shadowLine = files.group.split("\n").find((l) => l.startsWith("shadow:"));
  return {
    files,
    inodes: {
      passwd: await inode("/etc/passwd"),
      group: await inode("/etc/group"),
      shadow: await inode("/etc/shadow"),
      gshadow: await inode("/etc/gshadow"),
    },
    shadowGid: shadowLine ? Number(shadowLine.split(":")[2]) : null,
  };
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
