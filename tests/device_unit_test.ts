/**
 * The systemd unit and the Deno permissions derived from a config: narrowed flags, the bind capability only for
 * ports below 1024, `systemd-analyze verify` accepting every directive, and the boot-time prepare step falling
 * back to the last good config.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { hashPassword } from "../src/config/password.ts";
import { denoPermissionFlags, derivePermissions } from "../scripts/derive_permissions.ts";
import { DEFAULT_BOARD_PATHS, makeUnits } from "../scripts/make_unit.ts";
import { outpostPrepare } from "../scripts/outpost_prepare.ts";
import { findPeer, skipWithout } from "./helpers/peers.ts";

const HASH = await hashPassword("secret", 1000);

/** The TCP part of a net list (the status socket, on by default, is a unix: entry). */
function tcp(net: string[] | "all"): string[] | "all" {
  return net === "all" ? net : net.filter((n) => !n.startsWith("unix:"));
}
const PROFILE = { id: "testboard", v8MaxOldSpaceMb: 128, configTemplate: null, configTxt: [] };

function config(port: number, extra = ""): string {
  return `[device]
name = "pi-freezer"
state_dir = "/var/lib/outpost"

[ftp]
port = ${port}
active = false
xferlog = "/var/log/outpost/xferlog"
[ftp.passive]
ports = "50000-50002"
[[ftp.users]]
name = "alice"
password_hash = "${HASH}"
root = "/srv/outpost/alice"
permissions = ["all"]

[smtp]
host = "smtp.example.com"
security = "tls"
from = "pi@example.com"

[alerts]
to = ["ops@example.com"]

[sensors.soc]
type = "thermal"
zone = "0"

[sensors.load]
type = "load"

[sensors.probe]
type = "command"
command = ["/usr/local/bin/read-probe", "--celsius"]
${extra}`;
}

Deno.test("device unit: permissions are narrowed to the config's roots, ports, hosts and commands", () => {
  const perms = derivePermissions(parseConfig(config(21), "/boot/firmware/outpost.toml"));
  // A wildcard listen address: passive listeners bind whichever local address the client reached, so ports are
  // allowed on any host (":port"), but only those ports.
  assert.deepEqual(tcp(perms.net), [":21", ":50000", ":50001", ":50002", "smtp.example.com:465"]);
  const local = derivePermissions(
    parseConfig(config(21).replace("port = 21", 'host = "127.0.0.1"\nport = 21'), "/boot/outpost.toml"),
  );
  assert.deepEqual(tcp(local.net), [
    "127.0.0.1:21",
    "127.0.0.1:50000",
    "127.0.0.1:50001",
    "127.0.0.1:50002",
    "smtp.example.com:465",
  ]);
  assert.ok(perms.bindsPrivilegedPort);
  for (
    const p of [
      "/var/lib/outpost",
      "/boot/firmware/outpost.toml",
      "/srv/outpost/alice",
    ]
  ) {
    assert.ok(perms.read.includes(p), `reads ${p}`);
  }
  // Deno wants --allow-all for /proc and /sys whatever --allow-read says: sensors read them through cat and ls.
  assert.ok(
    !perms.read.some((p) => p === "/" || p.startsWith("/sys") || p.startsWith("/proc")),
    perms.read.join(),
  );
  assert.deepEqual(perms.write.sort(), [
    "/srv/outpost/alice",
    "/var/lib/outpost",
    "/var/log/outpost/xferlog",
  ]);
  assert.deepEqual(perms.run.sort(), ["/usr/local/bin/read-probe", "cat", "ls", "systemd-notify"]);
  assert.ok(!perms.env.includes("HOME") && perms.env.includes("NOTIFY_SOCKET"));
  const flags = denoPermissionFlags(perms, { v8MaxOldSpaceMb: 128 });
  assert.ok(flags.includes("--v8-flags=--max-old-space-size=128,--max-semi-space-size=1"));
  assert.ok(!flags.some((f) => f === "--allow-all" || f === "-A" || f === "--allow-net"));
});

Deno.test("device unit: active FTP mode widens net access and says so; no [ftp] table still listens on 2121", () => {
  const active = derivePermissions(
    parseConfig(config(2121).replace("active = false", "active = true"), "/boot/outpost.toml"),
  );
  assert.equal(active.net, "all");
  assert.ok(active.notes.some((n) => n.includes("active = false")));
  assert.ok(!active.bindsPrivilegedPort);
  const minimal = derivePermissions(parseConfig("[ftp]\nactive = false\n", "/boot/outpost.toml"));
  assert.equal(minimal.net, "all", "wildcard address and no passive range: any local address and port");
  assert.ok(minimal.notes.some((n) => n.includes("[ftp.passive]")));
  const loop = derivePermissions(parseConfig('[ftp]\nhost = "::1"\nactive = false\n', "/boot/outpost.toml"));
  assert.deepEqual(tcp(loop.net), ["[::1]:2121", "[::1]"]);
  const off = derivePermissions(parseConfig("[ftp]\nenabled = false\n", "/boot/outpost.toml"));
  assert.deepEqual(tcp(off.net), []);
  assert.ok(
    denoPermissionFlags(off).some((f) => /^--allow-net=unix:[^,]+$/.test(f)),
    "only the status socket",
  );
});

Deno.test("device unit: implicit FTPS adds its port, and the bind capability below 1024", () => {
  const tls = derivePermissions(
    parseConfig(
      '[ftp]\nhost = "127.0.0.1"\nport = 2121\nactive = false\n[ftp.tls]\nmode = "optional"\n',
      "/b.toml",
    ),
  );
  assert.ok(Array.isArray(tls.net) && tls.net.includes("127.0.0.1:990"), JSON.stringify(tls.net));
  assert.ok(tls.bindsPrivilegedPort, "990 needs CAP_NET_BIND_SERVICE");
  const high = derivePermissions(
    parseConfig(
      '[ftp]\nhost = "127.0.0.1"\nport = 2121\nactive = false\n[ftp.tls]\nmode = "required"\nimplicit_port = 9990\n',
      "/b.toml",
    ),
  );
  assert.ok(Array.isArray(high.net) && high.net.includes("127.0.0.1:9990"), JSON.stringify(high.net));
  assert.ok(!high.bindsPrivilegedPort);
});

Deno.test("device unit: the bind capability only below port 1024, and the hardening directives", () => {
  const low = makeUnits(parseConfig(config(21), "/x/outpost.toml"), PROFILE).service;
  const high = makeUnits(parseConfig(config(2121), "/x/outpost.toml"), PROFILE).service;
  assert.match(low, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
  assert.match(low, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
  assert.match(high, /^AmbientCapabilities=$/m);
  assert.match(high, /^CapabilityBoundingSet=$/m);
  for (
    const d of [
      "User=outpost",
      "Type=notify",
      "NotifyAccess=all",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "Restart=on-failure",
    ]
  ) {
    assert.match(low, new RegExp(`^${d}$`, "m"), d);
  }
  assert.match(low, /^WatchdogSec=\d+s$/m);
  assert.match(
    low,
    /^ReadWritePaths=-\/var\/lib\/outpost -\/srv\/outpost\/alice -\/var\/log\/outpost\/xferlog -\/srv\/ftp$/m,
  );
  assert.match(
    low,
    /^ExecStart=\/opt\/outpost\/bin\/deno run .*\$OUTPOST_DENO_FLAGS \/opt\/outpost\/outpost\.js serve/m,
  );
  assert.match(low, new RegExp(`--config ${DEFAULT_BOARD_PATHS.configPath}`));
});

Deno.test({
  name: "device unit: systemd-analyze verify accepts every directive of both units",
  ignore: skipWithout(findPeer("systemd-analyze")),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-unit-" });
    try {
      const units = makeUnits(parseConfig(config(21), "/x/outpost.toml"), PROFILE);
      await Deno.writeTextFile(`${dir}/outpost.service`, units.service);
      await Deno.writeTextFile(`${dir}/outpost-firstboot.service`, units.firstboot);
      for (const name of ["outpost.service", "outpost-firstboot.service"]) {
        const out = await new Deno.Command("systemd-analyze", {
          args: ["verify", `${dir}/${name}`],
          stdout: "piped",
          stderr: "piped",
          env: { SYSTEMD_LOG_COLOR: "0" },
        }).output();
        const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
        // The programs are not installed on the test machine; anything else is a mistake in the unit.
        const problems = text.split("\n").filter((l) =>
          l.trim() && !/\/opt\/outpost\/\S+ is not executable|Failed to create .*sysinit\.target/.test(l)
        );
        assert.deepEqual(problems, [], `${name}:\n${text}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("device unit: prepare writes the env file, makes folders, and falls back to the last good config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-prepare-" });
  const quiet = console.error;
  const errors: string[] = [];
  console.error = (...a: unknown[]) => errors.push(a.join(" "));
  try {
    const good = `[device]\nstate_dir = "${dir}/state"\n\n[ftp]\nport = 2121\nactive = false\n` +
      `[ftp.passive]\nports = "50000-50001"\n` +
      `[[ftp.users]]\nname = "alice"\npassword_hash = "${HASH}"\nroot = "${dir}/data"\n`;
    await Deno.writeTextFile(`${dir}/outpost.toml`, good);
    const env = `${dir}/run/deno-flags.env`;
    const args = [
      "--config",
      `${dir}/outpost.toml`,
      "--last-good",
      `${dir}/state/last-good.toml`,
      "--env-file",
      env,
    ];
    // The unit was started without the sandbox this config needs: the drop-in is written and 75 asks systemd to
    // start again; the next start (same drop-in) goes on rather than loop.
    const dropIn = `${dir}/etc/outpost.service.d/50-sandbox.conf`;
    assert.equal(await outpostPrepare([...args, "--mkdirs", "--drop-in", dropIn]), 75);
    const line = await Deno.readTextFile(env);
    assert.match(
      line,
      /^OUTPOST_DENO_FLAGS=--allow-read=\S+ --allow-write=\S+ --allow-net=:2121,:50000,:50001,unix:\S+status.sock /,
    );
    assert.ok((await Deno.stat(`${dir}/data`)).isDirectory, "the FTP root was created");
    const text = await Deno.readTextFile(dropIn);
    // alice is read-only (the default): her root is made, but not writable.
    assert.match(text, new RegExp(`^ReadWritePaths=-${dir}/state -/srv/ftp$`, "m"));
    assert.match(text, /^ReadWritePaths=$/m, "the unit's list is reset first");
    assert.match(text, /^Environment=OUTPOST_SANDBOX_ID=[0-9a-f]{16}$/m);
    assert.ok(errors.some((e) => e.includes("needs a different sandbox")), errors.join("\n"));
    assert.equal(await outpostPrepare([...args, "--drop-in", dropIn]), 0);
    const id = /OUTPOST_SANDBOX_ID=(\w+)/.exec(text)![1];
    Deno.env.set("OUTPOST_SANDBOX_ID", id);
    try {
      errors.length = 0;
      assert.equal(await outpostPrepare([...args, "--drop-in", dropIn]), 0);
      assert.deepEqual(errors.filter((e) => /sandbox|warning/.test(e)), []);
    } finally {
      Deno.env.delete("OUTPOST_SANDBOX_ID");
    }

    // A typo on the boot partition: the last good copy (kept by serve) decides the permissions.
    await Deno.writeTextFile(`${dir}/state/last-good.toml`, good);
    await Deno.writeTextFile(`${dir}/outpost.toml`, '[device]\nname = "has spaces"\n');
    errors.length = 0;
    assert.equal(await outpostPrepare(args), 0);
    assert.ok(errors.some((e) => e.includes("using the last good copy")), errors.join("\n"));
    assert.match(await Deno.readTextFile(env), /--allow-net=:2121,/);

    await Deno.remove(`${dir}/state/last-good.toml`);
    assert.equal(await outpostPrepare(args), 1, "no good config at all: the unit fails and says why");
    assert.ok(errors.some((e) => e.includes("cannot start")));
  } finally {
    console.error = quiet;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("device unit: a root under /home keeps /home reachable; a command sensor keeps /dev; otherwise both hidden", () => {
  const plain = makeUnits(parseConfig(config(2121), "/x/outpost.toml"), PROFILE).service;
  assert.match(plain, /^ProtectHome=yes$/m);
  const home = makeUnits(
    parseConfig(
      config(2121).replace('root = "/srv/outpost/alice"', 'root = "/home/pi/ftp"'),
      "/x/outpost.toml",
    ),
    PROFILE,
  ).service;
  assert.match(home, /^ProtectHome=read-only$/m);
  assert.match(home, /^ReadWritePaths=.*-\/home\/pi\/ftp/m);
  // config() has a command sensor (read-probe): it may need /dev/i2c-*.
  assert.match(plain, /^PrivateDevices=no$/m);
  const noCommand = makeUnits(
    parseConfig(
      config(2121).replace(
        'type = "command"\ncommand = ["/usr/local/bin/read-probe", "--celsius"]',
        'type = "load"',
      ),
      "/x/outpost.toml",
    ),
    PROFILE,
  ).service;
  assert.match(noCommand, /^PrivateDevices=yes$/m);
});
