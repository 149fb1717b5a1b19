/**
 * Derives the narrowest Deno permission flags `outpost serve` needs for a given `outpost.toml`, and the
 * boot-time "prepare" step the systemd unit runs before the daemon (`ExecStartPre=+`).
 *
 * The prepare step reads the config from the boot partition (falling back to the last good copy the daemon
 * keeps in its state dir when the new file is invalid), creates the state dir and FTP roots owned by the
 * `outpost` user, and writes `OUTPOST_DENO_FLAGS=...` to an environment file that the unit's `ExecStart` expands.
 * So a user who edits the SMTP host or an FTP root on the SD card gets matching permissions on the next start.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type OutpostConfig, parseConfig } from "../src/config/config.ts";
import { ConfigError, resolvePath } from "../src/config/section.ts";

/** Environment variables the daemon reads (systemd notify/watchdog, logging, config path). */
export const DAEMON_ENV_VARS: readonly string[] = [
  "NOTIFY_SOCKET",
  "WATCHDOG_USEC",
  "WATCHDOG_PID",
  "OUTPOST_LOG",
  "OUTPOST_CONFIG",
];

/** Most passive ports listed one by one in `--allow-net` (Deno has no port ranges); wider ranges allow the host. */
export const MAX_LISTED_PORTS = 256;

/** What a config needs from the Deno sandbox and from systemd. */
export interface DerivedPermissions {
  read: string[];
  write: string[];
  /** Host:port entries, or "all" when the config needs arbitrary peers (FTP active mode). */
  net: string[] | "all";
  env: string[];
  run: string[];
  sys: string[];
  /** True when a listening port is below 1024 (needs CAP_NET_BIND_SERVICE). */
  bindsPrivilegedPort: boolean;
  /** FTP roots, state and outbox dirs: the unit's ReadWritePaths and the folders prepare creates. */
  dataDirs: string[];
  /** Human-readable remarks (e.g. why net access is wide). */
  notes: string[];
}

type Table = Record<string, unknown>;

function table(v: unknown): Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date) ? v as Table : {};
}

function str(t: Table, ...keys: string[]): string | undefined {
  for (const k of keys) if (typeof t[k] === "string") return t[k] as string;
  return undefined;
}

function num(t: Table, ...keys: string[]): number | undefined {
  for (const k of keys) if (typeof t[k] === "number") return t[k] as number;
  return undefined;
}

function netHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

function parseRange(v: unknown): { min: number; max: number } | null {
  if (typeof v === "string") {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(v);
    if (m) return { min: Number(m[1]), max: Number(m[2]) };
  }
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === "number")) {
    return { min: v[0] as number, max: v[1] as number };
  }
  return null;
}

function commandName(v: unknown): string | undefined {
  if (Array.isArray(v) && typeof v[0] === "string") return v[0];
  if (typeof v === "string" && v.trim()) return v.trim().split(/\s+/)[0];
  return undefined;
}

const SYSFS_SENSOR_TYPES = new Set(["thermal", "hwmon", "iio", "w1", "rpi_throttled"]);

/**
 * Derives the permissions `outpost serve` needs for `config` (validated by `parseConfig`).
 *
 * @example
 * ```ts
 * const cfg = parseConfig('[device]\nstate_dir = "/var/lib/outpost"\n[ftp]\nport = 2121\n', "/boot/outpost.toml");
 * const perms = derivePermissions(cfg);
 * console.log(denoPermissionFlags(perms).join(" "));
 * ```
 */
export function derivePermissions(config: OutpostConfig): DerivedPermissions {
  const doc = config.document;
  const base = config.path ? config.path.slice(0, config.path.lastIndexOf("/")) || "/" : Deno.cwd();
  const abs = (p: string) => resolvePath(base, p);
  const read = new Set<string>();
  const write = new Set<string>();
  const net = new Set<string>();
  const run = new Set<string>(["systemd-notify"]);
  const env = new Set<string>(DAEMON_ENV_VARS);
  const sys = new Set<string>(["hostname"]);
  const dataDirs = new Set<string>();
  const notes: string[] = [];
  let netAll = false;
  let privileged = false;

  const state = config.device.stateDir;
  read.add(state);
  write.add(state);
  dataDirs.add(state);
  if (config.path) read.add(config.path);

  const ftp = table(doc.ftp);
  if (doc.ftp !== undefined && ftp.enabled !== false) {
    // Keys as read by src/ftp/ftp_config.ts.
    const host = str(ftp, "host") ?? "0.0.0.0";
    const port = num(ftp, "port") ?? 2121;
    if (port > 0 && port < 1024) privileged = true;
    net.add(`${netHost(host)}:${port}`);
    const passive = table(ftp.passive);
    const range = parseRange(passive.ports);
    if (range && range.min > 0 && range.max >= range.min && range.max - range.min < MAX_LISTED_PORTS) {
      for (let p = range.min; p <= range.max; p++) net.add(`${netHost(host)}:${p}`);
    } else {
      net.add(netHost(host));
      if (range && range.min > 0) {
        notes.push(`passive range is wider than ${MAX_LISTED_PORTS} ports: any port on ${host} allowed`);
      }
    }
    if (ftp.active !== false) {
      netAll = true;
      notes.push(
        "ftp active mode (PORT/EPRT) is on: it connects back to any client, so --allow-net is not narrowed " +
          "(set [ftp] active = false to narrow it)",
      );
    }
    for (const u of Array.isArray(ftp.users) ? ftp.users : []) {
      const root = str(table(u), "root");
      if (root) {
        read.add(abs(root));
        write.add(abs(root));
        dataDirs.add(abs(root));
      }
    }
    const anon = table(ftp.anonymous);
    const anonRoot = str(anon, "root");
    if (anonRoot && anon.enabled === true) {
      read.add(abs(anonRoot));
      dataDirs.add(abs(anonRoot));
    }
    const xferlog = str(ftp, "xferlog");
    if (xferlog) {
      write.add(abs(xferlog));
      read.add(abs(xferlog));
    }
    const tls = table(ftp.tls);
    for (const key of ["cert", "key", "cert_file", "key_file", "certificate", "ca_file"]) {
      const p = str(tls, key) ?? str(ftp, `tls_${key}`);
      if (p) read.add(abs(p));
    }
  }

  const smtp = table(doc.smtp);
  if (doc.smtp !== undefined) {
    // Keys as read by src/smtp/smtp_config.ts.
    const host = str(smtp, "host");
    const security = str(smtp, "security") ?? "starttls";
    const port = num(smtp, "port") ?? (security === "tls" ? 465 : security === "none" ? 25 : 587);
    if (host) net.add(`${netHost(host)}:${port}`);
    for (const key of ["ca_file", "password_file", "cert", "key"]) {
      const p = str(smtp, key);
      if (p) read.add(abs(p));
    }
    const envVar = str(smtp, "password_env");
    if (envVar) env.add(envVar);
    // A string password_command runs through /bin/sh -c; a list runs its first element.
    const helper = typeof smtp.password_command === "string" ? "/bin/sh" : commandName(smtp.password_command);
    if (helper) run.add(helper);
  }

  const outbox = table(doc.outbox);
  const outboxDir = str(outbox, "dir", "path");
  if (outboxDir) {
    read.add(abs(outboxDir));
    write.add(abs(outboxDir));
    dataDirs.add(abs(outboxDir));
  }

  // Keys as read by src/alerts/alerts_config.ts; sysfs and /proc live under [alerts] sysfs_root.
  const alerts = table(doc.alerts);
  const sysRoot = abs(str(alerts, "sysfs_root") ?? "/");
  const under = (p: string) => sysRoot === "/" ? p : `${sysRoot}${p}`;
  const stateFile = str(alerts, "state_file");
  if (stateFile) {
    read.add(abs(stateFile));
    write.add(abs(stateFile));
  }
  if (alerts.enabled !== false) {
    for (const s of Object.values(table(doc.sensors))) {
      const t = table(s);
      const type = (str(t, "type") ?? "").toLowerCase();
      const path = str(t, "path");
      const cmd = commandName(t.command);
      if (cmd) run.add(cmd);
      if (path) read.add(abs(path));
      if (type === "load") read.add(under("/proc/loadavg"));
      else if (type === "memory") read.add(under("/proc/meminfo"));
      else if (SYSFS_SENSOR_TYPES.has(type) && !path) read.add(under("/sys"));
      else if (type === "rpi_throttled" && !path) read.add(under("/sys"));
    }
  }

  for (const p of [...read, ...write]) {
    if (/[\s,]/.test(p)) {
      throw new ConfigError(
        [`${p}: paths with spaces or commas cannot be passed to the Deno sandbox`],
        "config",
      );
    }
  }
  return {
    read: [...read],
    write: [...write],
    net: netAll ? "all" : [...net],
    env: [...env],
    run: [...run],
    sys: [...sys],
    bindsPrivilegedPort: privileged,
    dataDirs: [...dataDirs],
    notes,
  };
}

/**
 * The `deno run` permission flags for `perms` (plus the V8 heap cap when given).
 *
 * @example
 * ```ts
 * denoPermissionFlags(perms, { v8MaxOldSpaceMb: 192 });
 * // ["--allow-read=...", "--allow-write=...", "--allow-net=...", ..., "--v8-flags=--max-old-space-size=192"]
 * ```
 */
export function denoPermissionFlags(
  perms: DerivedPermissions,
  opts: { v8MaxOldSpaceMb?: number } = {},
): string[] {
  const flags = [
    `--allow-read=${perms.read.join(",")}`,
    `--allow-write=${perms.write.join(",")}`,
    perms.net === "all" ? "--allow-net" : `--allow-net=${perms.net.join(",")}`,
    `--allow-env=${perms.env.join(",")}`,
    `--allow-run=${perms.run.join(",")}`,
    `--allow-sys=${perms.sys.join(",")}`,
  ];
  if (perms.net !== "all" && perms.net.length === 0) flags[2] = "--deny-net";
  if (opts.v8MaxOldSpaceMb) flags.push(`--v8-flags=--max-old-space-size=${opts.v8MaxOldSpaceMb}`);
  return flags;
}

/** A config chosen at boot: the file itself, or the last good copy when the file is invalid. */
export interface ChosenConfig {
  config: OutpostConfig;
  /** The file the config came from. */
  source: string;
  /** Problems with the primary file when the fallback was used. */
  problems: string[];
}

async function tryLoad(path: string): Promise<OutpostConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "the file does not exist" : (e as Error).message;
    throw new ConfigError([`${path}: cannot be read: ${why}`], path);
  }
  return parseConfig(text, path);
}

/**
 * Loads `primary`, falling back to `lastGood` when it is missing or invalid. Throws when neither works.
 *
 * @example
 * ```ts
 * const chosen = await chooseConfig("/boot/firmware/outpost.toml", "/var/lib/outpost/last-good.toml");
 * ```
 */
export async function chooseConfig(primary: string, lastGood: string | null): Promise<ChosenConfig> {
  try {
    return { config: await tryLoad(primary), source: primary, problems: [] };
  } catch (e) {
    if (!(e instanceof ConfigError) || lastGood === null) throw e;
    try {
      // The fallback's permissions must still allow reading the primary file, so the daemon can report it.
      const config = await tryLoad(lastGood);
      return { config: { ...config, path: primary }, source: lastGood, problems: e.problems };
    } catch {
      throw e;
    }
  }
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | null> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

async function ensureDir(
  path: string,
  owner: { uid: number; gid: number } | null,
  mode: number,
): Promise<boolean> {
  try {
    await Deno.stat(path);
    return false;
  } catch {
    await Deno.mkdir(path, { recursive: true, mode });
    if (owner) await Deno.chown(path, owner.uid, owner.gid);
    return true;
  }
}

const USAGE =
  `Usage: outpost-prepare --config FILE [--last-good FILE] [--env-file FILE] [--user NAME] [--mkdirs]
                       [--writable DIR,DIR] [--v8-max-old-space-mb N]

Derives the Deno permission flags outpost serve needs from the config and prints them (or writes
OUTPOST_DENO_FLAGS=... to --env-file for the systemd unit). With --mkdirs it also creates the state dir and the
FTP roots owned by --user (run as root by the unit's ExecStartPre=+).`;

/**
 * The prepare step's CLI (see the module doc); resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await prepareMain(["--config", "/boot/firmware/outpost.toml"]));
 * ```
 */
export async function prepareMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      "last-good": { type: "string" },
      "env-file": { type: "string" },
      user: { type: "string" },
      mkdirs: { type: "boolean", default: false },
      writable: { type: "string" },
      "v8-max-old-space-mb": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.config) {
    console.error("outpost-prepare: --config FILE is required.\n" + USAGE);
    return 64;
  }
  let chosen: ChosenConfig;
  try {
    chosen = await chooseConfig(values.config, values["last-good"] ?? null);
  } catch (e) {
    const msg = e instanceof ConfigError ? e.message : (e as Error).message;
    console.error(`outpost-prepare: cannot start: ${msg}`);
    return 1;
  }
  if (chosen.problems.length > 0) {
    console.error(
      `outpost-prepare: ${values.config} is not valid, using the last good copy ${chosen.source}:\n  ` +
        chosen.problems.join("\n  "),
    );
  }
  const perms = derivePermissions(chosen.config);
  if (values["last-good"]) perms.read.push(values["last-good"]);
  for (const n of perms.notes) console.error(`outpost-prepare: note: ${n}`);
  if (values.writable) {
    const allowed = values.writable.split(",").filter(Boolean);
    for (const w of perms.write) {
      if (!allowed.some((a) => w === a || w.startsWith(a.endsWith("/") ? a : `${a}/`))) {
        console.error(
          `outpost-prepare: warning: ${w} is not in the unit's ReadWritePaths (${
            allowed.join(", ")
          }); writes ` +
            `there will fail. Re-run scripts/install.sh or scripts/make_unit.ts for this config.`,
        );
      }
    }
  }
  if (values.mkdirs) {
    const owner = values.user ? await lookupUser(values.user) : null;
    if (values.user && !owner) {
      console.error(
        `outpost-prepare: user ${values.user} does not exist; folders are created owned by root.`,
      );
    }
    for (const dir of perms.dataDirs) {
      if (await ensureDir(dir, owner, dir === chosen.config.device.stateDir ? 0o750 : 0o755)) {
        console.error(`outpost-prepare: created ${dir}`);
      }
    }
  }
  const mb = values["v8-max-old-space-mb"] ? Number(values["v8-max-old-space-mb"]) : undefined;
  const flags = denoPermissionFlags(perms, { v8MaxOldSpaceMb: mb });
  if (values["env-file"]) {
    const file = values["env-file"];
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")) || "/", { recursive: true });
    const tmp = `${file}.tmp`;
    await Deno.writeTextFile(tmp, `OUTPOST_DENO_FLAGS=${flags.join(" ")}\n`, { mode: 0o644 });
    await Deno.rename(tmp, file);
  } else {
    console.log(flags.join(" "));
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await prepareMain(Deno.args));
}
