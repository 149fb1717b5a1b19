/**
 * The [ftp] config table, and the options it drives that other tests do not cover (passive address map, active
 * mode off).
 */
import assert from "node:assert/strict";
import { parseTomlDocument } from "../src/app/outpost_config.ts";
import { Section } from "../src/config/section.ts";
import { readFtpSection } from "../src/ftp/ftp_config.ts";
import { runPython, startFtp } from "./helpers/ftp_fixture.ts";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const HASH = "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

function read(toml: string) {
  const problems: string[] = [];
  const root = new Section(parseTomlDocument(toml), "", problems, "/etc/outpost");
  const cfg = readFtpSection(root.section("ftp"));
  return { cfg, problems };
}

Deno.test("ftp config: a full [ftp] table is read into server options", () => {
  const { cfg, problems } = read(`
[ftp]
host = "::"
port = 21
active = false
xferlog = "xferlog"
[[ftp.users]]
name = "alice"
password_hash = "${HASH}"
root = "/srv/alice"
permissions = ["list", "read", "write"]
[ftp.anonymous]
enabled = true
root = "/srv/pub"
[ftp.passive]
ports = "50000-50100"
address = "203.0.113.7"
[[ftp.passive.address_map]]
subnet = "192.168.0.0/16"
address = "192.168.1.20"
[ftp.limits]
max_sessions = 10
idle_timeout = "2m"
data_timeout = "10s"
login_fail_delay = "500ms"
ban_time = "1h"
max_line_length = 1024
transfer_buffer = "128KiB"
`);
  assert.deepEqual(problems, []);
  const o = cfg.options;
  assert.equal(o.hostname, "::");
  assert.equal(o.port, 21);
  assert.equal(o.allowActive, false);
  assert.equal(o.xferlogPath, "/etc/outpost/xferlog");
  assert.deepEqual(o.passive, {
    portMin: 50000,
    portMax: 50100,
    address: "203.0.113.7",
    addressMap: [{ subnet: "192.168.0.0/16", address: "192.168.1.20" }],
  });
  assert.equal(o.maxSessions, 10);
  assert.equal(o.idleTimeoutMs, 120_000);
  assert.equal(o.dataTimeoutMs, 10_000);
  assert.equal(o.loginFailDelayMs, 500);
  assert.equal(o.banMs, 3_600_000);
  assert.equal(o.maxLineLength, 1024);
  assert.equal(o.transferBufferSize, 131072);
  assert.equal(o.accounts.users[0].perms.write, true);
  assert.equal(o.accounts.users[0].perms.delete, false);
  assert.equal(o.accounts.anonymousEnabled, true);
});

Deno.test("ftp config: mistakes are reported by key", () => {
  const { problems } = read(`
[ftp]
host = "localhost"
prot = 21
[[ftp.users]]
name = "bob"
password = "plain"
password_hash = "secret"
permissions = ["fly"]
[ftp.passive]
ports = "80-90"
address = "::1"
[ftp.limits]
idle_timeout = "soon"
`);
  const text = problems.join("\n");
  for (
    const key of [
      "ftp.host:",
      "ftp.prot: unknown key",
      "ftp.users[0].password:",
      "ftp.users[0].password_hash:",
      "ftp.users[0].root: is required",
      "ftp.users[0].permissions:",
      "ftp.passive.ports:",
      "ftp.passive.address:",
      "ftp.limits.idle_timeout:",
    ]
  ) {
    assert.ok(text.includes(key), `missing problem ${key} in:\n${text}`);
  }
});

Deno.test({
  name:
    "ftp config: PASV advertises the address mapped for the client's subnet; active mode can be turned off",
  ignore: skipWithout(findPeer(SYSTEM_PYTHON)),
  fn: async () => {
    const fx = await startFtp({
      server: {
        allowActive: false,
        passive: {
          portMin: 0,
          portMax: 0,
          address: "198.51.100.1",
          addressMap: [{ subnet: "127.0.0.0/8", address: "10.9.8.7" }],
        },
      },
    });
    try {
      await runPython(
        fx,
        `
f = connect()
r = f.sendcmd("PASV")
assert "(10,9,8,7," in r, r
expect(502, f.sendcmd, "PORT 127,0,0,1,200,1")
expect(502, f.sendcmd, "EPRT |1|127.0.0.1|51201|")
f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});
