/**
 * Generates the hardened systemd units for a board: `outpost.service` (the daemon) and
 * `outpost-firstboot.service` (creates the `outpost` user once, then disables itself).
 *
 * The unit's static parts (capabilities, ReadWritePaths, heap cap) come from the config and board profile at
 * build time; the Deno permission flags are re-derived from the config on the boot partition at every start by
 * the prepare step (`ExecStartPre=+`), which writes them to `/run/outpost/deno-flags.env`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parse as parseToml } from "smol-toml";
import { loadConfig, type OutpostConfig } from "../src/config/config.ts";
import { ftpFileLimit } from "../src/ftp/ftp_server.ts";
import { denoPermissionFlags, type DerivedPermissions, derivePermissions } from "./derive_permissions.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Where things live on the board. */
export interface BoardPaths {
  /** Install prefix holding bin/deno, outpost.js and outpost-prepare.js. */
  prefix: string;
  /** The config file the daemon reads (on the FAT boot partition). */
  configPath: string;
  /** The last good config copy the daemon keeps. */
  lastGoodPath: string;
  /** The environment file the prepare step writes. */
  envFile: string;
  /** The unprivileged user the daemon runs as. */
  user: string;
}

/** Default board paths (Raspberry Pi OS Bookworm mounts the boot partition at /boot/firmware). */
export const DEFAULT_BOARD_PATHS: BoardPaths = {
  prefix: "/opt/outpost",
  configPath: "/boot/firmware/outpost.toml",
  lastGoodPath: "/var/lib/outpost/last-good.toml",
  envFile: "/run/outpost/deno-flags.env",
  user: "outpost",
};

/** The parts of a board profile (`boards/<id>.toml`) the unit uses. */
export interface BoardProfile {
  id: string;
  /** V8 old-space cap in MiB (`v8_max_old_space_mb`). */
  v8MaxOldSpaceMb: number;
  /** The commented outpost.toml template for this board, if the profile has one. */
  configTemplate: string | null;
  /** Lines the image adds to the boot partition's config.txt (`config_txt`, e.g. "kernel=kernel8.img"). */
  configTxt: string[];
}

/**
 * Reads `boards/<id>.toml` (and `boards/<id>.outpost.toml` as the config template when present).
 *
 * @example
 * ```ts
 * const profile = await readBoardProfile("rpi4");
 * ```
 */
export async function readBoardProfile(id: string, boardsDir = `${REPO}/boards`): Promise<BoardProfile> {
  if (!/^[A-Za-z0-9._-]+$/.test(id)) {
    throw new Error(`Board id "${id}" is not valid (letters, digits, . _ -).`);
  }
  let text: string;
  try {
    text = await Deno.readTextFile(`${boardsDir}/${id}.toml`);
  } catch {
    const known: string[] = [];
    try {
      for await (const e of Deno.readDir(boardsDir)) {
        if (e.name.endsWith(".toml") && !e.name.endsWith(".outpost.toml")) known.push(e.name.slice(0, -5));
      }
    } catch {
      // No boards folder: the message below says none are known.
    }
    throw new Error(
      `No board profile ${boardsDir}/${id}.toml (known boards: ${known.sort().join(", ") || "none"}).`,
    );
  }
  const doc = parseToml(text) as Record<string, unknown>;
  const find = (t: Record<string, unknown>, key: string): unknown => {
    if (key in t) return t[key];
    for (const v of Object.values(t)) {
      if (typeof v === "object" && v !== null && !Array.isArray(v)) {
        const r = find(v as Record<string, unknown>, key);
        if (r !== undefined) return r;
      }
    }
    return undefined;
  };
  const mb = find(doc, "v8_max_old_space_mb");
  let template: string | null = null;
  const tmplKey = find(doc, "config_template") ?? find(doc, "outpost_toml");
  if (typeof tmplKey === "string") template = tmplKey;
  else {
    template = await Deno.readTextFile(`${boardsDir}/${id}.outpost.toml`).catch(() => null);
  }
  const configTxt = find(doc, "config_txt");
  return {
    id,
    v8MaxOldSpaceMb: typeof mb === "number" && mb > 0 ? mb : 256,
    configTemplate: template,
    configTxt: Array.isArray(configTxt) ? configTxt.filter((l): l is string => typeof l === "string") : [],
  };
}

/** Units generated for one config and board. */
export interface GeneratedUnits {
  /** `outpost.service` text. */
  service: string;
  /** `outpost-firstboot.service` text. */
  firstboot: string;
  /** `/opt/outpost/firstboot.sh` text. */
  firstbootScript: string;
  /** The permissions derived at build time (shown in the unit as a comment). */
  perms: DerivedPermissions;
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** FTP data folder that every generated unit allows writes to (the board templates' suggested user root). */
export const FTP_DATA_DIR = "/srv/ftp";

/**
 * Generates the units for `config` on a board with `profile`.
 *
 * @example
 * ```ts
 * const units = makeUnits(await loadConfig("outpost.toml"), await readBoardProfile("rpi4"));
 * await Deno.writeTextFile("outpost.service", units.service);
 * ```
 */
export function makeUnits(
  config: OutpostConfig,
  profile: BoardProfile,
  paths: BoardPaths = DEFAULT_BOARD_PATHS,
): GeneratedUnits {
  const derived = derivePermissions({ ...config, path: paths.configPath });
  // FTP data under /srv/ftp is always writable, so users added on the boot partition after flashing (the template
  // suggests root = "/srv/ftp") work without rebuilding the unit. Other roots need a regenerated unit.
  const perms = { ...derived, dataDirs: uniq([...derived.dataDirs, FTP_DATA_DIR]) };
  const p = paths.prefix;
  const deno = `${p}/bin/deno`;
  const caps = perms.bindsPrivilegedPort ? "CAP_NET_BIND_SERVICE" : "";
  const readWrite = uniq([...perms.dataDirs, ...perms.write]).map((d) => `-${d}`);
  const writable = uniq([...perms.dataDirs, ...perms.write]).join(",");
  const stateDir = config.device.stateDir;
  const runDir = paths.envFile.slice(0, paths.envFile.lastIndexOf("/"));
  const common = "--no-config --no-npm --no-remote --no-prompt";
  const prepare = [
    `/usr/bin/env DENO_DIR=/var/cache/outpost-prepare ${deno} run ${common}`,
    `--allow-read=/etc/passwd,${paths.configPath},${
      paths.configPath.slice(0, paths.configPath.lastIndexOf("/"))
    },${uniq([stateDir, ...perms.dataDirs]).join(",")}`,
    `--allow-write=${runDir},${uniq([stateDir, ...perms.dataDirs]).join(",")}`,
    "--allow-env --allow-sys=hostname",
    `${p}/outpost-prepare.js --config ${paths.configPath} --last-good ${paths.lastGoodPath}`,
    `--env-file ${paths.envFile} --user ${paths.user} --mkdirs --writable ${writable}`,
    `--v8-max-old-space-mb ${profile.v8MaxOldSpaceMb}`,
  ].join(" ");
  const buildFlags = denoPermissionFlags(perms, { v8MaxOldSpaceMb: profile.v8MaxOldSpaceMb });
  const service = `# outpost daemon: FTP server, alert monitor and mail outbox in one process.
# Generated by scripts/make_unit.ts for board "${profile.id}". Regenerate rather than edit.
#
# ExecStartPre re-derives the Deno permissions from ${paths.configPath} at every start (falling back to
# ${paths.lastGoodPath} when the file is invalid). For the config this unit was built from they are:
#   ${buildFlags.join("\n#   ")}
${perms.notes.map((n) => `# Note: ${n}`).join("\n")}
[Unit]
Description=outpost FTP server and alert monitor
Documentation=file://${p}/README.md
Wants=network-online.target
After=network-online.target time-sync.target local-fs.target outpost-firstboot.service
StartLimitIntervalSec=10min
StartLimitBurst=20

[Service]
Type=notify
NotifyAccess=all
WatchdogSec=60s
TimeoutStartSec=120s
TimeoutStopSec=45s
KillMode=mixed
Restart=on-failure
RestartSec=5s
# From the [ftp] limits (sessions x 4 descriptors + TLS handshakes + 512 for the rest, rounded up to a power of
# two): the FTP server refuses connections past its limits long before this, so it never runs out of descriptors.
LimitNOFILE=${ftpFileLimit(config.ftp ?? {})}
User=${paths.user}
Group=${paths.user}
UMask=0027
Environment=DENO_DIR=/var/cache/outpost DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 OUTPOST_CONFIG=${paths.configPath}
# glibc gives each of Deno's file-I/O threads its own malloc arena; two arenas keep RSS down on a 512 MB board.
Environment=MALLOC_ARENA_MAX=2
EnvironmentFile=-${paths.envFile}
RuntimeDirectory=outpost
RuntimeDirectoryPreserve=yes
CacheDirectory=outpost
ExecStartPre=+${prepare}
ExecStart=${deno} run ${common} --cached-only $OUTPOST_DENO_FLAGS ${p}/outpost.js serve --config ${paths.configPath}
ExecReload=/bin/kill -HUP $MAINPID

# Sandbox
AmbientCapabilities=${caps}
CapabilityBoundingSet=${caps}
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${readWrite.join(" ")}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
`;
  const firstboot = `# Creates the outpost user and its folders on the first boot, then disables itself.
# Generated by scripts/make_unit.ts.
[Unit]
Description=outpost first-boot setup
After=local-fs.target
Before=outpost.service
ConditionPathExists=!${stateDir}/.firstboot-done

[Service]
Type=oneshot
RemainAfterExit=no
ExecStart=${p}/firstboot.sh

[Install]
WantedBy=multi-user.target
`;
  const firstbootScript = `#!/bin/sh
# outpost first-boot step: create the unprivileged user and the state folder, then disable this unit.
set -eu
user=${paths.user}
state=${stateDir}
if ! getent passwd "$user" >/dev/null; then
  useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
fi
install -d -m 0750 -o "$user" -g "$user" "$state"
install -d -m 0750 -o "$user" -g "$user" /var/cache/outpost
${
    perms.dataDirs.filter((d) => d !== stateDir).map((d) =>
      `[ -d ${d} ] || install -d -m 0755 -o "$user" -g "$user" ${d}`
    )
      .join("\n")
  }
touch "$state/.firstboot-done"
systemctl disable outpost-firstboot.service || true
echo "outpost first boot: user $user and $state ready"
`;
  return { service, firstboot, firstbootScript, perms };
}

const USAGE = `Usage: deno run -A scripts/make_unit.ts --config FILE --board ID [--out-dir DIR]
                                    [--boards-dir DIR] [--prefix /opt/outpost]

Prints outpost.service (or writes outpost.service, outpost-firstboot.service and firstboot.sh to --out-dir).
The config's own path is the one the unit reads at boot (e.g. /boot/firmware/outpost.toml).`;

/**
 * The generator's CLI; resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await makeUnitMain(["--config", "/boot/firmware/outpost.toml", "--board", "rpi4"]));
 * ```
 */
export async function makeUnitMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      board: { type: "string", default: "generic-arm64" },
      "out-dir": { type: "string" },
      "boards-dir": { type: "string" },
      prefix: { type: "string", default: DEFAULT_BOARD_PATHS.prefix },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || !values.config) {
    console.log(USAGE);
    return values.help ? 0 : 64;
  }
  let config: OutpostConfig;
  try {
    config = await loadConfig(values.config);
  } catch (e) {
    console.error(`make_unit: ${(e as Error).message}`);
    return 1;
  }
  const profile = await readBoardProfile(values.board, values["boards-dir"]);
  const paths: BoardPaths = {
    ...DEFAULT_BOARD_PATHS,
    prefix: values.prefix,
    configPath: config.path ?? DEFAULT_BOARD_PATHS.configPath,
    lastGoodPath: `${config.device.stateDir}/last-good.toml`,
  };
  const units = makeUnits(config, profile, paths);
  for (const n of units.perms.notes) console.error(`make_unit: note: ${n}`);
  if (values["out-dir"]) {
    const d = values["out-dir"];
    await Deno.mkdir(d, { recursive: true });
    await Deno.writeTextFile(`${d}/outpost.service`, units.service);
    await Deno.writeTextFile(`${d}/outpost-firstboot.service`, units.firstboot);
    await Deno.writeTextFile(`${d}/firstboot.sh`, units.firstbootScript, { mode: 0o755 });
  } else {
    console.log(units.service);
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await makeUnitMain(Deno.args));
}
