/**
 * Derives the narrowest Deno permission flags `outpost serve` needs for a given `outpost.toml`: the folders it
 * reads and writes, the addresses it listens on and connects to, the programs it runs, and whether it needs
 * CAP_NET_BIND_SERVICE. Used by the unit generator and by the boot-time prepare step (outpost_prepare.ts).
 *
 * @module
 */

import type { OutpostConfig } from "../src/config/config.ts";
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
  if (config.ftp) {
    // The FTP server runs (it is on unless [ftp] enabled = false): listen, passive and active from the parsed
    // options; the users' roots from the table (the Accounts object keeps them private).
    const { hostname: host, port, passive, allowActive } = config.ftp;
    if (port > 0 && port < 1024) privileged = true;
    // Passive listeners bind the control connection's local address. With a wildcard listen address that is
    // whatever address the client reached (LAN, Wi-Fi, DHCP...), so ports are allowed on any host (":port").
    const wildcard = host === "0.0.0.0" || host === "::" || host === "[::]";
    const on = (p: number) => wildcard ? `:${p}` : `${netHost(host)}:${p}`;
    net.add(on(port));
    // Implicit FTPS (ftps://, 990 by default when [ftp.tls] is on) listens on its own port.
    const tlsOpts = config.ftp.tls;
    if (tlsOpts && tlsOpts.mode !== "off" && tlsOpts.implicitPort) {
      net.add(on(tlsOpts.implicitPort));
      if (tlsOpts.implicitPort < 1024) privileged = true;
    }
    const range = { min: passive.portMin, max: passive.portMax };
    if (range.min > 0 && range.max >= range.min && range.max - range.min < MAX_LISTED_PORTS) {
      for (let p = range.min; p <= range.max; p++) net.add(on(p));
    } else if (wildcard) {
      netAll = true;
      notes.push(
        `ftp listens on ${host} with ${
          range.min > 0
            ? "a passive range wider than " + MAX_LISTED_PORTS + " ports"
            : "no passive port range"
        }: ` +
          `passive ports can be any port on any local address, so --allow-net is not narrowed ` +
          `(set [ftp.passive] ports = "50000-50031" to narrow it)`,
      );
    } else {
      net.add(netHost(host));
      if (range.min > 0) {
        notes.push(`passive range is wider than ${MAX_LISTED_PORTS} ports: any port on ${host} allowed`);
      }
    }
    if (allowActive) {
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
    const xferlog = config.ftp.xferlogPath;
    if (xferlog) {
      write.add(xferlog);
      read.add(xferlog);
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
  // A 1 MB young generation keeps V8 from growing its nursery to 16 MB under login and listing bursts: measured
  // with `deno task bench -- --only idle`, 36 KB instead of 48 KB RSS per added idle session, same throughput.
  if (opts.v8MaxOldSpaceMb) {
    flags.push(`--v8-flags=--max-old-space-size=${opts.v8MaxOldSpaceMb},--max-semi-space-size=1`);
  }
  return flags;
}
