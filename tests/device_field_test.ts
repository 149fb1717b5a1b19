/**
 * The daemon run the way the board runs it: the generated unit's own command lines (`ExecStartPre=+` as root,
 * `ExecStart=` as the `outpost` user), under exactly the Deno flags the prepare step derived, never `-A`.
 */

import assert from "node:assert/strict";
import { FieldDaemon, layOutBoard } from "./helpers/field_daemon.ts";
import { SKIP_FIELD } from "./helpers/field_user.ts";
import { freePort, sha256File } from "./helpers/test_util.ts";
import { findPeer, requirePeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { makeTestCerts, startSink } from "./helpers/smtp_sink.ts";
import { hashPassword } from "../src/config/password.ts";

Deno.test({
  name: "device field: the generated unit starts (prepare as root, serve as outpost) and says READY=1",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl")),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-" });
    const port = freePort();
    // The state folder and the FTP root sit below folders that do not exist yet (as /home/pi on a fresh image):
    // the prepare step makes them under the unit's UMask=0027, and the daemon's user must still reach them.
    const board = await layOutBoard(
      dir,
      `[device]
name = "pi-field"
state_dir = "{{dir}}/data/lib/outpost"

[ftp]
host = "127.0.0.1"
port = ${port}
active = false
[ftp.passive]
ports = "${port + 1}-${port + 2}"
[[ftp.users]]
name = "pi"
password_hash = "${await hashPassword("pw", 1000)}"
root = "{{dir}}/home/pi/ftp"
permissions = ["all"]
`,
    );
    const d = await FieldDaemon.start(board);
    try {
      const failed = d.failedPre;
      assert.equal(failed, null, `ExecStartPre failed: ${failed?.stderr}${failed?.stdout}`);
      await d.waitReady();
      assert.doesNotMatch(d.output, /NotCapable|PermissionDenied/);
      assert.equal(d.main?.argv.includes("-A") || d.main?.argv.includes("--allow-all"), false);
      const flags = await Deno.readTextFile(`${board.runtimeDir}/deno-flags.env`);
      assert.match(flags, /^OUTPOST_DENO_FLAGS=--allow-read=/);
      for (const made of [`${dir}/data`, `${dir}/data/lib`, `${dir}/home`, `${dir}/home/pi`]) {
        assert.equal((await Deno.stat(made)).mode! & 0o777, 0o755, `${made} is not 0755`);
      }
      const file = `${dir}/upload.txt`;
      await Deno.writeTextFile(file, "hello from the field\n");
      const up = await new Deno.Command("curl", {
        args: ["-sS", "--user", "pi:pw", "-T", file, `ftp://127.0.0.1:${port}/upload.txt`],
        stderr: "piped",
      }).output();
      assert.equal(up.code, 0, new TextDecoder().decode(up.stderr));
      assert.equal(await Deno.readTextFile(`${dir}/home/pi/ftp/upload.txt`), "hello from the field\n");
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Lines of daemon output that show the sandbox refused something. */
function sandboxRefusals(output: string): string[] {
  return output.split("\n").filter((l) =>
    /NotCapable|Requires (read|write|net|env|run|sys) access|PermissionDenied/.test(l)
  );
}

const SENSORS = [
  "thermal",
  "hwmon",
  "iio",
  "w1",
  "file",
  "command",
  "disk_root",
  "disk_state",
  "load",
  "memory",
  "watched",
  "throttled",
];

/** A config that uses every sensor type and every path key at a non-default place. */
function contractConfig(
  o: { ftpPort: number; implicitPort: number; smtpPort: number; caFile: string },
): string {
  const sys = "{{dir}}/fake-root";
  return `[device]
name = "pi-contract"
state_dir = "{{dir}}/data/outpost-state"

[ftp]
host = "127.0.0.1"
port = ${o.ftpPort}
active = false
xferlog = "{{dir}}/logs/outpost-xferlog"
[ftp.passive]
ports = "${o.ftpPort + 2}-${o.ftpPort + 6}"
[ftp.tls]
mode = "optional"
implicit_port = ${o.implicitPort}
cert_dir = "{{dir}}/certs"
require_tls_session_reuse = false
[[ftp.users]]
name = "alice"
password_hash = "{{hash}}"
root = "{{dir}}/ftp/alice"
permissions = ["all"]
[[ftp.users]]
name = "bob"
password_hash = "{{hash}}"
root = "{{dir}}/ftp/bob"
permissions = ["read-only"]

[smtp]
host = "127.0.0.1"
port = ${o.smtpPort}
security = "tls"
ca_file = "${o.caFile}"
username = "outpost"
password_command = "echo sekrit"
from = "pi@example.com"

[outbox]
dir = "{{dir}}/spool/outbox"
retry_min = "1s"
retry_max = "2s"

[alerts]
to = ["owner@example.com"]
interval = "1s"
sysfs_root = "${sys}"
state_file = "{{dir}}/alert-state/alerts.json"
cooldown = "0s"

[sensors.thermal]
type = "thermal"
zone = "cpu-thermal"
[sensors.hwmon]
type = "hwmon"
chip = "cpu_thermal"
input = "temp1_input"
[sensors.iio]
type = "iio"
path = "${sys}/sys/bus/iio/devices/iio:device0/in_voltage0_raw"
[sensors.w1]
type = "w1"
id = "28-0316a2795aff"
[sensors.file]
type = "file"
path = "{{dir}}/readings/freezer"
[sensors.command]
type = "command"
command = "echo 42"
[sensors.disk_root]
type = "disk"
path = "/"
[sensors.disk_state]
type = "disk"
path = "{{dir}}/data/outpost-state"
[sensors.load]
type = "load"
[sensors.memory]
type = "memory"
[sensors.watched]
type = "file_changed"
path = "{{dir}}/watched/important.conf"
[sensors.throttled]
type = "rpi_throttled"
${SENSORS.map((s) => `\n[[rules]]\nname = "${s}_any"\nsensor = "${s}"\nabove = -1000000\n`).join("")}`;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
    else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(requirePeer("curl"), {
    args: ["--silent", "--show-error", "--max-time", "30", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
}

/** Lays out the contract board: fixtures, FTP data, a TLS mail sink with AUTH. */
async function contractBoard(dir: string) {
  const certDir = `${dir}/sink-certs`;
  await Deno.mkdir(certDir, { recursive: true });
  const certs = await makeTestCerts(certDir);
  await Deno.chmod(certDir, 0o755);
  await Deno.chmod(certs.caFile, 0o644);
  const sink = await startSink({
    mode: "tls",
    dir: certDir,
    certs,
    auth: { user: "outpost", password: "sekrit" },
  });
  await copyTree(new URL("./fixtures/sysfs/rpi4", import.meta.url).pathname, `${dir}/fake-root`);
  await Deno.mkdir(`${dir}/readings`);
  await Deno.writeTextFile(`${dir}/readings/freezer`, "-18.5\n");
  await Deno.mkdir(`${dir}/watched`);
  await Deno.writeTextFile(`${dir}/watched/important.conf`, "a = 1\n");
  await Deno.mkdir(`${dir}/ftp/bob`, { recursive: true });
  await Deno.writeTextFile(`${dir}/ftp/bob/manual.txt`, "read me\n");
  await Deno.mkdir(`${dir}/logs`, { mode: 0o755 });
  const ftpPort = freePort();
  const text = contractConfig({
    ftpPort,
    implicitPort: freePort(),
    smtpPort: sink.port,
    caFile: certs.caFile,
  })
    .replaceAll("{{hash}}", await hashPassword("pw", 1000));
  const board = await layOutBoard(dir, text);
  return { board, sink, ftpPort };
}

Deno.test({
  name:
    "device field: sandbox contract: every sensor type, FTPS, uploads, alert state and mail under the derived flags",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl"), findPeer(SYSTEM_PYTHON), findPeer("openssl")),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-contract-" });
    const { board, sink, ftpPort } = await contractBoard(dir);
    const d = await FieldDaemon.start(board);
    try {
      await d.waitReady();
      const flags = await Deno.readTextFile(`${board.runtimeDir}/deno-flags.env`);
      assert.doesNotMatch(flags, /--allow-(read|write)(=\/,|=\/ | )/, "no whole file system");
      assert.doesNotMatch(flags, /--allow-all|-A /);
      // FTP: upload and download as the read-write user, over plain FTP and FTPS; the read-only user may read.
      const payload = `${dir}/payload.bin`;
      const bytes = new Uint8Array(200_000);
      for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
      await Deno.writeFile(payload, bytes);
      const url = `ftp://127.0.0.1:${ftpPort}`;
      let r = await curl(["-u", "alice:pw", "-T", payload, `${url}/upload.bin`]);
      assert.equal(r.code, 0, r.err);
      r = await curl(["-u", "alice:pw", "--ssl-reqd", "-k", "-o", `${dir}/back.bin`, `${url}/upload.bin`]);
      assert.equal(r.code, 0, r.err);
      assert.equal(await sha256File(`${dir}/back.bin`), await sha256File(payload));
      r = await curl(["-u", "bob:pw", "--ssl-reqd", "-k", `${url}/manual.txt`]);
      assert.equal(r.out, "read me\n", r.err);
      r = await curl(["-u", "bob:pw", "-T", payload, `${url}/nope.bin`]);
      assert.notEqual(r.code, 0, "a read-only user cannot upload");
      // Every sensor read (each has a rule that fires on any value) and mail delivered over TLS with AUTH.
      const mails = await sink.waitFor(SENSORS.length, 60_000);
      for (const s of SENSORS) {
        assert.ok(
          mails.some((m) => (m.subject ?? "").includes(`ALERT ${s} `)),
          `alert for ${s}:\n${mails.map((m) => m.subject).join("\n")}\n${d.output}`,
        );
      }
      assert.ok(mails.every((m) => m.auth), "mail went out authenticated (password command ran)");
      // Alert state saved outside the state dir; xferlog written where /var/log would be; cert in its own dir.
      const state = await Deno.readTextFile(`${dir}/alert-state/alerts.json`);
      assert.match(state, /thermal_any/);
      assert.match(await Deno.readTextFile(`${dir}/logs/outpost-xferlog`), /upload\.bin/);
      assert.ok((await Deno.stat(`${dir}/certs/cert.pem`)).isFile);
      assert.deepEqual(sandboxRefusals(d.output), [], d.output);
      assert.doesNotMatch(d.output, /sensor[._ ]error|SENSOR ERROR/i, d.output);
    } finally {
      await d.stop();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "device field: sandbox contract negative control: one derived path taken away is caught",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl"), findPeer(SYSTEM_PYTHON), findPeer("openssl")),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-contract-neg-" });
    const { board, sink } = await contractBoard(dir);
    // The IIO sensor's shared scale file: without it, the reading would silently lose its scale.
    const scale = `${dir}/fake-root/sys/bus/iio/devices/iio:device0/in_voltage_scale`;
    const d = await FieldDaemon.start(board, {}, {
      editFlags: (f) => {
        assert.ok(f.includes(`${scale},`) || f.includes(`${scale} `), f);
        return f.replace(`${scale},`, "").replace(`,${scale} `, " ");
      },
    });
    try {
      await d.waitReady();
      await d.waitFor(/Requires read access/, 30_000);
      assert.ok(sandboxRefusals(d.output).some((l) => l.includes("in_voltage_scale")), d.output);
    } finally {
      await d.stop();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "device field: a reload that needs a new sandbox restarts through the prepare step; one that does not stays",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl")),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-reload-" });
    const port = freePort();
    const hash = await hashPassword("pw", 1000);
    const base = `[device]
name = "pi-reload"
state_dir = "{{dir}}/var/lib/outpost"

[ftp]
host = "127.0.0.1"
port = ${port}
active = false
[ftp.passive]
ports = "${port + 1}-${port + 3}"
[[ftp.users]]
name = "alice"
password_hash = "${hash}"
root = "{{dir}}/srv/ftp/alice"
permissions = ["all"]
`;
    const board = await layOutBoard(dir, base);
    let d = await FieldDaemon.start(board);
    try {
      await d.waitReady();
      // 1. Only the banner changes: applied in-process.
      await Deno.writeTextFile(board.configPath, base.replaceAll("{{dir}}", dir) + "");
      const banner = base.replace("active = false", 'active = false\nbanner = "changed banner"');
      await Deno.writeTextFile(board.configPath, banner.replaceAll("{{dir}}", dir));
      d.kill("SIGHUP");
      await d.waitFor("reload.done");
      assert.doesNotMatch(d.output, /reload\.restart_for_sandbox/);

      // 2. A new user whose root is outside everything the sandbox allows: no false "reload.done"; the daemon
      //    says why in one line and exits 75 so systemd starts it again through the prepare step.
      const carol = banner + `[[ftp.users]]
name = "carol"
password_hash = "${hash}"
root = "{{dir}}/data/carol"
permissions = ["all"]
`;
      await Deno.writeTextFile(board.configPath, carol.replaceAll("{{dir}}", dir));
      const before = d.output.split("reload.done").length;
      d.kill("SIGHUP");
      await d.waitFor("reload.restart_for_sandbox");
      const status = await d.main!.child.status;
      assert.equal(status.code, 75, d.output);
      assert.equal(
        d.output.split("reload.done").length,
        before,
        "no reload.done for the config it cannot apply",
      );
      assert.match(d.output, /reload\.restart_for_sandbox .*write \S*\/data\/carol/);
      await d.stop();

      // 3. systemd starts the unit again (Restart=on-failure): the prepare step writes the drop-in, asks for one
      //    more start, and the daemon then serves carol's new root.
      d = await FieldDaemon.start(board);
      await d.waitReady();
      assert.equal(d.restarts.length, 1, "one extra start for the new ReadWritePaths");
      assert.match(await Deno.readTextFile(board.paths.dropIn), /ReadWritePaths=.*\/data\/carol/);
      const file = `${dir}/hello.txt`;
      await Deno.writeTextFile(file, "hello carol\n");
      const up = await new Deno.Command(requirePeer("curl"), {
        args: ["-sS", "--max-time", "20", "-u", "carol:pw", "-T", file, `ftp://127.0.0.1:${port}/hello.txt`],
        stderr: "piped",
      }).output();
      assert.equal(up.code, 0, new TextDecoder().decode(up.stderr) + d.output);
      assert.equal(await Deno.readTextFile(`${dir}/data/carol/hello.txt`), "hello carol\n");
      assert.deepEqual(sandboxRefusals(d.output), []);
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "device field: sensors on the real /proc and /sys read under the derived flags (Deno wants --allow-all there)",
  ignore: SKIP_FIELD || skipWithout(findPeer(SYSTEM_PYTHON)),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-kernel-" });
    const sink = await startSink({ mode: "plain", dir });
    const real = ["load", "memory", "lo_mtu"];
    const board = await layOutBoard(
      dir,
      `[device]
name = "pi-kernel"
state_dir = "{{dir}}/var/lib/outpost"

[ftp]
enabled = false

[smtp]
host = "127.0.0.1"
port = ${sink.port}
security = "none"
from = "pi@example.com"

[alerts]
to = ["owner@example.com"]
interval = "1s"

[sensors.load]
type = "load"
[sensors.memory]
type = "memory"
[sensors.lo_mtu]
type = "file"
path = "/sys/class/net/lo/mtu"
${real.map((s) => `\n[[rules]]\nname = "${s}_any"\nsensor = "${s}"\nabove = -1000000\n`).join("")}`,
    );
    const d = await FieldDaemon.start(board);
    try {
      await d.waitReady();
      const flags = await Deno.readTextFile(`${board.runtimeDir}/deno-flags.env`);
      assert.doesNotMatch(flags, /--allow-read=[^ ]*(\/proc|\/sys)/, "no read grants under /proc or /sys");
      const mails = await sink.waitFor(real.length, 60_000);
      for (const s of real) {
        assert.ok(
          mails.some((m) => (m.subject ?? "").includes(`ALERT ${s} `)),
          `alert for ${s}:\n${mails.map((m) => m.subject).join("\n")}\n${d.output}`,
        );
      }
      assert.deepEqual(sandboxRefusals(d.output), [], d.output);
    } finally {
      await d.stop();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "device field: an edit saved as outpost.toml.txt (Notepad) is taken at the next start; the old file is kept",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl")),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-txt-" });
    const [oldPort, newPort] = [freePort(), freePort()];
    const cfg = (port: number) =>
      `[device]\nname = "pi-field"\nstate_dir = "{{dir}}/var/lib/outpost"\n\n[ftp]\nhost = "127.0.0.1"\n` +
      `port = ${port}\nactive = false\n[ftp.passive]\nports = "${port + 1}-${port + 2}"\n`;
    const board = await layOutBoard(dir, cfg(oldPort));
    // The laptop's editor saved the edit next to the file, with .txt added (Explorer hides the extension).
    const edited = `${board.configPath}.txt`;
    await Deno.writeTextFile(edited, cfg(newPort).replaceAll("{{dir}}", dir));
    const later = new Date(Date.now() + 60_000);
    await Deno.utime(edited, later, later);
    const d = await FieldDaemon.start(board);
    try {
      assert.equal(d.failedPre, null, `ExecStartPre failed: ${d.failedPre?.stderr}`);
      await d.waitReady();
      const said = d.pre.map((p) => p.stderr).join("\n");
      assert.match(said, /outpost\.toml\.txt.*is newer.*outpost\.toml\.previous/s, said);
      assert.match(d.output, new RegExp(`ftp listening host=127\\.0\\.0\\.1 port=${newPort}`));
      assert.match(await Deno.readTextFile(board.configPath), new RegExp(`port = ${newPort}`));
      assert.match(await Deno.readTextFile(`${board.configPath}.previous`), new RegExp(`port = ${oldPort}`));
      assert.equal(await Deno.stat(edited).then(() => true, () => false), false);
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "device field: the upload reserve (min_free) holds under the derived flags, as the outpost user",
  ignore: SKIP_FIELD || skipWithout(findPeer("curl")),
  sanitizeResources: false,
  fn: async () => {
    // A reserve larger than any disk: every upload must get 452. Without --allow-sys=statfs in the derived flags
    // the reserve could not be measured and would silently not apply, and the upload would succeed.
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-reserve-" });
    const port = freePort();
    const board = await layOutBoard(
      dir,
      `[device]\nname = "pi-field"\nstate_dir = "{{dir}}/var/lib/outpost"\n\n[ftp]\nhost = "127.0.0.1"\n` +
        `port = ${port}\nactive = false\nmin_free = "1000000GiB"\n[ftp.passive]\nports = "${port + 1}-${
          port + 2
        }"\n` +
        `[[ftp.users]]\nname = "pi"\npassword_hash = "${await hashPassword("pw", 1000)}"\n` +
        `root = "{{dir}}/srv/ftp/pi"\npermissions = ["all"]\n`,
    );
    const d = await FieldDaemon.start(board);
    try {
      assert.equal(d.failedPre, null, `ExecStartPre failed: ${d.failedPre?.stderr}`);
      await d.waitReady();
      const flags = await Deno.readTextFile(`${board.runtimeDir}/deno-flags.env`);
      assert.match(flags, /--allow-sys=[^ ]*statfs/);
      const file = `${dir}/upload.txt`;
      await Deno.writeTextFile(file, "a byte too many\n");
      const up = await new Deno.Command("curl", {
        args: ["-sS", "--user", "pi:pw", "-T", file, `ftp://127.0.0.1:${port}/upload.txt`],
        stderr: "piped",
      }).output();
      assert.notEqual(up.code, 0);
      assert.match(new TextDecoder().decode(up.stderr), /452/);
      assert.equal(await Deno.stat(`${dir}/srv/ftp/pi/upload.txt`).then(() => true, () => false), false);
      assert.deepEqual(sandboxRefusals(d.output), []);
    } finally {
      await d.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
