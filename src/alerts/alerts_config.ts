/**
 * Reads the `[alerts]`, `[sensors.<name>]` and `[[rules]]` tables of `outpost.toml` into an {@link AlertsConfig}.
 *
 * Problems are recorded on the sections (`rules[0].above: ...`), never thrown, so `outpost check-config` lists
 * them all.
 *
 * @module
 */

import type { Section } from "../config/section.ts";
import type { RuleSpec, Severity } from "./rule_engine.ts";
import { DEFAULT_TEMPLATES, type MailTemplates, unknownVariables } from "./templates.ts";
import { THROTTLE_BITS, type ThrottleFlag } from "./sensor_readers.ts";

/**
 * The sensor kinds outpost can read: the values allowed for `type` in a `[sensors.<name>]` table.
 *
 * @example
 * ```ts
 * const ok = (SENSOR_TYPES as readonly string[]).includes("thermal");
 * console.log(ok); // true
 * ```
 */
export const SENSOR_TYPES = [
  "thermal",
  "hwmon",
  "iio",
  "w1",
  "file",
  "command",
  "disk",
  "load",
  "memory",
  "file_changed",
  "rpi_throttled",
] as const;

/**
 * One of {@link SENSOR_TYPES}.
 *
 * @example
 * ```ts
 * const t: SensorType = "disk";
 * console.log(t);
 * ```
 */
export type SensorType = typeof SENSOR_TYPES[number];

/**
 * One `[sensors.<name>]` table, resolved. Which selector fields are set depends on `type`.
 *
 * @example
 * ```ts
 * import { Section } from "../config/section.ts";
 *
 * const sec = new Section({ type: "thermal", zone: "0" }, "sensors.cpu", []);
 * const cpu = readSensorConfig("cpu", sec, { intervalMs: 60_000, failAfter: 3 });
 * console.log(cpu.type, cpu.zone, cpu.unit); // "thermal" "0" "°C"
 * ```
 */
export interface SensorConfig {
  /** The table's name (`cpu` in `[sensors.cpu]`): letters, digits, `_`, `-` and `.`; rules refer to it. */
  name: string;
  /** What kind of sensor this is; decides which of the selector fields below are read. */
  type: SensorType;
  /** Explicit file path (sysfs attribute, number file, w1_slave, disk path, watched file). */
  path: string | null;
  /** thermal: zone `type` name (e.g. "cpu-thermal") or index ("0"). */
  zone: string | null;
  /** hwmon: chip `name` (e.g. "rpi_volt"); set with {@link SensorConfig.input} unless `path` is set. */
  chip: string | null;
  /** hwmon: the chip's attribute (e.g. "in0_lcrit_alarm", "temp1_input"); also picks the default unit. */
  input: string | null;
  /** iio: device `name`; set with {@link SensorConfig.channel} unless `path` is set. */
  device: string | null;
  /** iio: channel prefix (e.g. "in_temp", "in_voltage0"); `_raw`, `_scale` and `_offset` are appended. */
  channel: string | null;
  /** w1: 1-Wire id such as "28-0316a2795aff"; null = the first DS18B20 found. */
  id: string | null;
  /** command: argv (a string is run with /bin/sh -c). */
  command: string[] | null;
  /** command: how long the command may run before it is killed and the read fails, in ms (default 5000). */
  timeoutMs: number;
  /** disk: "free_percent" | "free_mb"; memory: "available_mb" | "available_percent". */
  measure: string | null;
  /** load: 1, 5 or 15 minutes. */
  minutes: 1 | 5 | 15;
  /** rpi_throttled: which flag. */
  flag: ThrottleFlag;
  /** Unit shown in mails (e.g. "°C", "V", "%"); defaults from the type, hwmon input and measure. */
  unit: string;
  /** value = raw * scale + offset (after the type's own conversion); default 1. */
  scale: number;
  /** Added after scaling (see {@link SensorConfig.scale}); default 0. */
  offset: number;
  /** Decimal places shown in mails, 0 to 6 (default 2). */
  decimals: number;
  /** How often the sensor is read, in ms (default: `[alerts] interval`). */
  intervalMs: number;
  /** Consecutive failed reads before a sensor-error mail is sent (default: `[alerts] fail_after`). */
  failAfter: number;
  /** Read failures are logged, never mailed (for board defaults such as undervoltage "if readable"). */
  optional: boolean;
}

/**
 * One `[[rules]]` entry: the engine spec plus recipients and templates.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * declare const root: Section; // the whole config file
 * const cfg = readAlertsConfig(root);
 * for (const rule of cfg.rules) console.log(rule.id, rule.direction, rule.threshold, rule.to.join(", "));
 * ```
 */
export interface RuleConfig extends RuleSpec {
  /** Recipients of this rule's mails; defaults to `[alerts] to`. */
  to: string[];
  /** Subject and body templates for alert, reminder and recovery mails (`[alerts.templates]` filled in). */
  templates: MailTemplates;
}

/**
 * Everything the alert monitor needs from the config.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * declare const root: Section;
 * const cfg = readAlertsConfig(root);
 * if (cfg.enabled) console.log(`${cfg.sensors.length} sensors, ${cfg.rules.length} rules`);
 * ```
 */
export interface AlertsConfig {
  /** Whether the monitor runs at all (default true). */
  enabled: boolean;
  /** Default recipients (rules without `to`, sensor errors, digests). */
  to: string[];
  /** Default read interval of every sensor, in ms (default 60 000, at least 100). */
  intervalMs: number;
  /** Default number of consecutive failed reads before a sensor-error mail (default 3). */
  failAfter: number;
  /** Prefix for /sys and /proc paths (tests point it at a fake tree). */
  sysfsRoot: string;
  /** Where the alert state lives; null = `<state_dir>/alerts.json` (the daemon decides). */
  stateFile: string | null;
  /** Bundle events into one mail while delivery is failing. */
  digest: boolean;
  /** Default mail templates (`[alerts.templates]` over the built-in ones) that rules start from. */
  templates: MailTemplates;
  /** Every `[sensors.<name>]` table, in config order. */
  sensors: SensorConfig[];
  /** Every `[[rules]]` entry, in config order, with unique ids. */
  rules: RuleConfig[];
}

/**
 * Options for {@link readAlertsConfig}.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * // Board profiles define rules without recipients; the user's config supplies them later.
 * declare const root: Section; // a board profile's tables
 * const profile = readAlertsConfig(root, { requireRecipients: false });
 * console.log(profile.rules.map((r) => r.id));
 * ```
 */
export interface ReadAlertsOptions {
  /** Require every rule to have recipients; default: when alerts are enabled (profiles pass false). */
  requireRecipients?: boolean;
}

const SEVERITIES = ["info", "warning", "critical"] as const;
const EMAIL_RE = /^[^\s@<>"]+@[^\s@<>"]+$/;
const KINDS = ["alert", "reminder", "recovery", "sensor_error", "sensor_ok"] as const;
const RULE_KINDS = ["alert", "reminder", "recovery"] as const;

function readTemplates(
  sec: Section,
  base: MailTemplates,
  prefixFor: (kind: string) => string,
  kinds: readonly (typeof KINDS)[number][] = KINDS,
): MailTemplates {
  const out = structuredClone(base);
  for (const kind of kinds) {
    for (const part of ["subject", "body"] as const) {
      const key = `${prefixFor(kind)}${part}`;
      const v = sec.string(key);
      if (v === undefined) continue;
      const bad = unknownVariables(v);
      if (bad.length) {
        sec.problem(
          key,
          `uses unknown template variable(s) ${bad.map((b) => `{${b}}`).join(", ")}`,
        );
      } else out[kind][part] = v;
    }
  }
  return out;
}

function readRecipients(sec: Section, key: string, dflt: string[]): string[] {
  const raw = sec.raw(key);
  const list = typeof raw === "string" ? [raw] : sec.strings(key, dflt);
  for (const a of list) {
    if (!EMAIL_RE.test(a)) sec.problem(key, `"${a}" is not an e-mail address`);
  }
  return list;
}

function defaultUnit(type: SensorType, input: string | null, measure: string | null): string {
  switch (type) {
    case "thermal":
    case "w1":
      return "°C";
    case "hwmon": {
      const i = input ?? "";
      if (/_alarm$|_fault$/.test(i)) return "";
      if (i.startsWith("temp")) return "°C";
      if (i.startsWith("in")) return "V";
      if (i.startsWith("fan")) return "RPM";
      if (i.startsWith("curr")) return "A";
      if (i.startsWith("power")) return "W";
      return "";
    }
    case "disk":
      return measure === "free_mb" ? "MB" : "%";
    case "memory":
      return measure === "available_percent" ? "%" : "MB";
    default:
      return "";
  }
}

/**
 * Reads one `[sensors.<name>]` table.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 *
 * declare const root: Section;
 * const s = readSensorConfig("cpu", root.namedSections("sensors").get("cpu")!, { intervalMs: 60000, failAfter: 3 });
 * console.log(s.type);
 * ```
 */
export function readSensorConfig(
  name: string,
  sec: Section,
  defaults: { intervalMs: number; failAfter: number },
): SensorConfig {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
    sec.problem("", `sensor name "${name}" may only use letters, digits, "_", "-" and "."`);
  }
  const type = sec.string("type", { oneOf: SENSOR_TYPES, required: true }) as SensorType | undefined;
  const t: SensorType = type ?? "file";
  const path = sec.filePath("path") ?? null;
  const zone = sec.raw("zone");
  const cfg: SensorConfig = {
    name,
    type: t,
    path,
    zone: typeof zone === "number" ? String(zone) : sec.string("zone") ?? null,
    chip: sec.string("chip") ?? null,
    input: sec.string("input") ?? null,
    device: sec.string("device") ?? null,
    channel: sec.string("channel") ?? null,
    id: sec.string("id") ?? null,
    command: null,
    timeoutMs: sec.duration("timeout", 5000, { min: 10, max: 600_000 }),
    measure: sec.string("measure") ?? null,
    minutes: sec.int("minutes", { default: 1 }) as 1 | 5 | 15,
    flag: sec.string("flag", { default: "undervoltage", oneOf: Object.keys(THROTTLE_BITS) }) as ThrottleFlag,
    unit: "",
    scale: sec.number("scale", { default: 1 }),
    offset: sec.number("offset", { default: 0 }),
    decimals: sec.int("decimals", { default: 2, min: 0, max: 6 }),
    intervalMs: sec.duration("interval", defaults.intervalMs, { min: 100 }),
    failAfter: sec.int("fail_after", { default: defaults.failAfter, min: 1, max: 1000 }),
    optional: sec.bool("optional", false),
  };
  if (![1, 5, 15].includes(cfg.minutes)) {
    sec.problem("minutes", `must be 1, 5 or 15, got ${cfg.minutes}`);
    cfg.minutes = 1;
  }
  const cmd = sec.raw("command");
  if (typeof cmd === "string") cfg.command = ["/bin/sh", "-c", cmd];
  else if (cmd !== undefined) {
    const list = sec.strings("command", []);
    if (list.length === 0) sec.problem("command", "must be a command line or a non-empty list of words");
    else cfg.command = list;
  }
  const need = (cond: boolean, key: string, why: string) => {
    if (!cond) sec.problem(key, why);
  };
  switch (t) {
    case "thermal":
      if (!cfg.path && cfg.zone === null) cfg.zone = "0";
      break;
    case "hwmon":
      need(
        cfg.path !== null || (cfg.chip !== null && cfg.input !== null),
        "chip",
        "is required (with input), or set path",
      );
      break;
    case "iio":
      need(
        cfg.path !== null || (cfg.device !== null && cfg.channel !== null),
        "device",
        "is required (with channel), or set path to the in_*_raw file",
      );
      break;
    case "file":
    case "file_changed":
      need(cfg.path !== null, "path", `is required for a ${t} sensor`);
      break;
    case "command":
      need(cfg.command !== null, "command", "is required for a command sensor");
      break;
    case "disk":
      if (!cfg.path) cfg.path = "/";
      cfg.measure ??= "free_percent";
      need(
        ["free_percent", "free_mb"].includes(cfg.measure),
        "measure",
        'must be "free_percent" or "free_mb"',
      );
      break;
    case "memory":
      cfg.measure ??= "available_mb";
      need(
        ["available_mb", "available_percent"].includes(cfg.measure),
        "measure",
        'must be "available_mb" or "available_percent"',
      );
      break;
    default:
      break;
  }
  cfg.unit = sec.string("unit", { default: defaultUnit(t, cfg.input, cfg.measure) });
  sec.finish();
  return cfg;
}

/**
 * Reads `[alerts]`, `[sensors.*]` and `[[rules]]` from the config's root section.
 *
 * @example
 * ```ts
 * import { parse } from "smol-toml";
 * import { ConfigError, Section } from "../config/section.ts";
 *
 * declare const text: string; // the TOML file
 * const problems: string[] = [];
 * const root = new Section(parse(text), "", problems);
 * const alerts = readAlertsConfig(root);
 * if (problems.length) throw new ConfigError(problems);
 * console.log(alerts.rules.length);
 * ```
 */
export function readAlertsConfig(root: Section, opts: ReadAlertsOptions = {}): AlertsConfig {
  const a = root.section("alerts");
  const cfg: AlertsConfig = {
    enabled: a.bool("enabled", true),
    to: readRecipients(a, "to", []),
    intervalMs: a.duration("interval", 60_000, { min: 100 }),
    failAfter: a.int("fail_after", { default: 3, min: 1, max: 1000 }),
    sysfsRoot: a.filePath("sysfs_root", { default: "/" }),
    stateFile: a.filePath("state_file") ?? null,
    digest: a.bool("digest", true),
    templates: DEFAULT_TEMPLATES,
    sensors: [],
    rules: [],
  };
  const requireRecipients = opts.requireRecipients ?? cfg.enabled;
  const remindEvery = a.duration("remind_every", 6 * 3_600_000);
  const remindBackoff = a.bool("remind_backoff", true);
  const remindMax = a.duration("remind_max", 24 * 3_600_000, { min: 1000 });
  const cooldown = a.duration("cooldown", 10 * 60_000);
  const severity = a.string("severity", { default: "warning", oneOf: SEVERITIES }) as Severity;
  const tpl = a.section("templates");
  cfg.templates = readTemplates(tpl, DEFAULT_TEMPLATES, (k) => `${k}_`);
  tpl.finish();
  a.finish();

  for (const [name, sec] of root.namedSections("sensors")) {
    cfg.sensors.push(readSensorConfig(name, sec, cfg));
  }
  const byName = new Map(cfg.sensors.map((s) => [s.name, s]));
  const ids = new Set<string>();
  for (const r of root.sections("rules")) {
    const sensor = r.string("sensor", { required: true }) ?? "";
    const sc = byName.get(sensor);
    if (sensor && !sc) {
      const known = [...byName.keys()].join(", ") || "none";
      r.problem("sensor", `no sensor named "${sensor}" ([sensors.${sensor}] missing; defined: ${known})`);
    }
    const above = r.number("above");
    const below = r.number("below");
    if ((above === undefined) === (below === undefined)) {
      r.problem("above", "set exactly one of above or below");
    }
    const direction = above !== undefined ? "above" : "below";
    const threshold = above ?? below ?? 0;
    const clearAt = r.number("clear_at", { default: threshold });
    if (direction === "above" && clearAt > threshold) {
      r.problem("clear_at", `must be at or below the above threshold (${threshold}) for hysteresis`);
    }
    if (direction === "below" && clearAt < threshold) {
      r.problem("clear_at", `must be at or above the below threshold (${threshold}) for hysteresis`);
    }
    const forSamples = r.int("for", { default: 1, min: 1, max: 32 });
    const ofSamples = r.int("of", { default: forSamples, min: 1, max: 32 });
    if (ofSamples < forSamples) r.problem("of", `must be at least for (${forSamples}), got ${ofSamples}`);
    let id = r.string("name") ?? `${sensor}_${direction}`;
    if (ids.has(id)) {
      if (r.has("name")) r.problem("name", `rule name "${id}" is used twice`);
      let i = 2;
      while (ids.has(`${id}_${i}`)) i++;
      id = `${id}_${i}`;
    }
    ids.add(id);
    const to = readRecipients(r, "to", cfg.to);
    if (requireRecipients && to.length === 0) {
      r.problem("to", "no recipients: set to here or in [alerts]");
    }
    const rule: RuleConfig = {
      id,
      sensor,
      direction,
      threshold,
      clearAt,
      forSamples,
      ofSamples: Math.max(ofSamples, forSamples),
      clearFor: r.int("clear_for", { default: 1, min: 1, max: 1000 }),
      remindEveryMs: r.duration("remind_every", remindEvery),
      remindBackoff: r.bool("remind_backoff", remindBackoff),
      remindMaxMs: r.duration("remind_max", remindMax, { min: 1000 }),
      cooldownMs: r.duration("cooldown", cooldown),
      severity: r.string("severity", { default: severity, oneOf: SEVERITIES }) as Severity,
      recovery: r.bool("recovery", sc?.type !== "file_changed"),
      to,
      templates: readTemplates(r, cfg.templates, (k) => (k === "alert" ? "" : `${k}_`), RULE_KINDS),
    };
    r.finish();
    cfg.rules.push(rule);
  }
  return cfg;
}
