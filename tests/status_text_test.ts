// `outpost status` text and the page for states a live test rarely reaches: the last good config in use, a held
// rule, a failing sensor, failing mail (issue 13, items 1 and 2).
import assert from "node:assert/strict";
import type { StatusSnapshot } from "../src/status/status_snapshot.ts";
import { formatStatusText } from "../src/status/status_text.ts";
import { renderStatusPage } from "../src/status/status_page.ts";
import { formatMetrics } from "../src/status/prometheus_metrics.ts";

const now = Date.UTC(2026, 5, 1, 12, 0, 0);
const min = 60_000;

function snapshot(): StatusSnapshot {
  return {
    v: 1,
    now,
    daemon: {
      name: "pi",
      board: "rpi4",
      pid: 42,
      version: "0.1.0",
      startedAt: now - 90 * min,
      uptimeMs: 90 * min,
    },
    config: {
      file: "/boot/firmware/outpost.toml",
      using: "last-good",
      edited: true,
      problems: ['ftp.prot: unknown key (did you mean "port"?)'],
    },
    ftp: null,
    monitor: true,
    samples: 10,
    sensors: [
      {
        name: "probe",
        type: "w1",
        unit: "°C",
        decimals: 1,
        intervalMs: 30_000,
        optional: false,
        value: -18.25,
        at: now - 30_000,
        error: "DS18B20 28-01: CRC check failed.",
        failures: 4,
        failing: true,
        failingSince: now - 2 * min,
      },
    ],
    rules: [
      {
        id: "probe_above",
        sensor: "probe",
        direction: "above",
        threshold: -10,
        clearAt: -12,
        severity: "critical",
        state: "held",
        breaches: 3,
        forSamples: 3,
        ofSamples: 3,
        since: now - min,
        cooldownUntil: now + 9 * min,
        nextReminderAt: null,
        reminders: 0,
        lastAlertAt: now - min,
      },
    ],
    outbox: {
      smtp: "smtp.example.com:587",
      queued: 2,
      failed: 1,
      oldestQueuedAt: now - 65 * min,
      lastError: "SMTP connect to smtp.example.com:587 failed: connection refused",
      failingSince: now - 60 * min,
      results: { delivered: 3, failed: 1, deferred: 7 },
    },
    http: null,
  };
}

Deno.test("status text: last good config with the file's problems, a held rule, a failing sensor, failing mail", () => {
  const t = formatStatusText(snapshot());
  assert.match(
    t,
    /Config: the LAST GOOD COPY runs, because \/boot\/firmware\/outpost\.toml had problems at start/,
  );
  assert.match(t, /has 1 problem\(s\) now \(fix them, then reload\):\n {4}ftp\.prot: unknown key/);
  assert.match(t, /FTP: off/);
  assert.match(
    t,
    /probe\s+-18\.3 °C\s+30s ago\s+read failed 4x: DS18B20 28-01: CRC check failed\. \(SENSOR ERROR since /,
  );
  assert.match(
    t,
    /probe_above\s+probe > -10 °C\s+HELD: tripped inside the cooldown, mailed at .* if it still stands/,
  );
  assert.match(t, /outbox 2 queued \(oldest 1h 5m\), 1 failed/);
  assert.match(t, /delivery failing since .*\n {2}last error: SMTP connect to smtp\.example\.com:587 failed/);
  assert.match(t, /since start: 3 delivered, 7 retried, 1 gave up/);
  assert.doesNotMatch(t, /undefined|NaN|null|\[object/);
});

Deno.test("status page and metrics: the same states, escaped, with attention first", () => {
  const html = renderStatusPage(snapshot(), () => [], 86_400_000);
  const attention = /<section id="attention"[^]*?<\/section>/.exec(html)?.[0] ?? "";
  assert.match(attention, /SENSOR ERROR probe: DS18B20 28-01: CRC check failed\./);
  assert.match(attention, /Mail delivery failing: SMTP connect/);
  assert.match(attention, /The config file has problems/);
  assert.match(html, /<td class="state-held">HELD/);
  assert.match(html, /no readings yet/);
  assert.doesNotMatch(html, /undefined|NaN|\[object/);
  const m = formatMetrics(snapshot());
  assert.match(m, /^outpost_config_last_good_in_use 1$/m);
  assert.match(m, /^outpost_sensor_failing\{sensor="probe"\} 1$/m);
  assert.match(
    m,
    /^outpost_rule_state\{rule="probe_above",sensor="probe",severity="critical",state="held"\} 1$/m,
  );
  assert.match(m, /^outpost_outbox_oldest_queued_age_seconds 3900$/m);
  assert.match(m, /^outpost_mail_delivery_failing 1$/m);
  assert.doesNotMatch(m, /outpost_ftp_/);
});
