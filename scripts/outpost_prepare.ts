/**
 * The boot-time "prepare" step the systemd unit runs before the daemon (`ExecStartPre=+`, as root).
 *
 * It reads the config from the boot partition (falling back to the last good copy the daemon keeps in its state
 * dir when the new file is invalid), creates the state dir and FTP roots owned by the `outpost` user, and writes
 * `OUTPOST_DENO_FLAGS=...` to an environment file that the unit's `ExecStart` expands. So a user who edits the SMTP
 * host or an FTP root on the SD card gets matching Deno permissions on the next start.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type OutpostConfig, parseConfig } from "../src/app/outpost_config.ts";
import { ConfigError } from "../src/config/section.ts";
import { denoPermissionFlags, type DerivedPermissions, derivePermissions } from "./derive_permissions.ts";
import {
  EXIT_SANDBOX_CHANGED,
  SANDBOX_ID_VAR,
  sandboxDirectives,
  sandboxDropIn,
} from "../src/daemon/systemd_sandbox.ts";

/** A config chosen at boot: the file itself, or the last good copy when the file is invalid. */
export interface ChosenConfig {
  config: OutpostConfig;
  /** The file the config came from. */
  source: string;
  /** Problems with the primary file when the fallback was used. */
  problems: string[];
}

async function tryLoad(path: string): Promise<OutpostConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "the file does not exist" : (e as Error).message;
    throw new ConfigError([`${path}: cannot be read: ${why}`], path);
  }
  return parseConfig(text, path);
}

/**
 * Loads `primary`, falling back to `lastGood` when it is missing or invalid. Throws when neither works.
 *
 * @example
 * ```ts
 * const chosen = await chooseConfig("/boot/firmware/outpost.toml", "/var/lib/outpost/last-good.toml");
 * console.log(chosen);
 * ```
 */
export async function chooseConfig(primary: string, lastGood: string | null): Promise<ChosenConfig> {
  try {
    return { config: await tryLoad(primary), source: primary, problems: [] };
  } catch (e) {
    if (!(e instanceof ConfigError) || lastGood === null) throw e;
    try {
      // The fallback's permissions must still allow reading the primary file, so the daemon can report it.
      const config = await tryLoad(lastGood);
      return { config: { ...config, path: primary }, source: lastGood, problems: e.problems };
    } catch {
      throw e;
    }
  }
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | null> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/**
 * Creates the missing parents of `path` as root's 0755 folders, one by one with an explicit chmod: the unit's
 * `UMask=0027` applies to this step too, and a 0750 parent would lock the daemon's user out of everything below.
 */
async function makeParents(path: string): Promise<void> {
  const parent = path.slice(0, path.lastIndexOf("/"));
  if (!parent) return;
  try {
    await Deno.stat(parent);
    return;
  } catch {
    await makeParents(parent);
  }
  try {
    await Deno.mkdir(parent, { mode: 0o755 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    return;
  }
  await Deno.chmod(parent, 0o755);
}

async function ensureDir(
  path: string,
  owner: { uid: number; gid: number } | null,
  mode: number,
): Promise<boolean> {
  try {
    await Deno.stat(path);
    return false;
  } catch {
    // Missing parents are made traversable (0755, root's); only the folder itself gets `mode` and the owner.
    await makeParents(path);
    await Deno.mkdir(path, { mode });
    await Deno.chmod(path, mode);
    if (owner) await Deno.chown(path, owner.uid, owner.gid);
    return true;
  }
}

const USAGE =
  `Usage: outpost-prepare --config FILE [--last-good FILE] [--env-file FILE] [--user NAME] [--mkdirs]
                       [--drop-in FILE] [--v8-max-old-space-mb N]

Derives the Deno permission flags outpost serve needs from the config and prints them (or writes
OUTPOST_DENO_FLAGS=... to --env-file for the systemd unit). With --mkdirs it also creates the folders (and files)
the config names, owned by --user (run as root by the unit's ExecStartPre=+).

With --drop-in, the kernel side of the sandbox (ReadWritePaths=, the bind capability) is compared with the one the
unit was started with ($${SANDBOX_ID_VAR}). When the config needs another one, the drop-in is written, systemd is
reloaded, and the step exits with status 75 so that systemd starts the service again with it.`;

async function ensureFile(path: string, owner: { uid: number; gid: number } | null): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return false;
  } catch {
    await makeParents(path);
    const f = await Deno.open(path, { write: true, createNew: true, mode: 0o640 });
    f.close();
    if (owner) await Deno.chown(path, owner.uid, owner.gid);
    return true;
  }
}

async function reloadSystemd(): Promise<string | null> {
  try {
    const out = await new Deno.Command("systemctl", {
      args: ["daemon-reload"],
      stdout: "null",
      stderr: "piped",
    })
      .output();
    return out.success ? null : new TextDecoder().decode(out.stderr).trim() || `exit status ${out.code}`;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Compares the sandbox `perms` need with the one the unit runs under and, when they differ, writes `dropIn`.
 * Returns true when the service must start again to get it.
 */
async function updateSandbox(perms: DerivedPermissions, dropIn: string): Promise<boolean> {
  const want = sandboxDirectives(perms);
  const running = Deno.env.get(SANDBOX_ID_VAR);
  if (running === want.id) return false;
  const text = sandboxDropIn(want);
  const old = await Deno.readTextFile(dropIn).catch(() => null);
  if (old === text) {
    // Written before, yet the unit did not pick it up (no systemd, or a reload that failed): run with what there
    // is rather than loop; writes outside the unit's ReadWritePaths fail and are logged by the daemon.
    console.error(
      `outpost-prepare: warning: ${dropIn} asks for ${want.lines.join(" ")}, but the service was started ` +
        `without it; run "systemctl daemon-reload" and restart outpost.`,
    );
    return false;
  }
  await Deno.mkdir(dropIn.slice(0, dropIn.lastIndexOf("/")) || "/", { recursive: true, mode: 0o755 });
  await Deno.writeTextFile(`${dropIn}.tmp`, text, { mode: 0o644 });
  await Deno.rename(`${dropIn}.tmp`, dropIn);
  console.error(
    `outpost-prepare: the config needs a different sandbox (${want.lines.join("; ")}); wrote ${dropIn}, ` +
      `starting again with it.`,
  );
  if (Deno.env.get("INVOCATION_ID")) {
    const why = await reloadSystemd();
    if (why) console.error(`outpost-prepare: warning: systemctl daemon-reload failed: ${why}`);
  }
  return true;
}

/**
 * Takes an edit that a laptop's editor saved as `outpost.toml.txt` (Notepad with "Text documents", while
 * Explorer hides the extension): when such a copy (any case, as FAT ignores it) is newer than the config, or the
 * config is missing, the config is kept as `<config>.previous` and the copy becomes the config. Raspberry Pi OS
 * takes `ssh.txt` for `ssh` the same way. Resolves to the line to log, or null when there was nothing to take.
 *
 * @example
 * ```ts
 * const said = await adoptEditorCopy("/boot/firmware/outpost.toml");
 * if (said) console.error(said);
 * ```
 */
export async function adoptEditorCopy(config: string): Promise<string | null> {
  const slash = config.lastIndexOf("/");
  const dir = slash > 0 ? config.slice(0, slash) : slash === 0 ? "/" : ".";
  const want = `${config.slice(slash + 1)}.txt`.toLowerCase();
  let copy: string | null = null;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.toLowerCase() === want) copy = `${dir === "/" ? "" : dir}/${e.name}`;
    }
  } catch {
    return null;
  }
  if (copy === null) return null;
  const copyTime = (await Deno.stat(copy)).mtime?.getTime() ?? 0;
  const current = await Deno.stat(config).catch(() => null);
  if (current && (current.mtime?.getTime() ?? 0) >= copyTime) {
    return `outpost-prepare: note: ${copy} is older than ${config} and is not read; delete it or save ` +
      `your edit as ${config}`;
  }
  if (current) await Deno.rename(config, `${config}.previous`);
  await Deno.rename(copy, config);
  return `outpost-prepare: ${copy} is newer than ${config} (an editor added ".txt"?): it is now ${config}` +
    (current ? `, and the file it replaced is ${config}.previous` : "");
}

/**
 * The prepare step's CLI (see the module doc); resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await outpostPrepare(["--config", "/boot/firmware/outpost.toml"]));
 * ```
 */
export async function outpostPrepare(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      "last-good": { type: "string" },
      "env-file": { type: "string" },
      user: { type: "string" },
      mkdirs: { type: "boolean", default: false },
      "drop-in": { type: "string" },
      "v8-max-old-space-mb": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.config) {
    console.error("outpost-prepare: --config FILE is required.\n" + USAGE);
    return 64;
  }
  try {
    const took = await adoptEditorCopy(values.config);
    if (took) console.error(took);
  } catch (e) {
    console.error(`outpost-prepare: warning: could not take ${values.config}.txt: ${(e as Error).message}`);
  }
  let chosen: ChosenConfig;
  try {
    chosen = await chooseConfig(values.config, values["last-good"] ?? null);
  } catch (e) {
    const msg = e instanceof ConfigError ? e.message : (e as Error).message;
    console.error(`outpost-prepare: cannot start: ${msg}`);
    return 1;
  }
  if (chosen.problems.length > 0) {
    console.error(
      `outpost-prepare: ${values.config} is not valid, using the last good copy ${chosen.source}:\n  ` +
        chosen.problems.join("\n  "),
    );
  }
  let perms: DerivedPermissions;
  try {
    perms = derivePermissions(chosen.config);
  } catch (e) {
    console.error(`outpost-prepare: cannot start: ${(e as Error).message}`);
    return 1;
  }
  // The daemon reads the last good copy when the file on the boot partition is broken.
  if (values["last-good"]) perms.read.push(values["last-good"]);
  for (const n of perms.notes) console.error(`outpost-prepare: note: ${n}`);
  if (values.mkdirs) {
    const owner = values.user ? await lookupUser(values.user) : null;
    if (values.user && !owner) {
      console.error(
        `outpost-prepare: user ${values.user} does not exist; folders are created owned by root.`,
      );
    }
    for (const dir of perms.dataDirs) {
      if (await ensureDir(dir, owner, dir === chosen.config.device.stateDir ? 0o751 : 0o755)) {
        console.error(`outpost-prepare: created ${dir}`);
      }
    }
    for (const file of perms.dataFiles) {
      if (await ensureFile(file, owner)) console.error(`outpost-prepare: created ${file}`);
    }
  }
  const mb = values["v8-max-old-space-mb"] ? Number(values["v8-max-old-space-mb"]) : undefined;
  const flags = denoPermissionFlags(perms, { v8MaxOldSpaceMb: mb });
  if (values["env-file"]) {
    const file = values["env-file"];
    await Deno.mkdir(file.slice(0, file.lastIndexOf("/")) || "/", { recursive: true });
    const tmp = `${file}.tmp`;
    await Deno.writeTextFile(tmp, `OUTPOST_DENO_FLAGS=${flags.join(" ")}\n`, { mode: 0o644 });
    await Deno.rename(tmp, file);
  } else {
    console.log(flags.join(" "));
  }
  if (values["drop-in"] && await updateSandbox(perms, values["drop-in"])) return EXIT_SANDBOX_CHANGED;
  return 0;
}

if (import.meta.main) {
  Deno.exit(await outpostPrepare(Deno.args));
}
