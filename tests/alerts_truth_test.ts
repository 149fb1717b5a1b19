/**
 * Mail about the device tells the truth when read last (issue 11, item 6):
 *
 * - after an outage, the newest mail describes the current state: a newer mail about a rule replaces the stale
 *   alert or recovery still waiting in the queue, and says so (real Outbox; before, the phone could show a
 *   stale RECOVERED last while the sensor was over the limit again);
 * - the worker never lets a newer mail overtake an older one (an old deferred alert no longer arrives after the
 *   digest);
 * - a digest that failed halfway is not queued again for the recipients it reached;
 * - a relay that drops the connection after the final dot gets the message at most 3 times, each retry logged,
 *   then it moves to failed/ saying why (before: 11 copies in 20 s);
 * - the fallback-config notice names every problem and is sent once per refused file.
 */

import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { type AlertsConfig, readAlertsConfig } from "../src/alerts/alerts_config.ts";
import { type AlertMailer, AlertMonitor } from "../src/alerts/monitor.ts";
import { outboxAlertMailer, queueFallbackConfigNotice } from "../src/alerts/outbox_mailer.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker, MAX_IN_DOUBT } from "../src/smtp/delivery_worker.ts";
import type { SmtpClientOptions } from "../src/smtp/smtp_client.ts";
import { setLogSink } from "../src/log/logger.ts";
import { startScriptServer } from "./helpers/smtp_script_server.ts";

const logLines: string[] = [];
setLogSink((l) => logLines.push(l));

function config(toml: string): AlertsConfig {
  const problems: string[] = [];
  const cfg = readAlertsConfig(new Section(parseToml(toml), "", problems));
  assert.deepEqual(problems, []);
  return cfg;
}

function outboxOptions(dir: string) {
  return {
    dir: `${dir}/outbox`,
    maxAgeMs: 86_400_000,
    maxBytes: 1 << 24,
    maxMessageBytes: 1 << 20,
    retryMinMs: 50,
    retryMaxMs: 50,
    defaults: { from: "", domain: "pi-freezer" },
  };
}

function smtp(port: number): SmtpClientOptions {
  return {
    host: "127.0.0.1",
    port,
    security: "none",
    allowInsecure: false,
    heloName: "pi-freezer",
    from: "board@example.com",
    authMethod: "auto",
    connectTimeoutMs: 5000,
    replyTimeoutMs: 5000,
    dataTimeoutMs: 5000,
    passwordCommandTimeoutMs: 1000,
  };
}

async function setup(opts: { digest: boolean; extraRule?: string }) {
  const dir = await Deno.makeTempDir();
  const value = `${dir}/freezer`;
  await Deno.writeTextFile(value, "-18\n");
  const cfg = config(`
[alerts]
to = ["owner@example.com"]
remind_every = "0s"
cooldown = "0s"
digest = ${opts.digest}
[sensors.freezer]
type = "file"
path = "${value}"
unit = "°C"
decimals = 1
[[rules]]
sensor = "freezer"
above = -10
clear_at = -12
severity = "critical"
${opts.extraRule ?? ""}
`);
  let clock = Date.UTC(2026, 0, 1);
  const outbox = await Outbox.open(outboxOptions(dir));
  let failing = false;
  const mailer: AlertMailer = {
    ...outboxAlertMailer(() => outbox, () => null),
    deliveryFailing: () => failing,
  };
  const monitor = await AlertMonitor.open({
    config: cfg,
    mailer,
    stateFile: `${dir}/alerts.json`,
    host: "pi-freezer",
    board: "rpi4",
    now: () => clock,
  });
  const poll = async (v: string) => {
    clock += 60_000;
    await Deno.writeTextFile(value, v);
    await monitor.pollSensor("freezer");
  };
  const queued = async () => (await outbox.list("queued")).map((e) => e.meta.subject ?? "");
  return {
    dir,
    outbox,
    monitor,
    poll,
    queued,
    setFailing: (f: boolean) => (failing = f),
    cleanup: async () => {
      await monitor.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("truth: a newer mail about a rule replaces the stale one still queued, and says so", async () => {
  const t = await setup({ digest: false });
  try {
    await t.poll("5");
    assert.deepEqual(await t.queued(), [
      "[outpost pi-freezer] ALERT freezer is 5 °C, above the -10 °C limit (critical)",
    ]);
    await t.poll("-13");
    assert.deepEqual(await t.queued(), ["[outpost pi-freezer] RECOVERED freezer is -13 °C again, after 1m"]);
    await t.poll("6");
    const [last] = await t.outbox.list("queued");
    assert.equal(
      last.meta.subject,
      "[outpost pi-freezer] ALERT freezer is 6 °C, above the -10 °C limit (critical)",
    );
    assert.equal(
      (await t.outbox.list("queued")).length,
      1,
      "only the mail describing the current state is left",
    );
    const text = new TextDecoder().decode(await Deno.readFile(last.path));
    assert.match(text, /^Auto-Submitted: auto-generated\r?$/m, "RFC 3834: machine-written mail");
    assert.match(text, /replaces 1 earlier mail\(s\)/);
    assert.match(
      text,
      /RECOVERED freezer is -13 =C2=B0C again, after 1m|RECOVERED freezer is -13 °C again, after 1m/,
    );
  } finally {
    await t.cleanup();
  }
});

Deno.test("truth: after an outage the digest replaces the stale first alert; the newest mail is the current state", async () => {
  const t = await setup({ digest: true });
  try {
    t.setFailing(true);
    await t.poll("5"); // first event of the outage: queued at once
    await t.poll("-13"); // recovery: into the digest
    await t.poll("6"); // alert again: into the digest
    assert.deepEqual(await t.queued(), [
      "[outpost pi-freezer] ALERT freezer is 5 °C, above the -10 °C limit (critical)",
    ]);
    t.setFailing(false);
    await t.poll("7");
    const q = await t.outbox.list("queued");
    assert.deepEqual(q.map((e) => e.meta.subject), [
      "[outpost pi-freezer] DIGEST 2 alert event(s) while mail was down",
    ]);
    const text = new TextDecoder().decode(await Deno.readFile(q[0].path));
    assert.match(text, /Current state:/);
    assert.match(text, /freezer_above: ALERT since/);
    assert.match(text, /replaces 1 earlier mail/);
  } finally {
    await t.cleanup();
  }
});

Deno.test("truth: the worker never lets a newer mail overtake an older deferred one", async () => {
  const dir = await Deno.makeTempDir();
  const srv = startScriptServer();
  try {
    const outbox = await Outbox.open({ ...outboxOptions(dir), retryMinMs: 3_600_000, retryMaxMs: 3_600_000 });
    const old = await outbox.enqueue({ to: ["a@example.com"], subject: "old alert", text: "x" });
    await outbox.defer(old, new Date(Date.now() + 3_600_000)); // backoff from the outage
    await outbox.enqueue({ to: ["a@example.com"], subject: "new digest", text: "y" });
    await new DeliveryWorker(outbox, smtp(srv.port)).runOnce();
    assert.deepEqual(srv.messages.map((m) => /Subject: (.*)/.exec(m)?.[1]), ["old alert", "new digest"]);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("truth: a digest that failed halfway is not queued again for the recipients it reached", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const value = `${dir}/freezer`;
    await Deno.writeTextFile(value, "-18\n");
    const cfg = config(`
[alerts]
remind_every = "0s"
cooldown = "0s"
[sensors.freezer]
type = "file"
path = "${value}"
[[rules]]
sensor = "freezer"
above = -10
to = ["owner@example.com"]
[[rules]]
name = "freezer_warm"
sensor = "freezer"
above = -15
to = ["other@example.com"]
`);
    const sent: { to: string[]; subject: string }[] = [];
    let failing = true;
    let refuseOther = 1;
    const mailer: AlertMailer = {
      enqueue: (msg) => {
        if (msg.subject.includes("DIGEST") && msg.to[0] === "other@example.com" && refuseOther-- > 0) {
          return Promise.reject(new Error("Outbox full."));
        }
        sent.push(msg);
        return Promise.resolve(`m${sent.length}`);
      },
      deliveryFailing: () => failing,
    };
    let clock = Date.UTC(2026, 0, 1);
    const m = await AlertMonitor.open({
      config: cfg,
      mailer,
      stateFile: `${dir}/alerts.json`,
      host: "pi",
      board: "rpi4",
      now: () => clock,
    });
    for (const v of ["5", "-20", "6", "-20", "7"]) {
      clock += 60_000;
      await Deno.writeTextFile(value, v);
      await m.pollSensor("freezer");
    }
    failing = false;
    await m.flush(); // owner's digest queued, other's refused
    await m.flush(); // other's digest now; the owner's is not repeated
    await m.flush();
    const digests = sent.filter((s) => s.subject.includes("DIGEST"));
    assert.deepEqual(digests.map((d) => d.to[0]).sort(), ["other@example.com", "owner@example.com"]);
    assert.equal(m.snapshot().digest.events.length, 0);
    await m.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("truth: a relay that drops the connection after the final dot gets at most 3 copies, logged", async () => {
  const dir = await Deno.makeTempDir();
  let copies = 0;
  // The message is complete at the server (it may keep it), then the connection drops before the reply.
  const srv = startScriptServer({ afterData: () => (copies++, Promise.resolve(null)) });
  try {
    const outbox = await Outbox.open(outboxOptions(dir));
    await outbox.enqueue({ to: ["a@example.com"], subject: "once please", text: "x" });
    const worker = new DeliveryWorker(outbox, smtp(srv.port));
    logLines.length = 0;
    for (let i = 0; i < 40 && (await outbox.list("failed")).length === 0; i++) {
      await worker.runOnce();
      await new Promise((r) => setTimeout(r, 60));
    }
    assert.equal(copies, MAX_IN_DOUBT, logLines.join("\n"));
    const [failed] = await outbox.list("failed");
    assert.match(failed.reason ?? "", /after the final "\." 3 times.*may have arrived up to 3 times/);
    assert.equal(logLines.filter((l) => l.includes("in_doubt.retry")).length, MAX_IN_DOUBT - 1);
    assert.equal(logLines.filter((l) => l.includes("in_doubt.gave_up")).length, 1);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("truth: the fallback-config notice names every problem and is queued once per refused file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const outbox = await Outbox.open(outboxOptions(dir));
    const input = {
      host: "pi-freezer",
      board: "rpi4",
      file: "/boot/firmware/outpost.toml",
      problems: ['[smtp] port: must be a whole number, got "twenty-five"', "[[rules]] 1: sensor is required"],
      runningFrom: "the last good copy /var/lib/outpost/last-good.toml",
      at: Date.UTC(2026, 0, 1),
    };
    const opts = {
      to: ["owner@example.com"],
      stateDir: dir,
      fileText: "[smtp]\nport = 'twenty-five'\n",
      input,
    };
    assert.ok(await queueFallbackConfigNotice(outbox, opts));
    assert.equal(await queueFallbackConfigNotice(outbox, opts), null, "the same file is reported once");
    const [e] = await outbox.list("queued");
    assert.match(e.meta.subject ?? "", /CONFIG REFUSED: 2 problem\(s\) in outpost\.toml/);
    assert.equal(e.meta.critical, true);
    const text = new TextDecoder().decode(await Deno.readFile(e.path));
    assert.match(text, /port: must be a whole number/);
    assert.match(text, /sensor is required/);
    // A new edit with other problems: a new notice replaces the queued one.
    assert.ok(
      await queueFallbackConfigNotice(outbox, {
        ...opts,
        fileText: "other",
        input: { ...input, problems: ["x"] },
      }),
    );
    assert.equal((await outbox.list("queued")).length, 1);
    assert.equal(await queueFallbackConfigNotice(outbox, { ...opts, to: [] }), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
