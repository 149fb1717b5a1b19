/**
 * `outpost sendmail`: a drop-in for `/usr/sbin/sendmail` (cron's MAILTO, mail(1), scripts).
 *
 * It reads one message from standard input, completes it (Date, Message-ID and From when missing), stores it in
 * the durable outbox and exits at once; the daemon's delivery worker sends it. `--now` delivers immediately
 * instead. Exit codes follow sysexits.h as msmtp does: 0 ok, 64 usage, 65 bad message, 69 refused by the server,
 * 74 I/O error, 75 temporary failure (try again), 78 config error.
 *
 * @module
 */

import { ConfigError } from "../config/section.ts";
import { HeaderInjectionError } from "../smtp/mail_message.ts";
import { loadMailConfig, type MailConfig } from "../config/config.ts";
import { Outbox, OutboxFullError } from "../smtp/outbox.ts";
import { completeRawMessage } from "../smtp/mail_message.ts";
import { deliver, type MessageSource, type SmtpClientOptions, SmtpError } from "../smtp/smtp_client.ts";
import { formatReply } from "../smtp/smtp_reply.ts";
import { readStdin } from "./read_stdin.ts";

/** sysexits.h codes used by the mail commands. */
export const EX = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  IOERR: 74,
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;

const HELP = `Usage: outpost sendmail [options] [recipient ...] < message

Reads one RFC 5322 message from standard input and queues it in outpost's durable outbox, then exits:
the outpost daemon's delivery worker sends it (retrying for up to [outbox] max_age). Link it as
/usr/sbin/sendmail (scripts/link-sendmail.sh) so cron and other tools mail through outpost.

Options:
  -t            take recipients from the To, Cc and Bcc headers (Bcc is removed)
  -f ADDR       envelope sender (default: [smtp] from)
  -F NAME       display name for an added From header
  -i, -oi       a line with a single "." does not end the message
  -C, --config FILE   outpost.toml to use
  --now         deliver right away, bypassing the outbox (exit status tells the outcome)
  -h, --help    this help
Accepted and ignored for compatibility: -oem -odi -odb -oXXX -em -ee -v -U -n -m -bm -N DSN -R RET -V ENV -B TYPE -X FILE

Exit status (sysexits): 0 queued/sent, 64 usage, 65 bad message, 69 refused by the server, 74 I/O error,
75 temporary failure, 78 config error.`;

const WITH_ARG = new Set(["-f", "-F", "-C", "-N", "-R", "-V", "-X", "-B", "-L", "-O", "-h", "-r"]);

interface SendmailArgs {
  extract: boolean;
  from?: string;
  fullName?: string;
  ignoreDots: boolean;
  config?: string;
  now: boolean;
  recipients: string[];
}

/** Parses sendmail's traditional flags; returns a usage error string when they make no sense. */
export function parseSendmailArgs(args: string[]): SendmailArgs | string | "help" {
  const out: SendmailArgs = { extract: false, ignoreDots: false, now: false, recipients: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      out.recipients.push(...args.slice(i + 1));
      break;
    }
    if (a === "--help" || a === "-help") return "help";
    if (a === "--now") {
      out.now = true;
      continue;
    }
    if (a === "--config") {
      if (i + 1 >= args.length) return "--config needs a file";
      out.config = args[++i];
      continue;
    }
    if (a.startsWith("--config=")) {
      out.config = a.slice(9);
      continue;
    }
    if (!a.startsWith("-") || a === "-") {
      out.recipients.push(a);
      continue;
    }
    const flag = a.slice(0, 2);
    if (WITH_ARG.has(flag)) {
      let v = a.slice(2);
      if (v === "") {
        if (i + 1 >= args.length) return `${flag} needs a value`;
        v = args[++i];
      }
      if (flag === "-f" || flag === "-r") out.from = v;
      else if (flag === "-F") out.fullName = v;
      else if (flag === "-C") out.config = v;
      continue;
    }
    if (a === "-t") out.extract = true;
    else if (a === "-i" || a === "-oi") out.ignoreDots = true;
    else if (
      a === "-bm" || a === "-ba" || /^-(o|e|d|A)/.test(a) || ["-v", "-U", "-n", "-m", "-G"].includes(a)
    ) {
      // Accepted for compatibility; they change nothing here.
    } else if (a.startsWith("-b")) {
      return `mode ${a} is not supported (only -bm, sending a message)`;
    } else {
      return `unknown option ${a}`;
    }
  }
  return out;
}

/** Without -i: a line holding only "." ends the message (traditional sendmail). */
function cutAtDot(raw: Uint8Array): Uint8Array {
  let lineStart = 0;
  while (lineStart < raw.length) {
    let nl = raw.indexOf(0x0a, lineStart);
    if (nl < 0) nl = raw.length;
    const end = nl > lineStart && raw[nl - 1] === 0x0d ? nl - 1 : nl;
    if (end - lineStart === 1 && raw[lineStart] === 0x2e) return raw.subarray(0, lineStart);
    lineStart = nl + 1;
  }
  return raw;
}

/**
 * Runs `outpost sendmail`.
 *
 * @example
 * ```ts
 * const status = await sendmailCommand(["-t", "-oi"]); // message on stdin
 * ```
 */
export async function sendmailCommand(args: string[]): Promise<number> {
  const parsed = parseSendmailArgs(args);
  if (parsed === "help") {
    console.log(HELP);
    return EX.OK;
  }
  if (typeof parsed === "string") {
    console.error(`outpost sendmail: ${parsed}. Run "outpost sendmail --help".`);
    return EX.USAGE;
  }
  if (!parsed.extract && parsed.recipients.length === 0) {
    console.error("outpost sendmail: no recipients: give them as arguments or use -t.");
    return EX.USAGE;
  }
  const mail = await loadSendConfig(parsed.config, "outpost sendmail");
  if (typeof mail === "number") return mail;
  const raw = await readStdin(mail.outbox.maxMessageBytes);
  if (raw === null) {
    console.error(
      `outpost sendmail: the message is larger than max_message_size (${mail.outbox.maxMessageBytes}).`,
    );
    return EX.DATAERR;
  }
  const body = parsed.ignoreDots ? raw : cutAtDot(raw);
  let outbox: Outbox;
  try {
    outbox = await Outbox.open(mail.outbox);
  } catch (e) {
    console.error(`outpost sendmail: cannot open the outbox ${mail.outbox.dir}: ${(e as Error).message}`);
    return EX.IOERR;
  }
  const smtp = mail.smtp;
  outbox.setDefaults({ from: smtp.from, fromName: parsed.fullName ?? smtp.fromName, domain: smtp.heloName });
  let done;
  try {
    done = completeRawMessage(body, {
      defaults: outbox.options.defaults!,
      extractRecipients: parsed.extract,
      recipients: parsed.recipients,
      envelopeFrom: parsed.from,
      fullName: parsed.fullName,
    });
  } catch (e) {
    console.error(`outpost sendmail: ${(e as Error).message}`);
    return EX.DATAERR;
  }
  if (parsed.now) {
    const bytes = done.bytes;
    return await deliverNow(smtp, done.envelope, {
      size: bytes.length,
      eightBit: done.eightBit,
      smtputf8: done.smtputf8,
      write: (w) => w.write(bytes),
    }, "outpost sendmail");
  }
  try {
    await outbox.enqueue(done.bytes, { envelope: done.envelope, tag: "sendmail" });
  } catch (e) {
    return enqueueFailed(e, "outpost sendmail");
  }
  return EX.OK;
}

/**
 * Loads the mail settings for `outpost send`/`sendmail`; on a config error or a missing `[smtp]` table prints
 * why (prefixed with `prog`) and resolves to {@link EX}.CONFIG instead.
 *
 * @example
 * ```ts
 * const mail = await loadSendConfig(undefined, "outpost send");
 * if (typeof mail === "number") return mail;
 * mail.smtp.host;
 * ```
 */
export async function loadSendConfig(
  path: string | undefined,
  prog: string,
): Promise<(MailConfig & { smtp: SmtpClientOptions }) | number> {
  let mail: MailConfig;
  try {
    mail = await loadMailConfig(path);
  } catch (e) {
    console.error(`${prog}: ${e instanceof ConfigError ? e.message : (e as Error).message}`);
    return EX.CONFIG;
  }
  const smtp = mail.smtp;
  if (!smtp) {
    console.error(`${prog}: the config has no [smtp] table, so mail cannot be sent.`);
    return EX.CONFIG;
  }
  return { ...mail, smtp };
}

/**
 * Prints why {@link Outbox.enqueue} failed (prefixed with `prog`) and maps it to a sysexits status: 65 for a bad
 * message, 75 for a full outbox (try again later), 74 for anything else (an I/O error).
 *
 * @example
 * ```ts
 * try { await outbox.enqueue(msg); } catch (e) { return enqueueFailed(e, "outpost send"); }
 * ```
 */
export function enqueueFailed(e: unknown, prog: string): number {
  console.error(`${prog}: ${(e as Error).message}`);
  if (e instanceof HeaderInjectionError) return EX.DATAERR;
  if (e instanceof OutboxFullError) return EX.TEMPFAIL;
  return EX.IOERR;
}

/**
 * Delivers one message right now (no outbox), prints the server's final reply or the error, and maps the outcome
 * to a sysexits status: 0 only when every recipient was accepted.
 *
 * @example
 * ```ts
 * const status = await deliverNow(smtp, { from: "a@x", to: ["b@x"] }, source, "outpost send");
 * ```
 */
export async function deliverNow(
  smtp: SmtpClientOptions,
  envelope: { from: string; to: string[] },
  source: MessageSource,
  prog: string,
): Promise<number> {
  try {
    const r = await deliver(smtp, envelope, source);
    console.log(formatReply(r.reply));
    for (const f of r.refused) console.error(`${prog}: ${f.error.message}`);
    if (r.refused.length === 0) return EX.OK;
    return r.refused.every((f) => f.error.permanent) ? EX.UNAVAILABLE : EX.TEMPFAIL;
  } catch (e) {
    console.error(`${prog}: ${(e as Error).message}`);
    if (e instanceof SmtpError) {
      if (e.reply) console.log(formatReply(e.reply));
      return e.permanent ? EX.UNAVAILABLE : EX.TEMPFAIL;
    }
    return EX.TEMPFAIL;
  }
}
