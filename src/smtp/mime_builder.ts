/**
 * MIME building blocks (RFC 5322, 2045, 2047, 2231): header formatting with injection checks, RFC 2047 encoded
 * words folded to at most 78 columns, quoted-printable text with lines of at most 76 characters, and a streaming
 * base64 encoder that turns a file of any size into 76-character lines through two reused buffers.
 *
 * @module
 */

import type { DataWriter } from "./dot_stuffing.ts";

const encoder = new TextEncoder();
const MAX_LINE = 78;

/**
 * A header name or value was refused (CR or LF in a value, a malformed name): the message is not built.
 *
 * @example
 * ```ts
 * try { formatHeader("Subject", "hi\r\nBcc: x@y"); } catch (e) { console.log(e instanceof HeaderInjectionError); }
 * ```
 */
export class HeaderInjectionError extends Error {
  /** Makes the error; `message` says which header or address was refused and why. */
  constructor(message: string) {
    super(message);
    this.name = "HeaderInjectionError";
  }
}

const NEEDS_ENCODING = /[^\x20-\x7e\t]/;

/**
 * Formats a date as RFC 5322 wants it: `Tue, 04 Mar 2025 09:05:00 +0100` in local time.
 *
 * @example
 * ```ts
 * formatDate(new Date(0)); // "Thu, 01 Jan 1970 00:00:00 +0000" when TZ is UTC
 * ```
 */
export function formatDate(d: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const p = (n: number) => String(n).padStart(2, "0");
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const abs = Math.abs(off);
  return `${days[d.getDay()]}, ${p(d.getDate())} ${months[d.getMonth()]} ${d.getFullYear()} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${sign}${p(Math.floor(abs / 60))}${
      p(abs % 60)
    }`;
}

/**
 * A new globally unique Message-ID, `<time.random@domain>`.
 *
 * @example
 * ```ts
 * makeMessageId("pi-freezer.local"); // "<m1abc2.9f8e7d6c5b4a3921@pi-freezer.local>"
 * ```
 */
export function makeMessageId(domain: string): string {
  const rnd = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const d = domain.replace(/[^A-Za-z0-9.-]/g, "") || "localhost";
  return `<${Date.now().toString(36)}.${rnd}@${d}>`;
}

function bytesToBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * Splits `text` into RFC 2047 `=?UTF-8?B?...?=` words, never splitting a character; the first word is at most
 * `firstMax` long, the others at most `restMax` (both capped at 75).
 *
 * @example
 * ```ts
 * encodeWords("Température élevée", 60, 75); // ["=?UTF-8?B?VGVtcMOpcmF0dXJlIMOpbGV2w6llIA==?="] (one word)
 * ```
 */
export function encodeWords(text: string, firstMax = 75, restMax = 75): string[] {
  const words: string[] = [];
  let cur: number[] = [];
  let max = Math.min(75, firstMax);
  const capacity = (m: number) => Math.max(3, Math.floor((m - 12) / 4) * 3);
  for (const ch of text) {
    const b = encoder.encode(ch);
    if (cur.length > 0 && cur.length + b.length > capacity(max)) {
      words.push(`=?UTF-8?B?${bytesToBase64(Uint8Array.from(cur))}?=`);
      cur = [];
      max = Math.min(75, restMax);
    }
    cur.push(...b);
  }
  if (cur.length > 0 || words.length === 0) words.push(`=?UTF-8?B?${bytesToBase64(Uint8Array.from(cur))}?=`);
  return words;
}

/** Joins tokens with spaces, folding (CRLF + space) so no line passes 78 columns; `used` is the prefix length. */
function fold(tokens: string[], used: number): string {
  let out = "";
  let col = used;
  tokens.forEach((t, i) => {
    if (i > 0 && col + 1 + t.length > MAX_LINE) {
      out += "\r\n " + t;
      col = 1 + t.length;
    } else {
      out += (i > 0 ? " " : "") + t;
      col += (i > 0 ? 1 : 0) + t.length;
    }
  });
  return out;
}

/**
 * Refuses CR, LF and NUL in a header value with a {@link HeaderInjectionError} naming the header.
 *
 * @example
 * ```ts
 * checkHeaderValue("Subject", "freezer warm"); // ok
 * checkHeaderValue("Subject", "hi\r\nBcc: x@y"); // throws HeaderInjectionError
 * ```
 */
export function checkHeaderValue(name: string, value: string): void {
  if (/[\r\n\0]/.test(value)) {
    throw new HeaderInjectionError(`Message refused: the ${name} header contains a line break or NUL.`);
  }
}

/**
 * Encodes and folds an unstructured value (such as a subject) for a header whose `name: ` prefix takes
 * `prefixLen` columns: plain ASCII is folded at spaces, anything else becomes encoded words.
 *
 * @example
 * ```ts
 * encodeUnstructured("Grüße aus dem Keller", 9); // "=?UTF-8?B?R3LDvMOfZSBhdXMgZGVtIEtlbGxlcg==?="
 * ```
 */
export function encodeUnstructured(value: string, prefixLen: number): string {
  const words = value.split(" ");
  if (!NEEDS_ENCODING.test(value) && words.every((w) => w.length <= MAX_LINE - 1)) {
    return fold(words, prefixLen);
  }
  return fold(encodeWords(value, MAX_LINE - prefixLen, MAX_LINE - 1), prefixLen);
}

/**
 * One complete header line (`Name: value\r\n`, folded), refusing injection and encoding non-ASCII text.
 *
 * @example
 * ```ts
 * formatHeader("Subject", "[pi] ALERT freezer 3.2 °C > -10 °C");
 * ```
 */
export function formatHeader(name: string, value: string): string {
  if (!/^[!-9;-~]+$/.test(name)) {
    throw new HeaderInjectionError(`Message refused: "${name}" is not a header name.`);
  }
  checkHeaderValue(name, value);
  return `${name}: ${encodeUnstructured(value, name.length + 2)}\r\n`;
}

/**
 * A parsed mailbox: optional display name and the address.
 *
 * @example
 * ```ts
 * const m: Mailbox = parseMailbox("Pi Freezer <pi@example.com>");
 * m.address; // "pi@example.com"
 * ```
 */
export interface Mailbox {
  /** Display name, unquoted; "" when none was given. */
  name: string;
  /** The bare `local@domain` address. */
  address: string;
}

/**
 * Parses `"Name <a@b>"`, `Name <a@b>` or `a@b`, refusing line breaks and addresses that are not `local@domain`.
 *
 * @example
 * ```ts
 * parseMailbox("Pi Freezer <pi@example.com>"); // { name: "Pi Freezer", address: "pi@example.com" }
 * ```
 */
export function parseMailbox(s: string): Mailbox {
  checkHeaderValue("address", s);
  const t = s.trim();
  const m = /^(.*?)\s*<([^<>]*)>$/.exec(t);
  let name = m ? m[1].trim() : "";
  const address = (m ? m[2] : t).trim();
  if (/^".*"$/.test(name)) name = name.slice(1, -1).replace(/\\(.)/g, "$1");
  // deno-lint-ignore no-control-regex
  if (!/^[^\s@<>(),;:"\\\x00-\x1f]+@[^\s@<>(),;:"\\\x00-\x1f]+$/.test(address)) {
    throw new HeaderInjectionError(`Message refused: "${address}" is not a valid mail address.`);
  }
  return { name, address };
}

function formatPhrase(name: string, firstMax: number): string[] {
  if (NEEDS_ENCODING.test(name)) return encodeWords(name, firstMax, MAX_LINE - 1);
  if (/^[A-Za-z0-9!#$%&'*+\/=?^_`{|}~ -]+$/.test(name)) return name.split(" ").filter((w) => w !== "");
  return [`"${name.replace(/(["\\])/g, "\\$1")}"`];
}

/**
 * An address header (`From`, `To`, `Cc`) with display names encoded when needed, folded between addresses.
 *
 * @example
 * ```ts
 * formatAddressHeader("To", [{ name: "Zoë", address: "zoe@example.com" }]);
 * // "To: =?UTF-8?B?Wm/Dqw==?= <zoe@example.com>\r\n"
 * ```
 */
export function formatAddressHeader(name: string, boxes: Mailbox[]): string {
  const tokens: string[] = [];
  boxes.forEach((b, i) => {
    const last = i === boxes.length - 1;
    const addr = `<${b.address}>${last ? "" : ","}`;
    if (b.name) tokens.push(...formatPhrase(b.name, MAX_LINE - 1), addr);
    else tokens.push(b.address + (last ? "" : ","));
  });
  return `${name}: ${fold(tokens, name.length + 2)}\r\n`;
}

/**
 * True when `text` can go as 7bit: ASCII only, no line over 76 characters, no trailing blanks.
 *
 * @example
 * ```ts
 * isSevenBitSafe("hello\nworld"); // true
 * ```
 */
export function isSevenBitSafe(text: string): boolean {
  if (NEEDS_ENCODING.test(text.replace(/\r?\n/g, ""))) return false;
  return text.split(/\r?\n/).every((l) => l.length <= 76 && !/[ \t]$/.test(l));
}

/**
 * Quoted-printable (RFC 2045 section 6.7) of UTF-8 `text`, CRLF line endings, no line over 76 characters.
 *
 * @example
 * ```ts
 * encodeQuotedPrintable("Température: 3 °C"); // "Temp=C3=A9rature: 3 =C2=B0C"
 * ```
 */
export function encodeQuotedPrintable(text: string): string {
  const out: string[] = [];
  const hex = (b: number) => "=" + b.toString(16).toUpperCase().padStart(2, "0");
  for (const line of text.split(/\r\n|\n|\r/)) {
    const bytes = encoder.encode(line);
    let cur = "";
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      const lastByte = i === bytes.length - 1;
      let tok: string;
      if ((b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !lastByte)) {
        tok = String.fromCharCode(b);
      } else tok = hex(b);
      if (cur.length + tok.length > 75) {
        out.push(cur + "=");
        cur = "";
      }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join("\r\n");
}

const B64 = encoder.encode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
const LINE_BYTES = 57; // 57 bytes make one 76-character base64 line.

/**
 * Streams base64 in 76-character CRLF lines through one input and one output buffer, reused for every chunk: a
 * 50 MiB attachment costs two 57/78 KiB buffers, not 50 MiB.
 *
 * @example
 * ```ts
 * import type { DataWriter } from "./dot_stuffing.ts";
 *
 * declare const writer: DataWriter; // the message body being sent
 * const b64 = new Base64Streamer();
 * await b64.encodeFile("/var/log/syslog", writer);
 * await b64.encodeBytes(new Uint8Array([1, 2, 3]), writer);
 * ```
 */
export class Base64Streamer {
  readonly #in: Uint8Array;
  readonly #out: Uint8Array;

  /**
   * Allocates the two buffers once: input is encoded in chunks of up to `lines` 76-character lines (57 input
   * bytes each), so the default 1024 uses about 57 KiB in and 78 KiB out.
   *
   * @example
   * ```ts
   * const b64 = new Base64Streamer(256);
   * console.log(b64);
   * ```
   */
  constructor(lines = 1024) {
    this.#in = new Uint8Array(LINE_BYTES * lines);
    this.#out = new Uint8Array(78 * lines);
  }

  #encode(src: Uint8Array, n: number): Uint8Array {
    const out = this.#out;
    let o = 0;
    for (let i = 0; i < n; i += LINE_BYTES) {
      const end = Math.min(n, i + LINE_BYTES);
      let j = i;
      for (; j + 3 <= end; j += 3) {
        const v = (src[j] << 16) | (src[j + 1] << 8) | src[j + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
      }
      const rest = end - j;
      if (rest > 0) {
        const v = (src[j] << 16) | (rest === 2 ? src[j + 1] << 8 : 0);
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = rest === 2 ? B64[(v >> 6) & 63] : 61;
        out[o++] = 61;
      }
      out[o++] = 13;
      out[o++] = 10;
    }
    return out.subarray(0, o);
  }

  /** Encodes the file at `path` into `w`, reading it in chunks. Returns the number of input bytes. */
  async encodeFile(path: string, w: Pick<DataWriter, "write">): Promise<number> {
    const file = await Deno.open(path, { read: true });
    let total = 0;
    try {
      const buf = this.#in;
      for (;;) {
        let n = 0;
        while (n < buf.length) {
          const r = await file.read(buf.subarray(n));
          if (r === null) break;
          n += r;
        }
        if (n > 0) await w.write(this.#encode(buf, n));
        total += n;
        if (n < buf.length) return total;
      }
    } finally {
      file.close();
    }
  }

  /** Encodes `bytes` into `w`. */
  async encodeBytes(bytes: Uint8Array, w: Pick<DataWriter, "write">): Promise<void> {
    for (let off = 0; off < bytes.length; off += this.#in.length) {
      const chunk = bytes.subarray(off, off + this.#in.length);
      await w.write(this.#encode(chunk, chunk.length));
    }
  }
}

/**
 * A MIME parameter (`name="value"`), using RFC 2231 `name*=UTF-8''...` for non-ASCII values.
 *
 * @example
 * ```ts
 * mimeParam("filename", "températures.csv"); // "filename*=UTF-8''temp%C3%A9ratures.csv"
 * ```
 */
export function mimeParam(name: string, value: string): string {
  checkHeaderValue(name, value);
  if (NEEDS_ENCODING.test(value)) {
    const enc = Array.from(
      encoder.encode(value),
      (b) =>
        /[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b))
          ? String.fromCharCode(b)
          : "%" + b.toString(16).toUpperCase().padStart(2, "0"),
    ).join("");
    return `${name}*=UTF-8''${enc}`;
  }
  return `${name}="${value.replace(/(["\\])/g, "\\$1")}"`;
}

/**
 * Folds `Name: value; param; param` at the semicolons so each line stays within 78 columns when possible.
 *
 * @example
 * ```ts
 * formatParamHeader("Content-Type", "text/plain", ['charset="utf-8"']);
 * ```
 */
export function formatParamHeader(name: string, value: string, params: string[]): string {
  const tokens = [
    params.length ? value + ";" : value,
    ...params.map((p, i) => i < params.length - 1 ? p + ";" : p),
  ];
  return `${name}: ${fold(tokens, name.length + 2)}\r\n`;
}
