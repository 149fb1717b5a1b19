/**
 * Board profiles (`boards/<id>.toml`): what a board is, which sensors it has, sensible default rules, the V8 heap
 * cap for the systemd unit, and the commented `outpost.toml` the SD-card image puts on the boot partition.
 *
 * A profile file holds a `[board]` table plus `[sensors.<name>]` and `[[rules]]` tables in exactly the
 * `outpost.toml` format (validated by the same reader, recipients excepted: a profile has no addresses).
 *
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { ConfigError, Section } from "../config/section.ts";
import { type AlertsConfig, readAlertsConfig } from "./alerts_config.ts";

/**
 * One board profile: a `boards/<id>.toml` file with the board's facts, sensors and default rules.
 *
 * @example
 * ```ts
 * const pi4 = await loadBoardProfile("rpi4");
 * console.log(pi4.name, pi4.ramMb, pi4.alerts.sensors.map((s) => s.name));
 * ```
 */
export interface BoardProfile {
  /** The profile's id: its file name without `.toml` (e.g. "rpi4"). */
  id: string;
  /** Human name ("Raspberry Pi 4 Model B"). */
  name: string;
  /** CPU architecture of the image built for the board. */
  arch: "arm64" | "armhf" | "amd64";
  /** Smallest RAM of the board's variants, in MB. */
  ramMb: number;
  /** The kernel's page size in bytes as shipped (16384 on Pi 5's default kernel). */
  pageSize: number;
  /** V8 old-space cap for the unit: `--v8-flags=--max-old-space-size=<n>`. */
  v8MaxOldSpaceMb: number;
  /** Lines the image adds to the boot partition's config.txt (e.g. `kernel=kernel8.img` on a Pi 5). */
  configTxt: string[];
  /** Things the user should know, shown in the generated outpost.toml. */
  notes: string[];
  /** The profile's sensors and default rules. */
  alerts: AlertsConfig;
  /** The `[sensors.*]` and `[[rules]]` part of the profile file, verbatim (for the generated outpost.toml). */
  alertsToml: string;
}

/**
 * The folder holding the profiles: `$OUTPOST_BOARDS_DIR`, else `boards/` next to `src/`.
 *
 * @example
 * ```ts
 * const ids = await listBoardProfiles(boardsDir());
 * console.log(ids); // ["rpi3", "rpi4", ...]
 * ```
 */
export function boardsDir(): string {
  const env = Deno.env.get("OUTPOST_BOARDS_DIR");
  if (env) return env;
  return new URL("../../boards/", import.meta.url).pathname;
}

/**
 * Lists the ids of the profiles in `dir`.
 *
 * @example
 * ```ts
 * await listBoardProfiles(); // ["generic-arm64", "rpi-zero2w", "rpi3", "rpi4", "rpi5"]
 * ```
 */
export async function listBoardProfiles(dir = boardsDir()): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const m = /^([a-z0-9-]+)\.toml$/.exec(e.name);
    if (m && e.isFile) out.push(m[1]);
  }
  return out.sort();
}

/**
 * Validates profile text; throws {@link ConfigError} listing every problem.
 *
 * @example
 * ```ts
 * const p = parseBoardProfile(await Deno.readTextFile("boards/rpi4.toml"), "boards/rpi4.toml");
 * console.log(p);
 * ```
 */
export function parseBoardProfile(text: string, source: string): BoardProfile {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError([String((e as Error).message).split("\n")[0]], source);
  }
  const problems: string[] = [];
  const root = new Section(doc, "", problems);
  const b = root.section("board");
  const profile: BoardProfile = {
    id: b.string("id", { required: true }) ?? "",
    name: b.string("name", { required: true }) ?? "",
    arch: b.string("arch", { default: "arm64", oneOf: ["arm64", "armhf", "amd64"] }) as BoardProfile["arch"],
    ramMb: b.int("ram_mb", { default: 512, min: 64 }),
    pageSize: b.int("page_size", { default: 4096, min: 4096, max: 65536 }),
    v8MaxOldSpaceMb: b.int("v8_max_old_space_mb", { default: 128, min: 16, max: 4096 }),
    configTxt: b.strings("config_txt", []),
    notes: b.strings("notes", []),
    alerts: readAlertsConfig(root, { requireRecipients: false }),
    alertsToml: "",
  };
  if (profile.v8MaxOldSpaceMb * 2 > profile.ramMb) {
    b.problem("v8_max_old_space_mb", `must leave at least half of ram_mb (${profile.ramMb}) to the system`);
  }
  b.finish();
  root.finish();
  if (problems.length) throw new ConfigError(problems, source);
  const start = text.search(/^\[(sensors\.|\[rules\]\])/m);
  profile.alertsToml = start < 0 ? "" : text.slice(start).trimEnd() + "\n";
  return profile;
}

/**
 * Loads and validates `boards/<id>.toml`.
 *
 * @example
 * ```ts
 * const rpi = await loadBoardProfile("rpi-zero2w");
 * console.log(rpi.v8MaxOldSpaceMb); // 64
 * ```
 */
export async function loadBoardProfile(id: string, dir: string = boardsDir()): Promise<BoardProfile> {
  if (!/^[a-z0-9-]+$/.test(id)) {
    throw new ConfigError([`board: "${id}" is not a profile id`], "board profile");
  }
  const path = `${dir.replace(/\/+$/, "")}/${id}.toml`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const known = await listBoardProfiles(dir).catch(() => []);
      throw new ConfigError([`board: no profile "${id}" (known: ${known.join(", ") || "none"})`], path);
    }
    throw e;
  }
  const p = parseBoardProfile(text, path);
  if (p.id !== id) throw new ConfigError([`board.id: is "${p.id}" but the file is ${id}.toml`], path);
  return p;
}

/**
 * The commented `outpost.toml` for a board, as the SD-card image puts it on the boot partition.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile("outpost.toml", renderBoardConfig(await loadBoardProfile("rpi4")));
 * ```
 */
export function renderBoardConfig(p: BoardProfile): string {
  const notes = p.notes.map((n) => `# - ${n}`).join("\n");
  return `# outpost.toml for a ${p.name} (board profile "${p.id}").
# Edit this file on any computer before or after flashing; outpost reads it at boot and
# keeps the last good config if this one has a mistake ("outpost check-config" lists them).
${notes ? `#\n# About this board:\n${notes}\n` : ""}
[device]
# Shown in mail subjects: "[outpost pi-freezer] ALERT ...". Defaults to the host name.
# name = "pi-freezer"
board = "${p.id}"
# state_dir = "/var/lib/outpost"

[ftp]
port = 21
active = false              # passive only: works through NAT and keeps the service's network access narrow
# host = "0.0.0.0"          # "::" for IPv4 and IPv6

[ftp.passive]
ports = "50000-50031"
# address = "203.0.113.7"   # the address to advertise when clients come in through NAT

# One block per user. Make the password hash with "outpost passwd" on the board, or on a PC
# from a checkout of outpost: npx --yes deno@2.9.6 task outpost passwd
# [[ftp.users]]
# name = "pi"
# password_hash = "pbkdf2-sha256$..."
# root = "/srv/ftp"
# permissions = ["all"]     # or ["read-only"], or any of list, read, write, append, delete, mkdir, rename

# Anonymous read-only access (off unless you turn it on):
# [ftp.anonymous]
# enabled = true
# root = "/srv/ftp/pub"

# Outgoing mail. Uncomment and fill in (see the README for Gmail app passwords and local relays).
# [smtp]
# host = "smtp.gmail.com"
# port = 587
# security = "starttls"
# username = "you@gmail.com"
# password = "your app password"
# from = "pi-freezer <you@gmail.com>"

[alerts]
# Who gets alert mail (each rule may set its own "to").
# to = ["you@example.com"]
# interval = "60s"          # how often sensors are read unless a sensor sets its own
# fail_after = 3            # failed reads in a row before a SENSOR ERROR mail
# remind_every = "6h"       # reminder while an alert stands ("0s" = never)
# remind_backoff = true     # double the reminder interval each time, up to remind_max
# cooldown = "10m"          # at most one alert mail per rule in this time (flapping sensors)
enabled = false             # set to true once [smtp] and "to" are filled in

# Run "outpost sensors" on the board to list every sensor it has, with readings and
# tables to paste below.

# Example: a DS18B20 probe on GPIO 4 (add "dtoverlay=w1-gpio" to config.txt):
# [sensors.freezer]
# type = "w1"
# id = "28-0316a2795aff"
# interval = "30s"
#
# [[rules]]
# sensor = "freezer"
# above = -10          # alert when warmer than -10 °C ...
# clear_at = -12       # ... and recover only once back to -12 °C
# for = 3              # three readings in a row (ignores one-off spikes)
# severity = "critical"

# Default sensors and rules for this board:
${p.alertsToml}`;
}
