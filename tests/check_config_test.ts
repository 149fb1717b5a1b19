// `outpost check-config` (issue 13, item 4): a human summary, --json keyed like the file, warnings, and a typo in
// a table name reported before the problems it causes.
import assert from "node:assert/strict";
import { hashPassword } from "../src/config/password.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function outpost(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("check-config: summary of what runs, who logs in, sensors, rules and mail; --json keyed like the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const strong = await hashPassword("pw", 200_000);
    await Deno.mkdir(`${dir}/alice`);
    await Deno.writeTextFile(`${dir}/probe`, "1\n");
    const file = `${dir}/outpost.toml`;
    await Deno.writeTextFile(
      file,
      `[device]
name = "pi-freezer"
board = "rpi4"
state_dir = "state"
[ftp]
port = 2121
[ftp.tls]
mode = "required"
implicit_port = 9990
[ftp.passive]
ports = "50000-50010"
[[ftp.users]]
name = "alice"
password_hash = "${strong}"
root = "alice"
permissions = ["all"]
[smtp]
host = "smtp.example.com"
port = 587
username = "me@example.com"
password_env = "SMTP_PW"
from = "me@example.com"
[alerts]
to = ["you@example.com"]
[sensors.probe]
type = "file"
path = "probe"
unit = "°C"
interval = "30s"
[[rules]]
sensor = "probe"
above = -10
for = 2
of = 3
severity = "critical"
`,
      { mode: 0o600 },
    );
    const r = await outpost(["check-config", file]);
    assert.equal(r.code, 0, r.err);
    assert.equal(
      r.out.trim(),
      `${file} is valid.

Device  pi-freezer, board rpi4, state in ${dir}/state
FTP     on 0.0.0.0:2121, FTPS required, implicit ftps:// on 9990; passive ports 50000-50010
        alice (all) in ${dir}/alice
Mail    via smtp.example.com:587 (starttls) as me@example.com, from me@example.com
Alerts  to you@example.com
Sensors probe (file, every 30s)
Rules   probe > -10 °C, 2 of 3 readings, critical, to you@example.com
Status  \`outpost status\` via ${dir}/state/status.sock; page off`,
    );
    const j = await outpost(["check-config", "--json", file]);
    assert.equal(j.code, 0, j.err);
    const doc = JSON.parse(j.out);
    assert.equal(doc.valid, true);
    assert.deepEqual(doc.warnings, []);
    assert.equal(doc.device.state_dir, `${dir}/state`);
    assert.deepEqual(doc.ftp.tls, { mode: "required", implicit_port: 9990 });
    assert.deepEqual(doc.ftp.users, [{ name: "alice", root: `${dir}/alice`, permissions: ["all"] }]);
    assert.deepEqual(doc.rules[0], {
      id: "probe_above",
      sensor: "probe",
      above: -10,
      for: 2,
      of: 3,
      severity: "critical",
      to: ["you@example.com"],
    });
    assert.equal(doc.sensors.probe.interval, "30s");
    assert.ok(!j.out.includes("pbkdf2"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config: warnings a person can act on", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const weak = await hashPassword("pw", 1000);
    await Deno.mkdir(`${dir}/srv/ftp/bob`, { recursive: true });
    const file = `${dir}/outpost.toml`;
    await Deno.writeTextFile(
      file,
      `[device]
board = "rpi9"
state_dir = "state"
[ftp]
port = 2121
[ftp.tls]
mode = "optional"
implicit_port = 2121
[[ftp.users]]
name = "alice"
password_hash = "${weak}"
root = "srv/ftp"
permissions = ["all"]
[[ftp.users]]
name = "bob"
password_hash = "${weak}"
root = "srv/ftp/bob"
[[ftp.users]]
name = "carol"
password_hash = "${weak}"
root = "missing"
[ftp.anonymous]
enabled = true
root = "/"
[smtp]
host = "127.0.0.1"
port = 25
security = "none"
password = "hunter2"
username = "u"
from = "pi@example.com"
[alerts]
to = ["you@example.com"]
[sensors.gone]
type = "file"
path = "nowhere/value"
`,
      { mode: 0o644 },
    );
    await Deno.chmod(file, 0o644);
    const r = await outpost(["check-config", file]);
    assert.equal(r.code, 0, r.err);
    const w = r.out.slice(r.out.indexOf("warning(s):"));
    assert.match(w, /device\.board: "rpi9" is not a known board \(.*rpi4.*\)/);
    assert.match(
      w,
      /ftp\.users\[0\]\.password_hash: only 1000 PBKDF2 iterations; make a new hash with `outpost passwd`/,
    );
    assert.match(
      w,
      /ftp\.users\[1\]\.root: .*srv\/ftp\/bob is inside alice's root .*srv\/ftp, so alice can read and change bob's files/,
    );
    assert.match(
      w,
      /ftp\.users\[2\]\.root: .*missing does not exist; carol cannot log in until it is created/,
    );
    assert.match(w, /ftp\.anonymous\.root: "\/" lets anyone read the whole file system/);
    assert.match(w, /ftp\.tls\.implicit_port: 2121 is also ftp\.port/);
    assert.match(w, /sensors\.gone\.path: .*nowhere\/value does not exist/);
    assert.match(
      w,
      /smtp\.password: .* holds the SMTP password and others can read it \(mode 0644\); use password_env/,
    );
    assert.ok(!r.out.includes("hunter2"));
    const j = JSON.parse((await outpost(["check-config", "--json", file])).out);
    assert.equal(j.warnings.length, 10, j.warnings.join("\n"));
    assert.ok(!JSON.stringify(j).includes("hunter2"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config: a typo in a table name comes before the problems it causes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/outpost.toml`;
    await Deno.writeTextFile(
      file,
      `[alert]
to = ["you@example.com"]
[sensors.cpu]
type = "load"
[[rules]]
sensor = "cpu"
above = 4
`,
    );
    const r = await outpost(["check-config", file]);
    assert.equal(r.code, 78);
    const lines = r.err.trim().split("\n");
    assert.equal(lines[0], `${file} is not valid (2 problem(s)):`);
    assert.match(lines[1], /^ {2}alert: unknown key \(did you mean "alerts"\?\)/);
    assert.match(lines[2], /^ {2}rules\[0\]\.to: no recipients/);
    const j = await outpost(["check-config", "--json", file]);
    assert.equal(j.code, 78);
    assert.equal(JSON.parse(j.out).valid, false);
    assert.match(JSON.parse(j.out).problems[0], /^alert: unknown key/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config: a file saved by a Windows editor: BOM and CRLF are fine; UTF-16 and Latin-1 say how to save it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text =
      '[device]\r\n# the freezer in the K\u00fcche\r\nname = "pi-kitchen"\r\n\r\n[ftp]\r\nport = 2121\r\n';
    const bom = `${dir}/bom.toml`;
    await Deno.writeFile(bom, new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(text)]));
    const ok = await outpost(["check-config", bom]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /pi-kitchen/);
    // Notepad's "Unicode" is UTF-16 little-endian with a byte order mark.
    const u16 = `${dir}/u16.toml`;
    const le = new Uint8Array(2 + text.length * 2);
    le.set([0xff, 0xfe]);
    for (let i = 0; i < text.length; i++) le[2 + 2 * i] = text.charCodeAt(i);
    await Deno.writeFile(u16, le);
    const r16 = await outpost(["check-config", u16]);
    assert.equal(r16.code, 78);
    assert.match(r16.out + r16.err, /UTF-16.*save it as UTF-8/s);
    // An old editor's Latin-1: "ü" as the single byte 0xfc on line 2.
    const latin = `${dir}/latin1.toml`;
    await Deno.writeFile(latin, Uint8Array.from(text, (c) => c.charCodeAt(0)));
    const r1 = await outpost(["check-config", latin]);
    assert.equal(r1.code, 78);
    assert.match(r1.out + r1.err, /line 2: .*not UTF-8.*save it as UTF-8/s);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
