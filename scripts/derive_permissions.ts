/**
 * Turns what a config needs from the system (`configSandboxNeeds`, which each area declares from its own parsed
 * config) into the two walls the board puts around the daemon: Deno's permission flags and systemd's
 * `ReadWritePaths=`. Used by the boot-time prepare step (outpost_prepare.ts) and the unit generator.
 *
 * @module
 */

import { configSandboxNeeds, DAEMON_ENV_VARS, type OutpostConfig } from "../src/app/outpost_config.ts";
import type { SandboxNeeds } from "../src/config/sandbox_needs.ts";
import { ConfigError } from "../src/config/section.ts";
import { MAX_LISTED_PORTS } from "../src/ftp/ftp_needs.ts";

export { DAEMON_ENV_VARS, MAX_LISTED_PORTS };

/** What a config needs from the Deno sandbox and from systemd (the combined {@link SandboxNeeds}). */
export type DerivedPermissions = SandboxNeeds;

/**
 * The needs of `config` (validated by `parseConfig`), checked for paths the Deno flags cannot carry.
 *
 * @example
 * ```ts
 * const cfg = parseConfig('[device]\nstate_dir = "/var/lib/outpost"\n[ftp]\nport = 2121\n', "/boot/outpost.toml");
 * const perms = derivePermissions(cfg);
 * console.log(denoPermissionFlags(perms).join(" "));
 * ```
 */
export function derivePermissions(config: OutpostConfig): DerivedPermissions {
  const needs = configSandboxNeeds(config);
  for (const p of [...needs.read, ...needs.write, ...needs.run]) {
    if (/[\s,]/.test(p)) {
      throw new ConfigError(
        [`${p}: paths with spaces or commas cannot be passed to the Deno sandbox`],
        config.path ?? "config",
      );
    }
  }
  return needs;
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
  const list = (flag: string, xs: string[]) =>
    xs.length ? `--allow-${flag}=${xs.join(",")}` : `--deny-${flag}`;
  const flags = [
    list("read", perms.read),
    list("write", perms.write),
    perms.net === "all" ? "--allow-net" : list("net", perms.net),
    list("env", perms.env),
    list("run", perms.run),
    list("sys", perms.sys),
  ];
  // A 1 MB young generation keeps V8 from growing its nursery to 16 MB under login and listing bursts: measured
  // with `deno task bench -- --only idle`, 36 KB instead of 48 KB RSS per added idle session, same throughput.
  if (opts.v8MaxOldSpaceMb) {
    flags.push(`--v8-flags=--max-old-space-size=${opts.v8MaxOldSpaceMb},--max-semi-space-size=1`);
  }
  return flags;
}
