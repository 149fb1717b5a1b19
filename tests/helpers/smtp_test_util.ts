/**
 * Small shared pieces for the SMTP tests: client options for a loopback server, and rendering a message to bytes.
 *
 * @module
 */

import type { SmtpClientOptions } from "../../src/smtp/smtp_client.ts";
import type { MessageSource } from "../../src/smtp/smtp_client.ts";
import { DataWriter } from "../../src/smtp/dot_stuffing.ts";
import type { PreparedMessage } from "../../src/smtp/mail_message.ts";

/**
 * Client options for 127.0.0.1:`port` with short timeouts; override what a test needs.
 *
 * @example
 * ```ts
 * const o = clientOptions(2525, { security: "none" });
 * console.log(o.host, o.port);
 * ```
 */
export function clientOptions(port: number, over: Partial<SmtpClientOptions> = {}): SmtpClientOptions {
  return {
    host: "127.0.0.1",
    port,
    security: "none",
    allowInsecure: false,
    authMethod: "auto",
    heloName: "test-board",
    from: "board@example.com",
    fromName: "test-board",
    connectTimeoutMs: 5000,
    replyTimeoutMs: 5000,
    dataTimeoutMs: 10000,
    passwordCommandTimeoutMs: 5000,
    ...over,
  };
}

/**
 * Renders a prepared message into memory (tests only; the outbox streams to disk).
 *
 * @example
 * ```ts
 * import { prepareMessage } from "../../src/smtp/mail_message.ts";
 *
 * const msg = { to: ["me@example.com"], subject: "hi", text: "hello" };
 * const defaults = { from: "pi@example.com", fromName: "pi", domain: "pi" };
 * const bytes = await renderToBytes(prepareMessage(msg, defaults));
 * console.log(new TextDecoder().decode(bytes));
 * ```
 */
export async function renderToBytes(p: PreparedMessage): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const w = new DataWriter({ write: (d) => Promise.resolve(parts.push(d.slice())) }, { dotStuff: false });
  await p.render(w);
  await w.end();
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A {@link MessageSource} over bytes in memory.
 *
 * @example
 * ```ts
 * const src = bytesSource(new TextEncoder().encode("Subject: x\r\n\r\nhi\r\n"));
 * console.log(src);
 * ```
 */
export function bytesSource(
  bytes: Uint8Array,
  flags: { eightBit?: boolean; smtputf8?: boolean } = {},
): MessageSource {
  return {
    size: bytes.length,
    eightBit: flags.eightBit ?? false,
    smtputf8: flags.smtputf8 ?? false,
    write: (w) => w.write(bytes),
  };
}

/**
 * SHA-256 of bytes as lower-case hex.
 *
 * @example
 * ```ts
 * await sha256Hex(new Uint8Array([1]));
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}
