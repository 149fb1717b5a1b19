/**
 * What sensors this board has: scans thermal zones, hwmon chips, IIO devices, 1-Wire DS18B20 probes and the
 * Raspberry Pi firmware's throttling flags under a sysfs root (a fake tree in tests), plus load, memory and disk.
 *
 * Each found sensor comes with a name and a ready `[sensors.<name>]` table to paste into `outpost.toml`.
 *
 * @module
 */

import type { SensorConfig, SensorType } from "./alerts_config.ts";
import { findThrottledPath, listDir, sysPath } from "./sensor_source.ts";
import { readSmallFile, type ThrottleFlag } from "./sensor_readers.ts";

/**
 * One sensor found on the board.
 *
 * @example
 * ```ts
 * for (const s of await discoverSensors("/")) console.log(`[sensors.${s.name}]`, s.description);
 * ```
 */
export interface DiscoveredSensor {
  /** Suggested name for `[sensors.<name>]`. */
  name: string;
  /** What it is, for humans ("SoC temperature", "DS18B20 probe 28-..."). */
  description: string;
  /** The keys of its `[sensors.<name>]` table. */
  table: Record<string, string | number>;
  /** The same as a full config (defaults filled in), ready for a SensorSource. */
  config: SensorConfig;
}

/**
 * A complete SensorConfig from a type and a few keys (defaults for the rest).
 *
 * @example
 * ```ts
 * const cfg = makeSensorConfig("cpu", "thermal", { zone: "cpu-thermal" });
 * console.log(cfg.type, cfg.zone);
 * ```
 */
export function makeSensorConfig(
  name: string,
  type: SensorType,
  fields: Partial<SensorConfig> = {},
): SensorConfig {
  return {
    name,
    type,
    path: null,
    zone: null,
    chip: null,
    input: null,
    device: null,
    channel: null,
    id: null,
    command: null,
    timeoutMs: 5000,
    measure: null,
    minutes: 1,
    flag: "undervoltage",
    unit: "",
    scale: 1,
    offset: 0,
    decimals: 2,
    intervalMs: 60_000,
    failAfter: 3,
    optional: false,
    ...fields,
  };
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "") || "sensor";
}

async function text(path: string): Promise<string | null> {
  try {
    return (await readSmallFile(path)).trim();
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const HWMON_INPUT = /^(temp|in|fan|curr|power)\d+_input$|^in\d+_lcrit_alarm$/;

/**
 * Scans the board (or the fake tree at `root`) and lists its sensors.
 *
 * @example
 * ```ts
 * for (const s of await discoverSensors("/")) console.log(s.name, s.description);
 * ```
 */
export async function discoverSensors(root = "/"): Promise<DiscoveredSensor[]> {
  const out: DiscoveredSensor[] = [];
  const used = new Set<string>();
  const add = (
    base: string,
    description: string,
    type: SensorType,
    table: Record<string, string | number>,
    unit: string,
  ) => {
    let name = slug(base);
    for (let i = 2; used.has(name); i++) name = `${slug(base)}_${i}`;
    used.add(name);
    const fields: Partial<SensorConfig> = { unit };
    for (const [k, v] of Object.entries(table)) {
      if (k !== "type") (fields as Record<string, unknown>)[k] = v;
    }
    out.push({ name, description, table: { type, ...table }, config: makeSensorConfig(name, type, fields) });
  };

  const thermal = sysPath(root, "/sys/class/thermal");
  for (const z of await listDir(thermal, /^thermal_zone\d+$/)) {
    if (!(await exists(`${thermal}/${z}/temp`))) continue;
    const type = (await text(`${thermal}/${z}/type`)) ?? z.slice("thermal_zone".length);
    const soc = /cpu|soc/i.test(type);
    add(
      soc && !used.has("soc") ? "soc" : type,
      `Thermal zone ${z} (${type})`,
      "thermal",
      { zone: type },
      "°C",
    );
  }

  const hwmon = sysPath(root, "/sys/class/hwmon");
  for (const h of await listDir(hwmon, /^hwmon\d+$/)) {
    const chip = await text(`${hwmon}/${h}/name`);
    if (!chip) continue;
    for (const input of await listDir(`${hwmon}/${h}`, HWMON_INPUT)) {
      const label = await text(`${hwmon}/${h}/${input.replace(/_input$/, "_label")}`);
      const unit = input.endsWith("_alarm")
        ? ""
        : input.startsWith("temp")
        ? "°C"
        : input.startsWith("in")
        ? "V"
        : input.startsWith("fan")
        ? "RPM"
        : input.startsWith("curr")
        ? "A"
        : "W";
      const what = input === "in0_lcrit_alarm" && chip === "rpi_volt"
        ? "Raspberry Pi undervoltage alarm (1 = supply too weak)"
        : `hwmon ${chip} ${label ?? input}`;
      const base = chip === "rpi_volt" && input === "in0_lcrit_alarm"
        ? "undervoltage"
        : `${chip}_${label ?? input.replace(/_input$/, "")}`;
      add(base, what, "hwmon", { chip, input }, unit);
    }
  }

  const iio = sysPath(root, "/sys/bus/iio/devices");
  for (const d of await listDir(iio, /^iio:device\d+$/)) {
    const device = (await text(`${iio}/${d}/name`)) ?? d;
    for (const raw of await listDir(`${iio}/${d}`, /^in_[a-z0-9_]+_raw$/)) {
      const channel = raw.replace(/_raw$/, "");
      add(
        `${device}_${channel.replace(/^in_/, "")}`,
        `IIO ${device} ${channel}`,
        "iio",
        { device, channel },
        "",
      );
    }
  }

  const w1 = sysPath(root, "/sys/bus/w1/devices");
  for (const id of await listDir(w1, /^28-[0-9a-f]+$/i)) {
    if (!(await exists(`${w1}/${id}/w1_slave`))) continue;
    add(`ds18b20_${id.slice(3)}`, `DS18B20 probe ${id}`, "w1", { id }, "°C");
  }

  const throttled = await findThrottledPath(root);
  if (throttled !== null && (await text(throttled)) !== null) {
    const flags: [ThrottleFlag, string][] = [
      ["undervoltage", "Raspberry Pi firmware: undervoltage now (1 = yes)"],
      ["throttled", "Raspberry Pi firmware: CPU throttled now (1 = yes)"],
    ];
    for (const [flag, what] of flags) {
      const base = used.has(flag) ? `${flag}_firmware` : flag;
      add(base, what, "rpi_throttled", { flag }, "");
    }
  }

  if (await exists(sysPath(root, "/proc/loadavg"))) {
    add("load", "Load average over 1 minute", "load", { minutes: 1 }, "");
  }
  if (await exists(sysPath(root, "/proc/meminfo"))) {
    add("memory", "Memory available (MB)", "memory", { measure: "available_mb" }, "MB");
  }
  add("disk_root", "Free space on / (percent)", "disk", { path: "/", measure: "free_percent" }, "%");
  return out;
}

/**
 * Renders a discovered sensor as a `[sensors.<name>]` TOML table.
 *
 * @example
 * ```ts
 * const found = await discoverSensors("/");
 * console.log(sensorTableToml(found[0])); // '[sensors.soc]\ntype = "thermal"\nzone = "cpu-thermal"\n'
 * ```
 */
export function sensorTableToml(s: DiscoveredSensor): string {
  const lines = [`[sensors.${s.name}]`];
  for (const [k, v] of Object.entries(s.table)) lines.push(`${k} = ${JSON.stringify(v)}`);
  return lines.join("\n") + "\n";
}
