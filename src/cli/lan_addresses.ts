/**
 * The addresses other machines on the LAN can reach this one at, for the quick-start login line: each interface's
 * non-loopback IPv4 address, and for an IPv6 listener its global IPv6 addresses (link-local ones need a zone id no
 * URL carries).
 *
 * @module
 */

import type { OutpostConfig } from "../app/outpost_config.ts";

/**
 * The LAN addresses a listener on `host` is reachable at (none for a loopback or specific address: it is then
 * reachable only there), from `interfaces` (default: `Deno.networkInterfaces()`, empty without permission).
 *
 * @example
 * ```ts
 * lanAddresses("0.0.0.0", [{ family: "IPv4", address: "192.168.1.20", name: "eth0", netmask: "", scopeid: null,
 *   cidr: "192.168.1.20/24", mac: "" }]); // ["192.168.1.20"]
 * ```
 */
export function lanAddresses(host: string, interfaces?: Deno.NetworkInterfaceInfo[]): string[] {
  const wildcard4 = host === "0.0.0.0";
  const wildcard6 = host === "::" || host === "[::]";
  if (!wildcard4 && !wildcard6) return [];
  let list = interfaces;
  if (!list) {
    try {
      list = Deno.networkInterfaces();
    } catch {
      return []; // No --allow-sys=networkInterfaces.
    }
  }
  const out: string[] = [];
  for (const i of list) {
    if (i.family === "IPv4" && !i.address.startsWith("127.")) out.push(i.address);
    else if (
      wildcard6 && i.family === "IPv6" && i.address !== "::1" && !/^fe[89ab]/i.test(i.address) &&
      !i.address.startsWith("::ffff:")
    ) out.push(`[${i.address}]`);
  }
  return [...new Set(out)];
}

/**
 * The lines `outpost serve` prints after start: where FTP listens and, for the quick start (`password` known), a
 * ready-to-paste `curl` line for this machine and one per LAN address.
 *
 * @example
 * ```ts
 * for (const line of loginHint(cfg, "s3cret", 2121)) console.log(line);
 * ```
 */
export function loginHint(
  cfg: OutpostConfig,
  password: string | null,
  port: number,
  interfaces?: Deno.NetworkInterfaceInfo[],
): string[] {
  if (!cfg.ftp) return ["FTP is off in this config."];
  const wildcard = cfg.ftp.hostname === "0.0.0.0" || cfg.ftp.hostname === "::";
  const here = wildcard
    ? "127.0.0.1"
    : cfg.ftp.hostname.includes(":")
    ? `[${cfg.ftp.hostname}]`
    : cfg.ftp.hostname;
  const lan = password ? lanAddresses(cfg.ftp.hostname, interfaces) : [];
  const lines = [`FTP listening on ${cfg.ftp.hostname}:${port}`];
  for (const u of cfg.ftp.accounts.users) {
    if (!password) {
      lines.push(`  user ${u.name} (password as configured), folder ${u.root}`);
      continue;
    }
    lines.push(`  log in: user ${u.name}, password ${password}`);
    lines.push(`    from this machine:  curl ftp://${u.name}:${password}@${here}:${port}/`);
    for (const a of lan) lines.push(`    from the LAN:       curl ftp://${u.name}:${password}@${a}:${port}/`);
    if (wildcard && lan.length === 0) {
      lines.push(`    from the LAN:       this machine's address, port ${port}`);
    }
  }
  if (cfg.ftp.accounts.anonymousEnabled) lines.push(`  anonymous read-only log-in is on`);
  return lines;
}
