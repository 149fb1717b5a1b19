/**
 * One-line structured logging to stdout (journald adds the timestamp and unit on a board).
 *
 * A line reads `ftp session.open id=3 ip=127.0.0.1`: a component, an event, then `key=value` fields, values with
 * spaces or quotes JSON-quoted. Control characters in values are escaped, so a client cannot forge log lines.
 * Passwords are never passed to it.
 *
 * When stdout is the journal (`JOURNAL_STREAM` names stdout's device and inode, as systemd sets it), each line
 * starts with its syslog priority, `<6>` info, `<4>` warning, `<3>` error (sd-daemon(3)), so
 * `journalctl -p warning` finds warnings; elsewhere warnings and errors start with `warn: ` and `error: `.
 *
 * @module
 */

/**
 * Field values a log line accepts; undefined fields are left out.
 *
 * @example
 * ```ts
 * const fields: Record<string, LogValue> = { user: "pi", bytes: 1024, tls: true, error: undefined };
 * new Logger("ftp").info("upload.done", fields);
 * ```
 */
export type LogValue = string | number | boolean | bigint | null | undefined;

/**
 * Where log lines go (one complete line, without the newline); tests replace it to capture or silence output.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const sink: LogSink = (line) => lines.push(line);
 * setLogSink(sink);
 * ```
 */
export type LogSink = (line: string) => void;

import { fstatSync } from "node:fs";

const encoder = new TextEncoder();
let sink: LogSink = (line) => {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
};
let quiet = envQuiet();
let journal = envJournal();

/**
 * True when `journalStream` (the `JOURNAL_STREAM` variable, "device:inode") names the file stdout is, i.e. stdout
 * goes to journald. An unreadable stdout with the variable set counts as the journal.
 *
 * @example
 * ```ts
 * journalStreamMatches("8:12345", { dev: 8, ino: 12345 }); // true
 * journalStreamMatches(undefined, { dev: 8, ino: 12345 }); // false
 * ```
 */
export function journalStreamMatches(
  journalStream: string | undefined,
  stdout: { dev: number; ino: number } | null,
): boolean {
  if (!journalStream) return false;
  const m = /^(\d+):(\d+)$/.exec(journalStream.trim());
  if (!m) return false;
  if (stdout === null) return true;
  return Number(m[1]) === stdout.dev && Number(m[2]) === stdout.ino;
}

function envJournal(): boolean {
  let value: string | undefined;
  try {
    value = Deno.env.get("JOURNAL_STREAM");
  } catch {
    return false; // No --allow-env=JOURNAL_STREAM: plain lines.
  }
  if (!value) return false;
  let stdout: { dev: number; ino: number } | null = null;
  try {
    const s = fstatSync(1);
    stdout = { dev: Number(s.dev), ino: Number(s.ino) };
  } catch {
    stdout = null;
  }
  return journalStreamMatches(value, stdout);
}

/**
 * Turns the journald priority prefixes on or off (they are on when stdout is the journal); returns the old setting.
 *
 * @example
 * ```ts
 * const old = setJournalMode(true);
 * new Logger("ftp").warn("disk.low"); // "<4>ftp disk.low"
 * setJournalMode(old);
 * ```
 */
export function setJournalMode(on: boolean): boolean {
  const prev = journal;
  journal = on;
  return prev;
}

function envQuiet(): boolean {
  try {
    return Deno.env.get("OUTPOST_LOG") === "off";
  } catch {
    // No --allow-env for it: the daemon runs with narrowed permissions and always logs.
    return false;
  }
}

/**
 * Replaces the log sink and returns the previous one.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const restore = setLogSink((l) => lines.push(l));
 * setLogSink(restore);
 * ```
 */
export function setLogSink(next: LogSink): LogSink {
  const prev = sink;
  sink = next;
  quiet = false;
  return prev;
}

function formatValue(v: LogValue): string {
  const s = String(v);
  // deno-lint-ignore no-control-regex
  if (s === "" || /[\s"=\x00-\x1f\x7f-\x9f]/.test(s)) {
    // JSON escapes C0 but not DEL or C1 (U+007F-U+009F), which terminals also take as control codes.
    return JSON.stringify(s).replace(
      /[\x7f-\x9f]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
  }
  return s;
}

/**
 * Formats one log line without writing it.
 *
 * @example
 * ```ts
 * formatLogLine("ftp", "login", { user: "alice" }); // "ftp login user=alice"
 * ```
 */
export function formatLogLine(
  component: string,
  event: string,
  fields: Record<string, LogValue> = {},
): string {
  let line = `${component} ${event}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    line += ` ${k}=${formatValue(v)}`;
  }
  return line;
}

/**
 * A logger bound to one component name.
 *
 * @example
 * ```ts
 * const log = new Logger("ftp");
 * log.info("listening", { port: 2121 });
 * ```
 */
export class Logger {
  /** The area name printed on every line (e.g. "ftp", "smtp", "alerts"). */
  readonly component: string;
  /** Makes a logger for `component`; cheap, so modules keep one at top level. */
  constructor(component: string) {
    this.component = component;
  }
  /** Writes an informational event (`<6>` in the journal). */
  info(event: string, fields?: Record<string, LogValue>): void {
    if (!quiet) sink((journal ? "<6>" : "") + formatLogLine(this.component, event, fields));
  }
  /** Writes a warning event: `<4>` in the journal, else prefixed `warn: `. */
  warn(event: string, fields?: Record<string, LogValue>): void {
    if (!quiet) sink((journal ? "<4>" : "warn: ") + formatLogLine(this.component, event, fields));
  }
  /** Writes an error event: `<3>` in the journal, else prefixed `error: `. */
  error(event: string, fields?: Record<string, LogValue>): void {
    if (!quiet) sink((journal ? "<3>" : "error: ") + formatLogLine(this.component, event, fields));
  }
}
