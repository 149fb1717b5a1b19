/**
 * `outpost serve` as a real process: FTP answers, an alert reaches a real SMTP server (aiosmtpd), SIGHUP with a bad
 * config keeps the old one, SIGTERM exits 0, a bad config at start runs the last good copy, and a SIGKILL is
 * reported by mail after the restart.
 */
import assert from "node:assert/strict";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { startSink } from "./helpers/smtp_sink.ts";
import { freePort } from "./helpers/test_util.ts";
import { hashPassword } from "../src/config/password.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const python = findPeer(SYSTEM_PYTHON);

/** A running `outpost serve` whose stdout is collected. */
class Daemon {
  readonly child: Deno.ChildProcess;
  output = "";
  readonly #done: Promise<void>;

  constructor(config: string) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "serve", "--config", config, "--grace", "2"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", OUTPOST_LOG: "on" },
    }).spawn();
    const collect = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of s) this.output += dec.decode(chunk, { stream: true });
    };
    this.#done = Promise.all([collect(this.child.stdout), collect(this.child.stderr)]).then(() => {});
  }

  async waitFor(text: string, timeoutMs = 30_000, times = 1): Promise<void> {
    for (let waited = 0; waited < timeoutMs; waited += 50) {
      if (this.output.split(text).length - 1 >= times) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`Daemon output never showed "${text}". Output:\n${this.output}`);
  }

  async exit(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#done;
    return status;
  }
}

async function ftpGreeting(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const buf = new Uint8Array(512);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

function configText(
  o: { state: string; root: string; port: number; smtpPort: number; sensor: string; hash: string },
) {
  return `
[device]
name = "pi-test"
mail_on_start = true
state_dir = "${o.state}"

[ftp]
host = "127.0.0.1"
port = ${o.port}
banner = "outpost test ready."

[[ftp.users]]
name = "alice"
password_hash = "${o.hash}"
root = "${o.root}"
permissions = ["all"]

[smtp]
host = "127.0.0.1"
port = ${o.smtpPort}
security = "none"
from = "pi@example.com"

[outbox]
retry_min = "1s"
retry_max = "2s"
poll_interval = "1h"           # the queue watcher, not the poll, must pick up sendmail mail

[alerts]
to = ["owner@example.com"]
interval = "1s"

[sensors.freezer]
type = "file"
path = "${o.sensor}"
unit = "°C"

[[rules]]
sensor = "freezer"
above = -10
clear_at = -12
`;
}

Deno.test({
  name: "serve: FTP, alert mail, SIGHUP with a bad config, SIGTERM, last-good fallback, crash notice",
  ignore: skipWithout(python),
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "outpost-serve-" });
    const sink = await startSink({ mode: "plain", dir });
    try {
      const root = `${dir}/ftp`;
      await Deno.mkdir(root);
      const sensor = `${dir}/freezer`;
      await Deno.writeTextFile(sensor, "-18\n");
      const port = freePort();
      const o = {
        state: `${dir}/state`,
        root,
        port,
        smtpPort: sink.port,
        sensor,
        hash: await hashPassword("pw", 1000),
      };
      const cfgPath = `${dir}/outpost.toml`;
      const good = configText(o);
      await Deno.writeTextFile(cfgPath, good);

      // 1. Start, serve FTP, send one alert.
      let d = new Daemon(cfgPath);
      await d.waitFor("FTP listening");
      assert.match(await ftpGreeting(port), /^220 outpost test ready\./);
      await Deno.writeTextFile(sensor, "3.5\n");
      const first = await sink.waitFor(2, 30_000);
      assert.ok(
        first.some((m) => m.subject === "[outpost pi-test] started"),
        first.map((m) => m.subject).join("\n"),
      );
      assert.ok(
        first.some((m) => /ALERT freezer is 3\.5/.test(m.subject ?? "")),
        first.map((m) => m.subject).join("\n"),
      );

      // 1b. Mail queued by `outpost sendmail` (as cron does) goes out at once, not at the next poll.
      const sendmail = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", MAIN, "sendmail", "-C", cfgPath, "-t", "-oi"],
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const w = sendmail.stdin.getWriter();
      await w.write(new TextEncoder().encode("To: cron@example.com\nSubject: cron output\n\nbackup done\n"));
      await w.close();
      const sm = await sendmail.output();
      assert.equal(sm.code, 0, new TextDecoder().decode(sm.stderr));
      const mails = await sink.waitFor(3, 30_000);
      assert.ok(mails.some((m) => m.subject === "cron output"), mails.map((m) => m.subject).join("\n"));

      // 2. SIGHUP with a broken config: refused, FTP still answers.
      await Deno.writeTextFile(cfgPath, good.replace("port = " + port, "port = 99999"));
      d.child.kill("SIGHUP");
      await d.waitFor("reload.refused");
      assert.match(await ftpGreeting(port), /^220 /);

      // 2b. SIGHUP with an alert change only: the FTP part is not restarted, an open session survives.
      const session = await Deno.connect({ hostname: "127.0.0.1", port });
      const sbuf = new Uint8Array(512);
      assert.match(new TextDecoder().decode(sbuf.subarray(0, (await session.read(sbuf)) ?? 0)), /^220 /);
      await Deno.writeTextFile(cfgPath, good.replace('interval = "1s"', 'interval = "2s"'));
      d.child.kill("SIGHUP");
      await d.waitFor("reload.done");
      assert.match(d.output, /reload\.begin .*restart=monitor/);
      await session.write(new TextEncoder().encode("NOOP\r\n"));
      assert.match(new TextDecoder().decode(sbuf.subarray(0, (await session.read(sbuf)) ?? 0)), /^200 /);
      session.close();

      // 2c. SIGHUP with a valid config whose FTP port is taken: the old FTP server comes back.
      const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const taken = (blocker.addr as Deno.NetAddr).port;
      await Deno.writeTextFile(cfgPath, good.replace(`port = ${port}`, `port = ${taken}`));
      d.child.kill("SIGHUP");
      await d.waitFor("reload.failed");
      await d.waitFor("reload.kept_old_config", 30_000, 2);
      blocker.close();
      assert.match(await ftpGreeting(port), /^220 /);
      await Deno.writeTextFile(cfgPath, good);

      // 3. SIGTERM: clean exit.
      d.child.kill("SIGTERM");
      assert.equal((await d.exit()).code, 0);
      assert.match(d.output, /daemon stopped/);

      // 4. Bad config at start: runs the last good copy.
      await Deno.writeTextFile(cfgPath, good.replace("port = " + port, "port = 99999"));
      d = new Daemon(cfgPath);
      await d.waitFor("config.fallback");
      await d.waitFor("FTP listening");
      assert.match(await ftpGreeting(port), /^220 /);
      // 4b. ...and mails the owner once, naming the problem in the edited file.
      let refused = await sink.messages();
      for (let i = 0; i < 600 && !refused.some((m) => /CONFIG REFUSED/.test(m.subject ?? "")); i++) {
        await new Promise((r) => setTimeout(r, 50));
        refused = await sink.messages();
      }
      const notice = refused.find((m) =>
        /CONFIG REFUSED: 1 problem\(s\) in outpost\.toml/.test(m.subject ?? "")
      );
      assert.ok(notice, refused.map((m) => m.subject).join("\n") + d.output);

      // 5. SIGKILL, fix the config, restart: one mail says it was not stopped cleanly.
      d.child.kill("SIGKILL");
      await d.exit();
      await Deno.writeTextFile(cfgPath, good);
      d = new Daemon(cfgPath);
      await d.waitFor("FTP listening");
      // A SIGKILL may land between the final dot and recording the 250 of the step-4 "started" mail, which is then
      // resent with the same Message-ID (the outbox's at-most-twice case), so wait for the notice itself.
      let all = await sink.messages();
      for (let i = 0; i < 600 && !all.some((m) => /unclean stop/.test(m.subject ?? "")); i++) {
        await new Promise((r) => setTimeout(r, 50));
        all = await sink.messages();
      }
      assert.ok(
        all.some((m) => /unclean stop/.test(m.subject ?? "")),
        all.map((m) => m.subject).join("\n") + d.output,
      );
      assert.equal(
        all.filter((m) => /ALERT freezer/.test(m.subject ?? "")).length,
        1,
        "the standing alert is not resent",
      );
      d.child.kill("SIGTERM");
      assert.equal((await d.exit()).code, 0);
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
