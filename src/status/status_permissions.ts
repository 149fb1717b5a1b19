/**
 * What the status socket and page need from the Deno sandbox, for the permission derivation
 * (`scripts/derive_permissions.ts`) to add to the daemon's flags.
 *
 * @module
 */

import type { StatusConfig } from "./status_config.ts";

/**
 * The status parts' permission needs: read and write on the socket file (listen, chmod, the stale-socket check),
 * the HTTP listener's `host:port` when the page is on, and `JOURNAL_STREAM` (the logger's journald priorities).
 * The history file lives in the state folder, which the daemon already reads and writes.
 *
 * @example
 * ```ts
 * const needs = statusPermissionNeeds(config.status);
 * // { read: ["/var/lib/outpost/status.sock"], write: [...], net: ["127.0.0.1:8021"], env: ["JOURNAL_STREAM"] }
 * ```
 */
export function statusPermissionNeeds(
  status: StatusConfig,
): { read: string[]; write: string[]; net: string[]; env: string[] } {
  const paths = status.socket ? [status.socket] : [];
  const host = status.host.includes(":") && !status.host.startsWith("[") ? `[${status.host}]` : status.host;
  return {
    read: paths,
    write: paths,
    net: status.http ? [`${host}:${status.port}`] : [],
    env: ["JOURNAL_STREAM"],
  };
}
