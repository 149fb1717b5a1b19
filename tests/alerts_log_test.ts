// The monitor's log (issue 13, item 3): a rule held by its cooldown leaves a line; a sensor that keeps failing is
// logged once, then at a slow growing interval, then once when it reads again.
import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { readAlertsConfig } from "../src/alerts/alerts_config.ts";
import { type AlertMailer, AlertMonitor } from "../src/alerts/monitor.ts";
import { FailureLogBackoff } from "../src/alerts/failure_log_backoff.ts";
import { setLogSink } from "../src/log/logger.ts";

const mailer: AlertMailer = {
  enqueue: () => Promise.resolve("m1"),
  deliveryFailing: () => false,
};

async function setup(rule: string) {
  const dir = await Deno.makeTempDir();
  const value = `${dir}/freezer`;
  await Deno.writeTextFile(value, "-18\n");
  const problems: string[] = [];
  const cfg = readAlertsConfig(
    new Section(
      parseToml(`
[alerts]
to = ["owner@example.com"]
remind_every = "0s"
[sensors.freezer]
type = "file"
path = "${value}"
unit = "°C"
fail_after = 2
[[rules]]
sensor = "freezer"
above = -10
${rule}
`),
      "",
      problems,
    ),
  );
  assert.deepEqual(problems, []);
  let clock = Date.UTC(2026, 0, 1);
  const m = await AlertMonitor.open({
    config: cfg,
    mailer,
    stateFile: `${dir}/alerts.json`,
    host: "pi",
    board: "rpi4",
    now: () => clock,
  });
  const poll = async (v: string | null, stepMs = 60_000) => {
    clock += stepMs;
    if (v === null) await Deno.remove(value).catch(() => {});
    else await Deno.writeTextFile(value, v);
    await m.pollSensor("freezer");
  };
  return { m, poll, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

function capture(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  return { lines, restore: () => setLogSink(prev) };
}

Deno.test("monitor log: an alert held by the cooldown is logged with when the cooldown ends", async () => {
  const t = await setup(`cooldown = "10m"`);
  const cap = capture();
  try {
    for (const v of ["-18", "3", "-15", "4"]) await t.poll(v);
    await t.m.stop();
  } finally {
    cap.restore();
    await t.cleanup();
  }
  const held = cap.lines.filter((l) => l.includes("rule.suppressed"));
  assert.equal(held.length, 1, cap.lines.join("\n"));
  assert.match(held[0], /^alerts rule.suppressed rule=freezer_above sensor=freezer value=4 /);
  // The first alert went out at 00:02; the cooldown of 10 min ends at 00:12.
  assert.match(held[0], /cooldown_until=2026-01-01T00:12:00Z/);
});

Deno.test("monitor log: a failing sensor is logged once, then at growing intervals, then once on recovery", async () => {
  const t = await setup("");
  const cap = capture();
  try {
    // Six hours of failures, one read a minute: 360 failed reads.
    for (let i = 0; i < 360; i++) await t.poll(null);
    await t.poll("-18");
    await t.poll("-18");
    await t.m.stop();
  } finally {
    cap.restore();
    await t.cleanup();
  }
  const sensor = cap.lines.filter((l) => / sensor\.(read_failed|still_failing|read_ok) /.test(l));
  assert.match(sensor[0], /^warn: alerts sensor.read_failed sensor=freezer error=/);
  const still = sensor.filter((l) => l.includes("still_failing"));
  // 10, 20, 40, 80, 160 minutes after the first: 5 reminders in 6 hours, not 359 lines.
  assert.equal(still.length, 5, sensor.join("\n"));
  assert.match(still[0], /failures=11 /);
  assert.match(sensor.at(-1)!, /^alerts sensor.read_ok sensor=freezer failures=360 failing_for=6h/);
  assert.equal(sensor.length, 7);
});

Deno.test("FailureLogBackoff: once, then doubling from 10 min to at most 6 h, reset on recovery", () => {
  const b = new FailureLogBackoff();
  const min = 60_000;
  assert.equal(b.failed(0).log, "first");
  assert.equal(b.failed(9 * min).log, null);
  assert.equal(b.failed(10 * min).log, "again");
  assert.equal(b.failed(29 * min).log, null);
  assert.equal(b.failed(30 * min).log, "again");
  const r = b.recovered(31 * min);
  assert.deepEqual(r, { failures: 5, since: 0 });
  assert.equal(b.recovered(32 * min), null);
  assert.equal(b.failed(40 * min).log, "first");
  let t = 40 * min;
  let lastGap = 0;
  let prev = t;
  for (let i = 0; i < 2000; i++) {
    t += min;
    if (b.failed(t).log === "again") {
      lastGap = t - prev;
      prev = t;
    }
  }
  assert.equal(lastGap, 6 * 60 * min);
});
