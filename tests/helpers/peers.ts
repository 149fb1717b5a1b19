/**
 * Finding the real peers (curl, lftp, python3, an SMTP server, ...) that interop tests drive.
 *
 * Outside CI a test whose peer is missing is skipped with a visible name; in CI (`CI=true`) it runs and fails with
 * "peer not found", because a skipped interop test proves nothing.
 *
 * @module
 */

/** True when running under CI, where a missing peer fails the test instead of skipping it. */
export const IN_CI = (Deno.env.get("CI") ?? "").toLowerCase() === "true" || Deno.env.get("CI") === "1";

/**
 * Returns the absolute path of `name` on PATH (or `name` itself when it is already a path to a file), else null.
 *
 * @example
 * ```ts
 * const curl = findPeer("curl");
 * console.log(curl ?? "curl is not installed");
 * ```
 */
export function findPeer(name: string): string | null {
  if (name.includes("/")) return isFile(name) ? name : null;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const p = `${dir}/${name}`;
    if (isFile(p)) return p;
  }
  return null;
}

function isFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

/**
 * Value for `Deno.test({ ignore })`: skip only outside CI when a peer is missing.
 *
 * @example
 * ```ts
 * Deno.test({ name: "lftp mirror", ignore: skipWithout(findPeer("lftp")), fn: async () => {} });
 * ```
 */
export function skipWithout(...peers: (string | null)[]): boolean {
  return !IN_CI && peers.some((p) => p === null);
}

/**
 * Returns the peer's path or throws the error a CI run reports when it is missing.
 *
 * @example
 * ```ts
 * const lftp = requirePeer("lftp");
 * console.log(lftp);
 * ```
 */
export function requirePeer(name: string): string {
  const p = findPeer(name);
  if (p === null) {
    throw new Error(`Interop peer not found: ${name} is not on PATH (install it; .ci/run does).`);
  }
  return p;
}

/** Python with the Debian packages (aiosmtpd, pyftpdlib) importable: Debian's interpreter, not a pyenv one. */
export const SYSTEM_PYTHON = isFile("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
