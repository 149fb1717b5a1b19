/**
 * Reading the kernel's files (`/proc`, `/sys`, `/dev`) from inside Deno's sandbox.
 *
 * Deno 2 refuses every read, stat and listing under `/proc`, `/sys` and `/dev` unless the process has
 * `--allow-all`, whatever `--allow-read` says (the paths are canonicalised first, so a symlink does not help):
 * `Requires all access to "/proc/loadavg"`. The daemon never runs with `--allow-all`, so sensors read those
 * files through two tiny programs it may run, `cat` and `ls` (`--allow-run=cat,ls`), with a timeout and a size
 * bound. That costs one short-lived process per sample of a sysfs sensor (every 30 s or more on the board
 * templates), writes nothing, and keeps the kernel (systemd's sandbox, the `outpost` user) as the wall.
 *
 * Files anywhere else (a sensor's own file, a test's fake sysfs tree) are read directly.
 *
 * @module
 */

import { readSmallFile, runCommand, SensorReadError } from "./sensor_readers.ts";

/** The programs {@link readKernelFile}, {@link listKernelDir} and {@link kernelFileExists} run. */
export const KERNEL_FILE_PROGRAMS: readonly string[] = ["cat", "ls"];

const KERNEL_PREFIXES = ["/proc/", "/sys/", "/dev/"];

/** How long one read of a kernel file may take (a 1-Wire read takes about 750 ms). */
const KERNEL_READ_TIMEOUT_MS = 5000;

/**
 * True when Deno needs `--allow-all` to touch `path`, so it is read through `cat`/`ls` instead.
 *
 * @example
 * ```ts
 * isKernelPath("/sys/class/thermal/thermal_zone0/temp"); // true
 * isKernelPath("/tmp/fake/sys/class/thermal"); // false
 * ```
 */
export function isKernelPath(path: string): boolean {
  return KERNEL_PREFIXES.some((p) => path.startsWith(p) || `${path}/` === p);
}

/**
 * True when `e` is Deno's refusal of a kernel path (a symlink elsewhere that points into `/sys`, say).
 *
 * @example
 * ```ts
 * try { await Deno.readTextFile(p); } catch (e) { if (isAllAccessRefusal(e)) { ... } }
 * ```
 */
export function isAllAccessRefusal(e: unknown): boolean {
  return e instanceof Deno.errors.NotCapable && /Requires all access/.test((e as Error).message);
}

/**
 * Reads at most `maxBytes` of a kernel file through `cat`. A missing file or a failed read is a
 * {@link SensorReadError} naming the path.
 *
 * @example
 * ```ts
 * const text = await readKernelFile("/proc/loadavg");
 * ```
 */
export async function readKernelFile(path: string, maxBytes = 4096): Promise<string> {
  try {
    return await runCommand(["cat", "--", path], KERNEL_READ_TIMEOUT_MS, maxBytes);
  } catch (e) {
    if (!(await kernelFileExists(path).catch(() => true))) {
      throw new SensorReadError(`${path} does not exist.`);
    }
    throw new SensorReadError(`${path} could not be read: ${(e as Error).message}`);
  }
}

/**
 * Lists the entries of a kernel folder through `ls` (empty when it does not exist).
 *
 * @example
 * ```ts
 * const zones = await listKernelDir("/sys/class/thermal");
 * ```
 */
export async function listKernelDir(dir: string): Promise<string[]> {
  try {
    const out = await runCommand(["ls", "-1A", "--", dir], KERNEL_READ_TIMEOUT_MS, 256 * 1024);
    return out.split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * True when a kernel path exists (and is not a folder), checked through `ls`.
 *
 * @example
 * ```ts
 * await kernelFileExists("/sys/devices/platform/soc/soc:firmware/get_throttled");
 * ```
 */
export async function kernelFileExists(path: string): Promise<boolean> {
  try {
    const out = await runCommand(["ls", "-1dFL", "--", path], KERNEL_READ_TIMEOUT_MS);
    return !out.trimEnd().endsWith("/");
  } catch {
    return false;
  }
}

/**
 * Reads a small sensor file: a kernel file through `cat`, anything else directly with {@link readSmallFile}'s
 * checks (and through `cat` after all when Deno refuses it as a kernel file behind a symlink).
 *
 * @example
 * ```ts
 * const text = await readSensorFile("/sys/class/thermal/thermal_zone0/temp", buf);
 * ```
 */
export async function readSensorFile(path: string, buf: Uint8Array = new Uint8Array(4096)): Promise<string> {
  if (isKernelPath(path)) return await readKernelFile(path, buf.length);
  try {
    return await readSmallFile(path, buf);
  } catch (e) {
    if (isAllAccessRefusal(e instanceof SensorReadError ? e.cause : e)) {
      return await readKernelFile(path, buf.length);
    }
    throw e;
  }
}

/**
 * Lists a folder's entry names matching `re` (sorted naturally); empty when the folder is missing.
 *
 * @example
 * ```ts
 * const zones = await listSensorDir("/sys/class/thermal", /^thermal_zone\d+$/);
 * ```
 */
export async function listSensorDir(dir: string, re: RegExp): Promise<string[]> {
  let names: string[] = [];
  if (isKernelPath(dir)) names = await listKernelDir(dir);
  else {
    try {
      for await (const e of Deno.readDir(dir)) names.push(e.name);
    } catch (e) {
      if (isAllAccessRefusal(e)) names = await listKernelDir(dir);
      else return [];
    }
  }
  return names.filter((n) => re.test(n)).sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

/**
 * True when `path` is an existing regular file (a kernel path is checked through `ls`). Errors other than
 * "not found" (no permission) are thrown as a {@link SensorReadError} rather than read as "missing".
 *
 * @example
 * ```ts
 * if (await sensorFileExists(p)) console.log("found", p);
 * ```
 */
export async function sensorFileExists(path: string): Promise<boolean> {
  if (isKernelPath(path)) return await kernelFileExists(path);
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    if (isAllAccessRefusal(e)) return await kernelFileExists(path);
    throw new SensorReadError(`Cannot check ${path}: ${(e as Error).message}.`);
  }
}
