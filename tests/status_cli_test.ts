/**
 * `outpost status` (issue 13, item 1): the CLI asks a running daemon over its unix socket and prints text or JSON;
 * with no daemon it says so and exits 3. The daemon runs in-process here; status_field_test.ts runs it as the
 * board's user with narrowed permissions.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/app/outpost_config.ts";
import { hashPassword } from "../src/config/password.ts";
import { OutpostDaemon } from "../src/daemon/outpost_daemon.ts";
import { setLogSink } from "../src/log/logger.ts";
import { queryStatus } from "../src/status/query_status.ts";
import { FtpControl } from "./helpers/ftp_fixture.ts";
import { freePort } from "./helpers/test_util.ts";

setLogSink(() => {});
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "status", ...args],
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function config(dir: string, extra = ""): Promise<string> {
  const hash = await hashPassword("pw", 1000);
  await Deno.mkdir(`${dir}/root`, { recursive: true });
  await Deno.writeTextFile(`${dir}/cpu`, "41.5\n");
  await Deno.writeTextFile(`${dir}/freezer`, "-4\n");
  const text = `
[device]
name = "pi-status"
board = "rpi4"
state_dir = "state"

[ftp]
host = "127.0.0.1"
port = ${freePort()}

[[ftp.users]]
name = "alice"
password_hash = "${hash}"
root = "root"
permissions = ["all"]

[alerts]
to = ["owner@example.com"]
remind_every = "1h"
remind_backoff = false

[sensors.cpu]
type = "file"
path = "cpu"
unit = "°C"
interval = "1h"

[sensors.freezer]
type = "file"
path = "freezer"
unit = "°C"
interval = "1h"

[[rules]]
sensor = "cpu"
above = 80

[[rules]]
sensor = "freezer"
above = -10
${extra}`;
  await Deno.writeTextFile(`${dir}/outpost.toml`, text);
  return text;
}

async function waitUntil(
  what: string,
  fn: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 50) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out waiting for ${what}.`);
}

Deno.test("status: with no daemon running the CLI says so and exits 3 (text and --json)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await config(dir);
    const r = await cli("--config", `${dir}/outpost.toml`);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /No outpost daemon is running: nothing answers on .*state\/status\.sock/);
    assert.match(r.stderr, /systemctl start outpost/);
    const j = await cli("--json", "--config", `${dir}/outpost.toml`);
    assert.equal(j.code, 3);
    assert.equal(JSON.parse(j.stdout).running, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status: a running daemon reports sessions with a transfer in progress, sensors, rules and the outbox", async () => {
  const dir = await Deno.makeTempDir();
  const text = await config(dir);
  const daemon = await OutpostDaemon.start(parseConfig(text, `${dir}/outpost.toml`));
  let ctl: FtpControl | null = null;
  let data: Deno.TcpConn | null = null;
  try {
    const sock = `${dir}/state/status.sock`;
    assert.equal((await Deno.stat(sock)).mode! & 0o777, 0o660);
    // The freezer alert is mailed into the outbox (no [smtp]: it stays queued).
    await waitUntil("the alert mail", async () => (await queryStatus(sock)).outbox.queued >= 1);
    // An upload in progress: STOR over a data connection held open.
    ctl = await FtpControl.login("127.0.0.1", daemon.ftp!.port, "alice", "pw");
    const pasv = await ctl.pasvConnect();
    data = pasv.data;
    await ctl.send("STOR big.bin\r\n");
    assert.equal((await ctl.reply()).code, 150);
    await data.write(new Uint8Array(100_000));
    await waitUntil("the transfer's bytes", async () => {
      const s = await queryStatus(sock);
      return (s.ftp?.sessions[0]?.transfer?.bytes ?? 0) >= 100_000;
    });

    // Edit the file with a mistake: status shows the file's problems while the old config runs.
    await Deno.writeTextFile(`${dir}/outpost.toml`, text.replace("[alerts]", '[alerts]\nremind_evry = "1h"'));

    const r = await cli("--config", `${dir}/outpost.toml`);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.match(
      out,
      /^outpost pi-status \(rpi4\): running since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \(up /,
    );
    assert.match(out, new RegExp(`Config: ${dir}/outpost.toml\\n  .* has 1 problem\\(s\\) now`));
    assert.match(out, /alerts.remind_evry: unknown key \(did you mean "remind_every"\?\)/);
    assert.match(out, new RegExp(`FTP: listening on 127.0.0.1:${daemon.ftp!.port}; 1 session\\(s\\)`));
    assert.match(out, /#\d+ alice from 127\.0\.0\.1, connected \d+s, uploading \/big\.bin: 97\.7 KiB in/);
    assert.match(out, /cpu\s+41\.5 °C\s+\d+s ago/);
    assert.match(out, /cpu_above\s+cpu > 80 °C\s+OK/);
    assert.match(out, /freezer_above\s+freezer > -10 °C\s+ALERT since .* next reminder /);
    assert.match(out, /Mail: no \[smtp\] configured .*; outbox 1 queued \(oldest \d+s\), 0 failed/);
    assert.match(out, /Status page: off/);

    const j = await cli("--json", "--config", `${dir}/outpost.toml`);
    assert.equal(j.code, 0, j.stderr);
    const doc = JSON.parse(j.stdout);
    assert.equal(doc.running, true);
    assert.equal(doc.daemon.name, "pi-status");
    assert.equal(doc.config.using, "file");
    assert.equal(doc.config.edited, true);
    assert.equal(doc.ftp.sessions[0].user, "alice");
    assert.equal(doc.ftp.sessions[0].transfer.kind, "stor");
    assert.deepEqual(doc.sensors.map((s: { name: string; value: number }) => [s.name, s.value]), [[
      "cpu",
      41.5,
    ], [
      "freezer",
      -4,
    ]]);
    assert.deepEqual(doc.rules.map((x: { id: string; state: string }) => [x.id, x.state]), [
      ["cpu_above", "ok"],
      ["freezer_above", "alert"],
    ]);
    assert.equal(doc.outbox.queued, 1);
    // No secrets: neither the hash nor anything of it.
    assert.ok(!j.stdout.includes("pbkdf2"));

    // The upload finishes; a wrong password fails: the counters say so.
    data.close();
    data = null;
    assert.equal((await ctl.reply()).code, 226);
    const bad = await FtpControl.connect("127.0.0.1", daemon.ftp!.port);
    try {
      await bad.reply();
      assert.equal((await bad.cmd("USER alice")).code, 331);
      assert.equal((await bad.cmd("PASS wrong")).code, 530);
    } finally {
      bad.close();
    }
    const after = await queryStatus(sock);
    assert.deepEqual(
      [after.ftp!.counters.bytesIn, after.ftp!.counters.transfersOk, after.ftp!.counters.loginFailures],
      [100_000, 1, 1],
    );
    assert.equal(after.ftp!.sessions.find((x) => x.user === "alice")?.transfer, null);
  } finally {
    data?.close();
    ctl?.close();
    await daemon.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
  // The socket is removed on stop.
});

Deno.test("status: without a config, a quick-start daemon's state in this folder is asked", async () => {
  const dir = await Deno.makeTempDir();
  const text =
    `[device]\nname = "pi-quick"\nstate_dir = ".outpost-state"\n[ftp]\nhost = "127.0.0.1"\nport = ${freePort()}\n`;
  const daemon = await OutpostDaemon.start(parseConfig(text, `${dir}/embedded.toml`));
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "status"],
      cwd: dir,
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(stdout, /^outpost pi-quick /);
  } finally {
    await daemon.stop(0);
    await Deno.remove(dir, { recursive: true });
  }
});
