/**
 * The SD-card image builder against small synthetic Raspberry Pi OS-like images made in the test (MBR and GPT,
 * FAT32 boot + ext4 root), all without root: file systems clean, files/modes/owners/symlinks in place, the config
 * on the FAT partition, the input unchanged, and bad inputs refused with clear messages.
 */

import assert from "node:assert/strict";
import { buildImage } from "../scripts/build_image.ts";
import { hashPassword } from "../src/config/password.ts";
import { fetchDenoArm64 } from "../scripts/deno_arm64.ts";
import {
  extImage,
  extStat,
  ImageError,
  type ImageLayout,
  mtoolsImage,
  parseExtStat,
  readImageLayout,
  resolveTool,
  runTool,
} from "../scripts/disk_image.ts";
import { fileSha256, makeBaseImage } from "./helpers/device_image.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";

const TOOLS = [
  "sfdisk",
  "mkfs.fat",
  "fsck.fat",
  "mke2fs",
  "e2fsck",
  "debugfs",
  "dumpe2fs",
  "fakeroot",
  "mcopy",
  "mtype",
  "mdir",
  "xz",
  "npm",
];
const PEERS = TOOLS.map((t) => findPeer(resolveTool(t)));
const ignore = skipWithout(...PEERS);

const BOARD_PROFILE = `# test board
[board]
id = "testboard"
name = "Test board"
ram_mb = 512
v8_max_old_space_mb = 160
config_txt = ["kernel=kernel8.img"]
`;
const TEMPLATE = `# Test template for the image.
[device]
board = "testboard"

[ftp]
port = 21
active = false
[ftp.passive]
ports = "50000-50003"
[[ftp.users]]
name = "alice"
password_hash = "${await hashPassword("secret", 1000)}"
root = "/srv/outpost"
permissions = ["all"]
`;

async function withWorkDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-image-test-" });
  try {
    await Deno.mkdir(`${dir}/boards`);
    await Deno.writeTextFile(`${dir}/boards/testboard.toml`, BOARD_PROFILE);
    await Deno.writeTextFile(`${dir}/boards/testboard.outpost.toml`, TEMPLATE);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function inode(image: string, layout: ImageLayout, path: string) {
  const text = await extStat(image, layout.root, path);
  assert.ok(text, `${path} exists in the root partition`);
  return parseExtStat(text);
}

async function assertClean(image: string, layout: ImageLayout, dir: string): Promise<void> {
  const ext = await runTool("e2fsck", ["-fn", extImage(image, layout.root)]);
  assert.equal(ext.code, 0, `e2fsck -fn is clean: ${ext.stdout}${ext.stderr}`);
  const slice = `${dir}/boot-slice.img`;
  const dd = await runTool("dd", [
    `if=${image}`,
    `of=${slice}`,
    "bs=1M",
    `skip=${layout.boot.offset}`,
    `count=${layout.boot.size}`,
    "iflag=skip_bytes,count_bytes",
    "conv=sparse",
    "status=none",
  ]);
  assert.equal(dd.code, 0, dd.stderr);
  const fat = await runTool("fsck.fat", ["-n", slice]);
  assert.equal(fat.code, 0, `fsck.fat -n is clean: ${fat.stdout}${fat.stderr}`);
  await Deno.remove(slice);
}

async function build(dir: string, base: string, out: string, extra: { config?: string } = {}) {
  const lines: string[] = [];
  const result = await buildImage({
    base,
    out,
    board: "testboard",
    boardsDir: `${dir}/boards`,
    deno: await fetchDenoArm64(),
    log: (l) => lines.push(l),
    ...extra,
  });
  return { result, lines };
}

Deno.test({
  name: "device image: MBR image gets runtime, bundle, units, links and config; input unchanged",
  ignore,
  fn: () =>
    withWorkDir(async (dir) => {
      const base = `${dir}/base.img`;
      const out = `${dir}/out.img`;
      await makeBaseImage(base, { label: "dos", ...BUSY_IDS });
      const before = await fileSha256(base);
      const { result, lines } = await build(dir, base, out);
      assert.equal(await fileSha256(base), before, "the input image is not modified");
      assert.ok(
        lines.some((l) => l.startsWith("[1/9]")) && lines.some((l) => l.includes("Done")),
        "progress shown",
      );
      assert.equal(result.configPathOnBoard, "/boot/firmware/outpost.toml");

      const layout = await readImageLayout(out);
      assert.equal(layout.label, "dos");
      await assertClean(out, layout, dir);

      const deno = await inode(out, layout, "/opt/outpost/bin/deno");
      assert.equal(deno.type, "regular");
      assert.equal(deno.mode, 0o755);
      assert.equal(deno.uid, 0);
      assert.equal(deno.gid, 0);
      assert.equal(deno.size, (await Deno.stat(await fetchDenoArm64())).size);
      for (const p of ["/opt/outpost/outpost.js", "/opt/outpost/outpost-prepare.js"]) {
        const f = await inode(out, layout, p);
        assert.equal(f.mode, 0o644, `${p} mode`);
        assert.equal(f.uid, 0);
        assert.ok(f.size > 1000, `${p} is not empty`);
      }
      for (
        const p of ["/etc/systemd/system/outpost.service", "/etc/systemd/system/outpost-firstboot.service"]
      ) {
        const f = await inode(out, layout, p);
        assert.deepEqual([f.type, f.mode, f.uid, f.gid], ["regular", 0o644, 0, 0], p);
      }
      for (const p of ["/opt/outpost/firstboot.sh", "/usr/local/bin/outpost"]) {
        assert.equal((await inode(out, layout, p)).mode, 0o755, p);
      }
      for (const name of ["outpost.service", "outpost-firstboot.service"]) {
        const link = await inode(out, layout, `/etc/systemd/system/multi-user.target.wants/${name}`);
        assert.equal(link.type, "symlink");
        assert.equal(link.target, `/etc/systemd/system/${name}`);
      }
      const opt = await inode(out, layout, "/opt/outpost");
      assert.deepEqual([opt.type, opt.mode, opt.uid], ["directory", 0o755, 0]);

      const unit = await runTool("debugfs", [
        "-R",
        "cat /etc/systemd/system/outpost.service",
        extImage(out, layout.root),
      ]);
      assert.match(unit.stdout, /^User=outpost$/m);
      assert.match(
        unit.stdout,
        /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m,
        "port 21 needs the bind capability",
      );
      assert.match(unit.stdout, /^ProtectSystem=strict$/m);
      assert.match(unit.stdout, /^ReadWritePaths=.*-\/srv\/outpost/m);
      assert.match(unit.stdout, /^Type=notify$/m);
      assert.match(
        unit.stdout,
        /--allow-net=:21,:50000,:50001,:50002,:50003,unix:\/var\/lib\/outpost\/status.sock\n/,
        "net narrowed to ports (and the status socket)",
      );
      assert.match(unit.stdout, /--max-old-space-size=160/);

      const toml = await runTool("mtype", ["-i", mtoolsImage(out, layout.boot), "::/outpost.toml"]);
      assert.equal(toml.code, 0);
      assert.equal(toml.stdout.replace(/\r\n/g, "\n"), TEMPLATE);
      // The first "last good" copy: a mistake made on the card before the first boot falls back to it.
      assert.equal(await extText(out, layout, "/var/lib/outpost/last-good.toml"), TEMPLATE);
      const lastGood = await inode(out, layout, "/var/lib/outpost/last-good.toml");
      assert.deepEqual([lastGood.mode, lastGood.uid], [0o640, 994]);
      const configTxt = await runTool("mtype", ["-i", mtoolsImage(out, layout.boot), "::/config.txt"]);
      assert.match(configTxt.stdout, /^kernel=kernel8\.img$/m, "the board's config.txt lines are added");
      assert.equal((await inode(out, layout, "/opt/outpost/boards/testboard.toml")).mode, 0o644);
      await assertAccount(out, layout, 994);

      // /usr/sbin/sendmail (cron's MAILTO) goes through outpost.
      const sendmail = await inode(out, layout, "/usr/sbin/sendmail");
      assert.deepEqual([sendmail.type, sendmail.target], ["symlink", "/usr/local/libexec/outpost-sendmail"]);
      const wrapper = await inode(out, layout, "/usr/local/libexec/outpost-sendmail");
      assert.deepEqual([wrapper.type, wrapper.mode, wrapper.uid], ["regular", 0o755, 0]);
      const wrapperText = await extText(out, layout, "/usr/local/libexec/outpost-sendmail");
      assert.match(wrapperText, /\/usr\/local\/bin\/outpost sendmail "\$@"/);

      // Building again from the built image keeps the account as it is (no second set of lines).
      const again = `${dir}/again.img`;
      await build(dir, out, again);
      await assertAccount(again, await readImageLayout(again), 994);
    }),
});

/** Base-image users and groups that take the top system ids, as systemd's and dbus's do on Pi OS. */
const BUSY_IDS = {
  passwd: [
    "systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin",
    "systemd-timesync:x:997:997:systemd Time Synchronization:/:/usr/sbin/nologin",
  ],
  group: ["systemd-journal:x:999:", "systemd-network:x:998:", "systemd-timesync:x:997:", "netdev:x:996:"],
  // A fixed id another package's sysusers.d entry claims; systemd-sysusers would create it at boot.
  files: { "/usr/lib/sysusers.d/other.conf": 'u other 995 "Other daemon" /\n' },
};

async function extText(image: string, layout: ImageLayout, path: string): Promise<string> {
  const r = await runTool("debugfs", ["-R", `cat ${path}`, extImage(image, layout.root)]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The image declares the outpost account with `id` in all five files, and its folders belong to it. */
async function assertAccount(image: string, layout: ImageLayout, id: number): Promise<void> {
  const sysusers = await extText(image, layout, "/usr/lib/sysusers.d/outpost.conf");
  assert.match(sysusers, new RegExp(`^u outpost ${id} "[^"]+" /var/lib/outpost /usr/sbin/nologin$`, "m"));
  const conf = await inode(image, layout, "/usr/lib/sysusers.d/outpost.conf");
  assert.deepEqual([conf.type, conf.mode, conf.uid, conf.gid], ["regular", 0o644, 0, 0]);
  const count = (text: string, re: RegExp) => text.split("\n").filter((l) => re.test(l)).length;
  const passwd = await extText(image, layout, "/etc/passwd");
  assert.equal(
    count(passwd, new RegExp(`^outpost:x:${id}:${id}:[^:]*:/var/lib/outpost:/usr/sbin/nologin$`)),
    1,
    passwd,
  );
  assert.match(passwd, /^root:x:0:0:root:\/root:\/bin\/bash$/m, "the base image's users are kept");
  assert.match(passwd, /^systemd-network:x:998:/m);
  const group = await extText(image, layout, "/etc/group");
  assert.equal(count(group, new RegExp(`^outpost:x:${id}:$`)), 1, group);
  assert.match(group, /^netdev:x:996:$/m);
  const shadow = await extText(image, layout, "/etc/shadow");
  assert.equal(count(shadow, /^outpost:[!*]+:\d*:/), 1, "a locked password in /etc/shadow");
  assert.match(shadow, /^root:\*:/m);
  const gshadow = await extText(image, layout, "/etc/gshadow");
  assert.equal(count(gshadow, /^outpost:[!*]*::$/), 1, gshadow);
  for (const p of ["/etc/shadow", "/etc/gshadow"]) {
    const f = await inode(image, layout, p);
    assert.deepEqual([f.mode, f.uid, f.gid], [0o640, 0, 42], `${p} keeps mode 0640 root:shadow`);
  }
  for (const p of ["/etc/passwd", "/etc/group"]) {
    const f = await inode(image, layout, p);
    assert.deepEqual([f.mode, f.uid, f.gid], [0o644, 0, 0], `${p} mode and owner`);
  }
  for (
    const [p, mode] of [["/var/lib/outpost", 0o751], ["/var/cache/outpost", 0o750], ["/srv/outpost", 0o755]]
  ) {
    const d = await inode(image, layout, p as string);
    assert.deepEqual([d.type, d.mode, d.uid, d.gid], ["directory", mode, id, id], `${p} belongs to outpost`);
  }
}

Deno.test({
  name: "device image: a 32-bit (armhf) image is refused before anything is written, naming the 64-bit image",
  ignore,
  fn: () =>
    withWorkDir(async (dir) => {
      const out = `${dir}/out.img`;
      const base = `${dir}/pi.img`;
      await makeBaseImage(base, { arch: "armhf" });
      const check = (e: unknown) => {
        assert.ok(e instanceof ImageError, String(e));
        assert.match(e.message, /32-bit/);
        assert.match(e.message, /Raspberry Pi OS Lite \(64-bit\)/);
        return true;
      };
      await assert.rejects(() => build(dir, base, out), check);
      await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no output written");
      const logged: string[] = [];
      await assert.rejects(
        () =>
          buildImage({
            base,
            out,
            board: "testboard",
            boardsDir: `${dir}/boards`,
            log: (l) => logged.push(l),
          }),
        check,
      );
      assert.ok(!logged.some((l) => /Copying|Decompressing|Preparing/.test(l)), logged.join("\n"));

      // Compressed, and with only the 32-bit loader to go by.
      const bare = `${dir}/bare.img`;
      await makeBaseImage(bare, { arch: "none", files: { "/usr/lib/ld-linux-armhf.so.3": "" } });
      for (const img of [base, bare]) {
        assert.equal((await runTool("xz", ["-0", "-T1", "-k", img])).code, 0);
        await assert.rejects(() => build(dir, `${img}.xz`, out), check);
        await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no output written");
      }
      const names = [];
      for await (const e of Deno.readDir(dir)) names.push(e.name);
      assert.deepEqual(names.sort(), ["bare.img", "bare.img.xz", "boards", "pi.img", "pi.img.xz"]);

      // An x86-64 PC image is not for the Pi either.
      const pc = `${dir}/pc.img`;
      await makeBaseImage(pc, { arch: "none", files: { "/usr/lib64/ld-linux-x86-64.so.2": "" } });
      await assert.rejects(() => build(dir, pc, out), /not an arm64 image|x86-64/);
    }),
});

Deno.test({
  name: "device image: GPT image from .img.xz, /boot layout, custom config; rebuild over itself refused",
  ignore,
  fn: () =>
    withWorkDir(async (dir) => {
      const base = `${dir}/base.img`;
      await makeBaseImage(base, {
        label: "gpt",
        firmwareDir: false,
        files: { "/usr/sbin/sendmail": "#!/bin/sh\n# an MTA the user installed\n" },
      });
      const xz = await runTool("xz", ["-0", "-T1", "-k", base]);
      assert.equal(xz.code, 0, xz.stderr);
      await Deno.remove(base);
      const before = await fileSha256(`${base}.xz`);
      const config = `${dir}/my.toml`;
      await Deno.writeTextFile(config, '[device]\nname = "pi-freezer"\n\n[ftp]\nport = 2121\n');
      const out = `${dir}/out.img`;
      const { result } = await build(dir, `${base}.xz`, out, { config });
      assert.equal(await fileSha256(`${base}.xz`), before);
      assert.equal(result.layout.label, "gpt");
      assert.equal(result.configPathOnBoard, "/boot/outpost.toml");
      await assertClean(out, result.layout, dir);
      const unit = await runTool("debugfs", [
        "-R",
        "cat /etc/systemd/system/outpost.service",
        extImage(out, result.layout.root),
      ]);
      assert.match(unit.stdout, /--config \/boot\/outpost\.toml/);
      assert.match(unit.stdout, /^AmbientCapabilities=$/m, "no capability for port 2121");
      const toml = await runTool("mtype", ["-i", mtoolsImage(out, result.layout.boot), "::/outpost.toml"]);
      assert.match(toml.stdout, /pi-freezer/);
      const mta = parseExtStat(await extStat(out, result.layout.root, "/usr/sbin/sendmail") ?? "");
      assert.equal(mta.type, "regular", "an existing /usr/sbin/sendmail is left alone");
      await assert.rejects(
        () => buildImage({ base: out, out, board: "testboard", boardsDir: `${dir}/boards` }),
        /never modified in place/,
      );
    }),
});

Deno.test({
  name: "device image: garbage, a single-partition image, a full root and a bad config are refused",
  ignore,
  fn: () =>
    withWorkDir(async (dir) => {
      const garbage = `${dir}/garbage.img`;
      await Deno.writeFile(garbage, crypto.getRandomValues(new Uint8Array(65536)));
      const out = `${dir}/out.img`;
      await assert.rejects(() => build(dir, garbage, out), (e) => {
        assert.ok(e instanceof ImageError);
        assert.match(e.message, /no partition table/);
        return true;
      });
      await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no output left behind");

      // A disk with only a FAT partition: not a Raspberry Pi OS image.
      const fatOnly = `${dir}/fat-only.img`;
      await runTool("truncate", ["-s", "40M", fatOnly]);
      await runTool("sfdisk", ["-q", fatOnly], { stdin: "label: dos\nstart=2048, type=c\n" });
      await runTool("mkfs.fat", ["-F", "32", "--offset", "2048", fatOnly]);
      await assert.rejects(() => build(dir, fatOnly, out), /expected a FAT boot partition and an ext4 root/);

      // A root partition too small for the 80 MiB runtime: refused before writing, output removed.
      const small = `${dir}/small.img`;
      await makeBaseImage(small, { bootMiB: 40, rootMiB: 48 });
      await assert.rejects(() => build(dir, small, out), /root partition has .* free but outpost needs/);
      await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no partial output left behind");

      const badConfig = `${dir}/bad.toml`;
      await Deno.writeTextFile(badConfig, '[device]\nname = "bad name with spaces"\n');
      await assert.rejects(
        () => build(dir, small, out, { config: badConfig }),
        /config for the image is not valid/,
      );
    }),
});
