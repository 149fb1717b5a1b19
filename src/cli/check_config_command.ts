/**
 * `outpost check-config [FILE]`: validates a config file and prints the resolved settings, or every problem.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadConfig, type OutpostConfig } from "../config/config.ts";
import { ConfigError } from "../config/section.ts";

const HELP = `Usage: outpost check-config [FILE]

Validates FILE (default: $OUTPOST_CONFIG, /boot/firmware/outpost.toml, /boot/outpost.toml,
/etc/outpost/outpost.toml) and prints the resolved settings with defaults filled in and secrets hidden.
Exit status: 0 valid, 78 (EX_CONFIG) with one line per problem on stderr.`;

/**
 * The resolved config as plain JSON-able data, with password hashes and passwords replaced by "(hidden)".
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(describeConfig(cfg), null, 2));
 * ```
 */
export function describeConfig(cfg: OutpostConfig): Record<string, unknown> {
  const ftp = cfg.ftp
    ? {
      ...cfg.ftp,
      accounts: undefined,
      users: cfg.ftp.accounts.users.map((u) => ({
        name: u.name,
        root: u.root,
        permissions: Object.entries(u.perms).filter(([, v]) => v).map(([k]) => k),
        password_hash: u.passwordHash ? "(hidden)" : null,
      })),
      anonymous: cfg.ftp.accounts.anonymousEnabled,
    }
    : { enabled: false };
  return JSON.parse(JSON.stringify(
    { file: cfg.path, device: cfg.device, ftp, alerts: cfg.alerts, ...describeExtra(cfg) },
    (k, v) => (/password$|^password_|secret/i.test(k) && typeof v === "string" ? "(hidden)" : v),
  ));
}

function describeExtra(cfg: OutpostConfig): Record<string, unknown> {
  const { path: _p, device: _d, ftp: _f, alerts: _a, document: _doc, ...rest } = cfg;
  return rest;
}

/**
 * Runs `outpost check-config`.
 *
 * @example
 * ```ts
 * const status = await checkConfigCommand(["/boot/firmware/outpost.toml"]);
 * ```
 */
export async function checkConfigCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { help: { type: "boolean", short: "h" }, config: { type: "string", short: "C" } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    const cfg = await loadConfig(positionals[0] ?? values.config);
    console.log(JSON.stringify(describeConfig(cfg), null, 2));
    console.error(`${cfg.path}: valid.`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(e.message);
    return 78;
  }
}
