/**
 * The unprivileged account the board runs the daemon as, for tests that run code "the way the board does".
 *
 * The unit runs `outpost serve` as the system user `outpost`; field tests do the same with `setpriv`. When the
 * tests run as root and the account is missing it is created once (`useradd --system`, no home, no shell), as
 * the image builder and install.sh do; `.ci/run` creates it up front. Without root, or without `setpriv`, a field
 * test cannot run: {@link fieldUserMissing} says so, and under CI the test fails instead of skipping.
 *
 * @module
 */

import { findPeer, IN_CI } from "./peers.ts";

/** The account the board's unit runs the daemon as. */
export interface FieldUser {
  name: string;
  uid: number;
  gid: number;
}

/** The account name the unit uses (`User=outpost`). */
export const FIELD_USER_NAME = "outpost";

function lookup(name: string): FieldUser | null {
  let text = "";
  try {
    text = Deno.readTextFileSync("/etc/passwd");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/** True when this process is root (the only way to switch to another user). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * Why field tests cannot run here, or null when they can. Use as `ignore: !IN_CI && fieldUserMissing() !== null`.
 *
 * @example
 * ```ts
 * import { IN_CI } from "./peers.ts";
 *
 * Deno.test({ name: "as the board", ignore: !IN_CI && fieldUserMissing() !== null, fn: () => {} });
 * ```
 */
export function fieldUserMissing(): string | null {
  if (!isRoot()) return "field tests switch to the outpost user and need root";
  if (!findPeer("setpriv")) return "setpriv (util-linux) is not on PATH";
  if (!lookup(FIELD_USER_NAME) && !findPeer("useradd")) return "no outpost user and no useradd to create it";
  return null;
}

/** Skip value for `Deno.test({ ignore })`: skip outside CI when field tests cannot run. */
export const SKIP_FIELD = !IN_CI && fieldUserMissing() !== null;

/**
 * Returns the `outpost` account, creating it (system user, no login) when running as root and it is missing.
 * Throws when field tests cannot run here.
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * const user = await fieldUser();
 * await Deno.chown(dir, user.uid, user.gid);
 * ```
 */
export async function fieldUser(): Promise<FieldUser> {
  const why = fieldUserMissing();
  if (why) throw new Error(`Cannot run as the board's user: ${why}.`);
  const found = lookup(FIELD_USER_NAME);
  if (found) return found;
  const out = await new Deno.Command("useradd", {
    args: [
      "--system",
      "--user-group",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      FIELD_USER_NAME,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const created = lookup(FIELD_USER_NAME);
  if (!created) {
    throw new Error(
      `Cannot create the outpost user: useradd said ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return created;
}

/**
 * The argv prefix that runs a command as `user` with no extra groups and no new privileges, like the unit's
 * `User=`, `Group=` and `NoNewPrivileges=yes`.
 *
 * @example
 * ```ts
 * const user = await fieldUser();
 * const argv = [...asUser(user), "deno", "run", "--allow-read=/srv", "main.ts"];
 * await new Deno.Command(argv[0], { args: argv.slice(1) }).output();
 * ```
 */
export function asUser(user: FieldUser, groups: number[] = []): string[] {
  return [
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    groups.length ? `--groups=${groups.join(",")}` : "--clear-groups",
    "--no-new-privs",
    "--",
  ];
}

/**
 * Makes `path` (and, with `recursive`, everything below it) owned by `user`, as prepare/firstboot do on the board.
 *
 * @example
 * ```ts
 * const stateDir = await Deno.makeTempDir();
 * await chownTree(stateDir, await fieldUser());
 * ```
 */
export async function chownTree(path: string, user: FieldUser, recursive = true): Promise<void> {
  await Deno.chown(path, user.uid, user.gid);
  if (!recursive) return;
  const st = await Deno.lstat(path);
  if (!st.isDirectory) return;
  for await (const e of Deno.readDir(path)) {
    const p = `${path}/${e.name}`;
    if (e.isDirectory) await chownTree(p, user, true);
    else if (!e.isSymlink) await Deno.chown(p, user.uid, user.gid);
  }
}
