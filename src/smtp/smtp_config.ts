/**
 * Reading the `[smtp]` and `[outbox]` tables of outpost.toml.
 *
 * ```toml
 * [smtp]
 * host = "smtp.gmail.com"          # required
 * port = 587                       # default: 587 for starttls, 465 for tls, 25 for none
 * security = "starttls"            # "starttls" (default, fails closed), "tls" (implicit, port 465) or "none"
 * allow_insecure = false           # allow security = "none" to a host that is not loopback
 * ca_file = "/etc/ssl/my-ca.pem"   # trust these CAs instead of the default root store
 * tls_fingerprint = "AB:CD:..."    # SHA-256 pin of the server certificate; when set it alone decides trust
 * tls_servername = "mail.lan"      # name the certificate must carry (default: host)
 * username = "me@gmail.com"
 * password_env = "OUTPOST_SMTP_PASSWORD"   # or password = "..." or password_command = "pass show gmail"
 * password_command_timeout = "10s"
 * auth = "auto"                    # "auto", "plain" or "login"
 * from = "me@gmail.com"            # required: envelope sender and default From
 * from_name = "pi-freezer"         # default: [device] name
 * helo_name = "pi-freezer"         # default: [device] name
 * aliases = { root = "me@example.com", default = "me@example.com" }   # local names (cron's "root") → addresses
 * connect_timeout = "15s"
 * reply_timeout = "60s"
 * data_timeout = "5m"
 *
 * [outbox]
 * dir = "/var/lib/outpost/outbox"  # default: <state_dir>/outbox
 * maildrop = "/var/lib/outpost/outbox/maildrop"  # default: <dir>/maildrop; where local users submit (mode 1733)
 * max_age = "24h"                  # retry this long, then move to failed/
 * max_size = "64MiB"               # bound on queued mail; oldest non-critical dropped first
 * max_message_size = "25MiB"
 * retry_min = "30s"
 * retry_max = "1h"
 * poll_interval = "30s"            # how often the worker looks for mail queued by other processes
 * ```
 *
 * @module
 */

import type { Section } from "../config/section.ts";
import type { SmtpClientOptions } from "./smtp_client.ts";
import type { OutboxOptions } from "./outbox.ts";
import { normalizeFingerprint } from "./smtp_socket.ts";
import { parseMailbox } from "./mime_builder.ts";

export type { SmtpClientOptions } from "./smtp_client.ts";
export type { OutboxOptions } from "./outbox.ts";

const DEFAULT_PORTS = { starttls: 587, tls: 465, none: 25 } as const;

/**
 * Reads `[smtp]`; null when the table is absent. Problems are recorded on the section, as every reader does.
 *
 * @example
 * ```ts
 * import { Section } from "../config/section.ts";
 *
 * const problems: string[] = [];
 * const smtp = readSmtpConfig(new Section({ host: "127.0.0.1", security: "none", from: "pi@x.org" }, "smtp",
 *   problems), { name: "pi" });
 * console.log(smtp?.host, problems); // 127.0.0.1 []
 * ```
 */
export function readSmtpConfig(smtp: Section, device: { name: string }): SmtpClientOptions | null {
  if (!smtp.present) {
    smtp.finish();
    return null;
  }
  const host = smtp.string("host", { required: true }) ?? "";
  const security = smtp.string("security", { default: "starttls", oneOf: ["starttls", "tls", "none"] }) as
    | "starttls"
    | "tls"
    | "none";
  const port = smtp.int("port", { default: DEFAULT_PORTS[security], min: 1, max: 65535 });
  const allowInsecure = smtp.bool("allow_insecure", false);
  const caFile = smtp.filePath("ca_file");
  let fingerprintSha256 = smtp.string("tls_fingerprint");
  if (fingerprintSha256 !== undefined) {
    const n = normalizeFingerprint(fingerprintSha256);
    if (!n) smtp.problem("tls_fingerprint", "must be a SHA-256 fingerprint: 64 hex digits, colons allowed");
    fingerprintSha256 = n ?? undefined;
  }
  const tlsServername = smtp.string("tls_servername");
  const username = smtp.string("username");
  const password = smtp.string("password");
  const passwordEnv = smtp.string("password_env");
  const rawCmd = smtp.raw("password_command");
  let passwordCommand: string[] | undefined;
  if (typeof rawCmd === "string") passwordCommand = ["/bin/sh", "-c", rawCmd];
  else if (Array.isArray(rawCmd) && rawCmd.length > 0 && rawCmd.every((x) => typeof x === "string")) {
    passwordCommand = rawCmd as string[];
  } else if (rawCmd !== undefined) {
    smtp.problem("password_command", "must be a command string or a non-empty list of strings");
  }
  const sources = [password, passwordEnv, passwordCommand].filter((x) => x !== undefined).length;
  if (sources > 1) smtp.problem("password", "set only one of password, password_env and password_command");
  if (username === undefined && sources > 0) smtp.problem("username", "is required when a password is set");
  const passwordCommandTimeoutMs = smtp.duration("password_command_timeout", 10_000, { min: 100 });
  const authMethod = smtp.string("auth", { default: "auto", oneOf: ["auto", "plain", "login"] }) as
    | "auto"
    | "plain"
    | "login";
  let from = smtp.string("from", { required: true }) ?? "";
  // `from = "pi-freezer <you@gmail.com>"` (as the board templates write it): the name is the From name unless
  // from_name says otherwise, the address is the envelope sender.
  let nameInFrom = "";
  if (from) {
    try {
      const mb = parseMailbox(from);
      nameInFrom = mb.name;
      from = mb.address;
    } catch {
      smtp.problem("from", `must be a mail address, got "${from}"`);
    }
  }
  const fromName = smtp.string("from_name", { default: nameInFrom || device.name });
  const heloDefault = device.name.replace(/[^A-Za-z0-9.-]/g, "-").replace(/^-+|-+$/g, "") || "localhost";
  const heloName = smtp.string("helo_name", { default: heloDefault });
  if (!/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:.]+\]$/.test(heloName)) {
    smtp.problem("helo_name", `must be a host name, got "${heloName}"`);
  }
  const aliases = readAliases(smtp);
  const connectTimeoutMs = smtp.duration("connect_timeout", 15_000, { min: 100 });
  const replyTimeoutMs = smtp.duration("reply_timeout", 60_000, { min: 100 });
  const dataTimeoutMs = smtp.duration("data_timeout", 300_000, { min: 100 });
  if (security === "none" && host && !allowInsecure && !/^(localhost|127\.[\d.]+|::1)$/.test(host)) {
    smtp.problem(
      "security",
      `"none" is allowed only to loopback unless allow_insecure = true (host is ${host})`,
    );
  }
  smtp.finish();
  return {
    host,
    port,
    security,
    allowInsecure,
    caFile,
    fingerprintSha256,
    tlsServername,
    username,
    password,
    passwordEnv,
    passwordCommand,
    passwordCommandTimeoutMs,
    authMethod,
    heloName,
    from,
    fromName: fromName || undefined,
    connectTimeoutMs,
    replyTimeoutMs,
    dataTimeoutMs,
    aliases,
  };
}

function readAliases(smtp: Section): Record<string, string[]> {
  const raw = smtp.raw("aliases");
  const out: Record<string, string[]> = {};
  if (raw === undefined) return out;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    smtp.problem("aliases", 'must be a table of local names, e.g. aliases = { root = "you@example.com" }');
    return out;
  }
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const list = typeof value === "string" ? [value] : value;
    if (!/^[A-Za-z0-9._+-]+$/.test(name)) {
      smtp.problem(`aliases.${name}`, "a local name may hold only letters, digits and . _ + -");
      continue;
    }
    if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === "string")) {
      smtp.problem(`aliases.${name}`, "must be an address or a list of addresses");
      continue;
    }
    const addrs: string[] = [];
    for (const v of list as string[]) {
      try {
        addrs.push(parseMailbox(v).address);
      } catch {
        smtp.problem(`aliases.${name}`, `must be a mail address with a domain, got "${v}"`);
      }
    }
    out[name.toLowerCase()] = addrs;
  }
  return out;
}

/**
 * Maps a recipient to real addresses the way the `[smtp] aliases` table says: a bare local name (`root`, or
 * `root@localhost`, `root@<this host>`) becomes its alias, else the `default` alias. Full addresses pass through.
 * Throws an Error naming the key to set when a local name has no alias.
 *
 * @example
 * ```ts
 * resolveRecipient("root", { root: ["me@example.com"] }, ["pi-freezer"]); // ["me@example.com"]
 * resolveRecipient("me@example.com", {}, []); // ["me@example.com"]
 * ```
 */
export function resolveRecipient(
  rcpt: string,
  aliases: Record<string, string[]>,
  localHosts: string[],
): string[] {
  const r = rcpt.trim().replace(/^<(.*)>$/, "$1");
  const at = r.lastIndexOf("@");
  const domain = at >= 0 ? r.slice(at + 1).toLowerCase() : "";
  const isLocal = at < 0 || domain === "localhost" || domain === "localhost.localdomain" ||
    localHosts.some((h) => h.toLowerCase() === domain);
  if (!isLocal) return [r];
  const name = (at < 0 ? r : r.slice(0, at)).toLowerCase();
  const hit = aliases[name] ?? aliases["default"];
  if (hit) return hit;
  throw new Error(
    `"${rcpt}" is a local name and [smtp] aliases has no entry for it: set aliases.${
      /^[A-Za-z0-9._+-]+$/.test(name) ? name : "default"
    } = "you@example.com" (or aliases.default) in the config`,
  );
}

/**
 * Reads `[outbox]` (missing table means all defaults); the folder defaults to `<state_dir>/outbox`.
 *
 * @example
 * ```ts
 * import { Section } from "../config/section.ts";
 *
 * const problems: string[] = [];
 * const o = readOutboxConfig(new Section(undefined, "outbox", problems), "/var/lib/outpost");
 * console.log(o.dir); // /var/lib/outpost/outbox
 * ```
 */
export function readOutboxConfig(outbox: Section, stateDir: string): OutboxOptions {
  const dir = outbox.filePath("dir", { default: `${stateDir.replace(/\/+$/, "")}/outbox` });
  const maxAgeMs = outbox.duration("max_age", 86_400_000, { min: 60_000 });
  const maxBytes = outbox.size("max_size", 64 * 1024 * 1024, { min: 64 * 1024 });
  const maxMessageBytes = outbox.size("max_message_size", 25 * 1024 * 1024, { min: 1024 });
  const retryMinMs = outbox.duration("retry_min", 30_000, { min: 100 });
  const retryMaxMs = outbox.duration("retry_max", 3_600_000, { min: 100 });
  const pollMs = outbox.duration("poll_interval", 30_000, { min: 100 });
  const maildrop = outbox.filePath("maildrop", { default: `${dir}/maildrop` });
  if (retryMaxMs < retryMinMs) outbox.problem("retry_max", "must not be shorter than retry_min");
  outbox.finish();
  return { dir, maxAgeMs, maxBytes, maxMessageBytes, retryMinMs, retryMaxMs, pollMs, maildrop };
}

/**
 * The folders mail touches and who needs which access, for the Deno permission flags and the unit's
 * `ReadWritePaths` (see the README, "Who touches which folder").
 *
 * @example
 * ```ts
 * import type { OutpostConfig } from "../app/outpost_config.ts";
 *
 * declare const cfg: OutpostConfig; // as loadConfig() returns it
 * const p = mailPaths(cfg.outbox);
 * console.log(p.daemonReadWrite); // ["/var/lib/outpost/outbox"] (and the maildrop when it is elsewhere)
 * ```
 */
export interface MailPaths {
  /** The outbox folder (`[outbox] dir`): queue/, failed/, incoming/, tmp/ inside; owned by the daemon's user. */
  outbox: string;
  /** The maildrop (`[outbox] maildrop`): mode 1733, owned by the daemon's user; submitters create files in it. */
  maildrop: string;
  /** What the daemon reads and writes (Deno --allow-read/--allow-write, systemd ReadWritePaths). */
  daemonReadWrite: string[];
  /** What `outpost sendmail`/`send` write as any user (plus reading the config file). */
  submitterWrite: string[];
  /**
   * Folders every local user must be able to search (`x`) to reach the maildrop: its ancestors. The daemon makes
   * the outbox folder 0711 itself; a state folder above it must allow `o+x` too.
   */
  submitterSearch: string[];
}

/**
 * Where mail lives for a parsed `[outbox]` table; see {@link MailPaths}.
 *
 * @example
 * ```ts
 * mailPaths({ dir: "/var/lib/outpost/outbox", maxAgeMs: 1, maxBytes: 1, maxMessageBytes: 1, retryMinMs: 1,
 *   retryMaxMs: 1 }).maildrop; // "/var/lib/outpost/outbox/maildrop"
 * ```
 */
export function mailPaths(outbox: OutboxOptions): MailPaths {
  const maildrop = outbox.maildrop ?? `${outbox.dir}/maildrop`;
  const inside = maildrop.startsWith(outbox.dir + "/");
  const search: string[] = [];
  for (
    let p = maildrop.slice(0, maildrop.lastIndexOf("/"));
    p.length > 1;
    p = p.slice(0, p.lastIndexOf("/"))
  ) {
    search.unshift(p);
  }
  return {
    outbox: outbox.dir,
    maildrop,
    daemonReadWrite: inside ? [outbox.dir] : [outbox.dir, maildrop],
    submitterWrite: [maildrop],
    submitterSearch: search,
  };
}
