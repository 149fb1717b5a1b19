/**
 * Sensor readers: pure parsers for the Linux sysfs/procfs formats a small board exposes, plus the few readers that
 * need I/O (a command's stdout, free disk space, a watched file's hash).
 *
 * Every parser either returns a finite number or throws a {@link SensorReadError} whose message says what was wrong
 * with the reading (missing file, garbage, CRC error, power-on value, timeout). The monitor turns those errors into
 * sensor-error events; nothing here ever crashes the process.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { statfs } from "node:fs/promises";

/**
 * A sensor could not be read; the message is what the alert mail shows.
 *
 * @example
 * ```ts
 * try { parseNumberText("abc", "temp"); } catch (e) { if (e instanceof SensorReadError) console.log(e.message); }
 * ```
 */
export class SensorReadError extends Error {
  /**
   * Makes the error; `message` says which sensor file could not be read or parsed, and why.
   *
   * @example
   * ```ts
   * throw new SensorReadError("/sys/class/thermal/thermal_zone0/temp is empty.");
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SensorReadError";
  }
}

const NUMBER_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Parses a file or command output holding one number (surrounding whitespace allowed, nothing else).
 *
 * @example
 * ```ts
 * parseNumberText(" 42.5\n", "/tmp/level"); // 42.5
 * ```
 */
export function parseNumberText(text: string, what: string): number {
  const s = text.trim();
  if (s === "") throw new SensorReadError(`${what} is empty.`);
  if (!NUMBER_RE.test(s)) {
    throw new SensorReadError(`${what} does not hold a number: ${JSON.stringify(s.slice(0, 40))}.`);
  }
  const n = Number(s);
  if (!Number.isFinite(n)) throw new SensorReadError(`${what} holds a number out of range.`);
  return n;
}

/**
 * Parses a thermal zone `temp` file (millidegrees Celsius) into °C.
 *
 * @example
 * ```ts
 * parseThermal("48312\n"); // 48.312
 * ```
 */
export function parseThermal(text: string, what = "thermal zone temp"): number {
  const v = parseNumberText(text, what);
  if (!Number.isInteger(v)) throw new SensorReadError(`${what} is not a whole number of millidegrees.`);
  return v / 1000;
}

/**
 * Parses one hwmon attribute, scaled by its kind: `temp*` m°C → °C, `in*` mV → V, `curr*` mA → A, `power*` µW → W,
 * `fan*` RPM and `*_alarm` flags as is.
 *
 * @example
 * ```ts
 * parseHwmon("in0_input", "5080"); // 5.08
 * ```
 */
export function parseHwmon(attribute: string, text: string, what = `hwmon ${attribute}`): number {
  const v = parseNumberText(text, what);
  if (/_alarm$|_fault$/.test(attribute)) return v;
  if (attribute.startsWith("temp") || attribute.startsWith("in") || attribute.startsWith("curr")) {
    return v / 1000;
  }
  if (attribute.startsWith("power") || attribute.startsWith("energy")) return v / 1e6;
  return v;
}

/**
 * Computes an IIO channel value as `(raw + offset) * scale` (the kernel's documented formula).
 *
 * @example
 * ```ts
 * parseIio("1000", "0.5", "-10"); // 495
 * ```
 */
export function parseIio(
  raw: string,
  scale: string | null,
  offset: string | null,
  what = "iio channel",
): number {
  const r = parseNumberText(raw, `${what} raw value`);
  const s = scale === null ? 1 : parseNumberText(scale, `${what} scale`);
  const o = offset === null ? 0 : parseNumberText(offset, `${what} offset`);
  return (r + o) * s;
}

/**
 * Parses a DS18B20 `w1_slave` file into °C: the first line must end in `YES` (CRC good), the second carries `t=`.
 * The 85.000 °C power-on reset value and an all-zero scratchpad (a probe that lost its data line) are rejected.
 *
 * @example
 * ```ts
 * parseW1Slave("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"); // 23.125
 * ```
 */
export function parseW1Slave(text: string, what = "DS18B20"): number {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (lines.length === 0) throw new SensorReadError(`${what} returned nothing.`);
  if (lines.length < 2) throw new SensorReadError(`${what} returned a truncated reading.`);
  const crc = /crc=([0-9a-f]{2})\s+(YES|NO)$/i.exec(lines[0]);
  if (!crc) throw new SensorReadError(`${what} reading has no CRC line.`);
  if (crc[2].toUpperCase() !== "YES") {
    throw new SensorReadError(`${what} reading failed its CRC check (bad wiring or a missing pull-up?).`);
  }
  const bytes = lines[0].slice(0, lines[0].indexOf(":")).trim();
  if (/^(00\s*)+$/.test(bytes)) {
    throw new SensorReadError(`${what} returned an all-zero scratchpad (probe disconnected?).`);
  }
  const t = /t=(-?\d+)$/.exec(lines[1]);
  if (!t) throw new SensorReadError(`${what} reading has no t= value.`);
  const milli = Number(t[1]);
  if (milli === 85000) {
    throw new SensorReadError(`${what} returned 85 °C, its power-on value, not a measurement.`);
  }
  if (milli < -55000 || milli > 125000) {
    throw new SensorReadError(`${what} returned ${milli / 1000} °C, outside the probe's range.`);
  }
  return milli / 1000;
}

/**
 * Parses `/proc/loadavg`; `which` is 1, 5 or 15 (minutes).
 *
 * @example
 * ```ts
 * parseLoadavg("0.52 0.41 0.30 1/123 4567\n", 5); // 0.41
 * ```
 */
export function parseLoadavg(text: string, which: 1 | 5 | 15 = 1): number {
  const parts = text.trim().split(/\s+/);
  const idx = which === 1 ? 0 : which === 5 ? 1 : 2;
  if (parts.length < 3) throw new SensorReadError("/proc/loadavg is not in the expected format.");
  return parseNumberText(parts[idx], "/proc/loadavg");
}

/**
 * Reads fields of `/proc/meminfo` (values in kB) and returns `key`'s value in bytes.
 *
 * @example
 * ```ts
 * parseMeminfo("MemTotal: 1000 kB\nMemAvailable: 500 kB\n", "MemAvailable"); // 512000
 * ```
 */
export function parseMeminfo(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB\\s*$`, "m").exec(text);
  if (!m) throw new SensorReadError(`/proc/meminfo has no ${key} line.`);
  return Number(m[1]) * 1024;
}

/**
 * Parses the Raspberry Pi firmware's `get_throttled` value (hex, as the kernel prints it) and returns one flag as
 * 0 or 1. Flags: `undervoltage`, `freq_capped`, `throttled`, `soft_temp_limit` and their `_occurred` variants.
 *
 * @example
 * ```ts
 * parseThrottled("50005\n", "undervoltage"); // 1
 * ```
 */
export function parseThrottled(text: string, flag: ThrottleFlag): number {
  const s = text.trim().replace(/^0x/i, "");
  if (s === "") throw new SensorReadError("get_throttled is empty.");
  if (!/^[0-9a-f]+$/i.test(s)) {
    throw new SensorReadError(`get_throttled does not hold a hex value: ${JSON.stringify(s.slice(0, 20))}.`);
  }
  const v = parseInt(s, 16);
  return (v >>> THROTTLE_BITS[flag]) & 1;
}

/**
 * The Raspberry Pi throttling flags and their bit in `get_throttled` (bits 0-3: now; bits 16-19: since boot).
 *
 * @example
 * ```ts
 * const undervolted = (0x50005 >>> THROTTLE_BITS.undervoltage) & 1; // 1
 * ```
 */
export const THROTTLE_BITS = {
  undervoltage: 0,
  freq_capped: 1,
  throttled: 2,
  soft_temp_limit: 3,
  undervoltage_occurred: 16,
  freq_capped_occurred: 17,
  throttled_occurred: 18,
  soft_temp_limit_occurred: 19,
} as const;

/**
 * A flag name of {@link THROTTLE_BITS}: the values allowed for `flag` in an `rpi_throttled` sensor.
 *
 * @example
 * ```ts
 * const flag: ThrottleFlag = "throttled_occurred";
 * parseThrottled("0x50000", flag); // 1
 * ```
 */
export type ThrottleFlag = keyof typeof THROTTLE_BITS;

/**
 * Parses `df -PB1 PATH` output into free-space figures (used when `statfs` is unavailable).
 *
 * @example
 * ```ts
 * parseDfOutput("Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/root 1000 250 750 25% /\n");
 * // { totalBytes: 1000, availableBytes: 750 }
 * ```
 */
export function parseDfOutput(text: string): DiskSpace {
  const lines = text.trim().split("\n");
  if (lines.length < 2) throw new SensorReadError("df printed no data line.");
  const f = lines[lines.length - 1].trim().split(/\s+/);
  const total = Number(f[1]);
  const avail = Number(f[3]);
  if (f.length < 6 || !Number.isFinite(total) || !Number.isFinite(avail)) {
    throw new SensorReadError("df output is not in the expected format.");
  }
  return { totalBytes: total, availableBytes: avail };
}

/**
 * Disk space of one file system, as a non-root user sees it.
 *
 * @example
 * ```ts
 * const { totalBytes, availableBytes } = parseDfOutput(dfText);
 * const freePercent = (availableBytes / totalBytes) * 100;
 * ```
 */
export interface DiskSpace {
  /** Size of the file system, in bytes. */
  totalBytes: number;
  /** Bytes a non-root user may still write (excludes the root-reserved blocks). */
  availableBytes: number;
}

/**
 * Reads a small sysfs/procfs text file (at most `buf.length` bytes, into `buf`, which callers polling often
 * reuse). A missing file or a read error becomes a {@link SensorReadError} naming the path.
 *
 * @example
 * ```ts
 * const text = await readSmallFile("/sys/class/thermal/thermal_zone0/temp");
 * ```
 */
export async function readSmallFile(path: string, buf: Uint8Array = new Uint8Array(4096)): Promise<string> {
  let file: Deno.FsFile;
  try {
    // Opening a named pipe blocks until a writer appears (forever, for a mistyped sensor path): refuse it first.
    if (!(await Deno.stat(path)).isFile) throw new SensorReadError(`${path} is not a regular file.`);
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new SensorReadError(`${path} does not exist.`);
    if (e instanceof SensorReadError) throw e;
    throw new SensorReadError(`${path} could not be opened: ${(e as Error).message}.`, { cause: e });
  }
  try {
    let off = 0;
    while (off < buf.length) {
      const n = await file.read(buf.subarray(off));
      if (n === null) break;
      off += n;
    }
    return new TextDecoder().decode(buf.subarray(0, off));
  } catch (e) {
    // sysfs reports device errors (e.g. a 1-Wire bus timeout) as EIO on read.
    throw new SensorReadError(`${path} could not be read: ${(e as Error).message}.`);
  } finally {
    file.close();
  }
}

/**
 * Free space of the file system holding `path`.
 *
 * Uses `statfs(2)` through `node:fs/promises` (Deno has no `Deno.statfs`, but its Node layer implements `statfs`):
 * no child process per sample and no `--allow-run` needed. Falls back to `df -PB1 PATH` if `statfs` fails with
 * anything but a missing path.
 *
 * @example
 * ```ts
 * const { availableBytes, totalBytes } = await readDiskSpace("/");
 * ```
 */
export async function readDiskSpace(path: string): Promise<DiskSpace> {
  try {
    const s = await statfs(path);
    return {
      totalBytes: Number(s.blocks) * Number(s.bsize),
      availableBytes: Number(s.bavail) * Number(s.bsize),
    };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || e instanceof Deno.errors.NotFound) {
      throw new SensorReadError(`${path} does not exist.`);
    }
  }
  const out = await runCommand(["df", "-PB1", "--", path], 5000);
  return parseDfOutput(out);
}

/**
 * Runs `argv` (no shell) and returns its stdout (at most `maxBytes`). A non-zero exit, a failure to start or a
 * timeout is a {@link SensorReadError}; on timeout the child is killed with SIGKILL.
 *
 * @example
 * ```ts
 * const out = await runCommand(["cat", "/sys/class/thermal/thermal_zone0/temp"], 2000);
 * ```
 */
export async function runCommand(argv: string[], timeoutMs: number, maxBytes = 4096): Promise<string> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch (e) {
    throw new SensorReadError(`Command ${argv[0]} could not be started: ${(e as Error).message}.`);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, timeoutMs);
  const reader = child.stdout.getReader();
  const buf = new Uint8Array(maxBytes);
  let off = 0;
  try {
    while (off < buf.length) {
      const { value, done } = await reader.read();
      if (done) break;
      const n = Math.min(value.byteLength, buf.length - off);
      buf.set(value.subarray(0, n), off);
      off += n;
    }
    if (off >= buf.length) {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
    }
  } finally {
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  const status = await child.status;
  clearTimeout(timer);
  if (timedOut) {
    throw new SensorReadError(`Command ${argv[0]} timed out after ${timeoutMs} ms and was killed.`);
  }
  if (!status.success) throw new SensorReadError(`Command ${argv[0]} exited with status ${status.code}.`);
  return new TextDecoder().decode(buf.subarray(0, off));
}

/**
 * What {@link fingerprintFile} remembers about a watched file.
 *
 * @example
 * ```ts
 * const before = await fingerprintFile("/etc/hosts", null);
 * const after = await fingerprintFile("/etc/hosts", before);
 * const changed = after.sha256 !== before.sha256;
 * ```
 */
export interface FileFingerprint {
  /** Last modification time, in ms since the epoch. */
  mtimeMs: number;
  /** Size in bytes. */
  size: number;
  /** SHA-256 of the content, lowercase hex. */
  sha256: string;
}

/**
 * Fingerprints a file: mtime, size and SHA-256, hashing only when mtime or size differ from `previous` (so an
 * unchanged file costs one stat). Hashing streams the file through one reused buffer into `node:crypto`'s
 * incremental hash (WebCrypto has no streaming digest); the file is never read whole.
 *
 * @example
 * ```ts
 * const fp = await fingerprintFile("/etc/passwd", null, new Uint8Array(64 * 1024));
 * ```
 */
export async function fingerprintFile(
  path: string,
  previous: FileFingerprint | null,
  buf: Uint8Array,
): Promise<FileFingerprint> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new SensorReadError(`${path} does not exist.`);
    throw new SensorReadError(`${path} could not be examined: ${(e as Error).message}.`);
  }
  // A named pipe would block the open until a writer appears; a directory cannot be hashed.
  if (!st.isFile) throw new SensorReadError(`${path} is not a regular file.`);
  const mtimeMs = st.mtime?.getTime() ?? 0;
  if (previous && previous.mtimeMs === mtimeMs && previous.size === st.size) return previous;
  const hash = createHash("sha256");
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new SensorReadError(`${path} could not be opened: ${(e as Error).message}.`);
  }
  let size = 0;
  try {
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      size += n;
    }
  } catch (e) {
    throw new SensorReadError(`${path} could not be read: ${(e as Error).message}.`);
  } finally {
    file.close();
  }
  return { mtimeMs, size, sha256: hash.digest("hex") };
}
