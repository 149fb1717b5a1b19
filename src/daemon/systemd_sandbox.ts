/**
 * The sandbox the board's systemd unit puts around the daemon, seen from both sides: the kernel's part
 * (`ReadWritePaths=`, the bind capability) with an id the unit passes in `$OUTPOST_SANDBOX_ID`, and Deno's part
 * (the permission flags). The unit generator and the prepare step write it; the daemon checks a reloaded config
 * against it, so a reload never claims success for a config the sandbox would refuse.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { collapsePaths, isWithin, type SandboxNeeds } from "../config/sandbox_needs.ts";

/** What systemd's `ProtectHome=` hides. */
const HOME_DIRS = ["/home", "/root", "/run/user"];

/** FTP data folder that every generated unit allows writes to (the board templates' suggested user root). */
export const FTP_DATA_DIR = "/srv/ftp";

/** The environment variable through which the unit says which kernel sandbox it was started with. */
export const SANDBOX_ID_VAR = "OUTPOST_SANDBOX_ID";

/** Exit status meaning "start me again through the prepare step": the sandbox must change. */
export const EXIT_SANDBOX_CHANGED = 75;

/**
 * The unit's `ReadWritePaths=` for `needs`: every path the daemon writes, plus {@link FTP_DATA_DIR}.
 *
 * @example
 * ```ts
 * readWritePaths(needs); // ["/var/lib/outpost", "/srv/ftp"]
 * ```
 */
export function readWritePaths(needs: SandboxNeeds): string[] {
  return collapsePaths([...needs.write, FTP_DATA_DIR]);
}

/**
 * The kernel side of the sandbox for `needs` as `[Service]` lines, and an id naming them: `ReadWritePaths=` with
 * `-` prefixes (a path that does not exist yet does not stop the unit), the bind capability, `ProtectHome=`
 * (read-only when a path of the config is under /home, else hidden) and `PrivateDevices=` (off when a command
 * sensor may need a device).
 *
 * @example
 * ```ts
 * const { lines, id } = sandboxDirectives(needs);
 * ```
 */
export function sandboxDirectives(needs: SandboxNeeds): { lines: string[]; id: string } {
  const caps = needs.bindsPrivilegedPort ? "CAP_NET_BIND_SERVICE" : "";
  // A root or file under /home stays reachable (read-only, plus what ReadWritePaths opens); otherwise hidden.
  const home = [...needs.read, ...needs.write].some((p) => HOME_DIRS.some((h) => isWithin(p, h)));
  const lines = [
    `ReadWritePaths=${readWritePaths(needs).map((d) => `-${d}`).join(" ")}`,
    `AmbientCapabilities=${caps}`,
    `CapabilityBoundingSet=${caps}`,
    `ProtectHome=${home ? "read-only" : "yes"}`,
    `PrivateDevices=${needs.devices ? "no" : "yes"}`,
  ];
  const id = createHash("sha256").update(lines.join("\n")).digest("hex").slice(0, 16);
  return { lines, id };
}

/**
 * The drop-in text that replaces the unit's sandbox lines with `directives` (an empty assignment resets a list).
 *
 * @example
 * ```ts
 * await Deno.writeTextFile(dropInPath, sandboxDropIn(sandboxDirectives(needs)));
 * ```
 */
export function sandboxDropIn(directives: { lines: string[]; id: string }): string {
  const reset = directives.lines.map((l) => `${l.slice(0, l.indexOf("="))}=`);
  return `# Written by outpost-prepare for the config on the boot partition. Do not edit: it is rewritten as needed.
[Service]
${reset.join("\n")}
${directives.lines.join("\n")}
Environment=${SANDBOX_ID_VAR}=${directives.id}
`;
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * What `needs` asks for that this process was not started with: Deno permissions it lacks, and a different kernel
 * sandbox than the unit's (when the unit named one). Empty when the running sandbox already allows everything.
 *
 * @example
 * ```ts
 * const missing = sandboxShortfall(configSandboxNeeds(next));
 * if (missing.length) console.log(`restart needed for ${missing.join(", ")}`);
 * ```
 */
export function sandboxShortfall(needs: SandboxNeeds): string[] {
  const missing: string[] = [];
  for (const path of needs.read) if (!granted({ name: "read", path })) missing.push(`read ${path}`);
  for (const path of needs.write) if (!granted({ name: "write", path })) missing.push(`write ${path}`);
  if (needs.net === "all") {
    if (!granted({ name: "net" })) missing.push("net to any address");
  } else {
    for (const n of needs.net) {
      const host = n.startsWith(":") ? `0.0.0.0${n}` : n;
      if (!granted({ name: "net", host })) missing.push(`net ${n}`);
    }
  }
  for (const variable of needs.env) if (!granted({ name: "env", variable })) missing.push(`env ${variable}`);
  for (const command of needs.run) if (!granted({ name: "run", command })) missing.push(`run ${command}`);
  for (const kind of needs.sys) {
    if (!granted({ name: "sys", kind: kind as Deno.SysPermissionDescriptor["kind"] })) {
      missing.push(`sys ${kind}`);
    }
  }
  let unitId: string | undefined;
  try {
    unitId = Deno.env.get(SANDBOX_ID_VAR);
  } catch {
    unitId = undefined;
  }
  if (unitId) {
    const want = sandboxDirectives(needs);
    if (want.id !== unitId) {
      missing.push(`unit sandbox ${want.lines[0]}${needs.bindsPrivilegedPort ? " +bind" : ""}`);
    }
  }
  return missing;
}

/**
 * True when systemd runs this process and restarts it after {@link EXIT_SANDBOX_CHANGED} (the unit sets
 * `$OUTPOST_SANDBOX_ID`).
 *
 * @example
 * ```ts
 * if (missing.length && restartableBySystemd()) Deno.exit(EXIT_SANDBOX_CHANGED);
 * ```
 */
export function restartableBySystemd(): boolean {
  try {
    return Boolean(Deno.env.get(SANDBOX_ID_VAR)) && Boolean(Deno.env.get("NOTIFY_SOCKET"));
  } catch {
    return false;
  }
}
