/**
 * `outpost sendmail`: a drop-in for `/usr/sbin/sendmail` (cron's MAILTO, mail(1), scripts).
 *
 * It reads one message from standard input, completes it (Date and Message-ID when missing), resolves local
 * recipient names through `[smtp] aliases`, streams it into the maildrop (see `smtp/maildrop.ts`) and exits at
 * once without output; the daemon picks it up and delivers it. `--now` delivers immediately instead. Exit codes follow sysexits.h as msmtp does: 0 ok, 64 usage, 65 bad message, 69 refused by the server,
 * 74 I/O error, 75 temporary failure (try again), 78 config error.
 *
 * @module
 */

import { ConfigError } from "../config/section.ts";
import { type CompletedRawMessage, completeRawMessage, HeaderInjectionError } from "../smtp/mail_message.ts";
import { findConfigPath, loadMailConfig, type MailConfig, parseTomlDocument } from "../app/outpost_config.ts";
import { Section } from "../config/section.ts";
import { mailPaths, readOutboxConfig, readSmtpConfig, resolveRecipient } from "../smtp/smtp_config.ts";
import { fileMessageSource, OutboxFullError } from "../smtp/outbox.ts";
import {
  type DropMeta,
  MaildropUnavailableError,
  MessageTooLargeError,
  submitToMaildrop,
} from "../smtp/maildrop.ts";
import { deliver, type MessageSource, type SmtpClientOptions, SmtpError } from "../smtp/smtp_client.ts";
import { formatReply } from "../smtp/smtp_reply.ts";
import { MessageScan } from "../smtp/seven_bit.ts";
import { writeAll } from "../net/byte_conn.ts";

/** sysexits.h codes used by the mail commands. */
export const EX = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  NOUSER: 67,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  IOERR: 74,
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;

const HELP = `Usage: outpost sendmail [options] [--] [recipient ...] < message

Reads one RFC 5322 message from standard input and drops it in outpost's maildrop, then exits without
printing anything: the outpost daemon moves it into its queue and delivers it (retrying for up to
[outbox] max_age). Any local user can use it. Link it as /usr/sbin/sendmail (scripts/link-sendmail.sh) so
cron, mail(1) and other tools mail through outpost.

Recipients that are local names (root, pi, www-data, name@localhost) go to their [smtp] aliases entry
(or aliases.default). The envelope sender is -f when it is a full address, else [smtp] from as configured
when the message is sent. A From header is kept as written; a missing one is added when sending.

Options:
  -t            also take recipients from the To, Cc and Bcc headers (Bcc is removed)
  -f ADDR, -r ADDR   envelope sender (default: [smtp] from)
  -F NAME       display name for an added From header
  -i, -oi       a line with a single "." does not end the message
  -C, --config FILE   outpost.toml to use
  --now         deliver right away, bypassing the outbox (exit status tells the outcome)
  --help        this help
Single-letter flags can be grouped (-ti). Accepted and ignored for compatibility: -oem -odi -odb -oXXX
-em -ee -v -U -n -m -bm -G -Bxxx (e.g. -B8BITMIME) -N DSN -R RET -V ENV -X FILE -L TAG -O OPT -h N.

Exit status (sysexits): 0 queued/sent, 64 usage, 65 bad or too large message, 67 local name without
an alias, 69 refused by the server, 74 I/O error, 75 temporary failure, 78 config error.`;

/** Flags that take a value (attached, as in -fpi@x, or as the next argument). */
const WITH_ARG = new Set(["f", "F", "C", "N", "R", "V", "X", "B", "L", "O", "h", "r", "q"]);
/** Single-letter flags without a value that can be grouped (-ti). */
const BOOLEAN = new Set(["t", "i", "v", "U", "n", "m", "G"]);

interface SendmailArgs {
  extract: boolean;
  from?: string;
  fullName?: string;
  ignoreDots: boolean;
  config?: string;
  now: boolean;
  recipients: string[];
}

/**
 * Parses sendmail's traditional flags (grouped single letters such as `-ti`, `-oi`, `-B8BITMIME`, `--`); returns
 * a usage error string when they make no sense.
 *
 * @example
 * ```ts
 * parseSendmailArgs(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
 * ```
 */
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
    if (a.startsWith("--")) return `unknown option ${a}`;
    if (!a.startsWith("-") || a === "-") {
      out.recipients.push(a);
      continue;
    }
    // One argument of single-letter flags: "-ti", "-oi", "-oem", "-fpi@x", "-B8BITMIME", "-bm".
    for (let j = 1; j < a.length; j++) {
      const c = a[j];
      if (BOOLEAN.has(c)) {
        if (c === "t") out.extract = true;
        else if (c === "i") out.ignoreDots = true;
        continue;
      }
      if (c === "o") {
        // -oX...: sendmail options; -oi means ignore dots, the rest (-oem, -odi, -oQ...) change nothing here.
        if (a[j + 1] === "i" && a.length === j + 2) out.ignoreDots = true;
        break;
      }
      if (c === "e" || c === "d" || c === "A") break; // -em, -ee, -odb-style leftovers: accepted, ignored
      if (c === "b") {
        const mode = a.slice(j + 1);
        if (mode !== "m" && mode !== "a") {
          return `mode -b${mode} is not supported (only -bm, sending a message)`;
        }
        break;
      }
      if (WITH_ARG.has(c)) {
        let v = a.slice(j + 1);
        if (v === "") {
          if (i + 1 >= args.length) return `-${c} needs a value`;
          v = args[++i];
        }
        if (c === "f" || c === "r") out.from = v;
        else if (c === "F") out.fullName = v;
        else if (c === "C") out.config = v;
        break;
      }
      return `unknown option -${c}${a.length > 2 ? ` (in ${a})` : ""}`;
    }
  }
  return out;
}

/**
 * Standard input as a stream of chunks that ends at end of file, or (unless `ignoreDots`) at a line holding only
 * "." as traditional sendmail does. Reads through one reused buffer and cuts into another: a chunk is valid until
 * the next call (a caller that keeps one copies it), so a message of any size makes no garbage here.
 */
class Input {
  readonly #buf = new Uint8Array(65536);
  /** Room for a whole read plus a held-back ".\r". */
  readonly #out = new Uint8Array(65536 + 2);
  readonly #ignoreDots: boolean;
  #lineStart = true;
  #dotPending = 0; // 0: none, 1: saw "." at line start, 2: saw ".\r"
  #ended = false;
  /** Bytes taken from stdin so far. */
  total = 0;

  constructor(ignoreDots: boolean) {
    this.#ignoreDots = ignoreDots;
  }

  /** The next chunk (valid until the next call), or null at the end. */
  async next(): Promise<Uint8Array | null> {
    while (!this.#ended) {
      const n = await Deno.stdin.read(this.#buf);
      if (n === null) {
        this.#ended = true;
        const rest = this.#flushDot();
        return rest.length ? rest : null;
      }
      this.total += n;
      const chunk = this.#ignoreDots ? this.#buf.subarray(0, n) : this.#cut(this.#buf.subarray(0, n));
      if (chunk.length > 0) return chunk;
    }
    return null;
  }

  #flushDot(): Uint8Array {
    const p = this.#dotPending;
    this.#dotPending = 0;
    return p === 0 ? new Uint8Array(0) : p === 1 ? new Uint8Array([0x2e]) : new Uint8Array([0x2e, 0x0d]);
  }

  #cut(data: Uint8Array): Uint8Array {
    const out = this.#out;
    let o = 0;
    for (let i = 0; i < data.length; i++) {
      const b = data[i];
      if (this.#dotPending === 1) {
        if (b === 0x0a) return this.#end(o);
        if (b === 0x0d) {
          this.#dotPending = 2;
          continue;
        }
        out[o++] = 0x2e;
        this.#dotPending = 0;
      } else if (this.#dotPending === 2) {
        if (b === 0x0a) return this.#end(o);
        out[o++] = 0x2e;
        out[o++] = 0x0d;
        this.#dotPending = 0;
      }
      if (this.#lineStart && b === 0x2e && this.#dotPending === 0) {
        this.#dotPending = 1;
        this.#lineStart = false;
        continue;
      }
      this.#lineStart = b === 0x0a;
      out[o++] = b;
    }
    return out.subarray(0, o);
  }

  #end(length: number): Uint8Array {
    this.#ended = true;
    this.#dotPending = 0;
    return this.#out.subarray(0, length);
  }
}

/** Largest header block sendmail reads before it streams the rest. */
const HEAD_LIMIT = 1024 * 1024;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Index just past the empty line that ends the header block, or -1. */
function headerEnd(buf: Uint8Array): number {
  for (let i = buf.indexOf(0x0a); i >= 0 && i < buf.length; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return buf[0] === 0x0a ? 1 : buf[0] === 0x0d && buf[1] === 0x0a ? 2 : -1;
}

function localHosts(deviceName: string): string[] {
  const hosts = [deviceName];
  try {
    const h = Deno.hostname();
    hosts.push(h, h.split(".")[0]);
  } catch {
    // No --allow-sys: the device name is enough.
  }
  return hosts;
}

/** A local name without an alias (exit 67, EX_NOUSER). */
class NoAliasError extends Error {}

/**
 * Runs `outpost sendmail`.
 *
 * @example
 * ```ts
 * const status = await sendmailCommand(["-t", "-oi"]); // message on stdin
 * console.log(status); // the exit code
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
  let mail: MailConfig;
  try {
    mail = await loadSubmitConfig(parsed.config);
  } catch (e) {
    console.error(`outpost sendmail: ${(e as Error).message}`);
    return EX.CONFIG;
  }
  const smtp = mail.smtp;
  const aliases = smtp?.aliases ?? {};
  const hosts = localHosts(mail.device.name);
  const resolve = (r: string) => {
    try {
      return resolveRecipient(r, aliases, hosts);
    } catch (e) {
      throw new NoAliasError((e as Error).message);
    }
  };
  const limit = mail.outbox.maxMessageBytes;
  const defaults = {
    from: smtp?.from ?? `outpost@${mail.device.name}.local`,
    fromName: parsed.fullName ?? smtp?.fromName,
    domain: smtp?.heloName ?? (mail.device.name.replace(/[^A-Za-z0-9.-]/g, "-") || "localhost"),
  };
  const input = new Input(parsed.ignoreDots);
  // The header block is read whole (bounded); the body is streamed into the maildrop.
  let head: Uint8Array = new Uint8Array(0);
  let eof = false;
  for (;;) {
    if (headerEnd(head) >= 0) break;
    if (head.length > Math.min(HEAD_LIMIT, limit)) break;
    const c = await input.next();
    if (c === null) {
      eof = true;
      break;
    }
    head = concat(head, c);
  }
  if (head.length > limit) return tooLarge(limit);
  let done: CompletedRawMessage;
  try {
    done = completeRawMessage(head, {
      defaults,
      extractRecipients: parsed.extract,
      recipients: parsed.recipients,
      envelopeFrom: parsed.from,
      fullName: parsed.fullName,
      deferFrom: !parsed.now,
      resolve,
    });
  } catch (e) {
    console.error(`outpost sendmail: ${(e as Error).message}`);
    return e instanceof NoAliasError ? EX.NOUSER : EX.DATAERR;
  }
  if (!eof && !done.bodyFound) {
    console.error(`outpost sendmail: the header block is longer than ${HEAD_LIMIT} bytes.`);
    return EX.DATAERR;
  }
  if (parsed.now) {
    if (!smtp) {
      console.error("outpost sendmail: the config has no [smtp] table, so mail cannot be sent now.");
      return EX.CONFIG;
    }
    // Spooled to a private temp file (0600, removed whatever happens) while the 8-bit and line-length scan runs:
    // the relay is told SIZE= and how to encode before the first byte goes out, and memory stays one buffer.
    const spool = await Deno.makeTempFile({ prefix: "outpost-sendmail-" });
    try {
      const scan = new MessageScan();
      scan.add(done.bytes);
      let size = done.bytes.length;
      const out = await Deno.open(spool, { write: true });
      try {
        await writeAll(out, done.bytes);
        for (let c = await input.next(); c !== null; c = await input.next()) {
          size += c.length;
          if (size > limit) return tooLarge(limit);
          scan.add(c);
          await writeAll(out, c);
        }
      } finally {
        out.close();
      }
      const flags = {
        eightBit: done.eightBit || scan.eightBit,
        longLines: scan.longLines,
        smtputf8: done.smtputf8,
      };
      return await deliverNow(
        smtp,
        done.envelope,
        fileMessageSource(spool, 0, size, flags, new Uint8Array(65536)),
        "outpost sendmail",
        { quiet: true },
      ); // sendmail prints nothing on success, even with --now
    } finally {
      await Deno.remove(spool).catch(() => {});
    }
  }
  const meta: DropMeta = {
    to: done.envelope.to,
    ...(done.envelope.from ? { from: done.envelope.from } : {}),
    ...(done.needsFrom ? { addFrom: parsed.fullName !== undefined ? { name: parsed.fullName } : {} } : {}),
    tag: "sendmail",
  };
  try {
    await submitToMaildrop(
      { maildrop: mailPaths(mail.outbox).maildrop, maxMessageBytes: limit },
      meta,
      async (w) => {
        await w.write(done.bytes);
        for (let c = await input.next(); c !== null; c = await input.next()) await w.write(c);
      },
    );
  } catch (e) {
    if (e instanceof MessageTooLargeError) return tooLarge(limit);
    console.error(`outpost sendmail: ${(e as Error).message}`);
    return e instanceof MaildropUnavailableError ? EX.TEMPFAIL : EX.IOERR;
  }
  return EX.OK;
}

/**
 * The mail settings sendmail needs. A config with problems only outside `[device]`, `[smtp]` and `[outbox]`
 * (a typo in a rule, say) still lets mail be queued — the daemon runs the last good copy meanwhile, and cron's
 * mail about it should not be lost — with a warning on stderr. Problems in the mail tables themselves refuse.
 */
async function loadSubmitConfig(path: string | undefined): Promise<MailConfig> {
  try {
    return await loadMailConfig(path);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const found = await findConfigPath(path);
    if (found === null) throw e;
    const text = await Deno.readTextFile(found).catch(() => null);
    if (text === null) throw e;
    const abs = found.startsWith("/") ? found : `${Deno.cwd()}/${found}`;
    const base = abs.slice(0, abs.lastIndexOf("/")) || "/";
    let doc: Record<string, unknown>;
    try {
      doc = parseTomlDocument(text, abs);
    } catch {
      throw e;
    }
    const problems: string[] = [];
    const dev = new Section(doc.device, "device", problems, base);
    let host = "outpost";
    try {
      host = Deno.hostname();
    } catch {
      // No --allow-sys: the default name is only used in Message-IDs.
    }
    const device = {
      name: dev.string("name", { default: host }),
      stateDir: dev.filePath("state_dir", { default: "/var/lib/outpost" }),
    };
    const smtp = readSmtpConfig(new Section(doc.smtp, "smtp", problems, base), device);
    const outbox = readOutboxConfig(new Section(doc.outbox, "outbox", problems, base), device.stateDir);
    if (problems.length > 0) throw e;
    console.error(
      `outpost sendmail: warning: ${found} has ${e.problems.length} problem(s) outside the mail settings ` +
        `(run "outpost check-config"); the message is queued anyway.`,
    );
    return { device, smtp, outbox };
  }
}

function tooLarge(limit: number): number {
  console.error(
    `outpost sendmail: the message is larger than max_message_size (${limit} bytes); nothing was queued.`,
  );
  return EX.DATAERR;
}

/**
 * Loads the mail settings for `outpost send`/`sendmail`; on a config error or a missing `[smtp]` table prints
 * why (prefixed with `prog`) and resolves to {@link EX}.CONFIG instead.
 *
 * @example
 * ```ts
 * const mail = await loadSendConfig(undefined, "outpost send");
 * if (typeof mail === "number") Deno.exit(mail);
 * console.log(mail.smtp.host);
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
 * import type { Outbox } from "../smtp/outbox.ts";
 * import type { MailMessage } from "../smtp/mail_message.ts";
 *
 * declare const outbox: Outbox; // see Outbox.open
 * declare const msg: MailMessage; // the message to queue
 * try {
 *   await outbox.enqueue(msg);
 * } catch (e) {
 *   Deno.exit(enqueueFailed(e, "outpost send"));
 * }
 * ```
 */
export function enqueueFailed(e: unknown, prog: string): number {
  console.error(`${prog}: ${(e as Error).message}`);
  if (e instanceof HeaderInjectionError || e instanceof MessageTooLargeError) return EX.DATAERR;
  if (e instanceof OutboxFullError || e instanceof MaildropUnavailableError) return EX.TEMPFAIL;
  return EX.IOERR;
}

/**
 * Delivers one message right now (no outbox), prints the server's final reply (unless `quiet`) or the error, and
 * maps the outcome to a sysexits status: 0 only when every recipient was accepted.
 *
 * @example
 * ```ts
 * import type { MessageSource, SmtpClientOptions } from "../smtp/smtp_client.ts";
 *
 * declare const smtp: SmtpClientOptions; // the [smtp] table
 * declare const source: MessageSource; // the message
 * const status = await deliverNow(smtp, { from: "a@x", to: ["b@x"] }, source, "outpost send");
 * console.log(status); // the exit code
 * ```
 */
export async function deliverNow(
  smtp: SmtpClientOptions,
  envelope: { from: string; to: string[] },
  source: MessageSource,
  prog: string,
  opts: { quiet?: boolean } = {},
): Promise<number> {
  try {
    const r = await deliver(smtp, envelope, source);
    if (!opts.quiet) console.log(formatReply(r.reply));
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
