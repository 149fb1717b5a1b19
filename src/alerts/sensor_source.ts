/**
 * `SensorSource`: reads one configured sensor, resolving selectors such as `zone = "cpu-thermal"` or
 * `chip = "rpi_volt"` to sysfs paths (hwmon numbering changes between boots, names do not).
 *
 * @module
 */

import type { SensorConfig } from "./alerts_config.ts";
import { listSensorDir, readSensorFile, sensorFileExists } from "./kernel_files.ts";
import {
  type FileFingerprint,
  fingerprintFile,
  parseHwmon,
  parseIio,
  parseLoadavg,
  parseMeminfo,
  parseNumberText,
  parseThermal,
  parseThrottled,
  parseW1Slave,
  readDiskSpace,
  runCommand,
  SensorReadError,
} from "./sensor_readers.ts";

/**
 * Joins a sysfs root ("/" on a board, a temp dir in tests) and an absolute path.
 *
 * @example
 * ```ts
 * sysPath("/tmp/fake", "/sys/class/thermal"); // "/tmp/fake/sys/class/thermal"
 * ```
 */
export function sysPath(root: string, abs: string): string {
  return root === "/" || root === "" ? abs : root.replace(/\/+$/, "") + abs;
}

/**
 * Lists directory entry names matching `re` (sorted naturally); empty when the directory is missing. Kernel
 * folders are listed through `ls` (see kernel_files.ts).
 *
 * @example
 * ```ts
 * const zones = await listDir("/sys/class/thermal", /^thermal_zone\d+$/);
 * ```
 */
export function listDir(dir: string, re: RegExp): Promise<string[]> {
  return listSensorDir(dir, re);
}

async function readName(path: string): Promise<string | null> {
  try {
    return (await readSensorFile(path)).trim();
  } catch {
    return null;
  }
}

/**
 * Finds the Raspberry Pi firmware's `get_throttled` file: `/sys/devices/platform/soc/soc:firmware/get_throttled`
 * on Pi 3/4/Zero 2 W, under a differently named `soc@...` node on Pi 5. Null when there is none.
 *
 * @example
 * ```ts
 * const p = await findThrottledPath("/");
 * ```
 */
export async function findThrottledPath(root: string): Promise<string | null> {
  const platform = sysPath(root, "/sys/devices/platform");
  for (const soc of await listDir(platform, /^soc/)) {
    for (const fw of await listDir(`${platform}/${soc}`, /firmware$/)) {
      const p = `${platform}/${soc}/${fw}/get_throttled`;
      if (await sensorFileExists(p).catch(() => false)) return p;
    }
  }
  return null;
}

/** Where a sensor's value comes from, once resolved. */
interface Resolved {
  path: string;
  scalePath?: string | null;
  offsetPath?: string | null;
}

/**
 * Reads one sensor. Never throws anything but {@link SensorReadError}; a failed read forgets the resolved path so
 * the next read looks again (a replugged probe or a renumbered hwmon is found).
 *
 * @example
 * ```ts
 * const src = new SensorSource(sensorConfig, "/");
 * const celsius = await src.read();
 * ```
 */
export class SensorSource {
  /** The sensor's `[[sensors]]` settings (type, path, scale, offset, ...). */
  readonly config: SensorConfig;
  /** The file system root sysfs paths are read under ("/" on a board, a temp dir in tests). */
  readonly root: string;
  #resolved: Resolved | null = null;
  /** file_changed: last fingerprint (restored from the state file by the monitor). */
  fingerprint: FileFingerprint | null = null;
  #hashBuf: Uint8Array | null = null;
  /** One buffer for every sysfs read of this sensor (sensors are read sequentially). */
  readonly #buf = new Uint8Array(4096);

  /**
   * Makes a source; nothing is read or resolved until the first {@link SensorSource.read}.
   *
   * @example
   * ```ts
   * const src = new SensorSource(sensorConfig, await Deno.makeTempDir());
   * ```
   */
  constructor(config: SensorConfig, root = "/") {
    this.config = config;
    this.root = root;
  }

  /** Reads the sensor and returns its value after the type's conversion, `scale` and `offset`. */
  async read(): Promise<number> {
    try {
      const v = await this.#readRaw();
      if (!Number.isFinite(v)) {
        throw new SensorReadError(`${this.config.name} produced a value out of range.`);
      }
      return v * this.config.scale + this.config.offset;
    } catch (e) {
      this.#resolved = null;
      if (e instanceof SensorReadError) throw e;
      throw new SensorReadError(`${this.config.name} could not be read: ${(e as Error).message}`);
    }
  }

  /** The file the sensor reads, when it has one (for `outpost sensors`). */
  async describePath(): Promise<string | null> {
    try {
      return (await this.#resolve()).path;
    } catch {
      return null;
    }
  }

  async #resolve(): Promise<Resolved> {
    if (this.#resolved) return this.#resolved;
    const c = this.config;
    const root = this.root;
    let r: Resolved;
    switch (c.type) {
      case "thermal": {
        if (c.path) r = { path: c.path };
        else if (/^\d+$/.test(c.zone ?? "")) {
          r = { path: sysPath(root, `/sys/class/thermal/thermal_zone${c.zone}/temp`) };
        } else {
          const base = sysPath(root, "/sys/class/thermal");
          const zones = await listDir(base, /^thermal_zone\d+$/);
          let found: string | null = null;
          for (const z of zones) {
            if ((await readName(`${base}/${z}/type`)) === c.zone) {
              found = `${base}/${z}/temp`;
              break;
            }
          }
          if (!found) throw new SensorReadError(`No thermal zone of type "${c.zone}" exists under ${base}.`);
          r = { path: found };
        }
        break;
      }
      case "hwmon": {
        if (c.path) r = { path: c.path };
        else {
          const base = sysPath(root, "/sys/class/hwmon");
          let found: string | null = null;
          for (const h of await listDir(base, /^hwmon\d+$/)) {
            if ((await readName(`${base}/${h}/name`)) === c.chip) {
              found = `${base}/${h}/${c.input}`;
              break;
            }
          }
          if (!found) throw new SensorReadError(`No hwmon chip named "${c.chip}" exists under ${base}.`);
          r = { path: found };
        }
        break;
      }
      case "iio": {
        let raw: string;
        if (c.path) raw = c.path;
        else {
          const base = sysPath(root, "/sys/bus/iio/devices");
          let dir: string | null = null;
          for (const d of await listDir(base, /^iio:device\d+$/)) {
            if ((await readName(`${base}/${d}/name`)) === c.device) {
              dir = `${base}/${d}`;
              break;
            }
          }
          if (!dir) throw new SensorReadError(`No IIO device named "${c.device}" exists under ${base}.`);
          raw = `${dir}/${c.channel}_raw`;
        }
        r = {
          path: raw,
          scalePath: await iioCompanion(raw, "scale"),
          offsetPath: await iioCompanion(raw, "offset"),
        };
        break;
      }
      case "w1": {
        if (c.path) r = { path: c.path };
        else {
          const base = sysPath(root, "/sys/bus/w1/devices");
          const id = c.id ?? (await listDir(base, /^28-[0-9a-f]+$/i))[0];
          if (!id) throw new SensorReadError(`No DS18B20 (28-*) probe is attached under ${base}.`);
          r = { path: `${base}/${id}/w1_slave` };
        }
        break;
      }
      case "load":
        r = { path: sysPath(root, "/proc/loadavg") };
        break;
      case "memory":
        r = { path: sysPath(root, "/proc/meminfo") };
        break;
      case "rpi_throttled": {
        const p = c.path ?? (await findThrottledPath(root));
        if (!p) {
          throw new SensorReadError("The Raspberry Pi firmware's get_throttled file does not exist here.");
        }
        r = { path: p };
        break;
      }
      case "command":
        r = { path: c.command?.join(" ") ?? "" };
        break;
      default:
        r = { path: c.path ?? "" };
    }
    this.#resolved = r;
    return r;
  }

  async #readRaw(): Promise<number> {
    const c = this.config;
    const r = await this.#resolve();
    switch (c.type) {
      case "thermal":
        return parseThermal(await readSensorFile(r.path, this.#buf), r.path);
      case "hwmon":
        return parseHwmon(
          r.path.slice(r.path.lastIndexOf("/") + 1),
          await readSensorFile(r.path, this.#buf),
          r.path,
        );
      case "iio":
        return parseIio(
          await readSensorFile(r.path, this.#buf),
          r.scalePath ? await readSensorFile(r.scalePath, this.#buf) : null,
          r.offsetPath ? await readSensorFile(r.offsetPath, this.#buf) : null,
          r.path,
        );
      case "w1":
        return parseW1Slave(await readSensorFile(r.path, this.#buf), `DS18B20 ${c.name}`);
      case "file":
        return parseNumberText(await readSensorFile(r.path, this.#buf), r.path);
      case "command": {
        const out = await runCommand(c.command ?? [], c.timeoutMs);
        return parseNumberText(
          out.split("\n").find((l) => l.trim() !== "") ?? "",
          `Output of ${c.command?.[0]}`,
        );
      }
      case "disk": {
        const d = await readDiskSpace(r.path);
        if (c.measure === "free_mb") return d.availableBytes / 1e6;
        return d.totalBytes > 0 ? (d.availableBytes / d.totalBytes) * 100 : 0;
      }
      case "load":
        return parseLoadavg(await readSensorFile(r.path, this.#buf), c.minutes);
      case "memory": {
        const text = await readSensorFile(r.path, this.#buf);
        const avail = parseMeminfo(text, "MemAvailable");
        if (c.measure === "available_percent") {
          const total = parseMeminfo(text, "MemTotal");
          return total > 0 ? (avail / total) * 100 : 0;
        }
        return avail / 1e6;
      }
      case "rpi_throttled":
        return parseThrottled(await readSensorFile(r.path, this.#buf), c.flag);
      case "file_changed": {
        this.#hashBuf ??= new Uint8Array(64 * 1024);
        const prev = this.fingerprint;
        const next = await fingerprintFile(r.path, prev, this.#hashBuf);
        this.fingerprint = next;
        return prev !== null && prev.sha256 !== next.sha256 ? 1 : 0;
      }
    }
  }
}

/**
 * The IIO scale and offset files read beside a `_raw` file: the channel's own, then the shared one.
 *
 * @example
 * ```ts
 * iioCompanionPaths("/sys/bus/iio/devices/iio:device0/in_voltage0_raw", "scale");
 * // [".../in_voltage0_scale", ".../in_voltage_scale"]
 * ```
 */
export function iioCompanionPaths(raw: string, kind: "scale" | "offset"): string[] {
  const own = raw.replace(/_raw$/, `_${kind}`);
  const shared = raw.replace(/(in_[a-z]+)\d*(_[a-z]+)?_raw$/, `$1_${kind}`);
  return own === shared ? [own] : [own, shared];
}

async function iioCompanion(raw: string, kind: "scale" | "offset"): Promise<string | null> {
  for (const p of iioCompanionPaths(raw, kind)) {
    // A missing file means "no such companion"; anything else (no permission) must not silently skew the value.
    if (await sensorFileExists(p)) return p;
  }
  return null;
}
