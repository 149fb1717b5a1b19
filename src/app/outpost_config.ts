/**
 * `outpost.toml`: finding, parsing and validating the one config file.
 *
 * Each area reads its own tables (`[ftp]`, `[smtp]`, `[outbox]`, `[alerts]`, `[sensors.*]`, `[[rules]]`) through a
 * {@link Section}; this module reads `[device]`, collects every problem, and refuses the whole file if there is
 * any, so the program never starts on a guess.
 *
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { type AlertsConfig, readAlertsConfig } from "../alerts/alerts_config.ts";
import type { FtpServerOptions } from "../ftp/ftp_server.ts";
import { readFtpSection } from "../ftp/ftp_config.ts";
import type { OutboxOptions } from "../smtp/outbox.ts";
import type { SmtpClientOptions } from "../smtp/smtp_client.ts";
import { readOutboxConfig, readSmtpConfig } from "../smtp/smtp_config.ts";
import { readStatusConfig, type StatusConfig } from "../status/status_config.ts";
import type { ConfigState } from "../status/status_snapshot.ts";
import { statusSandboxNeeds } from "../status/status_needs.ts";
import { alertsSandboxNeeds } from "../alerts/alerts_needs.ts";
import { ftpSandboxNeeds } from "../ftp/ftp_needs.ts";
import { mailSandboxNeeds } from "../smtp/mail_needs.ts";
import { type SandboxNeeds, SandboxNeedsBuilder } from "../config/sandbox_needs.ts";
import { ConfigError, Section } from "../config/section.ts";

/**
 * The `[device]` table: who this board is and where it keeps state.
 *
 * @example
 * ```ts
 * const { device } = parseConfig('[device]\nname = "pi-freezer"\nboard = "rpi4"\n');
 * device.stateDir; // "/var/lib/outpost"
 * ```
 */
export interface DeviceConfig {
  /** Board name shown in mail subjects and the FTP banner; defaults to the host name. */
  name: string;
  /** Board profile id from `boards/` (e.g. "rpi4"), or "generic". */
  board: string;
  /** Folder for the outbox, alert state and the last good config copy (default "/var/lib/outpost"). */
  stateDir: string;
  /** Mail the alert recipients each time the daemon starts (`mail_on_start`; a crash restart always mails). */
  mailOnStart: boolean;
}

/**
 * A validated config file.
 *
 * @example
 * ```ts
 * import { FtpServer } from "../ftp/ftp_server.ts";
 *
 * const cfg = await loadConfig();
 * if (cfg.ftp) await new FtpServer(cfg.ftp).listen();
 * ```
 */
export interface OutpostConfig {
  /** The file it came from, or null for an embedded config. */
  path: string | null;
  /** The `[device]` table. */
  device: DeviceConfig;
  /** The FTP server, or null when `[ftp] enabled = false`. */
  ftp: FtpServerOptions | null;
  /** The mail server, or null when `[smtp]` is absent (mail then waits in the outbox). */
  smtp: SmtpClientOptions | null;
  /** The durable outbox every mail goes through first. */
  outbox: OutboxOptions;
  /** The alert monitor: sensors and rules. */
  alerts: AlertsConfig;
  /** The `[status]` table: the status socket and the optional status page. */
  status: StatusConfig;
  /** The parsed TOML document, for areas that read their own tables. */
  document: Record<string, unknown>;
}

/**
 * Paths tried in order when no config path is given (after `$OUTPOST_CONFIG`): the boot partition first, so a
 * config written on another computer after flashing wins.
 *
 * @example
 * ```ts
 * console.log(`looked in ${DEFAULT_CONFIG_PATHS.join(", ")}`);
 * ```
 */
export const DEFAULT_CONFIG_PATHS: readonly string[] = [
  "/boot/firmware/outpost.toml",
  "/boot/outpost.toml",
  "/etc/outpost/outpost.toml",
];

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "outpost";
  }
}

/**
 * Parses TOML text into a plain object, turning syntax errors into a {@link ConfigError} with line and column.
 *
 * @example
 * ```ts
 * parseTomlDocument('[device]\nname = "pi"'); // { device: { name: "pi" } }
 * ```
 */
export function parseTomlDocument(text: string, source = "config"): Record<string, unknown> {
  const encoding = encodingProblem(text);
  if (encoding) throw new ConfigError([encoding], source);
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const err = e as { line?: number; column?: number; message?: string };
    const where = err.line ? `line ${err.line}, column ${err.column ?? 1}` : "syntax";
    const first = String(err.message ?? e).split("\n")[0];
    throw new ConfigError([`${where}: ${first}`], source);
  }
}

/**
 * The file was not saved as UTF-8 (the text was decoded leniently, so bad bytes are U+FFFD): a message that says
 * which line and how to save it, since the person editing it on a laptop cannot see the difference.
 */
function encodingProblem(text: string): string | null {
  const nuls = text.split("\u0000").length - 1;
  if (text.startsWith("\ufffd\ufffd") || nuls * 4 > text.length) {
    return 'line 1: the file is saved as UTF-16 (Notepad calls it "Unicode"); save it as UTF-8';
  }
  const lineOf = (i: number) => text.slice(0, i).split("\n").length;
  if (nuls > 0) {
    return `line ${lineOf(text.indexOf("\u0000"))}: a NUL character; save the file as plain UTF-8 text`;
  }
  const bad = text.indexOf("\ufffd");
  if (bad < 0) return null;
  return `line ${
    lineOf(bad)
  }: a character here is not UTF-8 (an editor saved the file as Latin-1 or Windows-1252?); ` +
    "save it as UTF-8";
}

/**
 * A reader of some top-level tables that {@link parseConfig} does not know; it records problems in the root
 * section (so they are reported with all the others) and must `finish()` the sections it reads.
 *
 * @example
 * ```ts
 * let banner = "";
 * const readBanner: AreaReader = (root) => {
 *   const s = root.section("motd");
 *   banner = s.string("text", { default: "" });
 *   s.finish();
 * };
 * declare const text: string; // the TOML file
 * const cfg = parseConfig(text, "/etc/outpost/outpost.toml", [readBanner]);
 * console.log(cfg.path, banner);
 * ```
 */
export type AreaReader = (root: Section) => void;

/**
 * Parses and validates config text. `path` names the file in messages and is the base for relative paths.
 * Throws {@link ConfigError} listing every problem.
 *
 * @example
 * ```ts
 * const cfg = parseConfig('[device]\nname = "pi-freezer"\n');
 * console.log(cfg.device.name);
 * ```
 */
export function parseConfig(text: string, path?: string, readers: AreaReader[] = []): OutpostConfig {
  const source = path ?? "config";
  const document = parseTomlDocument(text, source);
  const problems: string[] = [];
  const baseDir = path ? dirname(path) : Deno.cwd();
  const root = new Section(document, "", problems, baseDir);
  const dev = root.section("device");
  const device: DeviceConfig = {
    name: dev.string("name", { default: hostName() }),
    board: dev.string("board", { default: "generic" }),
    stateDir: dev.filePath("state_dir", { default: "/var/lib/outpost" }),
    mailOnStart: dev.bool("mail_on_start", false),
  };
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(device.name)) {
    dev.problem(
      "name",
      "must be 1-63 letters, digits, dots, dashes or underscores (it goes into mail subjects)",
    );
  }
  dev.finish();
  const ftpSection = readFtpSection(root.section("ftp"));
  const alerts = readAlertsConfig(root);
  const smtp = readSmtpConfig(root.section("smtp"), device);
  const outbox = readOutboxConfig(root.section("outbox"), device.stateDir);
  const ftpLogins = ftpSection.options.accounts.users.filter((u) => u.passwordHash !== null).length;
  const status = readStatusConfig(root.section("status"), device.stateDir, ftpLogins);
  for (const read of readers) read(root);
  root.finish();
  if (problems.length > 0) throw new ConfigError(problems, source);
  const ftpDoc = document.ftp as { tls?: { cert_dir?: unknown } } | undefined;
  if (ftpSection.options.tls && ftpDoc?.tls?.cert_dir === undefined) {
    // The self-signed FTPS pair lives with the rest of the state unless the file says otherwise.
    ftpSection.options.tls.certDir = `${device.stateDir}/tls`;
  }
  return {
    path: path ?? null,
    device,
    ftp: ftpSection.enabled ? ftpSection.options : null,
    smtp,
    outbox,
    alerts,
    status,
    document,
  };
}

function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  if (i < 0) return Deno.cwd();
  return i === 0 ? "/" : p.slice(0, i);
}

/**
 * Finds the config file: the given path, else `$OUTPOST_CONFIG`, else the first of
 * {@link DEFAULT_CONFIG_PATHS} that exists. Returns null when none does.
 *
 * @example
 * ```ts
 * const path = await findConfigPath();
 * console.log(path ?? "no config file");
 * ```
 */
export async function findConfigPath(path?: string): Promise<string | null> {
  if (path) return path;
  const env = Deno.env.get("OUTPOST_CONFIG");
  if (env) return env;
  for (const p of DEFAULT_CONFIG_PATHS) {
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch {
      // Not there; try the next one.
    }
  }
  return null;
}

/**
 * Reads and validates the config file (see {@link findConfigPath}). Throws {@link ConfigError}.
 *
 * @example
 * ```ts
 * const cfg = await loadConfig("/boot/firmware/outpost.toml");
 * console.log(cfg.device.board);
 * ```
 */
export async function loadConfig(path?: string, readers: AreaReader[] = []): Promise<OutpostConfig> {
  const found = await findConfigPath(path);
  if (found === null) {
    throw new ConfigError(
      [`looked for ${DEFAULT_CONFIG_PATHS.join(", ")}; give one with --config FILE or OUTPOST_CONFIG`],
      "config",
      "No config file was found",
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(found);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "the file does not exist" : (e as Error).message;
    throw new ConfigError([`${found}: cannot be read: ${why}`], found);
  }
  const abs = found.startsWith("/") ? found : `${Deno.cwd()}/${found}`;
  return parseConfig(text, abs, readers);
}

/**
 * The mail settings of a loaded config: the device, `[smtp]` (null when absent) and `[outbox]`.
 *
 * @example
 * ```ts
 * const mail: MailConfig = await loadMailConfig("/etc/outpost/outpost.toml");
 * console.log(mail.smtp?.host);
 * ```
 */
export interface MailConfig {
  /** `[device]`: the board's name (default sender name and HELO) and its state directory. */
  device: { name: string; stateDir: string };
  /** `[smtp]`: how to reach the mail server, or null when the table is absent. */
  smtp: SmtpClientOptions | null;
  /** `[outbox]`: where queued mail is kept and its limits. */
  outbox: OutboxOptions;
}

/**
 * Loads the config file (see {@link loadConfig}) and returns its mail part. Throws `ConfigError`.
 *
 * @example
 * ```ts
 * const { smtp, outbox } = await loadMailConfig(); // $OUTPOST_CONFIG or the default paths
 * console.log(smtp?.host, outbox.dir);
 * ```
 */
export async function loadMailConfig(path?: string): Promise<MailConfig> {
  const cfg = await loadConfig(path);
  return { device: cfg.device, smtp: cfg.smtp, outbox: cfg.outbox };
}

/**
 * Environment variables the daemon itself reads (systemd notify and watchdog, logging, the config path, the
 * journal's stream marker).
 *
 * @example
 * ```ts
 * DAEMON_ENV_VARS.includes("NOTIFY_SOCKET"); // true
 * ```
 */
export const DAEMON_ENV_VARS: readonly string[] = [
  "NOTIFY_SOCKET",
  "WATCHDOG_USEC",
  "WATCHDOG_PID",
  "OUTPOST_LOG",
  "OUTPOST_CONFIG",
  "JOURNAL_STREAM",
  "INVOCATION_ID",
  "OUTPOST_SANDBOX_ID",
];

/**
 * Everything `outpost serve` needs from the system for `config`: the device's own needs (state folder, the config
 * file, systemd notification, the host name) combined with each area's, as each area declares them from its
 * parsed config. The prepare step turns this into Deno flags and `ReadWritePaths=`; a reload compares against it.
 *
 * @example
 * ```ts
 * declare const text: string; // the TOML file
 * const needs = configSandboxNeeds(parseConfig(text, "/boot/firmware/outpost.toml"));
 * needs.write; // ["/var/lib/outpost", ...]
 * ```
 */
export function configSandboxNeeds(config: OutpostConfig): SandboxNeeds {
  const b = new SandboxNeedsBuilder();
  b.readWrite(config.device.stateDir, { own: true });
  if (config.path) b.read(config.path);
  b.run("systemd-notify").sys("hostname");
  for (const v of DAEMON_ENV_VARS) b.env(v);
  if (config.ftp) b.merge(ftpSandboxNeeds(config.ftp));
  b.merge(mailSandboxNeeds(config.smtp, config.outbox));
  b.merge(alertsSandboxNeeds(config.alerts, config.device.stateDir));
  b.merge(statusSandboxNeeds(config.status));
  return b.build();
}

/**
 * Which config runs (the file, the last good copy, or an embedded one) and what is wrong with the file on disk
 * now, for `outpost status`: an edit that was not applied shows its problems.
 *
 * @example
 * ```ts
 * const cfg = await loadConfig();
 * const state = await configFileState(cfg, false);
 * if (state.problems.length) console.log(state.problems.join("\n"));
 * ```
 */
export async function configFileState(cfg: OutpostConfig, fromLastGood: boolean): Promise<ConfigState> {
  if (cfg.path === null) return { file: null, using: "embedded", edited: false, problems: [] };
  const using = fromLastGood ? "last-good" : "file";
  let text: string;
  try {
    text = await Deno.readTextFile(cfg.path);
  } catch (e) {
    return {
      file: cfg.path,
      using,
      edited: true,
      problems: [
        `${cfg.path}: cannot be read: ${
          e instanceof Deno.errors.NotFound
            ? "it no longer exists (the daemon runs what it read at start)"
            : e instanceof Deno.errors.PermissionDenied
            ? "permission denied"
            : (e as Error).message
        }`,
      ],
    };
  }
  let edited: boolean;
  try {
    edited = JSON.stringify(parseTomlDocument(text, cfg.path)) !== JSON.stringify(cfg.document);
  } catch (e) {
    return {
      file: cfg.path,
      using,
      edited: true,
      problems: e instanceof ConfigError ? e.problems : [String(e)],
    };
  }
  try {
    parseConfig(text, cfg.path);
    return { file: cfg.path, using, edited, problems: [] };
  } catch (e) {
    return { file: cfg.path, using, edited, problems: e instanceof ConfigError ? e.problems : [String(e)] };
  }
}
