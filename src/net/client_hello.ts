/**
 * A small, bounds-checked reader for the first TLS record a client sends (its ClientHello), enough to tell which
 * TLS versions and session-resumption mechanisms the client offers. It never throws on hostile input: anything
 * that is not a well-formed ClientHello yields null.
 *
 * FTPS uses it to pick the TLS version per connection (see `src/ftp/ftps.ts`): a client offering the TLS 1.2
 * `session_ticket` extension resumes TLS 1.2 sessions by ticket, a client that does not (curl) needs TLS 1.3.
 *
 * @module
 */

/** TLS record header length (type, legacy version, length). */
export const TLS_RECORD_HEADER = 5;

/** The largest plaintext TLS record a client may send: 2^14 bytes of payload plus the header. */
export const TLS_MAX_FIRST_RECORD = (1 << 14) + TLS_RECORD_HEADER;

/** Extension type of `session_ticket` (RFC 5077). */
const EXT_SESSION_TICKET = 35;
/** Extension type of `supported_versions` (RFC 8446). */
const EXT_SUPPORTED_VERSIONS = 43;

/** What a ClientHello offers, as far as TLS version selection needs it. */
export interface ClientHelloInfo {
  /** The legacy `client_version` field, e.g. 0x0303 for TLS 1.2. */
  legacyVersion: number;
  /** The versions listed in `supported_versions` (e.g. 0x0304, 0x0303), empty when the extension is absent. */
  supportedVersions: number[];
  /** The client sent the `session_ticket` extension (it can resume TLS 1.2 by ticket). */
  sessionTicket: boolean;
  /** Every extension type, in the order sent. */
  extensions: number[];
}

/**
 * How far the first bytes of a connection are from holding a whole TLS record: the total length the record
 * needs (header included) once the header is in, `0` while fewer than 5 bytes have arrived, or `-1` when the
 * bytes cannot start a TLS handshake record (wrong content type, or longer than {@link TLS_MAX_FIRST_RECORD}).
 *
 * @example
 * ```ts
 * declare const buf: Uint8Array;
 * declare const got: number;
 * const need = firstRecordLength(buf.subarray(0, got));
 * if (need > 0 && got >= need) console.log("the whole ClientHello record is in");
 * ```
 */
export function firstRecordLength(bytes: Uint8Array): number {
  if (bytes.length < TLS_RECORD_HEADER) return bytes.length > 0 && bytes[0] !== 0x16 ? -1 : 0;
  if (bytes[0] !== 0x16 || bytes[1] !== 0x03) return -1;
  const total = TLS_RECORD_HEADER + ((bytes[3] << 8) | bytes[4]);
  return total > TLS_MAX_FIRST_RECORD ? -1 : total;
}

/**
 * Parses the ClientHello in the first TLS record (`record` starts at the record header). Returns null when the
 * bytes are not a complete, well-formed ClientHello (including one split over several records).
 *
 * @example
 * ```ts
 * declare const firstRecord: Uint8Array;
 * const hello = parseClientHello(firstRecord);
 * const wantsTls13 = hello !== null && !hello.sessionTicket && hello.supportedVersions.includes(0x0304);
 * console.log(wantsTls13);
 * ```
 */
export function parseClientHello(record: Uint8Array): ClientHelloInfo | null {
  const total = firstRecordLength(record);
  if (total <= 0 || record.length < total) return null;
  const r = new Reader(record, TLS_RECORD_HEADER, total);
  if (r.u8() !== 1) return null; // handshake type client_hello
  const bodyLen = r.u24();
  if (bodyLen < 0 || r.pos + bodyLen > total) return null; // fragmented over several records, or malformed
  const body = new Reader(record, r.pos, r.pos + bodyLen);
  const legacyVersion = body.u16();
  if (!body.skip(32)) return null; // random
  if (!body.skip(body.u8())) return null; // legacy_session_id
  if (!body.skip(body.u16())) return null; // cipher_suites
  if (!body.skip(body.u8())) return null; // legacy_compression_methods
  const info: ClientHelloInfo = {
    legacyVersion,
    supportedVersions: [],
    sessionTicket: false,
    extensions: [],
  };
  if (body.remaining() === 0) return legacyVersion >= 0 ? info : null; // no extensions at all
  const extLen = body.u16();
  if (extLen < 0 || extLen !== body.remaining()) return null;
  while (body.remaining() > 0) {
    const type = body.u16(), len = body.u16();
    if (type < 0 || len < 0 || len > body.remaining()) return null;
    info.extensions.push(type);
    if (type === EXT_SESSION_TICKET) info.sessionTicket = true;
    if (type === EXT_SUPPORTED_VERSIONS) {
      const ext = new Reader(record, body.pos, body.pos + len);
      const listLen = ext.u8();
      if (listLen < 0 || listLen % 2 !== 0 || listLen !== ext.remaining()) return null;
      while (ext.remaining() > 0) info.supportedVersions.push(ext.u16());
    }
    body.skip(len);
  }
  return legacyVersion >= 0 ? info : null;
}

/**
 * The TLS version a server offering both 1.2 and 1.3 should offer this client at most: "TLSv1.2" when it offers
 * 1.2 and sends the TLS 1.2 `session_ticket` extension (GnuTLS/lftp, FileZilla, OpenSSL defaults such as Python)
 * or cannot do TLS 1.3; "TLSv1.3" when it offers TLS 1.3 without TLS 1.2 tickets (curl), offers TLS 1.3 only,
 * or could not be parsed (the 1.3 context also speaks 1.2, so no client a fixed version would serve fails).
 *
 * @example
 * ```ts
 * declare const firstRecord: Uint8Array;
 * const max = preferredMaxVersion(parseClientHello(firstRecord));
 * console.log(max); // "TLSv1.2" or "TLSv1.3"
 * ```
 */
export function preferredMaxVersion(hello: ClientHelloInfo | null): "TLSv1.2" | "TLSv1.3" {
  // Unparsable (split over records, or odd): the TLS 1.3 context, which also speaks 1.2, fails no client.
  if (hello === null) return "TLSv1.3";
  const v = hello.supportedVersions;
  // A client that offers TLS 1.3 only must get it, session ticket extension or not.
  if (v.includes(0x0304) && !v.includes(0x0303)) return "TLSv1.3";
  if (hello.sessionTicket) return "TLSv1.2";
  return v.includes(0x0304) ? "TLSv1.3" : "TLSv1.2";
}

/** A cursor over `buf[pos, end)`; reads past the end return -1 and leave the cursor at the end. */
class Reader {
  constructor(readonly buf: Uint8Array, public pos: number, readonly end: number) {}

  remaining(): number {
    return this.end - this.pos;
  }

  u8(): number {
    if (this.pos + 1 > this.end) return this.#fail();
    return this.buf[this.pos++];
  }

  u16(): number {
    if (this.pos + 2 > this.end) return this.#fail();
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }

  u24(): number {
    if (this.pos + 3 > this.end) return this.#fail();
    const v = (this.buf[this.pos] << 16) | (this.buf[this.pos + 1] << 8) | this.buf[this.pos + 2];
    this.pos += 3;
    return v;
  }

  /** Skips `n` bytes; false when `n` is negative (a failed length read) or runs past the end. */
  skip(n: number): boolean {
    if (n < 0 || this.pos + n > this.end) {
      this.pos = this.end;
      return false;
    }
    this.pos += n;
    return true;
  }

  #fail(): number {
    this.pos = this.end;
    return -1;
  }
}
