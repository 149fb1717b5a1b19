/**
 * Mail messages: the {@link MailMessage} shape other areas hand to the outbox, {@link prepareMessage} which checks
 * it and renders it as RFC 5322/MIME (streaming attachments), and {@link completeRawMessage} which completes a raw
 * message from `sendmail` (missing Date, Message-ID and From; recipients from the headers with `-t`).
 *
 * Rendering produces 7-bit output only: UTF-8 text goes quoted-printable, attachments base64, non-ASCII header
 * text RFC 2047 encoded words, so no server needs 8BITMIME for it.
 *
 * @module
 */

import {
  Base64Streamer,
  checkHeaderValue,
  encodeQuotedPrintable,
  formatAddressHeader,
  formatDate,
  formatHeader,
  formatParamHeader,
  HeaderInjectionError,
  isSevenBitSafe,
  type Mailbox,
  makeMessageId,
  mimeParam,
  parseMailbox,
} from "./mime_builder.ts";
import type { DataWriter } from "./dot_stuffing.ts";

export { HeaderInjectionError } from "./mime_builder.ts";

/**
 * A file to attach: read from `path` at render time (streamed) or given as `content`.
 *
 * @example
 * ```ts
 * const a: MailAttachment = { filename: "log.txt", path: "/var/log/outpost.log", contentType: "text/plain" };
 * console.log(a.filename);
 * ```
 */
export interface MailAttachment {
  /** File name shown to the recipient; its extension picks the default content type. */
  filename: string;
  /** File to stream at render time (read again on every delivery try); set this or `content`. */
  path?: string;
  /** The attachment's bytes, when it is small and already in memory; set this or `path`. */
  content?: Uint8Array;
  /** MIME type; default from the file name's extension, else "application/octet-stream". */
  contentType?: string;
}

/**
 * A message to send. Addresses are `a@b` or `Name <a@b>`; `from` defaults to the `[smtp] from` setting.
 *
 * @example
 * ```ts
 * const m: MailMessage = { to: ["me@example.com"], subject: "[pi] ALERT freezer 3.2 °C", text: "It is warm." };
 * console.log(m.subject);
 * ```
 */
export interface MailMessage {
  /** Sender and From header; default `[smtp] from` with `from_name`. */
  from?: string;
  /** Recipients (To header and envelope); `to` and `cc` together must name at least one. */
  to: string[];
  /** Copy recipients (Cc header and envelope). */
  cc?: string[];
  /** Subject line (non-ASCII is RFC 2047 encoded; a line break is refused). */
  subject: string;
  /** Plain-text body (UTF-8; sent quoted-printable when not 7-bit). */
  text: string;
  /** HTML body; when set, the message is multipart/alternative with `text` as the plain part. */
  html?: string;
  /** Files to attach, base64 encoded and streamed. */
  attachments?: MailAttachment[];
  /** Extra headers (e.g. `X-Outpost-Rule`); headers outpost sets itself (Date, From, To, Subject, ...) are refused. */
  headers?: Record<string, string>;
  /** Message-ID as `<id@domain>`; default a random one in the defaults' domain. */
  messageId?: string;
  /** Date header; default now. */
  date?: Date;
}

/**
 * Defaults for building messages: the sender, its display name and the domain for Message-IDs.
 *
 * @example
 * ```ts
 * const d: MessageDefaults = { from: "pi@example.com", fromName: "pi-freezer", domain: "pi-freezer" };
 * console.log(d.from);
 * ```
 */
export interface MessageDefaults {
  /** Sender address used when a message has no `from` (the `[smtp] from` setting). */
  from: string;
  /** Display name for that sender (the `[smtp] from_name` setting). */
  fromName?: string;
  /** Domain of generated Message-IDs (`<random@domain>`). */
  domain: string;
}

/**
 * A checked message ready to be rendered, with its envelope.
 *
 * @example
 * ```ts
 * import type { DataWriter } from "./dot_stuffing.ts";
 *
 * declare const defaults: MessageDefaults; // from the [smtp] table
 * declare const writer: DataWriter; // the SMTP DATA stream
 * const p = prepareMessage({ to: ["me@example.com"], subject: "hi", text: "hello" }, defaults);
 * await p.render(writer);
 * ```
 */
export interface PreparedMessage {
  /** The message's Message-ID, with angle brackets. */
  messageId: string;
  /** Envelope sender and recipients (To and Cc, bare addresses, duplicates removed). */
  envelope: { from: string; to: string[] };
  /** True when an envelope address is not ASCII (needs SMTPUTF8). */
  smtputf8: boolean;
  /** Writes the whole message (7-bit, CRLF) to `w`, streaming attachments; may be called more than once. */
  render(w: Pick<DataWriter, "write">): Promise<void>;
}

const encoder = new TextEncoder();
const RESERVED = new Set([
  "date",
  "from",
  "to",
  "cc",
  "bcc",
  "subject",
  "message-id",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
]);
const TYPES: Record<string, string> = {
  txt: "text/plain",
  log: "text/plain",
  csv: "text/csv",
  json: "application/json",
  html: "text/html",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  pdf: "application/pdf",
  gz: "application/gzip",
  zip: "application/zip",
};

function boundary(): string {
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"));
  return `=_outpost_${rnd.join("")}`;
}

function textPart(text: string, subtype: "plain" | "html"): string {
  const seven = isSevenBitSafe(text);
  const body = seven ? text.replace(/\r?\n/g, "\r\n") : encodeQuotedPrintable(text);
  return formatParamHeader("Content-Type", `text/${subtype}`, ['charset="utf-8"']) +
    `Content-Transfer-Encoding: ${seven ? "7bit" : "quoted-printable"}\r\n\r\n${body}\r\n`;
}

/**
 * Checks `msg` (addresses, header names and values, attachment types) and returns it ready to render. Throws a
 * {@link HeaderInjectionError} for any line break in a header value or malformed address; nothing is written.
 * With `opts.deferFrom` and no `msg.from`, the From header is left out and the envelope sender is empty: the
 * outbox adds both when the message is sent, from the `[smtp]` settings of that moment.
 *
 * @example
 * ```ts
 * const p = prepareMessage({ to: ["Zoë <zoe@example.com>"], subject: "Grüße", text: "hi" },
 *   { from: "pi@example.com", domain: "pi" });
 * console.log(p.messageId, p.envelope.to); // "<...@pi>" ["zoe@example.com"]
 * ```
 */
export function prepareMessage(
  msg: MailMessage,
  defaults: MessageDefaults,
  opts: { deferFrom?: boolean } = {},
): PreparedMessage {
  const deferred = opts.deferFrom === true && !msg.from;
  const from = msg.from
    ? parseMailbox(msg.from)
    : deferred
    ? { name: "", address: "" }
    : { ...parseMailbox(defaults.from), name: defaults.fromName ?? parseMailbox(defaults.from).name };
  const to = msg.to.map(parseMailbox);
  const cc = (msg.cc ?? []).map(parseMailbox);
  if (to.length + cc.length === 0) throw new HeaderInjectionError("Message refused: it has no recipients.");
  checkHeaderValue("Subject", msg.subject);
  const messageId = msg.messageId ?? makeMessageId(defaults.domain);
  if (!/^<[^<>\s]+@[^<>\s]+>$/.test(messageId)) {
    throw new HeaderInjectionError(`Message refused: "${messageId}" is not a valid Message-ID.`);
  }
  const extra: string[] = [];
  for (const [name, value] of Object.entries(msg.headers ?? {})) {
    if (RESERVED.has(name.toLowerCase())) {
      throw new HeaderInjectionError(`Message refused: the ${name} header is set by outpost itself.`);
    }
    extra.push(formatHeader(name, value));
  }
  const attachments = (msg.attachments ?? []).map((a) => {
    const type = a.contentType ?? TYPES[a.filename.split(".").pop()?.toLowerCase() ?? ""] ??
      "application/octet-stream";
    if (!/^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/.test(type)) {
      throw new HeaderInjectionError(`Message refused: "${type}" is not a MIME type.`);
    }
    checkHeaderValue("attachment filename", a.filename);
    if (a.path === undefined && a.content === undefined) {
      throw new HeaderInjectionError(
        `Message refused: attachment ${a.filename} has neither path nor content.`,
      );
    }
    return { ...a, type };
  });
  let head = formatHeader("Date", formatDate(msg.date ?? new Date())) +
    (deferred ? "" : formatAddressHeader("From", [from])) +
    formatAddressHeader("To", to.length ? to : [{ name: "undisclosed-recipients", address: "" }]) +
    (cc.length ? formatAddressHeader("Cc", cc) : "") +
    formatHeader("Subject", msg.subject) +
    `Message-ID: ${messageId}\r\n` +
    extra.join("") +
    "MIME-Version: 1.0\r\n";
  if (to.length === 0) head = head.replace(/^To: .*\r\n/m, "To: undisclosed-recipients:;\r\n");
  const all: Mailbox[] = [...to, ...cc];
  // deno-lint-ignore no-control-regex
  const smtputf8 = [from, ...all].some((b) => /[^\x00-\x7f]/.test(b.address));
  return {
    messageId,
    envelope: { from: from.address, to: [...new Set(all.map((b) => b.address))] },
    smtputf8,
    async render(w) {
      const body = msg.html === undefined ? textPart(msg.text, "plain") : (() => {
        const b = boundary();
        return formatParamHeader("Content-Type", "multipart/alternative", [`boundary="${b}"`]) + "\r\n" +
          `--${b}\r\n${textPart(msg.text, "plain")}--${b}\r\n${textPart(msg.html!, "html")}--${b}--\r\n`;
      })();
      if (attachments.length === 0) {
        await w.write(encoder.encode(head + body));
        return;
      }
      const b = boundary();
      await w.write(encoder.encode(
        head + formatParamHeader("Content-Type", "multipart/mixed", [`boundary="${b}"`]) + "\r\n" +
          "This is a multi-part message in MIME format.\r\n" + `--${b}\r\n` + body,
      ));
      const b64 = new Base64Streamer();
      for (const a of attachments) {
        await w.write(encoder.encode(
          `--${b}\r\n` + formatParamHeader("Content-Type", a.type, [mimeParam("name", a.filename)]) +
            "Content-Transfer-Encoding: base64\r\n" +
            formatParamHeader("Content-Disposition", "attachment", [mimeParam("filename", a.filename)]) +
            "\r\n",
        ));
        if (a.content !== undefined) await b64.encodeBytes(a.content, w);
        else await b64.encodeFile(a.path!, w);
      }
      await w.write(encoder.encode(`--${b}--\r\n`));
    },
  };
}

/**
 * Options for {@link completeRawMessage}.
 *
 * @example
 * ```ts
 * const defaults: MessageDefaults = { from: "pi@example.com", domain: "pi" };
 * const o: RawMessageOptions = { defaults, extractRecipients: true, recipients: [] };
 * console.log(o.extractRecipients);
 * ```
 */
export interface RawMessageOptions {
  /** Sender and Message-ID domain for headers the raw message lacks. */
  defaults: MessageDefaults;
  /** `sendmail -t`: take recipients from To, Cc and Bcc (Bcc is then removed). */
  extractRecipients: boolean;
  /** Recipients given as arguments. */
  recipients: string[];
  /** `sendmail -f`: the envelope sender. */
  envelopeFrom?: string;
  /** `sendmail -F`: the display name for an added From header. */
  fullName?: string;
  /**
   * Leave a missing From header and an unset envelope sender to the outbox, which adds `[smtp] from` when the
   * message is sent (the sendmail path). Without it both come from `defaults` now.
   */
  deferFrom?: boolean;
  /** Maps each recipient (argument or header) to real addresses first, e.g. through `[smtp] aliases`. */
  resolve?: (rcpt: string) => string[];
}

/**
 * A raw message after {@link completeRawMessage}: the bytes to store and the envelope to send them with.
 *
 * @example
 * ```ts
 * declare const bytes: Uint8Array; // a message as sendmail read it
 * declare const opts: RawMessageOptions; // see RawMessageOptions
 * const r: CompletedRawMessage = completeRawMessage(bytes, opts);
 * console.log(r.envelope.to);
 * ```
 */
export interface CompletedRawMessage {
  /** The message with missing headers added in front (Bcc removed with `-t`); line ends as given. */
  bytes: Uint8Array;
  /** Envelope sender and recipients. */
  envelope: { from: string; to: string[] };
  /** The message's Message-ID (found or added). */
  messageId: string;
  /** The message has bytes above 127 (needs 8BITMIME). */
  eightBit: boolean;
  /** An envelope address is not ASCII (needs SMTPUTF8). */
  smtputf8: boolean;
  /** The message has no From header and `deferFrom` was set: the outbox adds one when sending. */
  needsFrom: boolean;
  /** False when every line of `raw` looked like a header (no empty line or body line was found). */
  bodyFound: boolean;
}

/**
 * Splits an address list at commas outside quotes, comments and angle brackets; returns the bare addresses.
 *
 * @example
 * ```ts
 * parseAddressList('"Doe, Jane" <jane@example.com>, bob@example.com (Bob)'); // ["jane@example.com", "bob@example.com"]
 * ```
 */
export function parseAddressList(value: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quote = false;
  let angle = 0;
  let paren = 0;
  const flush = () => {
    let t = cur.replace(/\([^)]*\)/g, "").trim();
    const g = /^[^<>"]*:(.*)$/.exec(t); // group "name: a, b;" — keep the first member
    if (g && !t.includes("<")) t = g[1].trim();
    t = t.replace(/;$/, "").trim();
    const m = /<([^<>]*)>/.exec(t);
    const addr = (m ? m[1] : t).trim();
    if (addr) out.push(addr);
    cur = "";
  };
  for (const ch of value) {
    if (ch === '"' && paren === 0) quote = !quote;
    else if (!quote && ch === "<") angle++;
    else if (!quote && ch === ">") angle = Math.max(0, angle - 1);
    else if (!quote && ch === "(") paren++;
    else if (!quote && ch === ")") paren = Math.max(0, paren - 1);
    if ((ch === "," || ch === ";") && !quote && angle === 0 && paren === 0) {
      flush();
      continue;
    }
    cur += ch;
  }
  flush();
  return out;
}

/**
 * Completes a raw RFC 5322 message as `sendmail` does: adds Date, Message-ID and From when missing, takes the
 * recipients from To/Cc/Bcc with `-t` (removing Bcc), and checks every envelope address. Line endings are left
 * to the outbox, which stores CRLF.
 *
 * @example
 * ```ts
 * const r = completeRawMessage(new TextEncoder().encode("To: me@example.com\nSubject: cron\n\nok\n"),
 *   { defaults: { from: "pi@example.com", domain: "pi" }, extractRecipients: true, recipients: [] });
 * console.log(r.envelope.to); // ["me@example.com"]
 * ```
 */
export function completeRawMessage(raw: Uint8Array, opts: RawMessageOptions): CompletedRawMessage {
  // Find the end of the header block: the first empty line (or a line that is not a header).
  let end = 0;
  let bodyStart = raw.length;
  const lines: { start: number; end: number }[] = [];
  while (end < raw.length) {
    let nl = raw.indexOf(0x0a, end);
    if (nl < 0) nl = raw.length;
    const lineEnd = nl > end && raw[nl - 1] === 0x0d ? nl - 1 : nl;
    if (lineEnd === end) {
      bodyStart = end;
      break;
    }
    const first = raw[end];
    const isCont = first === 0x20 || first === 0x09;
    const text = new TextDecoder().decode(raw.subarray(end, lineEnd));
    if (!isCont && !/^[!-9;-~]+:/.test(text)) {
      bodyStart = end;
      break;
    }
    if (isCont && lines.length === 0) {
      bodyStart = end;
      break;
    }
    lines.push({ start: end, end: Math.min(nl + 1, raw.length) });
    end = nl + 1;
  }
  const decoder = new TextDecoder();
  const fields: { name: string; value: string; start: number; end: number }[] = [];
  for (const l of lines) {
    const text = decoder.decode(raw.subarray(l.start, l.end)).replace(/\r?\n$/, "");
    if (text[0] === " " || text[0] === "\t") {
      const f = fields[fields.length - 1];
      f.value += " " + text.trim();
      f.end = l.end;
    } else {
      const i = text.indexOf(":");
      fields.push({ name: text.slice(0, i).trim().toLowerCase(), value: text.slice(i + 1).trim(), ...l });
    }
  }
  const has = (n: string) => fields.some((f) => f.name === n);
  const get = (n: string) => fields.filter((f) => f.name === n).map((f) => f.value);
  const to = [...opts.recipients];
  if (opts.extractRecipients) {
    for (const n of ["to", "cc", "bcc"]) for (const v of get(n)) to.push(...parseAddressList(v));
  }
  const resolved = opts.resolve ? to.flatMap((a) => opts.resolve!(a)) : to;
  const recipients = [...new Set(resolved.map((a) => parseMailbox(a).address))];
  if (recipients.length === 0) throw new HeaderInjectionError("Message refused: it has no recipients.");
  // The envelope sender is -f when it is a real address, else [smtp] from; never the From header, which is kept
  // as the caller wrote it ("root (Cron Daemon)" is a fine header and no envelope address).
  const explicitFrom = opts.envelopeFrom !== undefined && opts.envelopeFrom.includes("@")
    ? parseMailbox(opts.envelopeFrom).address
    : undefined;
  const envelopeFrom = explicitFrom ?? (opts.deferFrom ? "" : parseMailbox(opts.defaults.from).address);
  let added = "";
  if (!has("date")) added += formatHeader("Date", formatDate(new Date()));
  let messageId = get("message-id")[0] ?? "";
  if (!messageId) {
    messageId = makeMessageId(opts.defaults.domain);
    added += `Message-ID: ${messageId}\r\n`;
  }
  const needsFrom = !has("from") && opts.deferFrom === true;
  if (!has("from") && !needsFrom) {
    const name = opts.fullName ?? opts.defaults.fromName ?? "";
    added += formatAddressHeader("From", [{ name, address: envelopeFrom }]);
  }
  if (!has("to") && !has("cc")) added += "To: undisclosed-recipients:;\r\n";
  const bcc = opts.extractRecipients ? fields.filter((f) => f.name === "bcc") : [];
  const addedBytes = encoder.encode(added);
  const removed = bcc.reduce((s, f) => s + (f.end - f.start), 0);
  const bytes = new Uint8Array(addedBytes.length + raw.length - removed + (bodyStart === raw.length ? 2 : 0));
  bytes.set(addedBytes);
  let o = addedBytes.length;
  let from = 0;
  for (const f of bcc) {
    bytes.set(raw.subarray(from, f.start), o);
    o += f.start - from;
    from = f.end;
  }
  bytes.set(raw.subarray(from), o);
  o += raw.length - from;
  if (bodyStart === raw.length) bytes.set([0x0d, 0x0a], o); // headers only: add the empty line
  let eightBit = false;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      eightBit = true;
      break;
    }
  }
  // deno-lint-ignore no-control-regex
  const smtputf8 = [envelopeFrom, ...recipients].some((a) => /[^\x00-\x7f]/.test(a));
  return {
    bytes,
    envelope: { from: envelopeFrom, to: recipients },
    messageId,
    eightBit,
    smtputf8,
    needsFrom,
    bodyFound: bodyStart < raw.length,
  };
}
