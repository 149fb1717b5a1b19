/**
 * `outpost status` as text: one screen a person reads top to bottom (the daemon, the config in use, FTP, sensors,
 * rules, mail). Times are the board's local time with its UTC offset; ages are "3h 5m".
 *
 * @module
 */

import { formatDuration, formatNumber } from "../alerts/templates.ts";
import type { RuleStatus, SensorStatus } from "../alerts/monitor.ts";
import type { StatusSnapshot } from "./status_snapshot.ts";
import { sanitizeForReply } from "../ftp/listing.ts";

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/**
 * Formats a time (ms since the epoch) in the local zone with its offset, e.g. `2026-01-01 14:05:09 +01:00`.
 *
 * @example
 * ```ts
 * formatLocalTime(Date.UTC(2026, 0, 1, 13, 5, 9)); // "2026-01-01 13:05:09 +00:00" on a board set to UTC
 * ```
 */
export function formatLocalTime(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  const a = Math.abs(off);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:` +
    `${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${sign}${pad2(Math.floor(a / 60))}:${pad2(a % 60)}`;
}

/**
 * Formats a byte count as `512 B`, `12.3 KiB`, `4.0 MiB`, `1.2 GiB`.
 *
 * @example
 * ```ts
 * formatBytes(1536); // "1.5 KiB"
 * ```
 */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A sensor's reading as text: `-18.5 °C`, or `no reading`.
 *
 * @example
 * ```ts
 * sensorReading({ value: 48.25, unit: "°C", decimals: 1 }); // "48.3 °C"
 * ```
 */
export function sensorReading(s: Pick<SensorStatus, "value" | "unit" | "decimals">): string {
  if (s.value === null) return "no reading";
  return `${formatNumber(s.value, s.decimals)}${s.unit ? " " + s.unit : ""}`;
}

/**
 * A rule's state in words: `OK`, `PENDING 1 of 3 (alerts at 2)`, `ALERT since ... (1h 5m), next reminder ...`,
 * `HELD by the cooldown until ...`, with `cooldown until ...` after OK when one runs.
 *
 * @example
 * ```ts
 * import { collectStatus, type StatusSource } from "./status_snapshot.ts";
 *
 * declare const source: StatusSource; // the running daemon
 * for (const rule of (await collectStatus(source)).rules) console.log(rule.id, ruleStateText(rule, Date.now())); // "OK"
 * ```
 */
export function ruleStateText(r: RuleStatus, now: number): string {
  const cooldown = r.cooldownUntil !== null ? `, cooldown until ${formatLocalTime(r.cooldownUntil)}` : "";
  switch (r.state) {
    case "ok":
      return `OK${cooldown}`;
    case "pending":
      return `PENDING ${r.breaches} of ${r.ofSamples} readings breached (alerts at ${r.forSamples})${cooldown}`;
    case "held":
      return `HELD: tripped inside the cooldown, mailed at ${
        r.cooldownUntil !== null ? formatLocalTime(r.cooldownUntil) : "the next reading"
      } if it still stands`;
    case "alert": {
      const since = r.since !== null
        ? ` since ${formatLocalTime(r.since)} (${formatDuration(now - r.since)})`
        : "";
      const next = r.nextReminderAt !== null
        ? `, next reminder ${formatLocalTime(r.nextReminderAt)}`
        : ", no reminders";
      return `ALERT${since}${next}`;
    }
  }
}

function ruleCondition(r: RuleStatus, unit: string): string {
  const u = unit ? ` ${unit}` : "";
  return `${r.sensor} ${r.direction === "above" ? ">" : "<"} ${r.threshold}${u}`;
}

function table(rows: string[][], indent = "  "): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => widths[i] = Math.max(widths[i] ?? 0, c.length));
  return rows.map((row) =>
    indent + row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd()
  );
}

/**
 * Renders a snapshot as the text `outpost status` prints.
 *
 * @example
 * ```ts
 * import { collectStatus, type StatusSource } from "./status_snapshot.ts";
 *
 * declare const source: StatusSource; // the running daemon
 * console.log(formatStatusText(await collectStatus(source)));
 * ```
 */
export function formatStatusText(s: StatusSnapshot): string {
  const now = s.now;
  const out: string[] = [];
  const d = s.daemon;
  out.push(
    `outpost ${d.name} (${d.board}): running since ${formatLocalTime(d.startedAt)} ` +
      `(up ${formatDuration(d.uptimeMs)}), pid ${d.pid}, version ${d.version}`,
  );
  const c = s.config;
  if (c.using === "embedded") out.push("Config: the embedded quick-start config");
  else if (c.using === "last-good") {
    out.push(`Config: the LAST GOOD COPY runs, because ${c.file} had problems at start`);
  } else out.push(`Config: ${c.file}`);
  if (c.problems.length > 0) {
    out.push(`  ${c.file} has ${c.problems.length} problem(s) now (fix them, then reload):`);
    for (const p of c.problems) out.push(`    ${p}`);
  } else if (c.edited) {
    out.push(`  ${c.file} was changed and is valid: apply it with \`systemctl reload outpost\` (SIGHUP)`);
  }

  if (!s.ftp) out.push("FTP: off");
  else {
    const l = s.ftp.listeners.map((x) => `${x.host}:${x.port}${x.tls === "off" ? "" : ` (TLS ${x.tls})`}`);
    out.push(`FTP: listening on ${l.join(", ") || "nothing"}; ${s.ftp.sessions.length} session(s)`);
    for (const ss of s.ftp.sessions) {
      // User names and paths come from clients: their control bytes (terminal escapes) are shown as "?".
      let line =
        `  #${ss.id} ${ss.user === null ? "(not logged in)" : sanitizeForReply(ss.user)} from ${ss.ip}` +
        `${ss.tls ? " (TLS)" : ""}, ` +
        `connected ${formatDuration(now - ss.since)}`;
      const t = ss.transfer;
      if (t) {
        const verb = t.kind === "retr"
          ? "downloading"
          : t.kind === "list" || t.kind === "nlst" || t.kind === "mlsd"
          ? "listing"
          : "uploading";
        line += `, ${verb} ${sanitizeForReply(t.path)}: ${formatBytes(t.bytes)} in ${
          formatDuration(now - t.started)
        }`;
      } else line += `, idle ${formatDuration(ss.idleMs)}`;
      out.push(line);
    }
  }

  if (!s.monitor) {
    out.push("Sensors: the alert monitor is off (no sensors or rules, or [alerts] enabled = false)");
  } else {
    out.push(`Sensors (${s.sensors.length}):`);
    const rows = s.sensors.map((x) => {
      const when = x.at === null ? "not read yet" : `${formatDuration(now - x.at)} ago`;
      let note = "";
      if (x.error !== null) {
        note = `read failed ${x.failures}x: ${x.error}` +
          (x.failing && x.failingSince !== null
            ? ` (SENSOR ERROR since ${formatLocalTime(x.failingSince)})`
            : "");
      }
      return [x.name, sensorReading(x), when, note];
    });
    out.push(...table(rows));
    out.push(`Rules (${s.rules.length}):`);
    const unitOf = new Map(s.sensors.map((x) => [x.name, x.unit]));
    out.push(
      ...table(
        s.rules.map((r) => [r.id, ruleCondition(r, unitOf.get(r.sensor) ?? ""), ruleStateText(r, now)]),
      ),
    );
  }

  const o = s.outbox;
  let mail = `Mail: ${
    o.smtp ?? "no [smtp] configured (mail waits in the outbox)"
  }; outbox ${o.queued} queued`;
  if (o.oldestQueuedAt !== null) mail += ` (oldest ${formatDuration(now - o.oldestQueuedAt)})`;
  mail += `, ${o.failed} failed`;
  out.push(mail);
  if (o.failingSince !== null) out.push(`  delivery failing since ${formatLocalTime(o.failingSince)}`);
  if (o.lastError) out.push(`  last error: ${o.lastError}`);
  out.push(
    `  since start: ${o.results.delivered} delivered, ${o.results.deferred} retried, ${o.results.failed} gave up`,
  );
  out.push(s.http ? `Status page: ${s.http}` : "Status page: off ([status] http = true turns it on)");
  return out.join("\n");
}
