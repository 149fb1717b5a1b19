/**
 * The `outpost` system account as the image declares it: a `sysusers.d` entry plus matching
 * `passwd`/`group`/`shadow`/`gshadow` lines, with an id that no user, group or fixed `sysusers.d` id of the base
 * image already takes. Pure text in, text out; the image builder reads and writes the files.
 *
 * @module
 */

/** The base image's account files (null when the image has no such file). */
export interface AccountFiles {
  passwd: string;
  group: string;
  shadow: string | null;
  gshadow: string | null;
  /** `/etc/login.defs` (for SYS_UID_MIN/SYS_UID_MAX), if present. */
  loginDefs: string | null;
  /** Every other `*.conf` in `/usr/lib/sysusers.d` and `/etc/sysusers.d`. */
  sysusers: string[];
}

/** The account to declare. */
export interface AccountSpec {
  name: string;
  home: string;
  shell: string;
  gecos: string;
  /** Days since 1970-01-01 for shadow's "last change" field. */
  today: number;
}

/** The new file contents and the chosen ids. */
export interface AccountPlan {
  uid: number;
  gid: number;
  /** True when the base image already had the user (ids kept as they are). */
  existed: boolean;
  passwd: string;
  group: string;
  shadow: string;
  gshadow: string;
  /** `/usr/lib/sysusers.d/<name>.conf`. */
  sysusersConf: string;
}

function entries(text: string): string[][] {
  return text.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#")).map((l) => l.split(":"));
}

function withLine(text: string, line: string): string {
  return `${text}${text === "" || text.endsWith("\n") ? "" : "\n"}${line}\n`;
}

function loginDef(text: string | null, key: string, fallback: number): number {
  const m = new RegExp(`^\\s*${key}\\s+(\\d+)`, "m").exec(text ?? "");
  return m ? Number(m[1]) : fallback;
}

/** Numeric ids that `sysusers.d` lines claim (`u name 123`, `u name 123:456`, `g name 123`). */
export function sysusersFixedIds(texts: string[]): number[] {
  const ids: number[] = [];
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const m = /^\s*[ugm]\s+\S+\s+(\d+)(?::(\d+))?/.exec(line);
      if (m) ids.push(Number(m[1]), ...(m[2] ? [Number(m[2])] : []));
    }
  }
  return ids;
}

/**
 * Plans the account: keeps an existing user's ids, else picks the highest system id (SYS_UID_MAX downwards, as
 * `useradd --system` does) that is free as both a uid and a gid and not claimed by a `sysusers.d` entry.
 *
 * @example
 * ```ts
 * declare const files: AccountFiles; // the base image's passwd, group, shadow, ...
 * const plan = planAccount(files, { name: "outpost", home: "/var/lib/outpost", shell: "/usr/sbin/nologin",
 *   gecos: "outpost daemon", today: 20000 });
 * console.log(plan);
 * ```
 */
export function planAccount(files: AccountFiles, spec: AccountSpec): AccountPlan {
  const users = entries(files.passwd);
  const groups = entries(files.group);
  const user = users.find((u) => u[0] === spec.name);
  const group = groups.find((g) => g[0] === spec.name);
  let uid: number;
  let gid: number;
  if (user) {
    uid = Number(user[2]);
    gid = Number(user[3]);
  } else {
    const claimed = new Set(sysusersFixedIds(files.sysusers));
    const uids = new Set([...users.map((u) => Number(u[2])), ...claimed]);
    const gids = new Set([...groups.map((g) => Number(g[2])), ...claimed]);
    if (group) {
      gid = Number(group[2]);
      uid = uids.has(gid) ? -1 : gid;
    } else {
      gid = uid = -1;
    }
    const min = loginDef(files.loginDefs, "SYS_UID_MIN", 100);
    const max = loginDef(files.loginDefs, "SYS_UID_MAX", 999);
    for (let id = max; id >= min && uid < 0; id--) {
      if (uids.has(id) || (gid < 0 && gids.has(id))) continue;
      uid = id;
      if (gid < 0) gid = id;
    }
    if (uid < 0) {
      throw new Error(
        `No free system id between ${min} and ${max} for the ${spec.name} account: the image's /etc/passwd ` +
          `and /etc/group use them all.`,
      );
    }
  }
  let passwd = files.passwd;
  if (!user) {
    passwd = withLine(passwd, `${spec.name}:x:${uid}:${gid}:${spec.gecos}:${spec.home}:${spec.shell}`);
  }
  let groupText = files.group;
  if (!groups.some((g) => Number(g[2]) === gid)) groupText = withLine(groupText, `${spec.name}:x:${gid}:`);
  let shadow = files.shadow ?? "";
  if (!entries(shadow).some((s) => s[0] === spec.name)) {
    shadow = withLine(shadow, `${spec.name}:!:${spec.today}::::::`);
  }
  let gshadow = files.gshadow ?? "";
  const groupName = entries(groupText).find((g) => Number(g[2]) === gid)?.[0] ?? spec.name;
  if (!entries(gshadow).some((g) => g[0] === groupName)) gshadow = withLine(gshadow, `${groupName}:!::`);
  const ids = uid === gid && groupName === spec.name ? `${uid}` : `${uid}:${groupName}`;
  const sysusersConf =
    `# The account outpost.service runs as; declared by the image builder (scripts/build_image.ts).\n` +
    `# /etc/passwd, group, shadow and gshadow already hold it; systemd-sysusers recreates it if they lose it.\n` +
    (groupName === spec.name && ids !== `${uid}` ? `g ${spec.name} ${gid}\n` : "") +
    `u ${spec.name} ${ids} "${spec.gecos}" ${spec.home} ${spec.shell}\n`;
  return { uid, gid, existed: !!user, passwd, group: groupText, shadow, gshadow, sysusersConf };
}
