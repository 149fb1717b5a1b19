import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { readAlertsConfig } from "../src/alerts/alerts_config.ts";
import {
  boardsDir,
  listBoardProfiles,
  loadBoardProfile,
  parseBoardProfile,
  renderBoardConfig,
} from "../src/alerts/board_profiles.ts";
import {
  cleanSubject,
  DEFAULT_TEMPLATES,
  formatDuration,
  formatNumber,
  renderEventMail,
  renderTemplate,
  unknownVariables,
} from "../src/alerts/templates.ts";
import type { AlertEvent } from "../src/alerts/rule_engine.ts";
import { parseConfig } from "../src/app/outpost_config.ts";

function read(toml: string) {
  const problems: string[] = [];
  const root = new Section(parseToml(toml), "", problems, "/etc/outpost");
  const cfg = readAlertsConfig(root);
  root.finish();
  return { cfg, problems };
}

Deno.test("config: a full example resolves with defaults", () => {
  const { cfg, problems } = read(`
[alerts]
to = "me@example.com"
interval = "30s"
[sensors.cpu]
type = "thermal"
[sensors.freezer]
type = "w1"
id = "28-0316a2795aff"
interval = "10s"
[sensors.level]
type = "file"
path = "level.txt"
scale = 0.1
offset = -2
[sensors.passwd]
type = "file_changed"
path = "/etc/passwd"
[sensors.ping]
type = "command"
command = "ping -c1 -W1 192.168.1.1 >/dev/null && echo 1 || echo 0"
timeout = "3s"
[[rules]]
sensor = "cpu"
above = 80
clear_at = 75
for = 3
[[rules]]
sensor = "freezer"
above = -10
clear_at = -12
for = 2
of = 3
remind_every = "1h"
remind_backoff = false
cooldown = "30m"
severity = "critical"
to = ["a@example.com", "b@example.com"]
[[rules]]
sensor = "passwd"
above = 0
[[rules]]
sensor = "ping"
below = 1
`);
  assert.deepEqual(problems, []);
  assert.deepEqual(cfg.to, ["me@example.com"]);
  const [cpu, freezer, level, passwd, ping] = cfg.sensors;
  assert.equal(cpu.zone, "0");
  assert.equal(cpu.unit, "°C");
  assert.equal(cpu.intervalMs, 30_000);
  assert.equal(freezer.intervalMs, 10_000);
  assert.equal(level.path, "/etc/outpost/level.txt", "relative paths resolve against the config folder");
  assert.equal(level.scale, 0.1);
  assert.equal(passwd.type, "file_changed");
  assert.deepEqual(ping.command, [
    "/bin/sh",
    "-c",
    "ping -c1 -W1 192.168.1.1 >/dev/null && echo 1 || echo 0",
  ]);
  assert.equal(ping.timeoutMs, 3000);
  const [r0, r1, r2, r3] = cfg.rules;
  assert.equal(r0.id, "cpu_above");
  assert.deepEqual([r0.threshold, r0.clearAt, r0.forSamples, r0.ofSamples], [80, 75, 3, 3]);
  assert.equal(r0.remindEveryMs, 6 * 3_600_000);
  assert.equal(r0.remindBackoff, true);
  assert.equal(r0.cooldownMs, 600_000);
  assert.equal(r0.severity, "warning");
  assert.deepEqual(r0.to, ["me@example.com"]);
  assert.deepEqual([r1.forSamples, r1.ofSamples, r1.remindEveryMs, r1.cooldownMs], [
    2,
    3,
    3_600_000,
    1_800_000,
  ]);
  assert.deepEqual(r1.to, ["a@example.com", "b@example.com"]);
  assert.equal(r2.recovery, false, "file_changed rules are one-shot by default");
  assert.equal(r3.direction, "below");
  assert.equal(r3.clearAt, 1);
});

Deno.test("config: every mistake is reported against its key", () => {
  const { problems } = read(`
[alerts]
to = ["not-an-address"]
interval = "soon"
colour = "red"
[alerts.templates]
alert_subject = "{sensor} {temprature}"
[sensors.a]
type = "thermometer"
[sensors.b]
type = "file"
[sensors.c]
type = "hwmon"
chip = "x"
[sensors.d]
type = "disk"
measure = "free_gb"
[[rules]]
sensor = "nope"
above = 1
below = 2
[[rules]]
sensor = "b"
above = 10
clear_at = 12
for = 3
of = 2
[[rules]]
sensor = "b"
below = 10
clear_at = 5
severity = "urgent"
`);
  const expect = [
    'alerts.to: "not-an-address" is not an e-mail address',
    'alerts.interval: must be a duration such as "30s", "5m" or "2h", got "soon"',
    "alerts.colour: unknown key",
    "alerts.templates.alert_subject: uses unknown template variable(s) {temprature}",
    'sensors.a.type: must be one of "thermal", "hwmon", "iio", "w1", "file", "command", "disk", "load", "memory", ' +
    '"file_changed", "rpi_throttled", got "thermometer"',
    "sensors.b.path: is required for a file sensor",
    "sensors.c.chip: is required (with input), or set path",
    'sensors.d.measure: must be "free_percent" or "free_mb"',
    'rules[0].sensor: no sensor named "nope" ([sensors.nope] missing; defined: a, b, c, d)',
    "rules[0].above: set exactly one of above or below",
    "rules[1].clear_at: must be at or below the above threshold (10) for hysteresis",
    "rules[1].of: must be at least for (3), got 2",
    "rules[2].clear_at: must be at or above the below threshold (10) for hysteresis",
    'rules[2].severity: must be one of "info", "warning", "critical", got "urgent"',
  ];
  for (const e of expect) {
    assert.ok(problems.includes(e), `missing problem: ${e}\ngot:\n${problems.join("\n")}`);
  }
});

Deno.test("config: rules need recipients when alerts are enabled", () => {
  const noTo = `[sensors.x]\ntype = "load"\n[[rules]]\nsensor = "x"\nabove = 4\n`;
  assert.deepEqual(read(noTo).problems, ["rules[0].to: no recipients: set to here or in [alerts]"]);
  assert.deepEqual(read(`[alerts]\nenabled = false\n${noTo}`).problems, []);
});

Deno.test("templates: variables, escapes, unknown names, subject cleaning", () => {
  assert.equal(renderTemplate("{{x}} {sensor} {nope}", { sensor: "s" }), "{x} s {nope}");
  assert.deepEqual(unknownVariables("{sensor} {{literal}} {bogus}"), ["bogus"]);
  assert.equal(
    cleanSubject("SENSOR ERROR a:\r\nBcc: evil@example.com"),
    "SENSOR ERROR a: Bcc: evil@example.com",
  );
  assert.equal(formatNumber(-0.001, 1), "0");
  assert.equal(formatNumber(23.125, 2), "23.13");
  assert.equal(formatNumber(-10, 2), "-10");
  assert.equal(formatNumber(null), "?");
  assert.equal(formatDuration(45_000), "45s");
  assert.equal(formatDuration(3_900_000), "1h 5m");
  assert.equal(formatDuration(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
  const ev: AlertEvent = {
    kind: "alert",
    rule: "freezer_above",
    sensor: "freezer",
    at: Date.UTC(2026, 0, 1, 12, 5),
    value: 3.2,
    direction: "above",
    threshold: -10,
    since: Date.UTC(2026, 0, 1, 12, 0),
    count: 1,
    severity: "critical",
    error: null,
  };
  const ctx = { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 };
  assert.equal(
    renderEventMail(ev, DEFAULT_TEMPLATES, ctx).subject,
    "[outpost pi-freezer] ALERT freezer is 3.2 °C, above the -10 °C limit (critical)",
  );
  assert.equal(
    renderEventMail({ ...ev, kind: "reminder" }, DEFAULT_TEMPLATES, ctx).subject,
    "[outpost pi-freezer] REMINDER freezer is 3.2 °C, above the -10 °C limit for 5m (critical)",
  );
  assert.equal(
    renderEventMail({ ...ev, kind: "recovery", value: -12.5 }, DEFAULT_TEMPLATES, ctx).subject,
    "[outpost pi-freezer] RECOVERED freezer is -12.5 °C again, after 5m",
  );
  const err = renderEventMail(
    { ...ev, kind: "sensor_error", rule: null, value: null, error: "DS18B20 failed\nits CRC check." },
    DEFAULT_TEMPLATES,
    ctx,
  );
  assert.equal(err.subject, "[outpost pi-freezer] SENSOR ERROR freezer: DS18B20 failed its CRC check.");
  assert.match(err.text, /Board: pi-freezer \(rpi4\)\./);
  assert.doesNotMatch(err.text, /Rule: |rule -|rule null/, "a sensor error names no rule");
  // Natural wording, the severity, and times in the board's zone.
  const alert = renderEventMail(ev, DEFAULT_TEMPLATES, ctx).text;
  assert.match(
    alert,
    /^freezer is 3\.2 °C, above the -10 °C limit, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\./,
  );
  assert.match(alert, /rule freezer_above, severity critical\./);
  const below = renderEventMail({ ...ev, direction: "below", threshold: 10, value: 7 }, DEFAULT_TEMPLATES, {
    ...ctx,
    unit: "%",
  });
  assert.equal(below.subject, "[outpost pi-freezer] ALERT freezer is 7 %, below the 10 % limit (critical)");
});

Deno.test("board profiles: all load, carry memory flags, and their outpost.toml templates are current", async () => {
  const ids = await listBoardProfiles();
  assert.deepEqual(ids, ["generic-arm64", "rpi-zero2w", "rpi3", "rpi4", "rpi5"]);
  for (const id of ids) {
    const p = await loadBoardProfile(id);
    assert.equal(p.id, id);
    assert.ok(p.v8MaxOldSpaceMb * 2 <= p.ramMb);
    const names = p.alerts.rules.map((r) => r.id);
    assert.ok(names.includes("soc_hot") && names.includes("disk_low"), `${id}: ${names}`);
    const soc = p.alerts.rules.find((r) => r.id === "soc_hot")!;
    assert.deepEqual([soc.direction, soc.threshold], ["above", 80]);
    const disk = p.alerts.rules.find((r) => r.id === "disk_low")!;
    assert.deepEqual([disk.direction, disk.threshold], ["below", 10]);
    if (id.startsWith("rpi")) assert.ok(names.includes("undervoltage"), id);
    const rendered = renderBoardConfig(p);
    const committed = await Deno.readTextFile(`${boardsDir()}${id}.outpost.toml`);
    assert.equal(
      committed.trimEnd(),
      rendered.trimEnd(),
      `boards/${id}.outpost.toml is stale: regenerate it with ` +
        `"outpost sensors --board-config ${id} > boards/${id}.outpost.toml"`,
    );
    const cfg = parseConfig(rendered, `/boot/firmware/outpost.toml`);
    assert.equal(cfg.device.board, id);
    assert.equal(cfg.alerts.enabled, false, "alerts stay off until the user sets recipients");
  }
  assert.equal((await loadBoardProfile("rpi-zero2w")).v8MaxOldSpaceMb, 64);
  const pi5 = await loadBoardProfile("rpi5");
  assert.equal(pi5.pageSize, 16384);
  assert.deepEqual(pi5.configTxt, ["kernel=kernel8.img"]);
  await assert.rejects(() => loadBoardProfile("rpi9"), /no profile "rpi9"/);
  await assert.rejects(() => loadBoardProfile("../etc"), /not a profile id/);
  assert.throws(
    () =>
      parseBoardProfile('[board]\nid = "x"\nname = "X"\nram_mb = 512\nv8_max_old_space_mb = 400\n', "x.toml"),
    /must leave at least half of ram_mb/,
  );
});
