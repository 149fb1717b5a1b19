/**
 * `outpost send`: the friendly way to send one mail, and to test the mail settings with `--now`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DataWriter } from "../smtp/dot_stuffing.ts";
import { HeaderInjectionError, type MailMessage, prepareMessage } from "../smtp/mail_message.ts";
import { fileMessageSource } from "../smtp/outbox.ts";
import { type DropMeta, submitToMaildrop } from "../smtp/maildrop.ts";
import { mailPaths, resolveRecipient } from "../smtp/smtp_config.ts";
import { writeAll } from "../net/byte_conn.ts";
import { deliverNow, enqueueFailed, EX, loadSendConfig } from "./sendmail_command.ts";
import { readStdin } from "./read_stdin.ts";

const HELP = `Usage: outpost send --to ADDR [--to ADDR ...] --subject TEXT [options]

Builds a mail (UTF-8 text, optional HTML, attachments) and puts it in the durable outbox; the outpost
daemon's delivery worker sends it. With --now it bypasses the outbox, delivers at once, prints the
server's final reply and exits 0 only when the server accepted the message for every recipient:
use it to test the [smtp] settings.

Options:
  --to ADDR           recipient ("a@b" or "Name <a@b>"); repeatable
  --cc ADDR           copy recipient; repeatable
  --subject TEXT      subject (UTF-8 is fine)
  --body TEXT         body text (default: read from standard input)
  --html FILE         an HTML alternative body read from FILE
  --attach FILE       attach a file (streamed, any size up to max_message_size); repeatable
  --from ADDR         sender (default: [smtp] from)
  --critical          never dropped when the outbox is full (alerts use it)
  --now               deliver now, bypassing the outbox
  -C, --config FILE   outpost.toml to use
  -h, --help          this help

Recipients that are local names (root, pi) go to their [smtp] aliases entry.

Exit status: 0 ok, 64 usage, 65 bad or too large message, 67 local name without an alias, 69 refused by the
server, 75 temporary failure, 78 config error.`;

async function readAllStdin(limit: number): Promise<string> {
  const all = await readStdin(limit);
  if (all === null) {
    throw new HeaderInjectionError("Message refused: the body on standard input is too large.");
  }
  return new TextDecoder().decode(all);
}

/**
 * Runs `outpost send`.
 *
 * @example
 * ```ts
 * const status = await sendCommand(["--to", "me@example.com", "--subject", "test", "--body", "hi", "--now"]);
 * console.log(status); // the exit code
 * ```
 */
export async function sendCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        to: { type: "string", multiple: true },
        cc: { type: "string", multiple: true },
        subject: { type: "string" },
        body: { type: "string" },
        html: { type: "string" },
        attach: { type: "string", multiple: true },
        from: { type: "string" },
        critical: { type: "boolean" },
        now: { type: "boolean" },
        config: { type: "string", short: "C" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`outpost send: ${(e as Error).message}. Run "outpost send --help".`);
    return EX.USAGE;
  }
  if (values.help) {
    console.log(HELP);
    return EX.OK;
  }
  if (!values.to?.length || values.subject === undefined) {
    console.error('outpost send: --to and --subject are required. Run "outpost send --help".');
    return EX.USAGE;
  }
  const mail = await loadSendConfig(values.config, "outpost send");
  if (typeof mail === "number") return mail;
  const smtp = mail.smtp;
  const defaults = { from: smtp.from, fromName: smtp.fromName, domain: smtp.heloName };
  const limit = mail.outbox.maxMessageBytes;
  // Local names (--to root) go through [smtp] aliases, as with sendmail.
  let to: string[], cc: string[] | undefined;
  try {
    const hosts = [mail.device.name];
    const map = (list: string[]) => list.flatMap((r) => resolveRecipient(r, smtp.aliases ?? {}, hosts));
    to = map(values.to);
    cc = values.cc ? map(values.cc) : undefined;
  } catch (e) {
    console.error(`outpost send: ${(e as Error).message}`);
    return EX.NOUSER;
  }
  let msg: MailMessage;
  try {
    let attached = 0;
    for (const f of values.attach ?? []) {
      const st = await Deno.stat(f);
      if (!st.isFile) throw new Error(`${f} is not a file`);
      attached += st.size;
    }
    // Base64 makes attachments 4/3 as large (plus line ends): refuse early what can never fit.
    if (Math.ceil(attached / 57) * 78 > limit) {
      console.error(
        `outpost send: the attachments make the message larger than max_message_size (${limit} bytes).`,
      );
      return EX.DATAERR;
    }
    msg = {
      from: values.from,
      to,
      cc,
      subject: values.subject,
      text: values.body ?? await readAllStdin(mail.outbox.maxMessageBytes),
      html: values.html !== undefined ? await Deno.readTextFile(values.html) : undefined,
      attachments: (values.attach ?? []).map((p) => ({ filename: p.split("/").pop() || "file", path: p })),
    };
  } catch (e) {
    console.error(`outpost send: cannot read the message parts: ${(e as Error).message}`);
    return EX.DATAERR;
  }
  let prepared;
  try {
    prepared = prepareMessage(msg, defaults, { deferFrom: !values.now });
  } catch (e) {
    console.error(`outpost send: ${(e as Error).message}`);
    return EX.DATAERR;
  }
  if (!values.now) {
    // Through the maildrop, like sendmail: any user can send, the daemon owns the queue.
    const meta: DropMeta = {
      to: prepared.envelope.to,
      ...(prepared.envelope.from ? { from: prepared.envelope.from } : { addFrom: {} }),
      tag: "send",
      critical: values.critical ?? false,
    };
    try {
      await submitToMaildrop(
        { maildrop: mailPaths(mail.outbox).maildrop, maxMessageBytes: limit },
        meta,
        (w) => prepared.render(w),
      );
      console.log(
        `Queued (${prepared.messageId}); the outpost daemon delivers it (see "outpost outbox list").`,
      );
      return EX.OK;
    } catch (e) {
      return enqueueFailed(e, "outpost send");
    }
  }
  // Render to a private temp file (attachments streamed), then stream that file to the server.
  const tmp = await Deno.makeTempFile({ prefix: "outpost-send-" });
  try {
    const f = await Deno.open(tmp, { write: true, truncate: true });
    try {
      const w = new DataWriter({ write: (d) => writeAll(f, d) }, { dotStuff: false, bufferSize: 65536 });
      await prepared.render(w);
      await w.end();
    } finally {
      f.close();
    }
    const size = (await Deno.stat(tmp)).size;
    if (size > limit) {
      console.error(`outpost send: the message is ${size} bytes, more than max_message_size (${limit}).`);
      return EX.DATAERR;
    }
    const source = fileMessageSource(
      tmp,
      0,
      size,
      { eightBit: false, smtputf8: prepared.smtputf8 },
      new Uint8Array(65536),
    );
    return await deliverNow(smtp, prepared.envelope, source, "outpost send");
  } catch (e) {
    console.error(`outpost send: ${(e as Error).message}`);
    return EX.IOERR;
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}
