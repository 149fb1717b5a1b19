/**
 * Downgrading a stored message to 7 bit on the way out (RFC 6152 section 3: a client must not send 8-bit data to
 * a server that does not offer 8BITMIME; RFC 5321 section 4.5.3.1.6: lines are at most 998 octets).
 *
 * {@link SevenBitWriter} streams a message line by line and re-encodes every leaf entity whose
 * Content-Transfer-Encoding is 7bit, 8bit, binary or missing as quoted-printable, rewriting its headers (the
 * top-level entity gets `MIME-Version` and, when it had none, `Content-Type: text/plain; charset=utf-8`).
 * Multipart bodies are followed through their boundaries (nested ones too) and message/rfc822 parts are entered,
 * so each part is converted on its own; base64 and quoted-printable parts pass unchanged. A header with 8-bit
 * text in an unstructured field (Subject, Comments, X-...) becomes RFC 2047 encoded words. Memory is bounded by
 * the longest header block (at most 256 KiB is kept) and one line.
 *
 * @module
 */

import { encodeUnstructured, encodeWords } from "./mime_builder.ts";

const CRLF = new Uint8Array([0x0d, 0x0a]);
const enc = new TextEncoder();
const MAX_HEADER_BLOCK = 256 * 1024;
const MAX_LINE = 998;
/** A line longer than this is handled in pieces (bounded memory). */
const PIECE = 65536;

type Mode = "headers" | "pass" | "qp";

/** Where converted bytes go (a {@link DataWriter}). */
interface Sink {
  write(data: Uint8Array): Promise<void>;
}

/** Quoted-printable of one line; `continues`: more of the same line follows (trailing blanks stay literal). */
function qpLine(line: Uint8Array, continues = false): Uint8Array {
  const out: number[] = [];
  let col = 0;
  const hex = "0123456789ABCDEF";
  for (let i = 0; i < line.length; i++) {
    const b = line[i];
    const last = i === line.length - 1 && !continues;
    const literal = (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last);
    const width = literal ? 1 : 3;
    if (col + width > 75) {
      out.push(0x3d, 0x0d, 0x0a); // soft line break
      col = 0;
    }
    if (literal) out.push(b);
    else out.push(0x3d, hex.charCodeAt(b >> 4), hex.charCodeAt(b & 15));
    col += width;
  }
  return new Uint8Array(out);
}

function has8bit(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] >= 0x80) return true;
  return false;
}

interface Field {
  name: string;
  lines: Uint8Array[];
}

function fieldValue(f: Field): string {
  const text = f.lines.map((l) => new TextDecoder().decode(l)).join(" ");
  return text.slice(text.indexOf(":") + 1).replace(/\s+/g, " ").trim();
}

function param(value: string, name: string): string | undefined {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, "i").exec(value);
  return m ? (m[1] ?? m[2]).replace(/\\(.)/g, "$1") : undefined;
}

/** Address headers whose display names may be encoded (RFC 2047 section 5, phrases). */
const ADDRESS = new Set(["from", "to", "cc", "bcc", "reply-to", "sender"]);

/**
 * Encodes 8-bit display names in an address header value: `Zoë Müller <z@x>` and `"Zoë" <z@x>` become encoded
 * words before the angle bracket. Addresses themselves are left alone (they need SMTPUTF8, not encoding).
 */
function encodeDisplayNames(value: string): string {
  return value.replace(
    /(^|,)(\s*)([^<>,]*?)(\s*<[^<>]*>)/g,
    (m, sep: string, ws: string, name: string, addr: string) => {
      // deno-lint-ignore no-control-regex
      if (!/[^\x00-\x7f]/.test(name)) return m;
      const plain = name.trim().replace(/^"(.*)"$/, "$1").replace(/\\(.)/g, "$1");
      return `${sep}${ws}${encodeWords(plain, 60, 75).join(" ")}${addr}`;
    },
  );
}

/** RFC 2231 attribute-char besides letters and digits: what may stay unencoded in an extended value. */
const ATTR_SAFE = /[A-Za-z0-9!#$&+\-.^_`|~]/;

/** Splits a MIME header value at the semicolons outside quoted strings. */
function splitParams(value: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === "\\" && i + 1 < value.length) {
      cur += c + value[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ";" && !quoted) {
      out.push(cur.trim());
      cur = "";
      continue;
    }
    cur += c;
  }
  out.push(cur.trim());
  return out.filter((p, i) => i === 0 || p.length > 0);
}

/**
 * A Content-Type or Content-Disposition field with 8-bit parameter values (`name="résumé.pdf"`) rewritten as
 * RFC 2231 extended parameters (`name*=utf-8''r%C3%A9sum%C3%A9.pdf`), continued (`name*0*=`, `name*1*=`) so that
 * no line passes 78 characters; the other parameters are kept as written. Returns the field's lines.
 */
function extendedParamsField(name: string, value: string): string[] {
  const [first, ...params] = splitParams(value);
  const items: string[] = [];
  for (const p of params) {
    const eq = p.indexOf("=");
    // deno-lint-ignore no-control-regex
    if (eq < 0 || !/[^\x00-\x7f]/.test(p)) {
      items.push(p);
      continue;
    }
    const attr = p.slice(0, eq).trim().replace(/\*$/, "");
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    const tokens: string[] = [];
    for (const b of enc.encode(v)) {
      const c = String.fromCharCode(b);
      tokens.push(b < 0x80 && ATTR_SAFE.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`);
    }
    const pieces: string[] = [];
    let cur = "utf-8''";
    for (const t of tokens) {
      if (cur.length + t.length > 60) {
        pieces.push(cur);
        cur = "";
      }
      cur += t;
    }
    pieces.push(cur);
    if (pieces.length === 1) items.push(`${attr}*=${pieces[0]}`);
    else pieces.forEach((piece, i) => items.push(`${attr}*${i}*=${piece}`));
  }
  const lines = [`${name}: ${first}${items.length ? ";" : ""}`];
  items.forEach((item, i) => lines.push(` ${item}${i < items.length - 1 ? ";" : ""}`));
  return lines;
}

const STRUCTURED = new Set([
  "from",
  "to",
  "cc",
  "bcc",
  "reply-to",
  "sender",
  "message-id",
  "in-reply-to",
  "references",
  "date",
  "content-type",
  "content-disposition",
  "content-transfer-encoding",
  "mime-version",
  "received",
  "return-path",
]);

/**
 * A streaming 7-bit converter in front of a DATA writer; call {@link SevenBitWriter.end} after the last chunk.
 *
 * @example
 * ```ts
 * import type { DataWriter } from "./dot_stuffing.ts";
 *
 * declare const dataWriter: DataWriter; // the SMTP DATA stream
 * const seven = new SevenBitWriter(dataWriter);
 * await seven.write(new TextEncoder().encode("Subject: Grüße\n\nTemperatur: 3 °C\n"));
 * await seven.end(); // quoted-printable body, encoded subject, MIME headers added
 * ```
 */
export class SevenBitWriter {
  readonly #out: Sink;
  #line: number[] = [];
  #mode: Mode = "headers";
  #header: Field[] = [];
  #headerBytes = 0;
  #top = true;
  #boundaries: string[] = [];
  #lastWasCr = false;

  /** Makes a converter writing to `out`. */
  constructor(out: Sink) {
    this.#out = out;
  }

  /** Takes the next chunk of the stored message (any line ends). */
  async write(chunk: Uint8Array): Promise<void> {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a) {
        if (this.#lastWasCr) this.#line.pop();
        this.#lastWasCr = false;
        await this.#onLine(new Uint8Array(this.#line));
        this.#line = [];
        continue;
      }
      this.#lastWasCr = b === 0x0d;
      this.#line.push(b);
      if (this.#line.length >= PIECE) await this.#longLinePiece();
    }
  }

  /**
   * Keeps memory bounded on a line with no end in sight: a quoted-printable part gets the piece with a soft line
   * break; anything else (a base64 part, a preamble) gets a hard break, which base64 decoders ignore.
   */
  async #longLinePiece(): Promise<void> {
    const keepCr = this.#lastWasCr;
    const piece = new Uint8Array(keepCr ? this.#line.slice(0, -1) : this.#line);
    this.#line = keepCr ? [0x0d] : [];
    if (this.#mode === "headers") {
      await this.#finishHeaders();
      this.#mode = "qp";
    }
    if (this.#mode === "qp") {
      await this.#out.write(qpLine(piece, true));
      await this.#out.write(new Uint8Array([0x3d, 0x0d, 0x0a]));
      return;
    }
    for (let i = 0; i < piece.length; i += 76) await this.#emit(piece.subarray(i, i + 76));
  }

  /** Flushes the last (unterminated) line and any header block still open. */
  async end(): Promise<void> {
    if (this.#line.length > 0) {
      if (this.#lastWasCr) this.#line.pop();
      await this.#onLine(new Uint8Array(this.#line));
      this.#line = [];
    }
    if (this.#mode === "headers" && this.#header.length > 0) await this.#finishHeaders();
  }

  async #emit(line: Uint8Array): Promise<void> {
    await this.#out.write(line);
    await this.#out.write(CRLF);
  }

  async #onLine(line: Uint8Array): Promise<void> {
    if (this.#mode === "headers") {
      if (line.length === 0) return await this.#finishHeaders();
      const cont = line[0] === 0x20 || line[0] === 0x09;
      const isField = !cont && /^[!-9;-~]+:/.test(new TextDecoder().decode(line.subarray(0, 80)));
      if (cont && this.#header.length > 0) {
        this.#header[this.#header.length - 1].lines.push(line);
      } else if (isField) {
        const t = new TextDecoder().decode(line);
        this.#header.push({ name: t.slice(0, t.indexOf(":")).trim().toLowerCase(), lines: [line] });
      } else {
        // Not a header: the header block ended without an empty line; this line is body.
        await this.#finishHeaders();
        return await this.#onLine(line);
      }
      this.#headerBytes += line.length;
      if (this.#headerBytes > MAX_HEADER_BLOCK) await this.#finishHeaders();
      return;
    }
    const text = line.length >= 2 && line[0] === 0x2d && line[1] === 0x2d
      ? new TextDecoder().decode(line).trimEnd()
      : null;
    if (text !== null) {
      for (let i = this.#boundaries.length - 1; i >= 0; i--) {
        const b = this.#boundaries[i];
        if (text === `--${b}--`) {
          this.#boundaries.length = i;
          this.#mode = "pass"; // epilogue
          return await this.#emit(line);
        }
        if (text === `--${b}`) {
          this.#boundaries.length = i + 1;
          this.#mode = "headers";
          this.#header = [];
          this.#headerBytes = 0;
          return await this.#emit(line);
        }
      }
    }
    if (this.#mode === "qp") return await this.#emit(qpLine(line));
    if (has8bit(line) || line.length > MAX_LINE) {
      // 8-bit or overlong text outside any convertible part (a preamble, an epilogue): encode it anyway.
      return await this.#emit(qpLine(line));
    }
    await this.#emit(line);
  }

  /**
   * Decides what the entity whose header block just ended is, and writes its (rewritten) headers and the empty
   * line after them.
   */
  async #finishHeaders(): Promise<void> {
    const fields = this.#header;
    const get = (n: string) => fields.find((f) => f.name === n);
    const ct = get("content-type");
    const cte = get("content-transfer-encoding");
    const type = ct ? fieldValue(ct).split(";")[0].trim().toLowerCase() : "";
    const encoding = cte ? fieldValue(cte).toLowerCase() : "";
    const boundary = type.startsWith("multipart/") && ct ? param(fieldValue(ct), "boundary") : undefined;
    const out: Uint8Array[] = [];
    for (const f of fields) {
      if (f.name === "content-transfer-encoding") continue;
      if (ADDRESS.has(f.name) && f.lines.some(has8bit)) {
        const raw = new TextDecoder().decode(concatLines(f.lines));
        const name = raw.slice(0, raw.indexOf(":"));
        const value = raw.slice(raw.indexOf(":") + 1).replace(/\r?\n[ \t]/g, " ").trim();
        // Fold at the commas between addresses; encoded words are at most 75 characters each.
        const parts = encodeDisplayNames(value).split(/,\s*/);
        const lines: string[] = [];
        let cur = `${name}:`;
        for (const [i, part] of parts.entries()) {
          const piece = " " + part + (i < parts.length - 1 ? "," : "");
          if (cur.length + piece.length > 76 && cur.length > name.length + 1) {
            lines.push(cur);
            cur = "";
          }
          cur += piece;
        }
        lines.push(cur);
        for (const l of lines) out.push(enc.encode(l));
        continue;
      }
      if ((f.name === "content-type" || f.name === "content-disposition") && f.lines.some(has8bit)) {
        const raw = new TextDecoder().decode(concatLines(f.lines));
        const name = raw.slice(0, raw.indexOf(":"));
        const value = raw.slice(raw.indexOf(":") + 1).replace(/\r?\n[ \t]/g, " ").trim();
        for (const l of extendedParamsField(name, value)) out.push(enc.encode(l));
        continue;
      }
      if (!STRUCTURED.has(f.name) && f.lines.some(has8bit)) {
        const raw = new TextDecoder().decode(concatLines(f.lines));
        const name = raw.slice(0, raw.indexOf(":"));
        const value = raw.slice(raw.indexOf(":") + 1).replace(/\r?\n[ \t]/g, " ").trim();
        const folded = `${name}: ${encodeUnstructured(value, name.length + 2)}`;
        for (const l of folded.split("\r\n")) out.push(enc.encode(l));
        continue;
      }
      out.push(...f.lines);
    }
    let mode: Mode;
    if (boundary) {
      this.#boundaries.push(boundary);
      if (cte) out.push(enc.encode("Content-Transfer-Encoding: 7bit"));
      mode = "pass";
    } else if (type === "message/rfc822" || type === "message/global") {
      if (cte) out.push(enc.encode("Content-Transfer-Encoding: 7bit"));
      mode = "headers";
    } else if (encoding === "base64" || encoding === "quoted-printable") {
      out.push(...cte!.lines);
      mode = "pass";
    } else {
      if (this.#top && !get("mime-version")) out.push(enc.encode("MIME-Version: 1.0"));
      if (!ct) out.push(enc.encode('Content-Type: text/plain; charset="utf-8"'));
      out.push(enc.encode("Content-Transfer-Encoding: quoted-printable"));
      mode = "qp";
    }
    if (this.#top && boundary && !get("mime-version")) out.push(enc.encode("MIME-Version: 1.0"));
    for (const l of out) await this.#emit(l);
    await this.#emit(new Uint8Array(0));
    this.#top = false;
    this.#header = [];
    this.#headerBytes = 0;
    this.#mode = mode;
  }
}

function concatLines(lines: Uint8Array[]): Uint8Array {
  const parts: number[] = [];
  lines.forEach((l, i) => {
    if (i > 0) parts.push(0x0d, 0x0a);
    for (const b of l) parts.push(b);
  });
  return new Uint8Array(parts);
}

/**
 * What a message's bytes need on the way out, learned chunk by chunk as they stream past (lines may span chunks):
 * whether any byte is 8-bit and whether any line is longer than 998 octets (not counting the line end).
 *
 * @example
 * ```ts
 * const scan = new MessageScan();
 * scan.add(new TextEncoder().encode("Subject: h\u00e9\n\n" + "x".repeat(600)));
 * scan.add(new TextEncoder().encode("x".repeat(600) + "\n"));
 * console.log(scan.eightBit, scan.longLines); // true true
 * ```
 */
export class MessageScan {
  /** A byte of 0x80 or above was seen. */
  eightBit = false;
  /** A line longer than 998 octets was seen. */
  longLines = false;
  #len = 0;

  /** Takes the next chunk of the message. */
  add(bytes: Uint8Array): void {
    let len = this.#len;
    let eight = this.eightBit;
    let long = this.longLines;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x0a) len = 0;
      else if (b !== 0x0d && ++len > MAX_LINE) long = true;
      if (b >= 0x80) eight = true;
    }
    this.#len = len;
    this.eightBit = eight;
    this.longLines = long;
  }
}

/**
 * True when `bytes` hold a line longer than 998 octets (not counting the line end).
 *
 * @example
 * ```ts
 * hasLongLines(new TextEncoder().encode("x".repeat(999) + "\n")); // true
 * ```
 */
export function hasLongLines(bytes: Uint8Array): boolean {
  const scan = new MessageScan();
  scan.add(bytes);
  return scan.longLines;
}
