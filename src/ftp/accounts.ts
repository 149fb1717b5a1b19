/**
 * FTP accounts: configured users with hashed passwords and per-user roots and permissions, plus optional
 * anonymous access (read-only, confined to its own root).
 *
 * @module
 */

import { verifyPassword } from "../config/password.ts";
import { type FtpPermissions, READ_ONLY } from "./ftp_file_system.ts";

/**
 * One account. `passwordHash` is null only for the anonymous user.
 *
 * @example
 * ```ts
 * import { hashPassword } from "../config/password.ts";
 * import { READ_ONLY } from "./ftp_file_system.ts";
 *
 * const pi: FtpUser = { name: "pi", passwordHash: await hashPassword("secret"), root: "/srv/ftp", perms: READ_ONLY };
 * console.log(pi.root);
 * ```
 */
export interface FtpUser {
  /** Login name (compared exactly). */
  name: string;
  /** PBKDF2-SHA256 hash from `hashPassword` (`outpost passwd`); null for the anonymous user. */
  passwordHash: string | null;
  /** Folder the user sees as "/"; nothing outside it is reachable. */
  root: string;
  /** What the user may do below `root`. */
  perms: FtpPermissions;
}

/**
 * Users from the config and the anonymous setting (`null` or `enabled: false` = no anonymous login).
 *
 * @example
 * ```ts
 * declare const pi: FtpUser; // a configured user
 * const opts: AccountsOptions = { users: [pi], anonymous: { enabled: true, root: "/srv/ftp/pub" } };
 * const accounts = new Accounts(opts);
 * console.log(accounts.anonymousRoot); // "/srv/ftp/pub"
 * ```
 */
export interface AccountsOptions {
  /** The configured users. */
  users: FtpUser[];
  /** Anonymous access (always read-only, confined to `root`), or null for none. */
  anonymous: { enabled: boolean; root: string } | null;
}

/**
 * Login names that mean anonymous access (compared case-insensitively).
 *
 * @example
 * ```ts
 * ANONYMOUS_NAMES.includes("FTP".toLowerCase()); // true
 * ```
 */
export const ANONYMOUS_NAMES: readonly string[] = ["anonymous", "ftp"];

/**
 * A well-formed hash that no password matches in practice (all-zero salt and digest), verified for unknown
 * names so they cost as much as known ones.
 *
 * @example
 * ```ts
 * import { checkPasswordHash } from "../config/password.ts";
 *
 * checkPasswordHash(dummyHash(200_000)); // null: well-formed, so verifyPassword really derives a key
 * ```
 */
export function dummyHash(iterations: number): string {
  return `pbkdf2-sha256$${iterations}$${btoa("\0".repeat(16))}$${btoa("\0".repeat(32))}`;
}

/**
 * Resolves logins to users.
 *
 * @example
 * ```ts
 * import { hashPassword } from "../config/password.ts";
 * import { FULL_ACCESS } from "./ftp_file_system.ts";
 *
 * const accounts = new Accounts({
 *   users: [{ name: "alice", passwordHash: await hashPassword("pw"), root: "/srv/ftp", perms: FULL_ACCESS }],
 *   anonymous: null,
 * });
 * const user = await accounts.authenticate("alice", "pw"); // the user, or null
 * console.log(user?.root); // "/srv/ftp"
 * ```
 */
export class Accounts {
  readonly #users = new Map<string, FtpUser>();
  readonly #anonymous: FtpUser | null;
  readonly #dummy: string;

  /** Indexes the users; unknown names are later verified against a dummy hash with the users' iteration count. */
  constructor(opts: AccountsOptions) {
    for (const u of opts.users) this.#users.set(u.name, u);
    this.#anonymous = opts.anonymous?.enabled
      ? Object.freeze({ name: "anonymous", passwordHash: null, root: opts.anonymous.root, perms: READ_ONLY })
      : null;
    // Unknown names cost as much as known ones: verify against a dummy with the users' iteration count.
    let iterations = 200_000;
    for (const u of opts.users) {
      const it = Number(u.passwordHash?.split("$")[1]);
      if (Number.isInteger(it) && it >= 1000 && it <= 10_000_000) {
        iterations = it;
        break;
      }
    }
    this.#dummy = dummyHash(iterations);
  }

  /** True when anonymous logins are accepted. */
  get anonymousEnabled(): boolean {
    return this.#anonymous !== null;
  }

  /** The anonymous user's root, or null when anonymous logins are off. */
  get anonymousRoot(): string | null {
    return this.#anonymous?.root ?? null;
  }

  /** The configured users (not the anonymous one). */
  get users(): FtpUser[] {
    return [...this.#users.values()];
  }

  /**
   * Resolves the user, or null for a bad name or password. Unknown names take as long as wrong passwords
   * (a dummy hash is verified). "anonymous"/"ftp" (any case) accept any password when anonymous access is on
   * and get READ_ONLY permissions; a configured user with one of those exact names takes precedence.
   *
   * @example
   * ```ts
   * declare const accounts: Accounts; // see the constructor
   * const user = await accounts.authenticate("anonymous", "guest@example.com");
   * console.log(user?.perms); // READ_ONLY, when anonymous access is on
   * ```
   */
  async authenticate(name: string, password: string): Promise<FtpUser | null> {
    const user = this.#users.get(name);
    if (user && user.passwordHash !== null) {
      return (await verifyPassword(password, user.passwordHash)) ? user : null;
    }
    if (this.#anonymous && ANONYMOUS_NAMES.includes(name.toLowerCase())) return this.#anonymous;
    await verifyPassword(password, this.#dummy);
    return null;
  }
}
