/**
 * `outpost status`: asks the running daemon over its status socket and prints what it is doing (text, or `--json`).
 * Exit status: 0 when the daemon answered, 3 when no daemon runs, 4 when it could not be asked (permission,
 * broken answer), 64 for bad usage.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findConfigPath, parseConfig, parseTomlDocument } from "../app/outpost_config.ts";
import { resolvePath } from "../config/section.ts";
import { queryStatus, StatusQueryError } from "../status/query_status.ts";
import { formatStatusText } from "../status/status_text.ts";

const HELP = `Usage: outpost status [--json] [--config FILE | --socket PATH]

Asks the running daemon what it is doing: since when it runs, the config in use (and the problems of the file
if it was edited), FTP listeners and sessions with transfers in progress, each sensor's last reading, each rule's
state, and the mail outbox.

  --json              the same as one JSON document (times in ms since the epoch)
  --config, -C FILE   the config whose [status] socket to ask (default: as for outpost serve)
  --socket PATH       ask this socket directly

Exit status: 0 the daemon answered, 3 no daemon runs, 4 it could not be asked (permission, bad answer).`;

/** Where the socket of the config at `path` is, read as leniently as possible (the file may be invalid). */
async function socketFor(path: string | null): Promise<string[]> {
  if (path === null) {
    // No config: a quick-start daemon in this folder, or the board's default state folder.
    return [`${Deno.cwd()}/.outpost-state/status.sock`, "/var/lib/outpost/status.sock"];
  }
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const text = await Deno.readTextFile(abs);
  try {
    const cfg = parseConfig(text, abs);
    return cfg.status.socket ? [cfg.status.socket] : [];
  } catch {
    // An invalid file: the daemon may run on the last good copy; find the socket from the raw tables.
    const base = abs.slice(0, abs.lastIndexOf("/")) || "/";
    let stateDir = "/var/lib/outpost";
    let socket: string | undefined;
    try {
      const doc = parseTomlDocument(text, abs);
      const sd = (doc.device as Record<string, unknown> | undefined)?.state_dir;
      if (typeof sd === "string") stateDir = resolvePath(base, sd);
      const so = (doc.status as Record<string, unknown> | undefined)?.socket;
      if (typeof so === "string" && so !== "") socket = resolvePath(base, so);
    } catch {
      // Not even TOML: the defaults.
    }
    return [socket ?? `${stateDir}/status.sock`];
  }
}

/**
 * Runs `outpost status`.
 *
 * @example
 * ```ts
 * Deno.exit(await statusCommand(["--json"]));
 * ```
 */
export async function statusCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        json: { type: "boolean" },
        config: { type: "string", short: "C" },
        socket: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`outpost status: ${(e as Error).message}\n\n${HELP}`);
    return 64;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let candidates: string[];
  if (values.socket) candidates = [values.socket];
  else {
    let path: string | null;
    try {
      path = await findConfigPath(values.config);
      candidates = await socketFor(path);
    } catch (e) {
      console.error(
        `outpost status: cannot read the config${values.config ? ` ${values.config}` : ""}: ${
          (e as Error).message
        }`,
      );
      return 64;
    }
    if (candidates.length === 0) {
      const msg =
        `The status socket is off in ${path} ([status] socket = ""), so the daemon cannot be asked.`;
      if (values.json) console.log(JSON.stringify({ running: null, error: msg }));
      else console.error(msg);
      return 4;
    }
  }
  let last: StatusQueryError | null = null;
  for (const socket of candidates) {
    try {
      const snap = await queryStatus(socket);
      if (values.json) console.log(JSON.stringify({ running: true, socket, ...snap }, null, 2));
      else console.log(formatStatusText(snap));
      return 0;
    } catch (e) {
      if (!(e instanceof StatusQueryError)) throw e;
      if (last === null || last.kind === "not-running") last = e;
    }
  }
  const err = last!;
  const hint = err.kind === "not-running"
    ? "Start it with `sudo systemctl start outpost` (see `journalctl -u outpost` for why it stopped) or `outpost serve`."
    : err.kind === "denied"
    ? "Ask with sudo, or add yourself to the daemon's group."
    : "";
  if (values.json) {
    console.log(JSON.stringify({ running: err.kind === "not-running" ? false : null, error: err.message }));
  } else console.error(`outpost status: ${err.message}${hint ? `\n${hint}` : ""}`);
  return err.kind === "not-running" ? 3 : 4;
}
