/**
 * The REAL scripts/install.sh, end to end, on this (x86_64) machine without touching the host: it runs as root in
 * a private mount namespace (`unshare --mount --propagation private`) where temp dirs are bind-mounted over /etc
 * (a copy, so `useradd` in firstboot.sh edits the copy), /etc/systemd/system, /opt, /usr/local/bin, /boot
 * (with firmware/ inside), /var/lib, /var/cache and /srv. A temp PATH dir in front holds a fake `uname` (prints
 * aarch64, or $FAKE_UNAME_M, for -m) and a fake `systemctl` that records its arguments. `--deno` is a wrapper that
 * runs the pinned arm64 Deno under `qemu-aarch64-static`; `--bundle-dir` holds the bundles scripts/bundle_outpost.ts
 * makes. Checks the installed files and modes, the CLI wrapper, the config on the boot partition (created, then
 * kept on an upgrade run), the units, the `outpost` user and its folders, and the systemctl calls; and that a
 * 32-bit board is refused.
 *
 * Needs root (CI runs as root): a user namespace (`--map-root-user`) maps only uid 0, so firstboot.sh could not
 * chown the state folder to the new `outpost` user there.
 */

import assert from "node:assert/strict";
import { bundleOutpost, BUNDLES } from "../scripts/bundle_outpost.ts";
import { fetchDenoArm64 } from "../scripts/deno_arm64.ts";
import { findPeer, requirePeer, skipWithout } from "./helpers/peers.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const QEMU = findPeer("qemu-aarch64-static");
const ARM64_PREFIX = "/usr/aarch64-linux-gnu";
const ARM64_LIBS = findPeer(`${ARM64_PREFIX}/lib/libgcc_s.so.1`) && findPeer(`${ARM64_PREFIX}/lib/libc.so.6`);
/** The namespace tricks need real root (CI runs as root); outside CI a non-root run skips. */
const ROOT = Deno.uid() === 0 ? "root" : null;
const ignore = skipWithout(
  ROOT,
  QEMU,
  ARM64_LIBS,
  findPeer("npm"),
  findPeer("unshare"),
  findPeer("timeout"),
  findPeer("useradd"),
);
/** Upper bound for one sandboxed command (an install runs Deno three times under qemu). */
const STEP_TIMEOUT_S = 600;

/** Host directory bind-mounted over, and the sandbox subfolder that replaces it (mounted in this order). */
const MOUNTS: [string, string][] = [
  ["/etc", "etc"],
  ["/etc/systemd/system", "systemd-system"],
  ["/opt", "opt"],
  ["/usr/local/bin", "usr-local-bin"],
  ["/boot", "boot"],
  ["/var/lib", "var-lib"],
  ["/var/cache", "var-cache"],
  ["/srv", "srv"],
];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A temp tree standing in for the board's root file system, entered with {@link Sandbox.run}. */
class Sandbox {
  constructor(readonly dir: string) {}

  /** Host path of `p` (an absolute path as seen inside the sandbox). */
  host(p: string): string {
    for (const [target, sub] of [...MOUNTS].reverse()) {
      if (p === target || p.startsWith(`${target}/`)) return `${this.dir}/${sub}${p.slice(target.length)}`;
    }
    throw new Error(`The path ${p} is not inside the sandbox.`);
  }

  static async create(): Promise<Sandbox> {
    const sb = new Sandbox(await Deno.makeTempDir({ prefix: "outpost-install-" }));
    const d = sb.dir;
    await mustRun(requirePeer("cp"), ["-a", "/etc", `${d}/etc`]);
    for (const [, sub] of MOUNTS.slice(1)) await Deno.mkdir(`${d}/${sub}`);
    for (const sub of ["boot/firmware", "fakebin", "home", "tmp"]) {
      await Deno.mkdir(`${d}/${sub}`, { recursive: true });
    }
    const uname = requirePeer("uname");
    await writeScript(
      `${d}/fakebin/uname`,
      `#!/bin/sh
if [ "\${1:-}" = -m ]; then echo "\${FAKE_UNAME_M:-aarch64}"; exit 0; fi
exec ${uname} "$@"
`,
    );
    await writeScript(`${d}/fakebin/systemctl`, `#!/bin/sh\necho "$*" >>${d}/systemctl.log\nexit 0\n`);
    const binds = MOUNTS.map(([target, sub]) => `mount --bind ${d}/${sub} ${target}`).join("\n");
    await writeScript(`${d}/enter.sh`, `#!/bin/sh\nset -eu\n${binds}\nexec "$@"\n`);
    return sb;
  }

  /** Runs `cmd` as root in a fresh private mount namespace over this sandbox, with a minimal environment. */
  async run(cmd: string[], env: Record<string, string> = {}): Promise<Result> {
    const out = await new Deno.Command(requirePeer("timeout"), {
      args: [
        "-k",
        "10",
        String(STEP_TIMEOUT_S),
        requirePeer("unshare"),
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        `${this.dir}/enter.sh`,
        ...cmd,
      ],
      clearEnv: true,
      env: {
        PATH: `${this.dir}/fakebin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        HOME: `${this.dir}/home`,
        TMPDIR: `${this.dir}/tmp`,
        LANG: "C",
        NO_COLOR: "1",
        DENO_NO_UPDATE_CHECK: "1",
        ...env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

async function writeScript(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text);
  await Deno.chmod(path, 0o755);
}

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o7777;
}

function show(r: Result): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** uid and gid of `name` in a passwd file's text, else null. */
function passwdEntry(text: string, name: string): { uid: number; gid: number } | null {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 7) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

Deno.test({
  name:
    "device install: install.sh installs, upgrades in place keeping the config, and refuses a 32-bit board",
  ignore,
  fn: async () => {
    const qemu = requirePeer("qemu-aarch64-static");
    const armDeno = await fetchDenoArm64();
    const hostPasswd = await Deno.readTextFile("/etc/passwd");
    const sb = await Sandbox.create();
    try {
      const d = sb.dir;
      const bundles = `${d}/bundles`;
      await Deno.mkdir(bundles);
      for (const [name, entry] of Object.entries(BUNDLES)) await bundleOutpost(`${bundles}/${name}`, entry);
      const denoWrapper = `${d}/deno-arm64`;
      await writeScript(
        denoWrapper,
        `#!/bin/sh\nQEMU_LD_PREFIX=${ARM64_PREFIX} exec ${qemu} ${armDeno} "$@"\n`,
      );
      const install = [
        "/bin/sh",
        `${REPO}/scripts/install.sh`,
        "--board",
        "rpi4",
        "--deno",
        denoWrapper,
        "--bundle-dir",
        bundles,
      ];

      // A 32-bit OS is refused before anything is installed.
      const refused = await sb.run(install, { FAKE_UNAME_M: "armv7l" });
      assert.notEqual(refused.code, 0, show(refused));
      assert.match(refused.stderr, /armv7l.*64-bit/, show(refused));
      assert.deepEqual([...Deno.readDirSync(sb.host("/opt"))], [], "nothing installed on a refused board");

      // First install.
      const first = await sb.run(install);
      assert.equal(first.code, 0, show(first));
      assert.match(first.stdout, /Config: \/boot\/firmware\/outpost\.toml created from the rpi4 template/);

      const files: [string, number][] = [
        ["/opt/outpost/bin/deno", 0o755],
        ["/opt/outpost/outpost.js", 0o644],
        ["/opt/outpost/outpost-prepare.js", 0o644],
        ["/opt/outpost/outpost-make-unit.js", 0o644],
        ["/opt/outpost/firstboot.sh", 0o755],
        ["/usr/local/bin/outpost", 0o755],
        ["/etc/systemd/system/outpost.service", 0o644],
        ["/etc/systemd/system/outpost-firstboot.service", 0o644],
        ["/boot/firmware/outpost.toml", 0o644],
      ];
      for (const [p, m] of files) {
        const st = await Deno.stat(sb.host(p));
        assert.ok(st.isFile, `${p} is a file`);
        assert.equal(st.mode! & 0o7777, m, `${p} has mode ${m.toString(8)}`);
        assert.equal(st.uid, 0, `${p} is owned by root`);
      }
      for (const p of ["/opt/outpost", "/opt/outpost/bin", "/opt/outpost/boards"]) {
        assert.equal(await mode(sb.host(p)), 0o755, `${p} has mode 755`);
      }
      for (const e of Deno.readDirSync(`${REPO}/boards`)) {
        if (!e.name.endsWith(".toml")) continue;
        const p = sb.host(`/opt/outpost/boards/${e.name}`);
        assert.equal(await mode(p), 0o644, `${p} installed with mode 644`);
      }
      assert.equal(
        await Deno.readTextFile(sb.host("/opt/outpost/outpost.js")),
        await Deno.readTextFile(`${bundles}/outpost.js`),
        "the given bundle is the one installed",
      );
      assert.equal(
        await Deno.readTextFile(sb.host("/boot/firmware/outpost.toml")),
        await Deno.readTextFile(`${REPO}/boards/rpi4.outpost.toml`),
        "the boot config comes from the board template",
      );
      const service = await Deno.readTextFile(sb.host("/etc/systemd/system/outpost.service"));
      assert.match(service, /^User=outpost$/m);
      assert.match(service, /^ExecStart=\/opt\/outpost\/bin\/deno run .*\/opt\/outpost\/outpost\.js serve/m);
      assert.match(service, /--config \/boot\/firmware\/outpost\.toml/);
      assert.match(service, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m, "port 21 in the template");

      // The user and its folders (useradd edited the /etc copy, never the host's).
      const passwd = await Deno.readTextFile(sb.host("/etc/passwd"));
      const user = passwdEntry(passwd, "outpost");
      assert.ok(user, "the outpost user is in the sandbox's /etc/passwd");
      // The host may have its own outpost user (field tests run the daemon as one); install.sh must not touch it.
      assert.equal(await Deno.readTextFile("/etc/passwd"), hostPasswd, "host untouched");
      for (
        const [p, m] of [["/var/lib/outpost", 0o751], ["/var/cache/outpost", 0o750], [
          "/srv/ftp",
          0o755,
        ]] as const
      ) {
        const st = await Deno.stat(sb.host(p));
        assert.ok(st.isDirectory, `${p} created`);
        assert.equal(st.uid, user.uid, `${p} is owned by outpost`);
        assert.equal(st.gid, user.gid, `${p} has the outpost group`);
        assert.equal(st.mode! & 0o7777, m, `${p} has mode ${m.toString(8)}`);
      }
      assert.ok((await Deno.stat(sb.host("/var/lib/outpost/.firstboot-done"))).isFile);

      const calls = (await Deno.readTextFile(`${d}/systemctl.log`)).trim().split("\n");
      const at = (c: string) => calls.indexOf(c);
      assert.ok(at("daemon-reload") >= 0, calls.join("\n"));
      assert.ok(at("enable outpost.service") > at("daemon-reload"), calls.join("\n"));
      assert.ok(at("restart outpost.service") > at("enable outpost.service"), calls.join("\n"));

      // The administrator's CLI works and validates the boot config by default.
      const check = await sb.run(["/usr/local/bin/outpost", "check-config"]);
      assert.equal(check.code, 0, show(check));
      assert.match(check.stdout, /\/boot\/firmware\/outpost\.toml is valid\./, show(check));

      // Upgrade: the edited config is kept and the unit regenerated from it.
      const edited = (await Deno.readTextFile(sb.host("/boot/firmware/outpost.toml")))
        .replace(/^port = 21\b/m, "port = 2121") + "\n# edited on the board\n";
      assert.match(edited, /^port = 2121/m, "the template has a port = 21 line to edit");
      await Deno.writeTextFile(sb.host("/boot/firmware/outpost.toml"), edited);
      await Deno.writeTextFile(`${d}/systemctl.log`, "");
      const second = await sb.run(install);
      assert.equal(second.code, 0, show(second));
      assert.match(second.stdout, /Config: keeping \/boot\/firmware\/outpost\.toml/);
      assert.equal(await Deno.readTextFile(sb.host("/boot/firmware/outpost.toml")), edited, "config kept");
      const service2 = await Deno.readTextFile(sb.host("/etc/systemd/system/outpost.service"));
      assert.match(service2, /^AmbientCapabilities=$/m, "the unit follows the edited config (port 2121)");
      const passwd2 = await Deno.readTextFile(sb.host("/etc/passwd"));
      assert.equal(passwd2.split("\n").filter((l) => l.startsWith("outpost:")).length, 1, "one outpost user");
      assert.deepEqual(passwdEntry(passwd2, "outpost"), user, "the same user");
      const calls2 = (await Deno.readTextFile(`${d}/systemctl.log`)).trim().split("\n");
      assert.ok(
        calls2.includes("daemon-reload") && calls2.includes("restart outpost.service"),
        calls2.join("\n"),
      );

      // A bad --config is refused before anything is touched: the boot config, the files and the service stay.
      const bad = `${d}/bad.toml`;
      await Deno.writeTextFile(bad, edited.replace(/^port = 2121\b/m, 'port = "twenty-one"'));
      const jsMtime = (await Deno.stat(sb.host("/opt/outpost/outpost.js"))).mtime?.getTime();
      await Deno.writeTextFile(`${d}/systemctl.log`, "");
      const third = await sb.run([...install, "--config", bad]);
      assert.notEqual(third.code, 0, show(third));
      assert.match(third.stderr, /bad\.toml is not valid.*Nothing was changed/, show(third));
      assert.match(third.stderr, /ftp\.port/, `check-config says which key is wrong:\n${show(third)}`);
      assert.equal(
        await Deno.readTextFile(sb.host("/boot/firmware/outpost.toml")),
        edited,
        "boot config kept",
      );
      assert.equal(
        (await Deno.stat(sb.host("/opt/outpost/outpost.js"))).mtime?.getTime(),
        jsMtime,
        "not reinstalled",
      );
      assert.equal(await Deno.readTextFile(`${d}/systemctl.log`), "", "the service was not touched");

      // A good --config replaces the boot config.
      const good = `${d}/good.toml`;
      await Deno.writeTextFile(good, edited.replace(/^port = 2121\b/m, "port = 2200"));
      const fourth = await sb.run([...install, "--config", good, "--no-start"]);
      assert.equal(fourth.code, 0, show(fourth));
      assert.match(fourth.stdout, /good\.toml copied to \/boot\/firmware\/outpost\.toml/);
      assert.equal(
        await Deno.readTextFile(sb.host("/boot/firmware/outpost.toml")),
        await Deno.readTextFile(good),
      );
      const calls4 = (await Deno.readTextFile(`${d}/systemctl.log`)).trim().split("\n");
      assert.ok(calls4.includes("enable outpost.service"), calls4.join("\n"));
      assert.ok(
        !calls4.some((c) => /^(re)?start /.test(c)),
        `--no-start starts nothing:\n${calls4.join("\n")}`,
      );
    } finally {
      await sb.remove();
    }
  },
});
