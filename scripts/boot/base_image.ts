/**
 * A Raspberry Pi OS Lite-like base image for the boot test, built from Debian bookworm arm64 packages: MBR, a FAT32
 * `bootfs` with a Pi OS-shaped `cmdline.txt`/`config.txt` plus the kernel (`kernel8.img`) and initramfs
 * (`initramfs8`), and an ext4 `rootfs` with systemd, udev, the Debian arm64 kernel and its modules, root found by
 * PARTUUID, `/boot/firmware` in fstab. Two things differ from Pi OS on purpose: systemd-networkd brings up the
 * wired link (QEMU's user network), and a test agent (scripts/boot/agent.sh) answers on a virtio serial port so the
 * test can run commands in the guest.
 *
 * The root tree comes from `mmdebstrap` (about 4 minutes under qemu-user on two cores) and is cached with the
 * assembled image under `${XDG_CACHE_HOME:-~/.cache}/outpost-boot/<key>`, where the key hashes the package list,
 * the mirrors and {@link BASE_VERSION}, so a rerun takes seconds.
 *
 * @module
 */

import { resolveTool, runTool } from "../disk_image.ts";

/** Packages on top of mmdebstrap's minbase: what Raspberry Pi OS Lite has that matters to outpost. */
export const BASE_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "udev",
  "dbus",
  "ca-certificates",
  "util-linux",
  "e2fsprogs",
  "dosfstools",
  "linux-image-arm64",
  "initramfs-tools",
  "kmod",
  "netbase",
  "iproute2",
  "procps",
  "passwd",
];

/** Debian release and mirrors (the ones this project's CI machine reaches). */
export const BASE_SUITE = "bookworm";
/** apt source lines mmdebstrap uses. */
export const BASE_MIRRORS = [
  "deb http://deb.debian.org/debian bookworm main",
  "deb http://deb.debian.org/debian bookworm-updates main",
  "deb http://deb.debian.org/debian-security bookworm-security main",
];
/** Bump when the root tree's build changes, so cached trees are rebuilt. */
export const BASE_VERSION = 2;
/** MBR disk identifier: PARTUUIDs are `4f757470-01` (boot) and `4f757470-02` (root), as Pi OS's are `<id>-0N`. */
export const DISK_ID = "4f757470";

const HERE = new URL(".", import.meta.url).pathname;
const MIB = 1024 * 1024;
const BOOT_START = 8192; // sectors: 4 MiB, as in Raspberry Pi OS
const BOOT_MIB = 512;
const ROOT_MIB = 1800;

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The cache key of the current package list and assembly. */
export async function baseKey(): Promise<string> {
  return (await sha256Hex(
    JSON.stringify({ BASE_PACKAGES, BASE_SUITE, BASE_MIRRORS, BASE_VERSION, hooks: setupHooks() }),
  ))
    .slice(0, 16);
}

/** The cache key of the assembled image: everything the assembly writes (the tree has its own key). */
async function assemblyKey(): Promise<string> {
  const agent = await Deno.readTextFile(`${HERE}agent.sh`);
  return (await sha256Hex(
    JSON.stringify([
      agent,
      DISK_ID,
      ASSEMBLE_SH,
      FSTAB,
      CMDLINE_TXT,
      CONFIG_TXT,
      NETWORK,
      AGENT_UNIT,
      BOOT_MIB,
      ROOT_MIB,
    ]),
  )).slice(0, 8);
}

/** `${XDG_CACHE_HOME:-~/.cache}/outpost-boot`. */
export function bootCacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  return `${xdg || `${Deno.env.get("HOME") ?? "/tmp"}/.cache`}/outpost-boot`;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

async function must(cmd: string, args: string[], what: string, stdin?: string): Promise<string> {
  const r = await runTool(cmd, args, { stdin });
  if (r.code !== 0) {
    throw new Error(
      `Failed ${what}: ${cmd} exited with ${r.code}: ${(r.stderr || r.stdout).trim().slice(-2000)}`,
    );
  }
  return r.stdout;
}

/**
 * Makes sure qemu-user runs arm64 programs (binfmt_misc mounted and `qemu-aarch64` enabled); as root it sets
 * this up itself, otherwise it says what to run.
 */
export async function ensureBinfmt(): Promise<void> {
  const entry = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
  const enabled = async () => (await Deno.readTextFile(entry).catch(() => "")).startsWith("enabled");
  if (await enabled()) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      "Cannot run arm64 programs: binfmt_misc has no enabled qemu-aarch64 entry. Run as root: " +
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64",
    );
  }
  if (!await exists("/proc/sys/fs/binfmt_misc/register")) {
    await must(
      "mount",
      ["-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
      "mounting binfmt_misc",
    );
  }
  await must("update-binfmts", ["--enable", "qemu-aarch64"], "enabling qemu-aarch64 in binfmt_misc");
  if (!await enabled()) {
    throw new Error("qemu-aarch64 is still not enabled in binfmt_misc after update-binfmts.");
  }
}

/** Runs a command with its output going to `logFile`, killed after `timeoutMs`. */
async function runLogged(cmd: string, args: string[], logFile: string, timeoutMs: number): Promise<number> {
  const log = await Deno.open(logFile, { write: true, create: true, truncate: true });
  const child = new Deno.Command(resolveTool(cmd), { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  // SIGTERM lets mmdebstrap unmount what it mounted in its chroot; SIGKILL only if it does not end.
  const kill = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch {
      // Already gone.
    }
  };
  let hard: ReturnType<typeof setTimeout> | undefined;
  const timer = setTimeout(() => {
    kill("SIGTERM");
    hard = setTimeout(() => kill("SIGKILL"), 60_000);
  }, timeoutMs);
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await log.write(chunk);
  };
  await Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = await child.status;
  clearTimeout(timer);
  clearTimeout(hard);
  log.close();
  return status.code;
}

const FSTAB = `proc            /proc           proc    defaults          0       0
PARTUUID=${DISK_ID}-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=${DISK_ID}-02  /               ext4    defaults,noatime  0       1
`;

/**
 * Run by mmdebstrap before any package is installed. The initramfs gets the modules this machine boots from
 * (virtio disk, ext4, vfat), as Raspberry Pi OS builds its own for the board it runs on (MODULES=dep), instead of
 * Debian's generic "most" (which costs two 12-minute initramfs builds under qemu-user); and e2fsck goes into the
 * initramfs, so root is checked before it is mounted (with fsck.repair=yes from cmdline.txt), as on a Pi.
 */
function setupHooks(): string[] {
  return [
    'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"',
    // FSTYPE: the fsck hook cannot resolve root's PARTUUID inside mmdebstrap's chroot; on a Pi it can.
    'printf "MODULES=list\\nFSTYPE=ext4\\n" > "$1/etc/initramfs-tools/conf.d/outpost-boot-test"',
    "printf '%s\\n' virtio_pci virtio_mmio virtio_blk ext4 vfat nls_cp437 nls_ascii > " +
    '"$1/usr/share/initramfs-tools/modules.d/outpost-boot-test"',
    `printf '%s' '${FSTAB}' > "$1/etc/fstab"`,
  ];
}

/** Raspberry Pi OS bookworm's cmdline.txt, minus the first-boot resize hook. */
export const CMDLINE_TXT =
  `console=serial0,115200 console=tty1 root=PARTUUID=${DISK_ID}-02 rootfstype=ext4 fsck.repair=yes rootwait\n`;

const CONFIG_TXT = `# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load initramfs files, if found
auto_initramfs=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Don't have the firmware create an initial video= setting in cmdline.txt.
# Use the kernel's default instead.
disable_fw_kms_setup=1

# Run in 64-bit mode
arm_64bit=1

# Disable compensation for displays with overscan
disable_overscan=1

# Run as fast as firmware / board allows
arm_boost=1

[cm4]
# Enable host mode on the 2711 built-in XHCI USB controller.
otg_mode=1

[all]
`;

const NETWORK = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
`;

const AGENT_UNIT = `[Unit]
Description=outpost boot test agent (virtio serial)
After=systemd-udevd.service

[Service]
ExecStart=/usr/local/sbin/outpost-test-agent
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`;

/** Shell run (as root, or under fakeroot) to unpack the tree, shape it like Pi OS and make the ext4 file system. */
const ASSEMBLE_SH = String.raw`set -eu
tar="$1"; tree="$2"; img="$3"; offset="$4"; kib="$5"; files="$6"
tar -xpf "$tar" -C "$tree" --numeric-owner
mkdir -p "$tree/boot/firmware" "$tree/etc/systemd/network" "$tree/usr/local/sbin"
cp "$files/fstab" "$tree/etc/fstab"
echo raspberrypi > "$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$tree/etc/hosts"
cp "$files/20-wired.network" "$tree/etc/systemd/network/20-wired.network"
install -m 0755 "$files/agent.sh" "$tree/usr/local/sbin/outpost-test-agent"
cp "$files/outpost-test-agent.service" "$tree/etc/systemd/system/outpost-test-agent.service"
w="$tree/etc/systemd/system"
mkdir -p "$w/multi-user.target.wants" "$w/sockets.target.wants" "$w/network-online.target.wants"
ln -sf /etc/systemd/system/outpost-test-agent.service "$w/multi-user.target.wants/outpost-test-agent.service"
ln -sf /lib/systemd/system/systemd-networkd.service "$w/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket "$w/sockets.target.wants/systemd-networkd.socket"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
  "$w/network-online.target.wants/systemd-networkd-wait-online.service"
# No network beyond QEMU's loopback forwards: keep apt's timers quiet.
for t in apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null "$w/$t"; done
kernel=$(ls "$tree"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd="$tree/boot/initrd.img-$(basename "$kernel" | sed "s/^vmlinuz-//")"
[ -s "$initrd" ] || { echo "no initramfs $initrd for $kernel" >&2; exit 1; }
cp "$kernel" "$files/kernel8.img"
cp "$initrd" "$files/initramfs8"
mke2fs -q -F -t ext4 -L rootfs -E offset="$offset" -d "$tree" "$img" "$kib"k
`;

/**
 * Returns the path of the cached base image, building it first when needed (`log` gets progress lines).
 *
 * @example
 * ```ts
 * const base = await ensureBaseImage(console.log);
 * console.log(base); // the cached image's path
 * ```
 */
export async function ensureBaseImage(log: (line: string) => void): Promise<string> {
  const dir = `${bootCacheRoot()}/${await baseKey()}`;
  const image = `${dir}/base-${await assemblyKey()}.img`;
  if (await exists(`${image}.ok`)) {
    log(`base image: cached ${image}`);
    return image;
  }
  await Deno.mkdir(dir, { recursive: true });
  const tarball = `${dir}/rootfs.tar`;
  if (!await exists(tarball)) {
    await ensureBinfmt();
    const mmLog = `${dir}/mmdebstrap.log`;
    const partialTar = `${dir}/rootfs.partial.tar`;
    log(`base image: mmdebstrap ${BASE_SUITE} arm64 (about 4 minutes on 2 cores; log: ${mmLog})`);
    const code = await runLogged(
      "mmdebstrap",
      [
        "--architectures=arm64",
        "--variant=minbase",
        "--components=main",
        `--include=${BASE_PACKAGES.join(",")}`,
        ...setupHooks().map((h) => `--setup-hook=${h}`),
        BASE_SUITE,
        partialTar, // mmdebstrap picks the output format from the name: it must end in .tar
        ...BASE_MIRRORS,
      ],
      mmLog,
      60 * 60_000,
    );
    if (code !== 0) {
      const tail = (await Deno.readTextFile(mmLog).catch(() => "")).split("\n").slice(-15).join("\n");
      throw new Error(`Failed building the base root file system: mmdebstrap exited with ${code}:\n${tail}`);
    }
    await Deno.rename(partialTar, tarball);
  }
  log("base image: assembling MBR, FAT32 bootfs and ext4 rootfs");
  const work = await Deno.makeTempDir({ prefix: "outpost-base-" });
  try {
    const files = `${work}/files`;
    const tree = `${work}/tree`;
    await Deno.mkdir(files);
    await Deno.mkdir(tree);
    await Deno.writeTextFile(`${files}/fstab`, FSTAB);
    await Deno.writeTextFile(`${files}/20-wired.network`, NETWORK);
    await Deno.writeTextFile(`${files}/outpost-test-agent.service`, AGENT_UNIT);
    await Deno.copyFile(`${HERE}agent.sh`, `${files}/agent.sh`);
    await Deno.writeTextFile(`${files}/cmdline.txt`, CMDLINE_TXT);
    await Deno.writeTextFile(`${files}/config.txt`, CONFIG_TXT);
    const partial = `${image}.partial`;
    const bootSectors = BOOT_MIB * 2048;
    const rootStart = BOOT_START + bootSectors;
    const rootSectors = ROOT_MIB * 2048;
    await Deno.remove(partial).catch(() => {});
    await must("truncate", ["-s", String((rootStart + rootSectors) * 512), partial], "sizing the image");
    await must(
      "sfdisk",
      ["-q", partial],
      "partitioning the image",
      [
        "label: dos",
        `label-id: 0x${DISK_ID}`,
        `start=${BOOT_START}, size=${bootSectors}, type=c`,
        `start=${rootStart}, size=${rootSectors}, type=83`,
        "",
      ].join("\n"),
    );
    const asRoot = Deno.uid() === 0 ? [] : [resolveTool("fakeroot")];
    const sh = [...asRoot, "sh", "-c", ASSEMBLE_SH, "assemble"];
    await must(sh[0], [
      ...sh.slice(1),
      tarball,
      tree,
      partial,
      String(rootStart * 512),
      String(ROOT_MIB * 1024),
      files,
    ], "unpacking the root tree and making the ext4 root file system");
    await must("mkfs.vfat", [
      "-F",
      "32",
      "-n",
      "bootfs",
      "--offset",
      String(BOOT_START),
      partial,
      String(BOOT_MIB * 1024),
    ], "making the FAT32 boot file system");
    const fat = `${partial}@@${BOOT_START * 512}`;
    for (const f of ["cmdline.txt", "config.txt", "kernel8.img", "initramfs8"]) {
      await must("mcopy", ["-i", fat, `${files}/${f}`, `::/${f}`], `copying ${f} to the boot partition`);
    }
    await Deno.rename(partial, image);
    await Deno.writeTextFile(`${image}.ok`, `${new Date().toISOString()}\n`);
    const size = (await Deno.stat(image)).size;
    log(`base image: ${image} (${(size / MIB).toFixed(0)} MiB, sparse)`);
    return image;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  console.log(await ensureBaseImage((l) => console.error(l)));
}
