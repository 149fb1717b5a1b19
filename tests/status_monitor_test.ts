// AlertMonitor.status(): the sensor readings and rule states `outpost status` shows (issue 13, item 1).
import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { Section } from "../src/config/section.ts";
import { readAlertsConfig } from "../src/alerts/alerts_config.ts";
import { AlertMonitor } from "../src/alerts/monitor.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});

Deno.test("monitor status: ok, pending n of m, alert since with next reminder, cooldown until, held", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const value = `${dir}/v`;
    const problems: string[] = [];
    const cfg = readAlertsConfig(
      new Section(
        parseToml(`
[alerts]
to = ["o@example.com"]
[sensors.freezer]
type = "file"
path = "${value}"
unit = "°C"
[[rules]]
sensor = "freezer"
above = -10
for = 2
of = 3
remind_every = "1h"
remind_backoff = false
cooldown = "30m"
`),
        "",
        problems,
      ),
    );
    assert.deepEqual(problems, []);
    let clock = Date.UTC(2026, 0, 1);
    const m = await AlertMonitor.open({
      config: cfg,
      mailer: { enqueue: () => Promise.resolve("x"), deliveryFailing: () => false },
      stateFile: `${dir}/alerts.json`,
      host: "pi",
      board: "rpi4",
      now: () => clock,
    });
    const poll = async (v: string | null) => {
      clock += 60_000;
      if (v === null) await Deno.remove(value).catch(() => {});
      else await Deno.writeTextFile(value, v);
      await m.pollSensor("freezer");
    };
    const rule = () => m.status(clock).rules[0];
    assert.equal(rule().state, "ok");
    assert.equal(m.status(clock).sensors[0].at, null);
    await poll("-18");
    assert.equal(rule().state, "ok");
    assert.equal(m.status(clock).sensors[0].value, -18);
    await poll("-5");
    assert.deepEqual([rule().state, rule().breaches, rule().forSamples, rule().ofSamples], [
      "pending",
      1,
      2,
      3,
    ]);
    await poll("-4");
    const t1 = clock;
    assert.equal(rule().state, "alert");
    assert.equal(rule().since, t1);
    assert.equal(rule().nextReminderAt, t1 + 3_600_000);
    assert.equal(rule().cooldownUntil, t1 + 30 * 60_000);
    for (const v of ["-20", "-20", "-20"]) await poll(v);
    assert.equal(rule().state, "ok");
    assert.equal(rule().cooldownUntil, t1 + 30 * 60_000);
    await poll("1");
    await poll("2");
    assert.equal(rule().state, "held");
    await poll(null);
    const s = m.status(clock).sensors[0];
    assert.equal(s.value, 2);
    assert.match(s.error ?? "", /freezer|no such|not/i);
    assert.equal(s.at, clock);
    assert.equal(s.failures, 1);
    await m.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
