/**
 * The FTP command table and a pure parser for control lines.
 *
 * Each verb has one entry saying whether it needs a login, which permission it needs, whether it takes an
 * argument, and its help text. The session checks these generically before dispatching, and FEAT and HELP are
 * produced from the same table, so a verb cannot be advertised without being implemented or the other way round.
 *
 * @module
 */

import type { FtpPermissions } from "./ftp_file_system.ts";

/**
 * Whether a verb takes an argument.
 *
 * @example
 * ```ts
 * const rule: ArgRule = COMMANDS["RETR"].arg; // "required"
 * console.log(rule);
 * ```
 */
export type ArgRule = "required" | "optional" | "none";

/**
 * One verb's rules.
 *
 * @example
 * ```ts
 * const dele: CommandSpec = { needsAuth: true, perm: "delete", arg: "required", help: "DELE <file> (delete a file)" };
 * console.log(dele.help);
 * ```
 */
export interface CommandSpec {
  /** True when the verb is refused with 530 before a login. */
  needsAuth: boolean;
  /** The permission the verb needs once logged in, if any. */
  perm?: keyof FtpPermissions;
  /** Whether an argument is required, optional or refused. */
  arg: ArgRule;
  /** Syntax help shown by `HELP <verb>`. */
  help: string;
  /** Verbs that may run while a transfer is in progress (the rest wait for it to end). */
  duringTransfer?: boolean;
}

/** Every verb the server implements, with its literal keys (see {@link Verb}). */
const COMMAND_TABLE = {
  ABOR: { needsAuth: false, arg: "none", help: "ABOR (abort the running transfer)", duringTransfer: true },
  ACCT: { needsAuth: false, arg: "required", help: "ACCT <account> (not used by this server)" },
  AUTH: {
    needsAuth: false,
    arg: "required",
    help: "AUTH TLS (upgrade the control connection to TLS; AUTH SSL alias)",
  },
  ALLO: { needsAuth: true, arg: "required", help: "ALLO <bytes> (reserve space; not needed)" },
  APPE: { needsAuth: true, perm: "append", arg: "required", help: "APPE <file> (append to a file)" },
  CCC: { needsAuth: false, arg: "none", help: "CCC (clear the control channel; refused)" },
  CDUP: { needsAuth: true, arg: "none", help: "CDUP (go to the parent folder)" },
  CWD: { needsAuth: true, arg: "required", help: "CWD <folder> (change the working folder)" },
  DELE: { needsAuth: true, perm: "delete", arg: "required", help: "DELE <file> (delete a file)" },
  EPRT: {
    needsAuth: true,
    arg: "required",
    help: "EPRT |<proto>|<address>|<port>| (active data connection)",
  },
  EPSV: { needsAuth: true, arg: "optional", help: "EPSV [<proto> | ALL] (extended passive mode)" },
  FEAT: { needsAuth: false, arg: "none", help: "FEAT (list the extensions)" },
  HELP: { needsAuth: false, arg: "optional", help: "HELP [<command>] (show help)" },
  LIST: { needsAuth: true, perm: "list", arg: "optional", help: "LIST [<path>] (long listing)" },
  MDTM: { needsAuth: true, perm: "list", arg: "required", help: "MDTM <file> (modification time)" },
  MKD: { needsAuth: true, perm: "mkdir", arg: "required", help: "MKD <folder> (make a folder)" },
  MLSD: { needsAuth: true, perm: "list", arg: "optional", help: "MLSD [<folder>] (machine listing)" },
  MLST: {
    needsAuth: true,
    perm: "list",
    arg: "optional",
    help: "MLST [<path>] (machine facts of one entry)",
  },
  MODE: { needsAuth: false, arg: "required", help: "MODE S (stream mode only)" },
  NLST: { needsAuth: true, perm: "list", arg: "optional", help: "NLST [<path>] (name listing)" },
  NOOP: { needsAuth: false, arg: "none", help: "NOOP (do nothing)", duringTransfer: true },
  OPTS: { needsAuth: false, arg: "required", help: "OPTS <command> [<options>] (UTF8 ON, MLST <facts>)" },
  PASS: { needsAuth: false, arg: "optional", help: "PASS <password> (log in)" },
  PASV: { needsAuth: true, arg: "none", help: "PASV (passive mode, IPv4)" },
  PBSZ: { needsAuth: false, arg: "required", help: "PBSZ 0 (protection buffer size; after AUTH TLS)" },
  PORT: { needsAuth: true, arg: "required", help: "PORT <h1,h2,h3,h4,p1,p2> (active data connection)" },
  PROT: { needsAuth: false, arg: "required", help: "PROT P | C (protect the data connections or not)" },
  PWD: { needsAuth: true, arg: "none", help: "PWD (print the working folder)" },
  QUIT: { needsAuth: false, arg: "none", help: "QUIT (log out and disconnect)", duringTransfer: true },
  REIN: { needsAuth: false, arg: "none", help: "REIN (log out, keep the connection)" },
  REST: { needsAuth: true, arg: "required", help: "REST <offset> (restart the next transfer at an offset)" },
  RETR: { needsAuth: true, perm: "read", arg: "required", help: "RETR <file> (download)" },
  RMD: { needsAuth: true, perm: "delete", arg: "required", help: "RMD <folder> (remove an empty folder)" },
  RNFR: { needsAuth: true, perm: "rename", arg: "required", help: "RNFR <path> (rename from)" },
  RNTO: { needsAuth: true, perm: "rename", arg: "required", help: "RNTO <path> (rename to)" },
  SITE: { needsAuth: false, arg: "required", help: "SITE <HELP | CHMOD <mode> <path>>" },
  SIZE: { needsAuth: true, perm: "list", arg: "required", help: "SIZE <file> (file size in bytes)" },
  STAT: {
    needsAuth: false,
    arg: "optional",
    help: "STAT [<path>] (server status or a listing)",
    duringTransfer: true,
  },
  STOR: { needsAuth: true, perm: "write", arg: "required", help: "STOR <file> (upload)" },
  STOU: { needsAuth: true, perm: "write", arg: "optional", help: "STOU (upload under a unique name)" },
  STRU: { needsAuth: false, arg: "required", help: "STRU F (file structure only)" },
  SYST: { needsAuth: false, arg: "none", help: "SYST (system type)" },
  TYPE: { needsAuth: false, arg: "required", help: "TYPE <A | I | A N | L 8> (transfer type)" },
  USER: { needsAuth: false, arg: "required", help: "USER <name> (start a login)" },
  XCWD: { needsAuth: true, arg: "required", help: "XCWD <folder> (same as CWD)" },
  XMKD: { needsAuth: true, perm: "mkdir", arg: "required", help: "XMKD <folder> (same as MKD)" },
  XPWD: { needsAuth: true, arg: "none", help: "XPWD (same as PWD)" },
  XRMD: { needsAuth: true, perm: "delete", arg: "required", help: "XRMD <folder> (same as RMD)" },
} satisfies Record<string, CommandSpec>;

/**
 * A verb of {@link COMMANDS} (the session's handler table is keyed by it, so every verb has exactly one handler).
 *
 * @example
 * ```ts
 * const v: Verb = "RETR";
 * console.log(COMMANDS[v].arg); // "required"
 * ```
 */
export type Verb = keyof typeof COMMAND_TABLE;

/**
 * Every verb the server knows, with its rules (login, permission, argument); looked up by the upper-cased verb.
 *
 * @example
 * ```ts
 * COMMANDS.RETR.perm; // "read"
 * ```
 */
export const COMMANDS: Readonly<Record<string, CommandSpec>> = COMMAND_TABLE;

/**
 * True when `verb` is one of {@link COMMANDS}.
 *
 * @example
 * ```ts
 * isVerb("RETR"); // true
 * ```
 */
export function isVerb(verb: string): verb is Verb {
  return Object.hasOwn(COMMAND_TABLE, verb);
}

/**
 * SITE subcommands with the permission they need and their help.
 *
 * @example
 * ```ts
 * SITE_COMMANDS["CHMOD"].perm; // "chmod"
 * ```
 */
export const SITE_COMMANDS: Readonly<Record<string, { perm?: keyof FtpPermissions; help: string }>> = {
  CHMOD: { perm: "chmod", help: "SITE CHMOD <octal mode> <path> (change permission bits)" },
  HELP: { help: "SITE HELP (this list)" },
};

/**
 * The MLST facts the server can show, in output order (OPTS MLST selects a subset).
 *
 * @example
 * ```ts
 * featReply(MLST_FACTS); // lists "MLST type*;size*;modify*;perm*;unique*;"
 * ```
 */
export const MLST_FACTS: readonly string[] = ["type", "size", "modify", "perm", "unique"];

/**
 * A control line split into an upper-case verb and its raw argument.
 *
 * @example
 * ```ts
 * const cmd: ParsedCommand | null = parseCommandLine("stor report.csv");
 * cmd?.verb; // "STOR"
 * ```
 */
export interface ParsedCommand {
  /** The verb, upper-cased (for example `RETR`). */
  verb: string;
  /** Everything after the first space, unchanged except for trailing CR/LF ("" when absent). */
  arg: string;
}

// Telnet IAC IP / IAC DM (some decoded as U+FFFD) and stray control bytes that may precede an urgent ABOR.
// deno-lint-ignore no-control-regex
const LEADING_JUNK = /^[\uFFFD\u00F2\u00F4\u00FF\x00-\x20]+/;

/**
 * Parses one control line (without its line ending) into a verb and argument; null for an empty line.
 *
 * @example
 * ```ts
 * parseCommandLine("retr my file.txt"); // { verb: "RETR", arg: "my file.txt" }
 * ```
 */
export function parseCommandLine(line: string): ParsedCommand | null {
  const s = line.replace(LEADING_JUNK, "");
  if (s.length === 0) return null;
  const sp = s.indexOf(" ");
  const verb = (sp < 0 ? s : s.slice(0, sp)).toUpperCase();
  const arg = sp < 0 ? "" : s.slice(sp + 1);
  return { verb, arg };
}

/**
 * True when the bytes pending without a line feed are an urgent `ABOR\r` (possibly after Telnet IP/DM bytes),
 * which the kernel delivers without its final LF. Used as the LineReader's `acceptBareCr` hook.
 *
 * @example
 * ```ts
 * isUrgentAbort(new TextEncoder().encode("ABOR\r")); // true
 * ```
 */
export function isUrgentAbort(pending: Uint8Array): boolean {
  let i = 0;
  while (i < pending.length && (pending[i] === 0xff || pending[i] === 0xf4 || pending[i] === 0xf2)) i++;
  if (pending.length - i !== 5) return false;
  return (pending[i] | 0x20) === 0x61 && (pending[i + 1] | 0x20) === 0x62 &&
    (pending[i + 2] | 0x20) === 0x6f &&
    (pending[i + 3] | 0x20) === 0x72 && pending[i + 4] === 0x0d;
}

/**
 * Checks a parsed command against the table; returns the refusal reply, or null when it may run.
 *
 * @example
 * ```ts
 * checkCommand({ verb: "RETR", arg: "" }, true, null); // "501 Syntax error: RETR needs an argument."
 * ```
 */
export function checkCommand(
  cmd: ParsedCommand,
  loggedIn: boolean,
  perms: FtpPermissions | null,
): string | null {
  const spec = COMMANDS[cmd.verb];
  if (!spec) return `500 Command not understood.`;
  const hasArg = cmd.arg.trim().length > 0;
  if (spec.arg === "required" && !hasArg) return `501 Syntax error: ${cmd.verb} needs an argument.`;
  if (spec.arg === "none" && hasArg) return `501 Syntax error: ${cmd.verb} takes no argument.`;
  if (spec.needsAuth && !loggedIn) return "530 Please log in with USER and PASS first.";
  if (spec.perm && perms && !perms[spec.perm]) return "550 Permission denied.";
  return null;
}

/**
 * The FEAT reply (multi-line, CRLF-terminated), with the selected MLST facts starred.
 *
 * @example
 * ```ts
 * featReply(["type", "size"]); // "211-Features:\r\n EPRT\r\n ..."
 * featReply(["type"], true);    // also AUTH TLS, AUTH SSL, PBSZ and PROT (FTPS on)
 * ```
 */
export function featReply(selectedFacts: readonly string[], tls = false): string {
  const mlst = MLST_FACTS.map((f) => `${f}${selectedFacts.includes(f) ? "*" : ""};`).join("");
  const lines = [
    ...(tls ? ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"] : []),
    "EPRT",
    "EPSV",
    "MDTM",
    `MLST ${mlst}`,
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
  ];
  return `211-Features:\r\n${lines.map((l) => ` ${l}\r\n`).join("")}211 End\r\n`;
}

/**
 * The HELP reply: the verb list, or one verb's syntax.
 *
 * @example
 * ```ts
 * helpReply("retr"); // "214 Syntax: RETR <file> (download)\r\n"
 * ```
 */
export function helpReply(arg: string): string {
  const verb = arg.trim().toUpperCase();
  if (verb) {
    const spec = COMMANDS[verb];
    return spec
      ? `214 Syntax: ${spec.help}\r\n`
      : `502 Unknown command ${verb.replace(/[^A-Z0-9]/g, "")}.\r\n`;
  }
  const verbs = Object.keys(COMMANDS).sort();
  let out = "214-The following commands are recognized:\r\n";
  for (let i = 0; i < verbs.length; i += 8) {
    out += " " + verbs.slice(i, i + 8).map((v) => v.padEnd(5)).join(" ").trimEnd() + "\r\n";
  }
  return out + "214 Help OK.\r\n";
}

/**
 * The SITE HELP reply.
 *
 * @example
 * ```ts
 * siteHelpReply(); // "214-The following SITE commands are recognized:\r\n CHMOD ...\r\n214 Help OK.\r\n"
 * ```
 */
export function siteHelpReply(): string {
  let out = "214-The following SITE commands are recognized:\r\n";
  for (const spec of Object.values(SITE_COMMANDS)) out += ` ${spec.help}\r\n`;
  return out + "214 Help OK.\r\n";
}

/**
 * Strips the `ls`-style options (`-la`, `-a`, `-l`, ...) some clients put before a LIST/NLST path.
 *
 * @example
 * ```ts
 * stripListOptions("-la sub"); // "sub"
 * ```
 */
export function stripListOptions(arg: string): string {
  return arg.replace(/^(\s*-[a-zA-Z]+)+(\s+|$)/, "");
}

/**
 * Keeps only the selected facts of a formatted MLSx line (`facts; name`).
 *
 * @example
 * ```ts
 * filterFacts("type=file;size=3;modify=20260101000000; a", ["type"]); // "type=file; a"
 * ```
 */
export function filterFacts(line: string, selected: readonly string[]): string {
  if (selected.length === MLST_FACTS.length) return line;
  const sp = line.indexOf(" ");
  if (sp < 0) return line;
  const kept = line.slice(0, sp).split(";").filter((f) => {
    const eq = f.indexOf("=");
    return eq > 0 && selected.includes(f.slice(0, eq).toLowerCase());
  });
  return (kept.length ? kept.join(";") + ";" : "") + line.slice(sp);
}
