/**
 * The status page: the same facts as `outpost status`, plus each sensor's history as an inline SVG chart. One
 * self-contained HTML document (no script, no CDN, no build step), readable on a phone, refreshed every 30 s.
 *
 * @module
 */

import { formatDuration } from "../alerts/templates.ts";
import type { RuleStatus, SensorStatus } from "../alerts/monitor.ts";
import type { HistoryPoint } from "./sensor_history.ts";
import type { StatusSnapshot } from "./status_snapshot.ts";
import { formatBytes, formatLocalTime, ruleStateText, sensorReading } from "./status_text.ts";

/**
 * Escapes text for HTML content and attribute values.
 *
 * @example
 * ```ts
 * escapeHtml('<a href="x">'); // "&lt;a href=&quot;x&quot;&gt;"
 * ```
 */
export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

const W = 320;
const H = 90;
const PAD_L = 34;
const PAD_B = 14;

function spanText(ms: number): string {
  return ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : formatDuration(ms);
}

function fmt(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/**
 * An inline SVG chart of one sensor's history over `spanMs` before `now`, with the rules' thresholds as dashed
 * lines. Gaps longer than three slots break the line.
 *
 * @example
 * ```ts
 * const svg = sensorChart("cpu", "°C", points, [80], Date.now(), 86_400_000);
 * ```
 */
export function sensorChart(
  name: string,
  unit: string,
  points: HistoryPoint[],
  thresholds: number[],
  now: number,
  spanMs: number,
  gapMs = spanMs / 96,
): string {
  const label = `${name}, last ${spanText(spanMs)}`;
  if (points.length === 0) {
    return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      escapeHtml(label)
    }: no readings yet">` +
      `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">no readings yet</text></svg>`;
  }
  const values = points.map((p) => p.value);
  let lo = Math.min(...values, ...thresholds);
  let hi = Math.max(...values, ...thresholds);
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const margin = (hi - lo) * 0.08;
  lo -= margin;
  hi += margin;
  const x = (t: number) => PAD_L + ((t - (now - spanMs)) / spanMs) * (W - PAD_L - 2);
  const y = (v: number) => 2 + (1 - (v - lo) / (hi - lo)) * (H - PAD_B - 4);
  const segs: string[] = [];
  let cur: string[] = [];
  let prev: number | null = null;
  for (const p of points) {
    if (prev !== null && p.at - prev > gapMs && cur.length) {
      segs.push(cur.join(" "));
      cur = [];
    }
    cur.push(`${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`);
    prev = p.at;
  }
  if (cur.length) segs.push(cur.join(" "));
  const min = Math.min(...values);
  const max = Math.max(...values);
  const u = unit ? ` ${unit}` : "";
  const summary = `${label}: min ${fmt(min)}${u}, max ${fmt(max)}${u}, ${points.length} points`;
  const parts = [
    `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(summary)}">`,
    `<title>${escapeHtml(summary)}</title>`,
    `<line x1="${PAD_L}" y1="${H - PAD_B}" x2="${W}" y2="${H - PAD_B}" class="axis"/>`,
    `<text x="${PAD_L - 3}" y="10" text-anchor="end" class="tick">${escapeHtml(fmt(hi - margin))}</text>`,
    `<text x="${PAD_L - 3}" y="${H - PAD_B}" text-anchor="end" class="tick">${
      escapeHtml(fmt(lo + margin))
    }</text>`,
    `<text x="${PAD_L}" y="${H - 2}" class="tick">-${escapeHtml(spanText(spanMs))}</text>`,
    `<text x="${W - 2}" y="${H - 2}" text-anchor="end" class="tick">now</text>`,
    ...thresholds.map((t) =>
      `<line x1="${PAD_L}" y1="${y(t).toFixed(1)}" x2="${W}" y2="${y(t).toFixed(1)}" class="limit"/>`
    ),
    ...segs.map((s) =>
      s.includes(" ")
        ? `<polyline points="${s}" class="line"/>`
        : `<circle cx="${s.split(",")[0]}" cy="${s.split(",")[1]}" r="1.5" class="dot"/>`
    ),
    `</svg>`,
  ];
  return parts.join("");
}

const CSS = `
:root{color-scheme:light dark;--fg:#1b1f23;--bg:#fff;--muted:#6a737d;--card:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--line:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#8b949e;--card:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--line:#58a6ff}}
*{box-sizing:border-box}body{margin:0 auto;max-width:60rem;padding:.75rem;font:15px/1.4 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.1rem 0 .4rem}
.muted{color:var(--muted);fill:var(--muted)}section{background:var(--card);border-radius:8px;padding:.6rem .8rem;margin:.6rem 0}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .4rem;vertical-align:top;border-bottom:1px solid rgba(128,128,128,.25)}
.state-ok{color:var(--ok)}.state-pending,.state-held{color:var(--warn)}.state-alert,.bad{color:var(--bad);font-weight:600}
.sensors{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.6rem}
.sensor{background:var(--bg);border-radius:6px;padding:.5rem}.sensor .value{font-size:1.5rem;font-weight:600}
.chart{width:100%;height:auto;display:block}.chart .line{fill:none;stroke:var(--line);stroke-width:1.6}.chart .dot{fill:var(--line)}
.chart .axis{stroke:var(--muted);stroke-width:.5}.chart .limit{stroke:var(--bad);stroke-width:1;stroke-dasharray:4 3}.chart .tick{font-size:9px;fill:var(--muted)}
code{font-size:.9em}`;

function stateClass(r: RuleStatus): string {
  return `state-${r.state}`;
}

function sensorCard(s: SensorStatus, snap: StatusSnapshot, history: HistoryPoint[], spanMs: number): string {
  const thresholds = snap.rules.filter((r) => r.sensor === s.name).map((r) => r.threshold);
  const when = s.at === null ? "not read yet" : `${formatDuration(snap.now - s.at)} ago`;
  const err = s.error !== null
    ? `<div class="bad">Read failed ${s.failures}×: ${escapeHtml(s.error)}${
      s.failing && s.failingSince !== null
        ? ` (SENSOR ERROR since ${escapeHtml(formatLocalTime(s.failingSince))})`
        : ""
    }</div>`
    : "";
  return `<div class="sensor" id="sensor-${escapeHtml(s.name)}" data-sensor="${escapeHtml(s.name)}">` +
    `<div><strong>${escapeHtml(s.name)}</strong> <span class="muted">${escapeHtml(s.type)}</span></div>` +
    `<div class="value">${escapeHtml(sensorReading(s))}</div>` +
    `<div class="muted">${escapeHtml(when)}</div>${err}` +
    sensorChart(s.name, s.unit, history, thresholds, snap.now, spanMs) + `</div>`;
}

/**
 * Renders the status page.
 *
 * @example
 * ```ts
 * const html = renderStatusPage(snap, (name) => history.points(name, snap.now), history.spanMs);
 * ```
 */
export function renderStatusPage(
  snap: StatusSnapshot,
  historyOf: (sensor: string) => HistoryPoint[],
  spanMs: number,
): string {
  const e = escapeHtml;
  const d = snap.daemon;
  const alerts = snap.rules.filter((r) => r.state === "alert").length;
  const title = `${d.name}: ${alerts ? `${alerts} ALERT${alerts > 1 ? "S" : ""}` : "all OK"}`;
  const body: string[] = [];
  body.push(
    `<header><h1>outpost ${e(d.name)} <span class="muted">(${e(d.board)})</span></h1>`,
    `<div class="muted">up ${e(formatDuration(d.uptimeMs))}, since ${e(formatLocalTime(d.startedAt))}; ` +
      `page of ${e(formatLocalTime(snap.now))}, refreshes every 30 s; version ${e(d.version)}</div></header>`,
  );

  // Config.
  const c = snap.config;
  const cfg: string[] = [];
  if (c.using === "embedded") cfg.push("The embedded quick-start config runs.");
  else if (c.using === "last-good") {
    cfg.push(`<span class="bad">The last good copy runs</span>: ${e(c.file ?? "")} had problems at start.`);
  } else cfg.push(`Running <code>${e(c.file ?? "")}</code>.`);
  if (c.problems.length) {
    cfg.push(
      `<div class="bad">${
        e(c.file ?? "The file")
      } has ${c.problems.length} problem(s) now:</div><ul id="config-problems">${
        c.problems.map((p) => `<li><code>${e(p)}</code></li>`).join("")
      }</ul>`,
    );
  } else if (c.edited) cfg.push(` The file was changed and is valid: reload to apply it.`);
  // What needs attention first: standing alerts, failing sensors, failing mail, a bad config.
  const attention: string[] = [];
  const unitOf = new Map(snap.sensors.map((s) => [s.name, s]));
  for (const r of snap.rules.filter((x) => x.state === "alert")) {
    const s = unitOf.get(r.sensor);
    attention.push(
      `ALERT ${e(r.id)}: ${e(r.sensor)} ${s ? e(sensorReading(s)) : ""} ${
        r.direction === "above" ? "&gt;" : "&lt;"
      } ${e(String(r.threshold))}${s?.unit ? " " + e(s.unit) : ""}`,
    );
  }
  for (const s of snap.sensors.filter((x) => x.failing)) {
    attention.push(`SENSOR ERROR ${e(s.name)}: ${e(s.error ?? "")}`);
  }
  if (snap.outbox.failingSince !== null) {
    attention.push(`Mail delivery failing: ${e(snap.outbox.lastError ?? "")}`);
  }
  if (c.using === "last-good" || c.problems.length) {
    attention.push(`The config file has problems (see Config)`);
  }
  if (attention.length) {
    body.push(
      `<section id="attention" class="bad" role="alert">${
        attention.map((a) => `<div>${a}</div>`).join("")
      }</section>`,
    );
  }
  body.push(`<section id="config"><h2>Config</h2>${cfg.join(" ")}</section>`);

  // Sensors.
  if (snap.monitor) {
    body.push(
      `<section id="sensors"><h2>Sensors</h2><div class="sensors">${
        snap.sensors.map((s) => sensorCard(s, snap, historyOf(s.name), spanMs)).join("")
      }</div></section>`,
    );
    body.push(
      `<section id="rules"><h2>Rules</h2><table><thead><tr><th>Rule</th><th>Condition</th><th>State</th></tr></thead><tbody>${
        snap.rules.map((r) =>
          `<tr data-rule="${e(r.id)}"><td>${e(r.id)}</td><td>${e(r.sensor)} ${
            r.direction === "above" ? "&gt;" : "&lt;"
          } ${e(String(r.threshold))}${
            e(unitOf.get(r.sensor)?.unit ? " " + unitOf.get(r.sensor)!.unit : "")
          } <span class="muted">${e(r.severity)}</span></td>` +
          `<td class="${stateClass(r)}">${e(ruleStateText(r, snap.now))}</td></tr>`
        ).join("")
      }</tbody></table></section>`,
    );
  } else {
    body.push(`<section id="sensors"><h2>Sensors</h2>The alert monitor is off.</section>`);
  }

  // FTP.
  if (snap.ftp) {
    const f = snap.ftp;
    const rows = f.sessions.map((s) => {
      const t = s.transfer;
      const what = t
        ? `${t.kind.toUpperCase()} ${e(t.path)}: ${e(formatBytes(t.bytes))} in ${
          e(formatDuration(snap.now - t.started))
        }`
        : `idle ${e(formatDuration(s.idleMs))}`;
      return `<tr><td>#${s.id}</td><td>${e(s.user ?? "(not logged in)")}</td><td>${e(s.ip)}${
        s.tls ? " (TLS)" : ""
      }</td><td>${what}</td></tr>`;
    }).join("");
    body.push(
      `<section id="ftp"><h2>FTP</h2><div>Listening on ${
        f.listeners.map((l) =>
          `<code>${e(l.host)}:${l.port}</code>${l.tls === "off" ? "" : ` (TLS ${e(l.tls)})`}`
        )
          .join(", ")
      }. ${f.sessions.length} session(s); since start ${f.counters.sessions} sessions, ` +
        `${e(formatBytes(f.counters.bytesIn))} up, ${e(formatBytes(f.counters.bytesOut))} down.</div>` +
        (rows
          ? `<table><thead><tr><th>#</th><th>User</th><th>From</th><th>Now</th></tr></thead><tbody>${rows}</tbody></table>`
          : "") +
        `</section>`,
    );
  } else body.push(`<section id="ftp"><h2>FTP</h2>Off.</section>`);

  // Mail.
  const o = snap.outbox;
  body.push(
    `<section id="mail"><h2>Mail</h2><div>${
      o.smtp ? `Server <code>${e(o.smtp)}</code>.` : "No [smtp] configured: mail waits in the outbox."
    } ` +
      `Outbox: <span id="outbox-queued">${o.queued}</span> queued${
        o.oldestQueuedAt !== null ? ` (oldest ${e(formatDuration(snap.now - o.oldestQueuedAt))})` : ""
      }, ${o.failed} failed.</div>` +
      (o.failingSince !== null
        ? `<div class="bad">Delivery failing since ${e(formatLocalTime(o.failingSince))}.</div>`
        : "") +
      (o.lastError ? `<div>Last error: ${e(o.lastError)}</div>` : "") +
      `<div class="muted">Since start: ${o.results.delivered} delivered, ${o.results.deferred} retried, ${o.results.failed} gave up.</div></section>`,
  );
  body.push(
    `<footer class="muted">Also: <a href="metrics">/metrics</a> · <a href="status.json">status.json</a></footer>`,
  );
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<meta http-equiv="refresh" content="30"><title>${e(title)}</title><style>${CSS}</style></head>` +
    `<body>${body.join("\n")}</body></html>`;
}
