/**
 * Alert mail subjects and bodies: `{variable}` templates with defaults that read well on a phone lock screen, e.g.
 * `[outpost pi-freezer] ALERT freezer 3.2 °C > -10 °C`.
 *
 * Variables: `sensor`, `rule`, `value`, `unit`, `reading` (value and unit), `threshold`, `limit` (threshold and
 * unit), `op` (`>` or `<`), `since` (ISO time the episode began), `duration` (how long it has lasted), `host`,
 * `board`, `count`, `state` (ALERT, REMINDER, RECOVERED, SENSOR ERROR, SENSOR OK), `severity`, `error`, `time`.
 * `{{` and `}}` give literal braces. CR, LF and other control characters in values are replaced by spaces in
 * subjects, so a sensor error message cannot inject mail headers.
 *
 * @module
 */

import type { AlertEvent } from "./rule_engine.ts";

/**
 * The variable names templates may use, written `{name}` in a subject or body.
 *
 * @example
 * ```ts
 * const known = (TEMPLATE_VARIABLES as readonly string[]).includes("reading"); // true
 * ```
 */
export const TEMPLATE_VARIABLES = [
  "sensor",
  "rule",
  "value",
  "unit",
  "reading",
  "threshold",
  "limit",
  "op",
  "since",
  "duration",
  "host",
  "board",
  "count",
  "state",
  "severity",
  "error",
  "time",
] as const;

/**
 * One of {@link TEMPLATE_VARIABLES}.
 *
 * @example
 * ```ts
 * const v: TemplateVariable = "sensor";
 * ```
 */
export type TemplateVariable = typeof TEMPLATE_VARIABLES[number];

/**
 * A subject/body pair per event kind; `{variable}` placeholders are filled from {@link TEMPLATE_VARIABLES}.
 *
 * @example
 * ```ts
 * const t: MailTemplates = structuredClone(DEFAULT_TEMPLATES);
 * t.alert.subject = "[{host}] {sensor} is {reading}";
 * ```
 */
export interface MailTemplates {
  /** The first mail of an alert episode. */
  alert: { subject: string; body: string };
  /** A reminder that an alert still stands. */
  reminder: { subject: string; body: string };
  /** The mail saying an alert cleared. */
  recovery: { subject: string; body: string };
  /** A sensor could not be read `fail_after` times in a row. */
  sensor_error: { subject: string; body: string };
  /** A failing sensor reads again. */
  sensor_ok: { subject: string; body: string };
}

const FOOTER = "\n\nHost: {host} ({board})\nRule: {rule}  Severity: {severity}\nSent by outpost at {time}.";

/**
 * The built-in templates.
 *
 * @example
 * ```ts
 * DEFAULT_TEMPLATES.alert.subject; // "[outpost {host}] ALERT {sensor} {reading} {op} {limit}"
 * ```
 */
export const DEFAULT_TEMPLATES: MailTemplates = {
  alert: {
    subject: "[outpost {host}] ALERT {sensor} {reading} {op} {limit}",
    body: "{sensor} reads {reading}, {op} the limit of {limit}, since {since}." +
      "\nThis rule tripped {count} time(s) since the last alert mail." + FOOTER,
  },
  reminder: {
    subject: "[outpost {host}] REMINDER {sensor} {reading} {op} {limit} for {duration}",
    body:
      "{sensor} still reads {reading} ({op} {limit}); the alert has stood for {duration}, since {since}." +
      "\nReminder number {count}." + FOOTER,
  },
  recovery: {
    subject: "[outpost {host}] RECOVERED {sensor} {reading} after {duration}",
    body: "{sensor} is back to {reading}; it was past {limit} for {duration}, since {since}." + FOOTER,
  },
  sensor_error: {
    subject: "[outpost {host}] SENSOR ERROR {sensor}: {error}",
    body: "{sensor} could not be read {count} time(s) in a row, since {since}:\n{error}" +
      "\nRules on this sensor keep their last state until it reads again." + FOOTER,
  },
  sensor_ok: {
    subject: "[outpost {host}] SENSOR OK {sensor} {reading}",
    body: "{sensor} reads again ({reading}) after failing for {duration}, since {since}." + FOOTER,
  },
};

/**
 * Returns the names in `template` that are not template variables (empty when the template is fine).
 *
 * @example
 * ```ts
 * unknownVariables("{sensor} {temprature}"); // ["temprature"]
 * ```
 */
export function unknownVariables(template: string): string[] {
  const out: string[] = [];
  for (const m of template.replaceAll("{{", "").replaceAll("}}", "").matchAll(/\{([^{}]*)\}/g)) {
    if (!(TEMPLATE_VARIABLES as readonly string[]).includes(m[1])) out.push(m[1]);
  }
  return out;
}

/**
 * Fills `{name}` placeholders from `vars`; unknown names are left as written.
 *
 * @example
 * ```ts
 * renderTemplate("{sensor} is {reading}", { sensor: "freezer", reading: "3.2 °C" }); // "freezer is 3.2 °C"
 * ```
 */
export function renderTemplate(template: string, vars: Partial<Record<TemplateVariable, string>>): string {
  return template.replace(/\{\{|\}\}|\{([a-z_]+)\}/g, (m, name: string | undefined) => {
    if (m === "{{") return "{";
    if (m === "}}") return "}";
    const v = vars[name as TemplateVariable];
    return v === undefined ? m : v;
  });
}

/**
 * Formats a number for mail: at most `decimals` decimals, trailing zeros and `-0` removed.
 *
 * @example
 * ```ts
 * formatNumber(3.2000001, 2); // "3.2"
 * ```
 */
export function formatNumber(v: number | null, decimals = 2): string {
  if (v === null || !Number.isFinite(v)) return "?";
  let s = v.toFixed(decimals);
  if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
  return s === "-0" ? "0" : s;
}

/**
 * Formats a duration in ms as `45s`, `12m`, `3h 5m` or `2d 4h`.
 *
 * @example
 * ```ts
 * formatDuration(3_900_000); // "1h 5m"
 * ```
 */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

const STATE_WORDS: Record<AlertEvent["kind"], string> = {
  alert: "ALERT",
  reminder: "REMINDER",
  recovery: "RECOVERED",
  sensor_error: "SENSOR ERROR",
  sensor_ok: "SENSOR OK",
};

/**
 * Context that is the same for every mail of one sensor.
 *
 * @example
 * ```ts
 * const ctx: MailContext = { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 };
 * const vars = eventVariables(ev, ctx);
 * ```
 */
export interface MailContext {
  /** Device name (the `{host}` variable). */
  host: string;
  /** Board profile id (the `{board}` variable). */
  board: string;
  /** The sensor's unit, appended to values ("" for none). */
  unit: string;
  /** Decimal places values are shown with. */
  decimals: number;
}

/**
 * The template variables for one event.
 *
 * @example
 * ```ts
 * const vars = eventVariables(ev, { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 });
 * ```
 */
export function eventVariables(ev: AlertEvent, ctx: MailContext): Record<TemplateVariable, string> {
  const withUnit = (n: number | null) => {
    const s = formatNumber(n, ctx.decimals);
    return ctx.unit ? `${s} ${ctx.unit}` : s;
  };
  return {
    sensor: ev.sensor,
    rule: ev.rule ?? "-",
    value: formatNumber(ev.value, ctx.decimals),
    unit: ctx.unit,
    reading: withUnit(ev.value),
    threshold: formatNumber(ev.threshold, ctx.decimals),
    limit: withUnit(ev.threshold),
    op: ev.direction === "below" ? "<" : ">",
    since: new Date(ev.since).toISOString().replace(/\.\d{3}Z$/, "Z"),
    duration: formatDuration(ev.at - ev.since),
    host: ctx.host,
    board: ctx.board,
    count: String(ev.count),
    state: STATE_WORDS[ev.kind],
    severity: ev.severity,
    error: ev.error ?? "",
    time: new Date(ev.at).toISOString().replace(/\.\d{3}Z$/, "Z"),
  };
}

/**
 * Makes a subject safe: control characters become spaces, runs of spaces collapse, length capped at 200.
 *
 * @example
 * ```ts
 * cleanSubject("a\r\nBcc: x"); // "a Bcc: x"
 * ```
 */
export function cleanSubject(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\x00-\x1f\x7f]+/g, " ").replace(/ {2,}/g, " ").trim().slice(0, 200);
}

/**
 * Renders the subject and body for `ev` with `templates` (per-rule overrides already merged in).
 *
 * @example
 * ```ts
 * const { subject, text } = renderEventMail(ev, DEFAULT_TEMPLATES, ctx);
 * ```
 */
export function renderEventMail(
  ev: AlertEvent,
  templates: MailTemplates,
  ctx: MailContext,
): { subject: string; text: string } {
  const vars = eventVariables(ev, ctx);
  const t = templates[ev.kind];
  return {
    subject: cleanSubject(renderTemplate(t.subject, vars)),
    text: renderTemplate(t.body, vars) + "\n",
  };
}
