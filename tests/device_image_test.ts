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
      await makeBaseImage(base, { label: "dos" });
      const before = await fileSha256(base);
      const { result, lines } = await build(dir, base, out);
      assert.equal(await fileSha256(base), before, "the input image is not modified");
      assert.ok(
        lines.some((l) => l.startsWith("[1/8]")) && lines.some((l) => l.includes("Done")),
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
      assert.match(unit.stdout, /--allow-net=:21,:50000,:50001,:50002,:50003\n/, "net narrowed to ports");
      assert.match(unit.stdout, /--max-old-space-size=160/);

      const toml = await runTool("mtype", ["-i", mtoolsImage(out, layout.boot), "::/outpost.toml"]);
      assert.equal(toml.code, 0);
      assert.equal(toml.stdout.replace(/\r\n/g, "\n"), TEMPLATE);
      const configTxt = await runTool("mtype", ["-i", mtoolsImage(out, layout.boot), "::/config.txt"]);
      assert.match(configTxt.stdout, /^kernel=kernel8\.img$/m, "the board's config.txt lines are added");
      assert.equal((await inode(out, layout, "/opt/outpost/boards/testboard.toml")).mode, 0o644);
    }),
});

Deno.test({
  name: "device image: GPT image from .img.xz, /boot layout, custom config; rebuild over itself refused",
  ignore,
  fn: () =>
    withWorkDir(async (dir) => {
      const base = `${dir}/base.img`;
      await makeBaseImage(base, { label: "gpt", firmwareDir: false });
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
