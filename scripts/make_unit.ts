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
import { loadBoardProfile } from "../src/alerts/board_profiles.ts";
import { ConfigError } from "../src/config/section.ts";
import { loadConfig, type OutpostConfig } from "../src/app/outpost_config.ts";
import { ftpFileLimit } from "../src/ftp/ftp_server.ts";
import { denoPermissionFlags, type DerivedPermissions, derivePermissions } from "./derive_permissions.ts";
import { FTP_DATA_DIR, SANDBOX_ID_VAR, sandboxDirectives } from "../src/daemon/systemd_sandbox.ts";

export { FTP_DATA_DIR, SANDBOX_ID_VAR, sandboxDirectives };

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
  /** The daemon's Deno cache folder (`CacheDirectory=outpost` makes /var/cache/outpost). */
  cacheDir: string;
  /** The drop-in the prepare step writes when an edited config needs other sandbox paths or capabilities. */
  dropIn: string;
}

/** Default board paths (Raspberry Pi OS Bookworm mounts the boot partition at /boot/firmware). */
export const DEFAULT_BOARD_PATHS: BoardPaths = {
  prefix: "/opt/outpost",
  configPath: "/boot/firmware/outpost.toml",
  lastGoodPath: "/var/lib/outpost/last-good.toml",
  envFile: "/run/outpost/deno-flags.env",
  user: "outpost",
  cacheDir: "/var/cache/outpost",
  dropIn: "/etc/systemd/system/outpost.service.d/50-sandbox.conf",
};

/** The parts of a board profile (`boards/<id>.toml`) the unit and the image use. */
export interface BoardProfile {
  id: string;
  /** V8 old-space cap in MiB (`v8_max_old_space_mb`). */
  v8MaxOldSpaceMb: number;
  /** The commented outpost.toml template for this board (`boards/<id>.outpost.toml`), if there is one. */
  configTemplate: string | null;
  /** Lines the image adds to the boot partition's config.txt (`config_txt`, e.g. "kernel=kernel8.img"). */
  configTxt: string[];
}

/**
 * Reads `boards/<id>.toml` through the one profile reader (`src/alerts/board_profiles.ts`, which validates it),
 * and `boards/<id>.outpost.toml` as the config template when present.
 *
 * @example
 * ```ts
 * const profile = await readBoardProfile("rpi4");
 * ```
 */
export async function readBoardProfile(id: string, boardsDir = `${REPO}/boards`): Promise<BoardProfile> {
  let p;
  try {
    p = await loadBoardProfile(id, boardsDir);
  } catch (e) {
    throw new Error(e instanceof ConfigError ? e.problems.join("; ") : (e as Error).message);
  }
  const template = await Deno.readTextFile(`${boardsDir}/${id}.outpost.toml`).catch(() => null);
  return { id, v8MaxOldSpaceMb: p.v8MaxOldSpaceMb, configTemplate: template, configTxt: p.configTxt };
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
  // /srv/ftp always exists and is writable, so users added on the boot partition later (the templates suggest
  // roots below it) need no new sandbox.
  const perms = { ...derived, dataDirs: [...new Set([...derived.dataDirs, FTP_DATA_DIR])] };
  const sandbox = sandboxDirectives(perms);
  const p = paths.prefix;
  const deno = `${p}/bin/deno`;
  const stateDir = config.device.stateDir;
  const common = "--no-config --no-npm --no-remote --no-prompt";
  const prepare = [
    `/usr/bin/env DENO_DIR=${paths.cacheDir}-prepare ${deno} run ${common}`,
    // The prepare step is root's: it reads whatever the edited config names and creates the folders (and their
    // parents) it asks for, wherever they are, so its files are not narrowed; it has no network and runs only
    // `systemctl daemon-reload` after writing the sandbox drop-in.
    "--allow-read --allow-write --allow-env --allow-sys=hostname --deny-net --allow-run=systemctl",
    `${p}/outpost-prepare.js --config ${paths.configPath} --last-good ${paths.lastGoodPath}`,
    `--env-file ${paths.envFile} --user ${paths.user} --mkdirs --drop-in ${paths.dropIn}`,
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
# The FTP server briefly moves into a user's folder for each file operation (see src/ftp/ftp_file_system.ts) and
# returns here, a folder it may read ("-": not fatal before the prepare step has made it).
WorkingDirectory=-${stateDir}
User=${paths.user}
Group=${paths.user}
UMask=0027
Environment=DENO_DIR=${paths.cacheDir} DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 OUTPOST_CONFIG=${paths.configPath}
# glibc gives each of Deno's file-I/O threads its own malloc arena; two arenas keep RSS down on a 512 MB board.
Environment=MALLOC_ARENA_MAX=2
EnvironmentFile=-${paths.envFile}
RuntimeDirectory=outpost
RuntimeDirectoryPreserve=yes
CacheDirectory=outpost
ExecStartPre=+${prepare}
ExecStart=${deno} run ${common} --cached-only $OUTPOST_DENO_FLAGS ${p}/outpost.js serve --config ${paths.configPath}
ExecReload=/bin/kill -HUP $MAINPID
# Exit status 75: the sandbox must change (a reload or an edited config needs new paths); start again through
# ExecStartPre, which derives the new flags.
RestartForceExitStatus=75

# Sandbox (the lines before ${SANDBOX_ID_VAR} follow the config; the prepare step rewrites them in a drop-in)
${sandbox.lines.join("\n")}
Environment=${SANDBOX_ID_VAR}=${sandbox.id}
NoNewPrivileges=yes
ProtectSystem=strict
PrivateTmp=yes
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
install -d -m 0751 -o "$user" -g "$user" "$state"
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

const USAGE = `Usage: deno run -A scripts/make_unit.ts --config FILE [--board ID] [--out-dir DIR]
                                    [--boards-dir DIR] [--prefix /opt/outpost]

Prints outpost.service (or writes outpost.service, outpost-firstboot.service and firstboot.sh to --out-dir).
The config's own path is the one the unit reads at boot (e.g. /boot/firmware/outpost.toml). Without --board the
config's [device] board is used (generic-arm64 for "generic").`;

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
      board: { type: "string" },
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
  // --board wins; else the config's [device] board; the default "generic" means the generic-arm64 profile.
  const boardId = values.board ??
    (config.device.board && config.device.board !== "generic" ? config.device.board : "generic-arm64");
  let profile: BoardProfile;
  try {
    profile = await readBoardProfile(boardId, values["boards-dir"]);
  } catch (e) {
    console.error(`make_unit: ${(e as Error).message}`);
    return 1;
  }
  const paths: BoardPaths = {
    ...DEFAULT_BOARD_PATHS,
    prefix: values.prefix,
    configPath: config.path ?? DEFAULT_BOARD_PATHS.configPath,
    lastGoodPath: `${config.device.stateDir}/last-good.toml`,
  };
  let units: GeneratedUnits;
  try {
    units = makeUnits(config, profile, paths);
  } catch (e) {
    console.error(`make_unit: ${(e as Error).message}`);
    return 1;
  }
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
