/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4): sensor values, rule states, FTP sessions and
 * bytes, outbox depth and delivery results, named the way node_exporter names things (`_total` counters,
 * `_seconds` times, one gauge per enum value for states).
 *
 * @module
 */

import type { StatusSnapshot } from "./status_snapshot.ts";

/** The Content-Type of {@link formatMetrics}' output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

class MetricsWriter {
  readonly lines: string[] = [];
  family(name: string, type: "gauge" | "counter", help: string): void {
    this.lines.push(
      `# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`,
      `# TYPE ${name} ${type}`,
    );
  }
  sample(name: string, labels: Record<string, string>, value: number): void {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${label(v)}"`).join(",");
    this.lines.push(`${name}${l ? `{${l}}` : ""} ${num(value)}`);
  }
}

/**
 * Renders a snapshot as Prometheus metrics text.
 *
 * @example
 * ```ts
 * const text = formatMetrics(await collectStatus(source));
 * // outpost_sensor_value{sensor="cpu",unit="°C"} 48.2 ...
 * ```
 */
export function formatMetrics(s: StatusSnapshot): string {
  const w = new MetricsWriter();
  const sec = (ms: number) => ms / 1000;
  w.family("outpost_build_info", "gauge", "Always 1; labels name the version, device and board.");
  w.sample(
    "outpost_build_info",
    { version: s.daemon.version, device: s.daemon.name, board: s.daemon.board },
    1,
  );
  w.family("outpost_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.");
  w.sample("outpost_start_time_seconds", {}, sec(s.daemon.startedAt));
  w.family(
    "outpost_config_last_good_in_use",
    "gauge",
    "1 when the last good config copy runs because the file is bad.",
  );
  w.sample("outpost_config_last_good_in_use", {}, s.config.using === "last-good" ? 1 : 0);
  w.family("outpost_config_problems", "gauge", "Problems of the config file as it is on disk now.");
  w.sample("outpost_config_problems", {}, s.config.problems.length);

  w.family("outpost_sensor_value", "gauge", "The sensor's last good reading, in its unit.");
  for (const x of s.sensors) {
    if (x.value !== null) {
      w.sample("outpost_sensor_value", { sensor: x.name, type: x.type, unit: x.unit }, x.value);
    }
  }
  w.family(
    "outpost_sensor_last_read_timestamp_seconds",
    "gauge",
    "When the sensor was last read (good or not).",
  );
  for (const x of s.sensors) {
    if (x.at !== null) w.sample("outpost_sensor_last_read_timestamp_seconds", { sensor: x.name }, sec(x.at));
  }
  w.family(
    "outpost_sensor_read_failures",
    "gauge",
    "Reads of the sensor that failed in a row (0 when it reads).",
  );
  for (const x of s.sensors) w.sample("outpost_sensor_read_failures", { sensor: x.name }, x.failures);
  w.family("outpost_sensor_failing", "gauge", "1 while a SENSOR ERROR stands for the sensor.");
  for (const x of s.sensors) w.sample("outpost_sensor_failing", { sensor: x.name }, x.failing ? 1 : 0);

  w.family(
    "outpost_rule_state",
    "gauge",
    "1 for the rule's current state (ok, pending, alert, held), else 0.",
  );
  for (const r of s.rules) {
    for (const st of ["ok", "pending", "alert", "held"] as const) {
      w.sample(
        "outpost_rule_state",
        { rule: r.id, sensor: r.sensor, severity: r.severity, state: st },
        r.state === st ? 1 : 0,
      );
    }
  }
  w.family("outpost_rule_threshold", "gauge", "The rule's threshold, in its sensor's unit.");
  for (const r of s.rules) {
    w.sample("outpost_rule_threshold", { rule: r.id, sensor: r.sensor, direction: r.direction }, r.threshold);
  }

  if (s.ftp) {
    const f = s.ftp;
    w.family("outpost_ftp_sessions", "gauge", "Open FTP control connections.");
    w.sample("outpost_ftp_sessions", {}, f.sessions.length);
    w.family("outpost_ftp_transfers_active", "gauge", "FTP transfers in progress.");
    w.sample("outpost_ftp_transfers_active", {}, f.sessions.filter((x) => x.transfer !== null).length);
    w.family("outpost_ftp_sessions_total", "counter", "FTP control connections accepted since start.");
    w.sample("outpost_ftp_sessions_total", {}, f.counters.sessions);
    w.family(
      "outpost_ftp_received_bytes_total",
      "counter",
      "Bytes uploaded over FTP (finished and aborted uploads).",
    );
    w.sample("outpost_ftp_received_bytes_total", {}, f.counters.bytesIn);
    w.family("outpost_ftp_sent_bytes_total", "counter", "Bytes downloaded over FTP.");
    w.sample("outpost_ftp_sent_bytes_total", {}, f.counters.bytesOut);
    w.family("outpost_ftp_transfers_total", "counter", "Finished FTP file transfers by result.");
    w.sample("outpost_ftp_transfers_total", { result: "ok" }, f.counters.transfersOk);
    w.sample("outpost_ftp_transfers_total", { result: "failed" }, f.counters.transfersFailed);
    w.family("outpost_ftp_login_failures_total", "counter", "Failed FTP logins since start.");
    w.sample("outpost_ftp_login_failures_total", {}, f.counters.loginFailures);
  }

  const o = s.outbox;
  w.family(
    "outpost_outbox_messages",
    "gauge",
    "Messages in the outbox: queued (waiting or retrying) and failed.",
  );
  w.sample("outpost_outbox_messages", { state: "queued" }, o.queued);
  w.sample("outpost_outbox_messages", { state: "failed" }, o.failed);
  w.family(
    "outpost_outbox_oldest_queued_age_seconds",
    "gauge",
    "Age of the oldest queued message (0 when empty).",
  );
  w.sample(
    "outpost_outbox_oldest_queued_age_seconds",
    {},
    o.oldestQueuedAt === null ? 0 : sec(s.now - o.oldestQueuedAt),
  );
  w.family("outpost_mail_delivery_failing", "gauge", "1 while mail delivery is failing.");
  w.sample("outpost_mail_delivery_failing", {}, o.failingSince !== null ? 1 : 0);
  w.family("outpost_mail_deliveries_total", "counter", "Delivery attempts since start by result.");
  w.sample("outpost_mail_deliveries_total", { result: "delivered" }, o.results.delivered);
  w.sample("outpost_mail_deliveries_total", { result: "deferred" }, o.results.deferred);
  w.sample("outpost_mail_deliveries_total", { result: "failed" }, o.results.failed);
  return w.lines.join("\n") + "\n";
}
