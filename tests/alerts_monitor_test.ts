// AlertMonitor with an in-memory mailer (unit level: the loopback SMTP run is alerts_e2e_test.ts).
import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { type AlertsConfig, readAlertsConfig } from "../src/alerts/alerts_config.ts";
import { type AlertMailer, AlertMonitor } from "../src/alerts/monitor.ts";
import { setLogSink } from "../src/log/logger.ts";
import { AlertStateStore, emptyAlertState } from "../src/alerts/alert_state.ts";
import { initialRuleState } from "../src/alerts/rule_engine.ts";

setLogSink(() => {});

interface Sent {
  to: string[];
  subject: string;
  text: string;
  critical: boolean;
  tag: string;
}

class MemoryMailer implements AlertMailer {
  sent: Sent[] = [];
  failing = false;
  refuse = false;
  enqueue(msg: { to: string[]; subject: string; text: string }, opts: { critical: boolean; tag: string }) {
    if (this.refuse) return Promise.reject(new Error("Outbox full."));
    this.sent.push({ ...msg, ...opts });
    return Promise.resolve(`m${this.sent.length}`);
  }
  deliveryFailing() {
    return this.failing;
  }
  subjects() {
    return this.sent.map((s) => s.subject);
  }
}

function config(toml: string): AlertsConfig {
  const problems: string[] = [];
  const cfg = readAlertsConfig(new Section(parseToml(toml), "", problems));
  assert.deepEqual(problems, []);
  return cfg;
}

async function setup(extraRule = "") {
  const dir = await Deno.makeTempDir();
  const value = `${dir}/freezer`;
  await Deno.writeTextFile(value, "-18\n");
  const cfg = config(`
[alerts]
to = ["owner@example.com"]
remind_every = "0s"
cooldown = "0s"
[sensors.freezer]
type = "file"
path = "${value}"
unit = "°C"
decimals = 1
fail_after = 2
[[rules]]
sensor = "freezer"
above = -10
clear_at = -12
severity = "critical"
${extraRule}
`);
  let clock = Date.UTC(2026, 0, 1);
  const mailer = new MemoryMailer();
  const open = () =>
    AlertMonitor.open({
      config: cfg,
      mailer,
      stateFile: `${dir}/alerts.json`,
      host: "pi-freezer",
      board: "rpi4",
      now: () => clock,
    });
  const poll = async (m: AlertMonitor, v: string | null) => {
    clock += 60_000;
    if (v === null) await Deno.remove(value).catch(() => {});
    else await Deno.writeTextFile(value, v);
    await m.pollSensor("freezer");
  };
  return { dir, mailer, open, poll, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("monitor: alert once, recovery once, default subjects, state written only on change", async () => {
  const t = await setup();
  try {
    const m = await t.open();
    for (const v of ["-18", "-15", "3.2", "4", "5", "-11", "-13", "-14"]) await t.poll(m, v);
    assert.deepEqual(t.mailer.subjects(), [
      "[outpost pi-freezer] ALERT freezer is 3.2 °C, above the -10 °C limit (critical)",
      "[outpost pi-freezer] RECOVERED freezer is -13 °C again, after 4m",
    ]);
    assert.deepEqual(t.mailer.sent[0].to, ["owner@example.com"]);
    assert.equal(t.mailer.sent[0].critical, true);
    assert.equal(t.mailer.sent[0].tag, "alert:freezer_above");
    assert.match(
      t.mailer.sent[0].text,
      /freezer is 3\.2 °C, above the -10 °C limit, since 2026-01-01 00:03:00 UTC\./,
    );
    // Each event: one write recording it as unsent, one after it is handed over. 8 samples, 2 events.
    assert.equal(m.store.writes, 4);
    await m.stop();
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: restart during a standing alert sends no duplicate, recovery still comes", async () => {
  const t = await setup();
  try {
    const a = await t.open();
    await t.poll(a, "1");
    await t.poll(a, "2");
    await a.stop();
    const b = await t.open();
    await t.poll(b, "3");
    await t.poll(b, "-13");
    await b.stop();
    assert.deepEqual(t.mailer.subjects().map((s) => s.split(" ")[2]), ["ALERT", "RECOVERED"]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: missing and garbage sensor files raise one sensor error, then sensor ok", async () => {
  const t = await setup();
  try {
    const m = await t.open();
    await t.poll(m, "-18");
    await t.poll(m, null);
    await t.poll(m, "garbage");
    await t.poll(m, "");
    await t.poll(m, "-17");
    assert.deepEqual(t.mailer.subjects().map((s) => s.replace(/: .*/, "")), [
      "[outpost pi-freezer] SENSOR ERROR freezer",
      "[outpost pi-freezer] SENSOR OK freezer is -17 °C",
    ]);
    assert.match(t.mailer.subjects()[0], /does not hold a number/);
    await m.stop();
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: while delivery fails, first event at once, the rest as one digest when it recovers", async () => {
  const t = await setup();
  try {
    const m = await t.open();
    t.mailer.failing = true;
    for (const v of ["5", "-13", "6", "-13", "7"]) await t.poll(m, v);
    assert.equal(t.mailer.sent.length, 1, "only the first alert went out while failing");
    assert.match(t.mailer.sent[0].subject, /ALERT freezer is 5 °C/);
    const digestState = m.snapshot().digest;
    assert.equal(digestState.events.length, 4);
    t.mailer.failing = false;
    await t.poll(m, "8");
    assert.equal(t.mailer.sent.length, 2);
    const d = t.mailer.sent[1];
    assert.match(d.subject, /^\[outpost pi-freezer\] DIGEST 4 alert event\(s\) while mail was down$/);
    assert.equal(d.tag, "alert-digest");
    assert.equal(d.critical, true);
    assert.match(d.text, /First seen: 2026-01-01T00:02:00Z/);
    assert.match(d.text, /Last seen: {2}2026-01-01T00:05:00Z/);
    assert.match(d.text, /RECOVERED freezer -13 °C/);
    assert.match(
      d.text,
      /Current state:\n {2}freezer_above: ALERT since 2026-01-01T00:05:00Z \(freezer 8 °C\)/,
    );
    assert.deepEqual(m.snapshot().digest, { firstSent: false, events: [], dropped: 0 });
    await m.stop();
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: a refused enqueue is kept and retried, and survives a restart", async () => {
  const t = await setup();
  try {
    const a = await t.open();
    t.mailer.refuse = true;
    await t.poll(a, "5");
    assert.equal(t.mailer.sent.length, 0);
    assert.equal(a.snapshot().unsent.length, 1);
    await a.stop();
    t.mailer.refuse = false;
    const b = await t.open();
    await b.flush();
    assert.deepEqual(t.mailer.subjects(), [
      "[outpost pi-freezer] ALERT freezer is 5 °C, above the -10 °C limit (critical)",
    ]);
    assert.equal(b.snapshot().unsent.length, 0);
    await b.stop();
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: per-rule recipients, templates and reminders", async () => {
  const t = await setup(`
[[rules]]
name = "freezer_very_warm"
sensor = "freezer"
above = 0
to = ["tech@example.com"]
remind_every = "2m"
remind_backoff = false
subject = "{host}: {sensor} at {reading} ({severity}, {count})"
reminder_subject = "{host}: still {reading} after {duration}"
severity = "info"
`);
  try {
    const m = await t.open();
    for (const v of ["5", "5", "5", "5", "5"]) await t.poll(m, v);
    const tech = t.mailer.sent.filter((s) => s.to[0] === "tech@example.com").map((s) => s.subject);
    assert.deepEqual(tech, [
      "pi-freezer: freezer at 5 °C (info, 1)",
      "pi-freezer: still 5 °C after 2m",
      "pi-freezer: still 5 °C after 4m",
    ]);
    assert.equal(t.mailer.sent.filter((s) => s.to[0] === "owner@example.com").length, 1);
    await m.stop();
  } finally {
    await t.cleanup();
  }
});

Deno.test("monitor: start() polls on the interval and stop() ends cleanly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/v`, "50");
    const cfg = config(`
[alerts]
to = ["a@example.com"]
interval = "100ms"
[sensors.v]
type = "file"
path = "${dir}/v"
[sensors.broken]
type = "command"
command = ["/bin/sh", "-c", "echo nope"]
fail_after = 1
[[rules]]
sensor = "v"
above = 10
`);
    const mailer = new MemoryMailer();
    const m = await AlertMonitor.open({
      config: cfg,
      mailer,
      stateFile: `${dir}/s.json`,
      host: "h",
      board: "b",
    });
    m.start();
    for (let i = 0; i < 100 && mailer.sent.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    await m.stop();
    assert.ok(m.samples >= 2);
    assert.deepEqual(mailer.subjects().sort(), [
      "[outpost h] ALERT v is 50, above the 10 limit (warning)",
      '[outpost h] SENSOR ERROR broken: Output of /bin/sh does not hold a number: "nope".',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("monitor: an unwritable state file does not stop alert mail", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/v`, "50");
    await Deno.writeTextFile(`${dir}/not-a-dir`, "");
    const cfg = config(`
[alerts]
to = ["a@example.com"]
[sensors.v]
type = "file"
path = "${dir}/v"
[[rules]]
sensor = "v"
above = 10
`);
    const mailer = new MemoryMailer();
    const stateFile = `${dir}/not-a-dir/alerts.json`;
    const m = await AlertMonitor.open({ config: cfg, mailer, stateFile, host: "h", board: "b" });
    await m.pollSensor("v");
    await m.stop();
    assert.deepEqual(mailer.subjects(), ["[outpost h] ALERT v is 50, above the 10 limit (warning)"]);
    assert.equal(m.store.writes, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state store: atomic save leaves no temp file, skips identical writes, sets a corrupt file aside", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new AlertStateStore(`${dir}/alerts.json`);
    const s = await store.load();
    assert.deepEqual(s, emptyAlertState());
    s.rules.r = { ...initialRuleState(), alerting: true, announced: true, since: 1 };
    await store.save(s);
    await store.save(s);
    assert.equal(store.writes, 1, "identical state is not rewritten");
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["alerts.json"]);
    assert.deepEqual(await new AlertStateStore(`${dir}/alerts.json`).load(), s);
    await Deno.writeTextFile(`${dir}/alerts.json`, "{ half a file");
    assert.deepEqual(await new AlertStateStore(`${dir}/alerts.json`).load(), emptyAlertState());
    assert.equal(await Deno.readTextFile(`${dir}/alerts.json.corrupt`), "{ half a file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
