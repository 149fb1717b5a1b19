/**
 * What the alert monitor needs from the system, from its parsed config: the exact files each sensor reads (sysfs
 * and /proc under `[alerts] sysfs_root`), the programs command sensors run, and the folder of the state file
 * (it is replaced through a `<file>.tmp-PID` beside it).
 *
 * Files under `/proc`, `/sys` and `/dev` are read through `cat` and `ls` (Deno wants `--allow-all` for them, see
 * kernel_files.ts), so a board's sysfs sensors need `--allow-run=cat,ls` and no read access there.
 *
 * A `disk` sensor is given `statfs` and `df` but no read access of its own: `statfs` works where the daemon may
 * already read (its state folder, an FTP root) and `df` answers for the rest, so watching `/` does not open the
 * whole file system to the process.
 *
 * @module
 */

import { parentDir, type SandboxNeeds, SandboxNeedsBuilder } from "../config/sandbox_needs.ts";
import type { AlertsConfig, SensorConfig } from "./alerts_config.ts";
import { isKernelPath, KERNEL_FILE_PROGRAMS } from "./kernel_files.ts";
import { iioCompanionPaths, sysPath } from "./sensor_source.ts";

function sensorNeeds(s: SensorConfig, root: string, out: SandboxNeedsBuilder): void {
  const sys = (p: string) => sysPath(root, p);
  // Kernel files (/proc, /sys, /dev) need --allow-all in Deno whatever --allow-read says, so they are read
  // through cat and ls (kernel_files.ts); anything else (a fake tree in tests, a sensor's own file) directly.
  const b = {
    read(p: string) {
      if (isKernelPath(p)) { for (const prog of KERNEL_FILE_PROGRAMS) out.run(prog); }
      else out.read(p);
      return b;
    },
    run(prog: string) {
      out.run(prog);
      return b;
    },
    sys(name: string) {
      out.sys(name);
      return b;
    },
  };
  switch (s.type) {
    case "thermal":
      if (s.path) b.read(s.path);
      else if (/^\d+$/.test(s.zone ?? "")) b.read(sys(`/sys/class/thermal/thermal_zone${s.zone}/temp`));
      else b.read(sys("/sys/class/thermal")); // zones are matched by their `type` file
      break;
    case "hwmon":
      b.read(s.path ?? sys("/sys/class/hwmon")); // chips are matched by their `name` file
      break;
    case "iio": {
      if (!s.path) {
        b.read(sys("/sys/bus/iio/devices")); // devices are matched by their `name` file
        break;
      }
      b.read(s.path);
      for (const p of [...iioCompanionPaths(s.path, "scale"), ...iioCompanionPaths(s.path, "offset")]) {
        b.read(p);
      }
      break;
    }
    case "w1":
      if (s.path) b.read(s.path);
      else if (s.id) b.read(sys(`/sys/bus/w1/devices/${s.id}/w1_slave`));
      else b.read(sys("/sys/bus/w1/devices")); // the first 28-* probe
      break;
    case "file":
    case "file_changed":
      if (s.path) b.read(s.path);
      break;
    case "command":
      // A sensor program usually talks to hardware (I2C, GPIO, a serial port): the unit keeps /dev for it.
      if (s.command?.length) b.run(s.command[0]);
      out.devices();
      break;
    case "disk":
      b.sys("statfs").run("df");
      break;
    case "load":
      b.read(sys("/proc/loadavg"));
      break;
    case "memory":
      b.read(sys("/proc/meminfo"));
      break;
    case "rpi_throttled":
      // The firmware node's name differs between boards (soc:firmware, soc@107c000000/...).
      b.read(s.path ?? sys("/sys/devices/platform"));
      break;
  }
}

/**
 * The monitor's needs; `stateDir` is `[device] state_dir` (the default home of the state file).
 *
 * @example
 * ```ts
 * const needs = alertsSandboxNeeds(config.alerts, config.device.stateDir);
 * ```
 */
export function alertsSandboxNeeds(alerts: AlertsConfig, stateDir: string): SandboxNeeds {
  const b = new SandboxNeedsBuilder();
  if (!alerts.enabled) return b.build();
  const stateFile = alerts.stateFile ?? `${stateDir}/alerts.json`;
  b.readWrite(parentDir(stateFile), { own: true });
  for (const s of alerts.sensors) sensorNeeds(s, alerts.sysfsRoot, b);
  return b.build();
}
