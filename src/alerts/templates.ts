/**
 * Alert mail subjects and bodies: `{variable}` templates with defaults that read well on a phone lock screen, e.g.
 * `[outpost pi-freezer] ALERT freezer 3.2 °C > -10 °C`.
 *
 * Variables: `sensor`, `rule`, `value`, `unit`, `reading` (value and unit), `threshold`, `limit` (threshold and
 * unit), `op` (`>` or `<`), `relation` (`above` or `below`), `since` (when the episode began) and `time` (when
 * the mail was made), both in the board's local time with its zone (`2026-12-01 23:30:05 CET`), `duration` (how
 * long it has lasted), `host`, `board`, `count`, `state` (ALERT, REMINDER, RECOVERED, SENSOR ERROR, SENSOR OK),
 * `severity`, `error`.
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
 * const known = (TEMPLATE_VARIABLES as readonly string[]).includes("reading");
 * console.log(known); // true
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
  "relation",
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
 * console.log(renderTemplate(`{${v}} is warm`, { sensor: "freezer" })); // freezer is warm
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

const FOOTER = "\n\nBoard: {host} ({board}), rule {rule}, severity {severity}.\nSent by outpost at {time}.";
const SENSOR_FOOTER = "\n\nBoard: {host} ({board}).\nSent by outpost at {time}.";

/**
 * The built-in templates: a subject that reads as a sentence on a phone's lock screen, the severity in it.
 *
 * @example
 * ```ts
 * DEFAULT_TEMPLATES.alert.subject; // "[outpost {host}] ALERT {sensor} is {reading}, {relation} the {limit} ..."
 * ```
 */
export const DEFAULT_TEMPLATES: MailTemplates = {
  alert: {
    subject: "[outpost {host}] ALERT {sensor} is {reading}, {relation} the {limit} limit ({severity})",
    body: "{sensor} is {reading}, {relation} the {limit} limit, since {since}." +
      "\nThis rule tripped {count} time(s) since the last alert mail." + FOOTER,
  },
  reminder: {
    subject: "[outpost {host}] REMINDER {sensor} is {reading}, {relation} the {limit} limit for {duration} " +
      "({severity})",
    body: "{sensor} is still {reading}, {relation} the {limit} limit; the alert has stood for {duration}, " +
      "since {since}.\nReminder number {count}." + FOOTER,
  },
  recovery: {
    subject: "[outpost {host}] RECOVERED {sensor} is {reading} again, after {duration}",
    body:
      "{sensor} is back to {reading}; it was {relation} the {limit} limit for {duration}, since {since}." +
      FOOTER,
  },
  sensor_error: {
    subject: "[outpost {host}] SENSOR ERROR {sensor}: {error}",
    body: "{sensor} could not be read {count} time(s) in a row, since {since}:\n{error}" +
      "\nRules on this sensor keep their last state until it reads again." + SENSOR_FOOTER,
  },
  sensor_ok: {
    subject: "[outpost {host}] SENSOR OK {sensor} is {reading}",
    body: "{sensor} reads again ({reading}) after failing for {duration}, since {since}." + SENSOR_FOOTER,
  },
};

/**
 * A time in the board's local time zone with the zone's name, as mail shows it: `2026-12-01 23:30:05 CET`
 * (`UTC` on a board whose zone is not set).
 *
 * @example
 * ```ts
 * localTime(Date.UTC(2026, 11, 1, 22, 30, 5)); // "2026-12-01 23:30:05 CET" in Europe/Berlin
 * ```
 */
export function localTime(ms: number): string {
  const parts = LOCAL_FORMAT.formatToParts(new Date(ms));
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? "";
  const hour = get("hour") === "24" ? "00" : get("hour");
  return `${get("year")}-${get("month")}-${get("day")} ${hour}:${get("minute")}:${get("second")} ` +
    get("timeZoneName");
}

const LOCAL_FORMAT = new Intl.DateTimeFormat("en-GB", {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
  timeZoneName: "short",
});

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
 * import type { AlertEvent } from "./rule_engine.ts";
 *
 * declare const ev: AlertEvent; // from the rule engine
 * const ctx: MailContext = { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 };
 * const vars = eventVariables(ev, ctx);
 * console.log(vars.host); // pi-freezer
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
 * import type { AlertEvent } from "./rule_engine.ts";
 *
 * declare const ev: AlertEvent; // from the rule engine
 * const vars = eventVariables(ev, { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 });
 * console.log(vars.sensor);
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
    relation: ev.direction === "below" ? "below" : "above",
    since: localTime(ev.since),
    duration: formatDuration(ev.at - ev.since),
    host: ctx.host,
    board: ctx.board,
    count: String(ev.count),
    state: STATE_WORDS[ev.kind],
    severity: ev.severity,
    error: ev.error ?? "",
    time: localTime(ev.at),
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
 * import type { AlertEvent } from "./rule_engine.ts";
 *
 * declare const ev: AlertEvent; // from the rule engine
 * declare const ctx: MailContext; // see MailContext
 * const { subject, text } = renderEventMail(ev, DEFAULT_TEMPLATES, ctx);
 * console.log(subject, text);
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

/** ISO time without milliseconds, as every mail shows times. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * One line describing an event, as the digest lists them: `2026-01-01T00:02:00Z  ALERT freezer 5 °C > -10 °C`.
 *
 * @example
 * ```ts
 * import type { AlertEvent } from "./rule_engine.ts";
 *
 * declare const ev: AlertEvent; // from the rule engine
 * console.log(eventLine(ev, { host: "pi-freezer", board: "rpi4", unit: "°C", decimals: 1 }));
 * ```
 */
export function eventLine(ev: AlertEvent, ctx: MailContext): string {
  const u = (n: number | null) => `${formatNumber(n, ctx.decimals)}${ctx.unit ? " " + ctx.unit : ""}`;
  const op = ev.direction === "below" ? "<" : ">";
  let what: string;
  if (ev.kind === "sensor_error") what = `${ev.sensor}: ${ev.error}`;
  else if (ev.kind === "alert" || ev.kind === "reminder") {
    what = `${ev.sensor} ${u(ev.value)} ${op} ${u(ev.threshold)}`;
  } else what = `${ev.sensor} ${u(ev.value)}`;
  // deno-lint-ignore no-control-regex
  return `${isoTime(ev.at)}  ${STATE_WORDS[ev.kind]} ${what}`.replace(/[\x00-\x1f\x7f]+/g, " ");
}

/**
 * What a digest mail says: the events collected while mail was down, and the state now.
 *
 * @example
 * ```ts
 * const d: DigestInput = { host: "pi", board: "rpi4", eventLines: [], first: 0, last: 0, count: 0, dropped: 0,
 *   currentState: ["  freezer_above: OK (freezer -18 °C)"] };
 * console.log(d.currentState);
 * ```
 */
export interface DigestInput {
  /** Device name. */
  host: string;
  /** Board profile id. */
  board: string;
  /** One line per event ({@link eventLine}), oldest first. */
  eventLines: string[];
  /** Time of the first and the last event, ms since the epoch. */
  first: number;
  /** Time of the last event. */
  last: number;
  /** Number of events the digest stands for (including dropped ones). */
  count: number;
  /** Events left out to keep the mail short. */
  dropped: number;
  /** One line per rule and failing sensor: the state now. */
  currentState: string[];
  /** Subjects of earlier mails that were still queued and are replaced by this one. */
  replaced?: string[];
}

/**
 * The lines telling the reader which undelivered earlier mails a mail replaces ("" when none).
 *
 * @example
 * ```ts
 * replacedNote(["[outpost pi] ALERT freezer 5 °C > -10 °C"]);
 * ```
 */
export function replacedNote(subjects: string[]): string {
  if (subjects.length === 0) return "";
  return `\n\nThis mail replaces ${subjects.length} earlier mail(s) about the same thing that could not be ` +
    `delivered yet (they will not be sent):\n` + subjects.map((s) => `  ${cleanSubject(s)}`).join("\n");
}

/**
 * Renders the digest mail sent when delivery works again after an outage.
 *
 * @example
 * ```ts
 * declare const input: DigestInput; // see DigestInput
 * const { subject, text } = renderDigestMail(input);
 * console.log(subject, text);
 * ```
 */
export function renderDigestMail(d: DigestInput): { subject: string; text: string } {
  const subject = cleanSubject(`[outpost ${d.host}] DIGEST ${d.count} alert event(s) while mail was down`);
  const text = [
    `Mail delivery was failing, so ${d.count} event(s) were collected into this one mail.`,
    `First seen: ${isoTime(d.first)}`,
    `Last seen:  ${isoTime(d.last)}`,
    d.dropped > 0 ? `(${d.dropped} older event(s) were left out to keep this mail short.)` : "",
    "",
    "Events:",
    ...d.eventLines.map((l) => "  " + l),
    "",
    "Current state:",
    ...d.currentState,
    "",
    `Host: ${d.host} (${d.board})`,
  ].join("\n") + replacedNote(d.replaced ?? []) + "\n";
  return { subject, text };
}

/**
 * What the fallback-config notice says: the edited file was refused at boot and an older config runs.
 *
 * @example
 * ```ts
 * const f: FallbackConfigInput = { host: "pi", board: "rpi4", file: "/boot/firmware/outpost.toml",
 *   problems: ["[smtp] port: must be a number"], runningFrom: "/var/lib/outpost/last-good.toml", at: Date.now() };
 * console.log(f.problems);
 * ```
 */
export interface FallbackConfigInput {
  /** Device name. */
  host: string;
  /** Board profile id. */
  board: string;
  /** The config file that was edited and refused. */
  file: string;
  /** Every problem found in it, as `check-config` prints them. */
  problems: string[];
  /** The config that runs instead (last good copy, or "the built-in defaults"). */
  runningFrom: string;
  /** When the daemon started on the fallback, ms since the epoch. */
  at: number;
}

/**
 * Renders the one mail a boot on a fallback config sends, naming every problem in the edited file, so someone
 * without a screen learns that their edit was ignored.
 *
 * @example
 * ```ts
 * declare const input: FallbackConfigInput; // see FallbackConfigInput
 * const { subject, text } = renderFallbackConfigMail(input);
 * console.log(subject, text);
 * ```
 */
export function renderFallbackConfigMail(f: FallbackConfigInput): { subject: string; text: string } {
  const n = f.problems.length;
  const subject = cleanSubject(
    `[outpost ${f.host}] CONFIG REFUSED: ${n} problem(s) in ${
      f.file.split("/").pop()
    }, running the previous one`,
  );
  const text = [
    `outpost started at ${isoTime(f.at)} but could not use ${f.file}:`,
    "",
    ...f.problems.map((p) => `  - ${p}`.replace(/[\r\n]+/g, " ")),
    "",
    `It is running ${f.runningFrom} instead, so your edit has no effect yet.`,
    `Fix the file (outpost check-config ${f.file} lists the same problems) and restart the board, or run`,
    "systemctl reload outpost.",
    "",
    `Host: ${f.host} (${f.board})`,
    "",
  ].join("\n");
  return { subject, text };
}
