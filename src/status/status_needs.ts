/**
 * What the status socket and page need from the system, from the parsed `[status]` table: read and write on the
 * socket's folder (listen, chmod, the stale-socket check, removal on stop; the folder is created for the daemon's
 * user), `--allow-net=unix:<socket>` (Deno 2 checks unix sockets as net too, by exact path), and the page's
 * `host:port` when it is on. The history file lives in the state folder, which the device
 * already reads and writes; `JOURNAL_STREAM` is among the daemon's environment variables.
 *
 * @module
 */

import { parentDir, type SandboxNeeds, SandboxNeedsBuilder } from "../config/sandbox_needs.ts";
import type { StatusConfig } from "./status_config.ts";

/**
 * The status parts' needs.
 *
 * @example
 * ```ts
 * const needs = statusSandboxNeeds(config.status);
 * needs.net; // ["127.0.0.1:8021", "unix:/var/lib/outpost/status.sock"] with [status] http = true
 * ```
 */
export function statusSandboxNeeds(status: StatusConfig): SandboxNeeds {
  const b = new SandboxNeedsBuilder();
  if (status.socket) b.readWrite(parentDir(status.socket), { own: true });
  if (status.http) b.listen(status.host, status.port);
  const needs = b.build();
  // Deno 2 also asks for net access to a unix socket, by its exact path.
  if (status.socket && needs.net !== "all") needs.net.push(`unix:${status.socket}`);
  return needs;
}
