/**
 * Runs a generated systemd service the way systemd would, for field tests on a machine without systemd as PID 1:
 * the unit's own `ExecStartPre=` lines (a `+` line as root, others as `User=`), then `ExecStart=` as `User=` with
 * the unit's `Environment=` and `EnvironmentFile=` (read after the pre commands, as systemd does), `$VAR`
 * expanded to words and `${VAR}` to one word, `RuntimeDirectory=` created for the user, `UMask=`,
 * `LimitNOFILE=` and `WorkingDirectory=` applied.
 *
 * What it cannot do is the kernel side of the sandbox (`ProtectSystem=`, `ReadWritePaths=`, capabilities): the
 * QEMU boot test (`deno task boot-test`) runs the same unit under real systemd for that.
 *
 * @module
 */

import { asUser, type FieldUser } from "./field_user.ts";

/** One `[Section]` of a unit file: each key with every value it was given, in order. */
export type UnitSection = Map<string, string[]>;

/**
 * Parses unit file text into sections (continuation lines joined, comments dropped).
 *
 * @example
 * ```ts
 * const unit = parseUnit("[Service]\nExecStart=/bin/true\n");
 * unit.get("Service")?.get("ExecStart"); // ["/bin/true"]
 * ```
 */
export function parseUnit(text: string): Map<string, UnitSection> {
  const out = new Map<string, UnitSection>();
  let current: UnitSection | null = null;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      // A drop-in's [Service] adds to (and may reset lists of) the unit's own.
      current = out.get(head[1]) ?? new Map();
      out.set(head[1], current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0 || current === null) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const list = current.get(key) ?? [];
    if (value === "") list.length = 0;
    else list.push(value);
    current.set(key, list);
  }
  return out;
}

/** Splits a command line into words the way systemd does (quotes, `$VAR` to words, `${VAR}` to one word). */
export function splitCommand(line: string, env: Record<string, string>): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    if (line[i] === "$" && line[i + 1] !== "{") {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(line.slice(i));
      if (m && (i + m[0].length === line.length || /\s/.test(line[i + m[0].length]))) {
        // A lone $VAR is split on white space into words (and vanishes when empty).
        words.push(...(env[m[1]] ?? "").split(/\s+/).filter(Boolean));
        i += m[0].length;
        continue;
      }
    }
    let word = "";
    while (i < line.length && !/\s/.test(line[i])) {
      const c = line[i];
      if (c === '"' || c === "'") {
        const end = line.indexOf(c, i + 1);
        if (end < 0) throw new Error(`Unterminated quote in command line: ${line}`);
        word += line.slice(i + 1, end);
        i = end + 1;
      } else if (c === "$") {
        const m = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}|^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(line.slice(i));
        if (m) {
          word += env[m[1] ?? m[2]] ?? "";
          i += m[0].length;
        } else {
          word += c;
          i++;
        }
      } else {
        word += c;
        i++;
      }
    }
    words.push(word);
  }
  return words;
}

/** Parses `Environment=` values (`A=1 "B=two words"`) into a record. */
export function parseEnvironment(values: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of values) {
    for (const word of splitCommand(v, {})) {
      const eq = word.indexOf("=");
      if (eq > 0) env[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  return env;
}

async function readEnvironmentFiles(values: string[]): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const v of values) {
    const optional = v.startsWith("-");
    const path = optional ? v.slice(1) : v;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (optional) continue;
      throw new Error(`EnvironmentFile ${path} cannot be read: ${(e as Error).message}`);
    }
    for (const line of text.split("\n")) {
      const t = line.trim();
      if (!t || t.startsWith("#")) continue;
      const eq = t.indexOf("=");
      if (eq > 0) env[t.slice(0, eq)] = t.slice(eq + 1).replace(/^"(.*)"$/, "$1");
    }
  }
  return env;
}

/** What happened to one `ExecStartPre=` line. */
export interface PreResult {
  argv: string[];
  asRoot: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/** The options of {@link runUnitPre} and {@link startUnitMain}. */
export interface UnitRunOptions {
  /** The account `User=` names (the test's `outpost` user). */
  user: FieldUser;
  /** The folder standing in for `/run/<RuntimeDirectory>` (the unit's env file lives there). */
  runtimeDir: string;
  /** Extra environment (PATH and the like) given to every command, as systemd's manager environment would. */
  baseEnv?: Record<string, string>;
}

function service(unit: Map<string, UnitSection>): UnitSection {
  const s = unit.get("Service");
  if (!s) throw new Error("The unit has no [Service] section.");
  return s;
}

function unitEnv(s: UnitSection, base: Record<string, string>): Record<string, string> {
  return { ...base, ...parseEnvironment(s.get("Environment") ?? []) };
}

function stripPrefixes(line: string): { cmd: string; root: boolean; ignoreFailure: boolean } {
  let i = 0;
  let root = false;
  let ignoreFailure = false;
  while (i < line.length && "+-@!:".includes(line[i])) {
    if (line[i] === "+") root = true;
    if (line[i] === "-") ignoreFailure = true;
    i++;
  }
  return { cmd: line.slice(i), root, ignoreFailure };
}

/**
 * Runs every `ExecStartPre=` line of `unitText` in order, like systemd, and stops at the first failure (unless the
 * line has the `-` prefix). Creates the runtime directory for the user first.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../../src/app/outpost_config.ts";
 * import { makeUnits, readBoardProfile } from "../../scripts/make_unit.ts";
 * import { fieldUser } from "./field_user.ts";
 *
 * const dir = await Deno.makeTempDir();
 * const user = await fieldUser();
 * const units = makeUnits(await loadConfig("outpost.toml"), await readBoardProfile("rpi4"));
 * const pre = await runUnitPre(units.service, { user, runtimeDir: `${dir}/run/outpost` });
 * console.log(pre);
 * ```
 */
export async function runUnitPre(unitText: string, opts: UnitRunOptions): Promise<PreResult[]> {
  const unit = parseUnit(unitText);
  const s = service(unit);
  await Deno.mkdir(opts.runtimeDir, { recursive: true, mode: 0o755 });
  await Deno.chown(opts.runtimeDir, opts.user.uid, opts.user.gid);
  const env = unitEnv(s, opts.baseEnv ?? defaultBaseEnv());
  const results: PreResult[] = [];
  for (const line of s.get("ExecStartPre") ?? []) {
    const { cmd, root, ignoreFailure } = stripPrefixes(line);
    const argv = splitCommand(cmd, env);
    const full = root ? withUmask(s, argv) : [...asUser(opts.user), ...withUmask(s, argv)];
    const out = await new Deno.Command(full[0], {
      args: full.slice(1),
      env,
      clearEnv: true,
      cwd: await workingDirectory(s),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const r: PreResult = {
      argv,
      asRoot: root,
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    results.push(r);
    if (out.code !== 0 && !ignoreFailure) break;
  }
  return results;
}

/** The daemon started by {@link startUnitMain}. */
export interface UnitMain {
  argv: string[];
  env: Record<string, string>;
  child: Deno.ChildProcess;
}

/**
 * Starts `ExecStart=` as the unit's user with the unit's environment and environment files (read now, after the
 * pre commands wrote them). The caller reads its output and ends it by PID.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../../src/app/outpost_config.ts";
 * import { makeUnits, readBoardProfile } from "../../scripts/make_unit.ts";
 * import { fieldUser } from "./field_user.ts";
 *
 * const runtimeDir = await Deno.makeTempDir();
 * const user = await fieldUser();
 * const units = makeUnits(await loadConfig("outpost.toml"), await readBoardProfile("rpi4"));
 * const main = await startUnitMain(units.service, { user, runtimeDir });
 * console.log(main);
 * ```
 */
export async function startUnitMain(
  unitText: string,
  opts: UnitRunOptions & { extraEnv?: Record<string, string> },
): Promise<UnitMain> {
  const s = service(parseUnit(unitText));
  const env = {
    ...unitEnv(s, opts.baseEnv ?? defaultBaseEnv()),
    ...await readEnvironmentFiles(s.get("EnvironmentFile") ?? []),
    ...opts.extraEnv,
  };
  const lines = s.get("ExecStart") ?? [];
  if (lines.length !== 1) throw new Error(`The unit has ${lines.length} ExecStart= lines, not one.`);
  const argv = splitCommand(stripPrefixes(lines[0]).cmd, env);
  const child = new Deno.Command(asUser(opts.user)[0], {
    args: [...asUser(opts.user).slice(1), ...withUmask(s, argv)],
    env,
    clearEnv: true,
    cwd: await workingDirectory(s),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { argv, env, child };
}

/**
 * `argv` run under the unit's `UMask=` and `LimitNOFILE=` (systemd applies both to every command of the unit,
 * `+` lines too).
 */
function withUmask(s: UnitSection, argv: string[]): string[] {
  const umask = s.get("UMask")?.at(-1);
  const nofile = s.get("LimitNOFILE")?.at(-1);
  if (umask && !/^[0-7]{1,4}$/.test(umask)) {
    throw new Error(`The unit's UMask=${umask} is not an octal mask.`);
  }
  if (nofile && !/^\d+$/.test(nofile)) throw new Error(`The unit's LimitNOFILE=${nofile} is not a number.`);
  if (!umask && !nofile) return argv;
  const script = [umask ? `umask ${umask}` : "", nofile ? `ulimit -n ${nofile}` : "", 'exec "$@"']
    .filter(Boolean).join(" && ");
  return ["/bin/sh", "-c", script, "sh", ...argv];
}

/** The unit's `WorkingDirectory=` ("-" prefix: a missing folder is not fatal, and the command starts in /). */
async function workingDirectory(s: UnitSection): Promise<string | undefined> {
  const w = s.get("WorkingDirectory")?.at(-1);
  if (!w) return undefined;
  const dir = w.startsWith("-") ? w.slice(1) : w;
  const exists = await Deno.stat(dir).then((st) => st.isDirectory, () => false);
  if (exists) return dir;
  if (w.startsWith("-")) return "/";
  throw new Error(`The unit's WorkingDirectory=${dir} does not exist (systemd would fail the unit).`);
}

function defaultBaseEnv(): Record<string, string> {
  // systemd's manager environment: a fixed PATH and nothing from the caller's shell.
  return { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8" };
}
