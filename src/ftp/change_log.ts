/**
 * One log line per FTP change (DELE, RMD, MKD, RNTO, SITE CHMOD, and a refused RNFR): who changed which path, and
 * the reply code. A success is an info line, a refusal or failure a warning, so `journalctl -p warning` shows the
 * refused ones. The session calls {@link logFtpChange} once after each command; other verbs are ignored.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { ParsedCommand } from "./ftp_commands.ts";

/**
 * What {@link logFtpChange} needs from the session after a command ran.
 *
 * @example
 * ```ts
 * const s: ChangeContext = { id: 3, ip: "192.168.1.7", user: "alice", cwd: "/", resolve: (cwd, arg) => cwd + arg,
 *   renameFrom: null, reply: "250" };
 * console.log(s.resolve(s.cwd, "old.csv")); // "/old.csv"
 * ```
 */
export interface ChangeContext {
  /** Session number. */
  id: number;
  /** Client address. */
  ip: string;
  /** Logged-in user; null before login (nothing is logged then: every change verb needs a login). */
  user: string | null;
  /** Working directory the argument is relative to. */
  cwd: string;
  /** Resolves a client path to the virtual path (may throw on a path it refuses). */
  resolve: (cwd: string, arg: string) => string;
  /** The RNFR path pending when RNTO ran. */
  renameFrom: string | null;
  /** The reply code sent for the command ("250", "550", ...). */
  reply: string;
}

const VERBS: Record<string, string> = {
  DELE: "DELE",
  RMD: "RMD",
  XRMD: "RMD",
  MKD: "MKD",
  XMKD: "MKD",
  RNFR: "RNFR",
  RNTO: "RNTO",
};

function virtual(ctx: ChangeContext, arg: string): string {
  try {
    return ctx.resolve(ctx.cwd, arg);
  } catch {
    return arg;
  }
}

/**
 * Logs `cmd` if it is a change (or a refused RNFR); does nothing for any other command.
 *
 * @example
 * ```ts
 * import { Logger } from "../log/logger.ts";
 *
 * logFtpChange(new Logger("ftp"), { verb: "DELE", arg: "old.csv" }, { id: 3, ip: "192.168.1.7", user: "alice",
 *   cwd: "/", resolve: (cwd, arg) => cwd + arg, renameFrom: null, reply: "250" });
 * // ftp change verb=DELE user=alice path=/old.csv result=250 id=3 ip=192.168.1.7
 * ```
 */
export function logFtpChange(
  log: Logger,
  cmd: Pick<ParsedCommand, "verb" | "arg">,
  ctx: ChangeContext,
): void {
  if (ctx.user === null) return;
  const ok = ctx.reply.startsWith("2") || ctx.reply.startsWith("3");
  let verb = VERBS[cmd.verb];
  const fields: Record<string, string | undefined> = {};
  if (cmd.verb === "SITE") {
    const m = /^CHMOD\s+(\S+)\s+(.+)$/i.exec(cmd.arg.trim());
    if (!m) return;
    verb = "SITE_CHMOD";
    fields.path = virtual(ctx, m[2]);
    fields.mode = m[1];
  } else if (verb === undefined) {
    return;
  } else if (verb === "RNFR") {
    if (ok) return; // Not a change yet: RNTO logs the rename with both names.
    fields.path = virtual(ctx, cmd.arg);
  } else if (verb === "RNTO") {
    fields.from = ctx.renameFrom ?? undefined;
    fields.path = virtual(ctx, cmd.arg);
  } else {
    fields.path = virtual(ctx, cmd.arg);
  }
  const line = { verb, user: ctx.user, ...fields, result: ctx.reply, id: ctx.id, ip: ctx.ip };
  if (ok) log.info("change", line);
  else log.warn("change", line);
}
