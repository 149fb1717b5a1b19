/**
 * SMTP replies (RFC 5321 section 4.2): reading multi-line replies with a bounded {@link LineReader}, enhanced
 * status codes (RFC 3463), and {@link SmtpError}, which names the stage that failed and the server's reply.
 *
 * @module
 */

import type { LineReader } from "../net/line_reader.ts";

/**
 * One complete reply: the three-digit code, the enhanced status code when the server sent one, and the text of
 * every line without the code prefix.
 *
 * @example
 * ```ts
 * const reply: SmtpReply = { code: 250, enhanced: "2.0.0", lines: ["2.0.0 OK"] };
 * formatReply(reply); // "250 2.0.0 OK"
 * ```
 */
export interface SmtpReply {
  /** The three-digit reply code (2xx success, 3xx go on, 4xx temporary failure, 5xx permanent failure). */
  code: number;
  /** The enhanced status code such as "5.1.1", or null when the server sent none. */
  enhanced: string | null;
  /** Each line's text after the code and separator (the enhanced code, if any, is left in). */
  lines: string[];
}

/**
 * The stages of an SMTP session, as named in errors (`message` is for problems with the message itself).
 *
 * @example
 * ```ts
 * const stage: SmtpStage = "RCPT";
 * new SmtpError(stage, "SMTP RCPT failed: the server replied \"550 No such user\".");
 * ```
 */
export type SmtpStage =
  | "connect"
  | "greeting"
  | "TLS"
  | "EHLO"
  | "STARTTLS"
  | "AUTH"
  | "MAIL"
  | "RCPT"
  | "DATA"
  | "QUIT"
  | "message";

/**
 * A failed SMTP step: `stage` says which, `reply` holds the server's answer when there was one, `permanent` is
 * true for a 5xx reply (retrying will not help) and false for 4xx replies, timeouts and network errors.
 *
 * @example
 * ```ts
 * import type { SmtpClient } from "./smtp_client.ts";
 *
 * declare const client: SmtpClient; // connected and logged in
 * try {
 *   await client.envelope("outpost@example.com", [], ["x@example.com"]);
 * } catch (e) {
 *   if (e instanceof SmtpError && e.permanent) console.log(e.stage, e.reply?.code);
 * }
 * ```
 */
export class SmtpError extends Error {
  /** The step that failed. */
  readonly stage: SmtpStage;
  /** The server's reply, or null for timeouts, network and TLS errors, and local refusals. */
  readonly reply: SmtpReply | null;
  /** True when retrying cannot help (a 5xx reply, or `permanent` given); the outbox then stops retrying. */
  readonly permanent: boolean;
  /** Makes an error for `stage`; `permanent` defaults to whether `reply` is a 5xx reply. */
  constructor(stage: SmtpStage, message: string, reply: SmtpReply | null = null, permanent?: boolean) {
    super(message);
    this.name = "SmtpError";
    this.stage = stage;
    this.reply = reply;
    this.permanent = permanent ?? (reply !== null && reply.code >= 500);
  }

  /** An error for an unexpected reply: "SMTP RCPT failed: the server replied 550 5.1.1 No such user". */
  static fromReply(stage: SmtpStage, reply: SmtpReply, what = ""): SmtpError {
    const subject = what ? ` for ${what}` : "";
    return new SmtpError(
      stage,
      `SMTP ${stage} failed${subject}: the server replied "${formatReply(reply)}".`,
      reply,
    );
  }
}

/**
 * Joins a reply's lines back into text, `250 first line / second line`, for logs and error messages.
 *
 * @example
 * ```ts
 * formatReply({ code: 550, enhanced: "5.1.1", lines: ["5.1.1 No such user"] }); // "550 5.1.1 No such user"
 * ```
 */
export function formatReply(reply: SmtpReply): string {
  // deno-lint-ignore no-control-regex
  const text = reply.lines.join(" / ").replace(/[\x00-\x1f\x7f]/g, "?");
  return `${reply.code} ${text}`.trimEnd();
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;
const MAX_REPLY_LINES = 200;

/**
 * Reads one (possibly multi-line) reply. Resolves to null when the server closed the connection before any line;
 * throws an {@link SmtpError} for a malformed reply, a mix of codes, or a connection closed mid-reply.
 *
 * @example
 * ```ts
 * import type { LineReader } from "../net/line_reader.ts";
 *
 * declare const reader: LineReader; // over the SMTP connection
 * const reply = await readReply(reader, "EHLO");
 * if (reply?.code === 250) console.log(reply.lines.slice(1));
 * ```
 */
export async function readReply(reader: LineReader, stage: SmtpStage): Promise<SmtpReply | null> {
  const lines: string[] = [];
  let code = 0;
  for (let i = 0; i < MAX_REPLY_LINES; i++) {
    const line = await reader.readLine();
    if (line === null) {
      if (lines.length === 0) return null;
      throw new SmtpError(
        stage,
        `SMTP ${stage} failed: the server closed the connection in the middle of a reply.`,
      );
    }
    const m = /^([2-5]\d\d)([ -]|$)(.*)$/.exec(line);
    if (!m) {
      throw new SmtpError(
        stage,
        `SMTP ${stage} failed: the server sent a malformed reply line ${JSON.stringify(line.slice(0, 80))}.`,
      );
    }
    const c = Number(m[1]);
    if (lines.length > 0 && c !== code) {
      throw new SmtpError(
        stage,
        `SMTP ${stage} failed: the server mixed reply codes ${code} and ${c} in one reply.`,
      );
    }
    code = c;
    lines.push(m[3]);
    if (m[2] !== "-") {
      const e = ENHANCED.exec(lines[0]);
      const enhanced = e && e[1] === String(code)[0] ? `${e[1]}.${e[2]}.${e[3]}` : null;
      return { code, enhanced, lines };
    }
  }
  throw new SmtpError(
    stage,
    `SMTP ${stage} failed: the server's reply has more than ${MAX_REPLY_LINES} lines.`,
  );
}

/**
 * Parses the keyword lines of an EHLO reply (all but the first) into a map of upper-case keyword to parameters.
 *
 * @example
 * ```ts
 * parseExtensions({ code: 250, enhanced: null, lines: ["mx", "SIZE 1000", "AUTH PLAIN LOGIN"] }).get("AUTH");
 * // "PLAIN LOGIN"
 * ```
 */
export function parseExtensions(reply: SmtpReply): Map<string, string> {
  const ext = new Map<string, string>();
  for (const line of reply.lines.slice(1)) {
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line.trim());
    if (m) ext.set(m[1].toUpperCase(), (m[2] ?? "").trim());
  }
  return ext;
}
