/**
 * What `outpost check-config` tells a person about a valid config: a short summary (what runs, on which ports, who
 * can log in, which sensors and rules, where mail goes) and warnings about things that are allowed but probably
 * wrong (an unknown board id, a missing FTP root or sensor file, `implicit_port` equal to `port`, overlapping user
 * roots, an anonymous root of `/`, a world-readable file holding an SMTP password, weak password hashes). The JSON
 * form uses the config file's own table and key names.
 *
 * @module
 */

import { listBoardProfiles } from "../alerts/board_profiles.ts";
import { formatDuration } from "../alerts/templates.ts";
import type { OutpostConfig } from "../app/outpost_config.ts";
import { resolvePath } from "../config/section.ts";
import type { FtpPermissions } from "../ftp/ftp_file_system.ts";

/**
 * The summary as data, keyed like `outpost.toml`.
 *
 * @example
 * ```ts
 * const s: ConfigSummary = configSummary(cfg);
 * s.ftp?.port; // 21
 * ```
 */
export interface ConfigSummary {
  /** The file. */
  file: string | null;
  /** `[device]`. */
  device: { name: string; board: string; state_dir: string };
  /** `[ftp]`, or null when off. */
  ftp: {
    host: string;
    port: number;
    tls: { mode: string; implicit_port: number | null } | null;
    passive: { ports: string | null };
    active: boolean;
    users: { name: string; root: string; permissions: string[] }[];
    anonymous: { enabled: boolean; root: string | null };
  } | null;
  /** `[smtp]`, or null when absent (no password, ever). */
  smtp: { host: string; port: number; security: string; from: string; username: string | null } | null;
  /** `[alerts]`. */
  alerts: { enabled: boolean; to: string[] };
  /** `[sensors.<name>]`. */
  sensors: Record<string, { type: string; interval: string; path: string | null; unit: string }>;
  /** `[[rules]]`. */
  rules: {
    id: string;
    sensor: string;
    above?: number;
    below?: number;
    for: number;
    of: number;
    severity: string;
    to: string[];
  }[];
  /** `[status]`. */
  status: { socket: string | null; http: boolean; host: string; port: number };
}

const PERM_KEYS: (keyof FtpPermissions)[] = [
  "list",
  "read",
  "write",
  "append",
  "delete",
  "mkdir",
  "rename",
  "chmod",
];

function permissionWords(p: FtpPermissions): string[] {
  const on = PERM_KEYS.filter((k) => p[k]);
  if (on.length === PERM_KEYS.length) return ["all"];
  if (on.length === 2 && p.list && p.read) return ["read-only"];
  return on;
}

function anonymousRoot(cfg: OutpostConfig): string | null {
  const ftp = cfg.document.ftp as { anonymous?: { root?: unknown } } | undefined;
  const root = ftp?.anonymous?.root;
  if (typeof root !== "string") return null;
  const base = cfg.path ? cfg.path.slice(0, cfg.path.lastIndexOf("/")) || "/" : Deno.cwd();
  return resolvePath(base, root);
}

function durationText(ms: number): string {
  return formatDuration(ms).replace(" ", "");
}

/**
 * The summary of a valid config, keyed like the file.
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(configSummary(parseConfig(text, path)), null, 2));
 * ```
 */
export function configSummary(cfg: OutpostConfig): ConfigSummary {
  const f = cfg.ftp;
  const tls = f?.tls && f.tls.mode !== "off" ? { mode: f.tls.mode, implicit_port: f.tls.implicitPort } : null;
  return {
    file: cfg.path,
    device: { name: cfg.device.name, board: cfg.device.board, state_dir: cfg.device.stateDir },
    ftp: f
      ? {
        host: f.hostname,
        port: f.port,
        tls,
        passive: { ports: f.passive.portMin > 0 ? `${f.passive.portMin}-${f.passive.portMax}` : null },
        active: f.allowActive,
        users: f.accounts.users.map((u) => ({
          name: u.name,
          root: u.root,
          permissions: permissionWords(u.perms),
        })),
        anonymous: { enabled: f.accounts.anonymousEnabled, root: anonymousRoot(cfg) },
      }
      : null,
    smtp: cfg.smtp
      ? {
        host: cfg.smtp.host,
        port: cfg.smtp.port,
        security: cfg.smtp.security,
        from: cfg.smtp.from,
        username: cfg.smtp.username ?? null,
      }
      : null,
    alerts: { enabled: cfg.alerts.enabled, to: cfg.alerts.to },
    sensors: Object.fromEntries(
      cfg.alerts.sensors.map((s) => [s.name, {
        type: s.type,
        interval: durationText(s.intervalMs),
        path: s.path,
        unit: s.unit,
      }]),
    ),
    rules: cfg.alerts.rules.map((r) => ({
      id: r.id,
      sensor: r.sensor,
      ...(r.direction === "above" ? { above: r.threshold } : { below: r.threshold }),
      for: r.forSamples,
      of: r.ofSamples,
      severity: r.severity,
      to: r.to,
    })),
    status: {
      socket: cfg.status.socket,
      http: cfg.status.http,
      host: cfg.status.host,
      port: cfg.status.port,
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound);
  }
}

function inside(child: string, parent: string): boolean {
  const p = parent.endsWith("/") ? parent : parent + "/";
  return child.startsWith(p) || parent === "/";
}

/** PBKDF2 iterations below which a hash is called weak (`outpost passwd` makes 200000). */
export const WEAK_HASH_ITERATIONS = 100_000;

function iterations(hash: string): number {
  return Number(hash.split("$")[1]);
}

/**
 * Warnings about a valid config, each `key: what is wrong, what to do`.
 *
 * @example
 * ```ts
 * for (const w of await configWarnings(cfg)) console.error(`warning: ${w}`);
 * ```
 */
export async function configWarnings(cfg: OutpostConfig, boardsDir?: string): Promise<string[]> {
  const out: string[] = [];
  let boards = await listBoardProfiles(boardsDir).catch(() => [] as string[]);
  if (boards.length === 0) boards = ["generic-arm64", "rpi-zero2w", "rpi3", "rpi4", "rpi5"]; // shipped profiles
  if (cfg.device.board !== "generic" && !boards.includes(cfg.device.board)) {
    out.push(
      `device.board: "${cfg.device.board}" is not a known board (${boards.join(", ")}); ` +
        `its sensors and heap size fall back to generic`,
    );
  }
  const f = cfg.ftp;
  if (f) {
    const users = f.accounts.users;
    for (const [i, u] of users.entries()) {
      if (!(await exists(u.root))) {
        out.push(
          `ftp.users[${i}].root: ${u.root} does not exist; ${u.name} cannot log in until it is created`,
        );
      }
      if (u.passwordHash && iterations(u.passwordHash) < WEAK_HASH_ITERATIONS) {
        out.push(
          `ftp.users[${i}].password_hash: only ${iterations(u.passwordHash)} PBKDF2 iterations; ` +
            `make a new hash with \`outpost passwd\``,
        );
      }
    }
    for (let i = 0; i < users.length; i++) {
      for (let j = 0; j < users.length; j++) {
        if (i === j) continue;
        const a = users[i];
        const b = users[j];
        if (
          a.root === b.root && i < j && (a.perms.write || b.perms.write || a.perms.delete || b.perms.delete)
        ) {
          out.push(
            `ftp.users[${j}].root: ${b.name} and ${a.name} share ${a.root}; each sees the other's files and ` +
              `the one allowed to write or delete can change them`,
          );
        } else if (a.root !== b.root && inside(b.root, a.root)) {
          out.push(
            `ftp.users[${j}].root: ${b.root} is inside ${a.name}'s root ${a.root}, so ${a.name} can read` +
              `${a.perms.write || a.perms.delete ? " and change" : ""} ${b.name}'s files`,
          );
        }
      }
    }
    const anonRoot = anonymousRoot(cfg);
    if (f.accounts.anonymousEnabled && anonRoot === "/") {
      out.push(`ftp.anonymous.root: "/" lets anyone read the whole file system; use a folder of its own`);
    } else if (f.accounts.anonymousEnabled && anonRoot && !(await exists(anonRoot))) {
      out.push(`ftp.anonymous.root: ${anonRoot} does not exist`);
    }
    if (f.tls && f.tls.mode !== "off" && f.tls.implicitPort !== null && f.tls.implicitPort === f.port) {
      out.push(
        `ftp.tls.implicit_port: ${f.port} is also ftp.port; one of them cannot listen ` +
          `(use 990 for ftps://, or 0 for no implicit FTPS)`,
      );
    }
  }
  for (const s of cfg.alerts.sensors) {
    if (s.path && ["file", "file_changed", "disk"].includes(s.type) && !(await exists(s.path))) {
      out.push(
        `sensors.${s.name}.path: ${s.path} does not exist (yet); the sensor reports an error until it does`,
      );
    }
  }
  const smtpDoc = cfg.document.smtp as { password?: unknown } | undefined;
  if (cfg.path && typeof smtpDoc?.password === "string") {
    const mode = (await Deno.stat(cfg.path).catch(() => null))?.mode;
    if (mode !== null && mode !== undefined && (mode & 0o044) !== 0) {
      out.push(
        `smtp.password: ${cfg.path} holds the SMTP password and others can read it ` +
          `(mode 0${
            (mode & 0o777).toString(8)
          }); use password_env or password_command, or chmod 600 the file`,
      );
    }
  }
  if (cfg.status.passwordHash && iterations(cfg.status.passwordHash) < WEAK_HASH_ITERATIONS) {
    out.push(
      `status.password_hash: only ${iterations(cfg.status.passwordHash)} PBKDF2 iterations; ` +
        `make a new hash with \`outpost passwd\``,
    );
  }
  return out;
}

function portText(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * The summary as the lines `outpost check-config` prints.
 *
 * @example
 * ```ts
 * console.log(formatConfigSummary(configSummary(cfg), await configWarnings(cfg)));
 * ```
 */
export function formatConfigSummary(s: ConfigSummary, warnings: string[]): string {
  const lines: string[] = [`${s.file ?? "The config"} is valid.`, ""];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(8)}${text}`);
  row("Device", `${s.device.name}, board ${s.device.board}, state in ${s.device.state_dir}`);
  if (!s.ftp) row("FTP", "off");
  else {
    const f = s.ftp;
    let tls = "plain FTP only (passwords cross the network in clear text)";
    if (f.tls) {
      tls = `FTPS ${f.tls.mode}` +
        (f.tls.implicit_port ? `, implicit ftps:// on ${f.tls.implicit_port}` : "");
    }
    row("FTP", `on ${portText(f.host, f.port)}, ${tls}; passive ports ${f.passive.ports ?? "any"}`);
    if (f.users.length === 0 && !f.anonymous.enabled) {
      lines.push("        nobody can log in (no [[ftp.users]])");
    }
    for (const u of f.users) lines.push(`        ${u.name} (${u.permissions.join(", ")}) in ${u.root}`);
    if (f.anonymous.enabled) lines.push(`        anonymous (read-only) in ${f.anonymous.root ?? "?"}`);
  }
  if (s.smtp) {
    row(
      "Mail",
      `via ${portText(s.smtp.host, s.smtp.port)} (${s.smtp.security})` +
        `${s.smtp.username ? ` as ${s.smtp.username}` : ""}, from ${s.smtp.from}`,
    );
  } else row("Mail", "no [smtp]: mail waits in the outbox");
  if (!s.alerts.enabled) row("Alerts", "off ([alerts] enabled = false)");
  else row("Alerts", `to ${s.alerts.to.length ? s.alerts.to.join(", ") : "(nobody by default)"}`);
  const sensors = Object.entries(s.sensors);
  row(
    "Sensors",
    sensors.length ? sensors.map(([n, x]) => `${n} (${x.type}, every ${x.interval})`).join(", ") : "none",
  );
  if (s.rules.length === 0) row("Rules", "none");
  for (const [i, r] of s.rules.entries()) {
    const unit = s.sensors[r.sensor]?.unit ? ` ${s.sensors[r.sensor].unit}` : "";
    const cond = r.above !== undefined ? `> ${r.above}${unit}` : `< ${r.below}${unit}`;
    const debounce = r.for > 1 ? r.of > r.for ? `, ${r.for} of ${r.of} readings` : `, ${r.for} in a row` : "";
    row(
      i === 0 ? "Rules" : "",
      `${r.sensor} ${cond}${debounce}, ${r.severity}, to ${r.to.join(", ") || "(nobody)"}`,
    );
  }
  row(
    "Status",
    `\`outpost status\` via ${s.status.socket ?? "(socket off)"}; page ${
      s.status.http ? `http://${portText(s.status.host, s.status.port)}/` : "off"
    }`,
  );
  if (warnings.length) {
    lines.push("", `${warnings.length} warning(s):`);
    for (const w of warnings) lines.push(`  ${w}`);
  }
  return lines.join("\n");
}

/**
 * Orders problems so a mistyped table name (an unknown top-level key) comes before the problems it causes (a
 * missing `[smtp]` leaves rules without recipients, say).
 *
 * @example
 * ```ts
 * orderProblems(["rules[0].to: no recipients", 'smpt: unknown key (did you mean "smtp"?)']);
 * // ['smpt: unknown key (did you mean "smtp"?)', "rules[0].to: no recipients"]
 * ```
 */
export function orderProblems(problems: string[]): string[] {
  const top = (p: string) => /^[^.\s[\]]+: unknown key/.test(p);
  return [...problems.filter(top), ...problems.filter((p) => !top(p))];
}
