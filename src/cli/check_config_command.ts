/**
 * `outpost check-config [FILE]`: validates a config file and prints the resolved settings, or every problem.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findConfigPath, loadConfig, type OutpostConfig } from "../app/outpost_config.ts";
import { ConfigError } from "../config/section.ts";
import { configSummary, configWarnings, formatConfigSummary, orderProblems } from "./config_summary.ts";

const HELP = `Usage: outpost check-config [FILE] [--json]

Validates FILE (default: $OUTPOST_CONFIG, /boot/firmware/outpost.toml, /boot/outpost.toml,
/etc/outpost/outpost.toml) and prints a short summary: what runs, on which ports, who can log in, which
sensors and rules, where mail goes, and warnings about settings that are allowed but probably wrong.

  --json   the same for machines, keyed like the file: {"file", "valid", "device", "ftp", ..., "warnings"},
           or {"file", "valid": false, "problems"}; secrets are never shown

Exit status: 0 valid (warnings or not), 78 (EX_CONFIG) with one line per problem on stderr, 64 bad usage.`;

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
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        config: { type: "string", short: "C" },
        json: { type: "boolean" },
      },
    });
  } catch (e) {
    console.error(`outpost check-config: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let cfg: OutpostConfig;
  const file = (await findConfigPath(positionals[0] ?? values.config)) ?? "The config";
  try {
    cfg = await loadConfig(positionals[0] ?? values.config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const problems = orderProblems(e.problems);
    if (values.json) {
      console.log(JSON.stringify({ file, valid: false, problems }, null, 2));
    }
    console.error(`${file} is not valid (${problems.length} problem(s)):`);
    for (const p of problems) console.error(`  ${p}`);
    return 78;
  }
  const summary = configSummary(cfg);
  const warnings = await configWarnings(cfg);
  if (values.json) console.log(JSON.stringify({ ...summary, valid: true, warnings }, null, 2));
  else console.log(formatConfigSummary(summary, warnings));
  return 0;
}
