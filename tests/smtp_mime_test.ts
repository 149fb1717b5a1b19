/**
 * Pure unit tests: RFC 2047 words and folding, quoted-printable, streaming base64, the DATA writer, reply parsing,
 * raw message completion and the [smtp]/[outbox] config readers.
 */

import assert from "node:assert/strict";
import {
  Base64Streamer,
  encodeQuotedPrintable,
  encodeWords,
  formatHeader,
  parseMailbox,
} from "../src/smtp/mime_builder.ts";
import { DataWriter } from "../src/smtp/dot_stuffing.ts";
import { readReply } from "../src/smtp/smtp_reply.ts";
import { LineReader } from "../src/net/line_reader.ts";
import { completeRawMessage, parseAddressList } from "../src/smtp/mail_message.ts";
import { readOutboxConfig, readSmtpConfig } from "../src/smtp/smtp_config.ts";
import { Section } from "../src/config/section.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function collector() {
  const parts: Uint8Array[] = [];
  return {
    sink: { write: (d: Uint8Array) => Promise.resolve(void parts.push(d.slice())) },
    text: () => parts.map((p) => dec.decode(p)).join(""),
    bytes: () => {
      const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
      parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
      return out;
    },
  };
}

function decodeWords(v: string): string {
  const bytes: number[] = [];
  for (const m of v.matchAll(/=\?UTF-8\?B\?([^?]*)\?=/g)) {
    bytes.push(...Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)));
  }
  return dec.decode(Uint8Array.from(bytes));
}

Deno.test("mime: encoded words never split a character and fold within 78 columns", () => {
  const subject = "Überhitzung 🔥 ".repeat(12).trim();
  const h = formatHeader("Subject", subject);
  const lines = h.replace(/\r\n$/, "").split("\r\n");
  assert.ok(lines.length > 1);
  for (const l of lines) assert.ok(l.length <= 78, `${l.length}: ${l}`);
  assert.equal(decodeWords(h), subject);
  for (const w of encodeWords(subject, 20, 75)) assert.ok(w.length <= 75);
  assert.equal(formatHeader("Subject", "plain ascii"), "Subject: plain ascii\r\n");
  assert.deepEqual(parseMailbox('"Doe, John" <j@example.com>'), {
    name: "Doe, John",
    address: "j@example.com",
  });
});

Deno.test("mime: quoted-printable keeps lines within 76 and round-trips", () => {
  const text = "Température 3,2 °C " + "é".repeat(100) + " trailing \n" + "z".repeat(300);
  const qp = encodeQuotedPrintable(text);
  for (const l of qp.split("\r\n")) assert.ok(l.length <= 76, `${l.length}`);
  const decoded = qp.replace(/=\r\n/g, "").replace(
    /=([0-9A-F]{2})/g,
    (_, h) => String.fromCharCode(parseInt(h, 16)),
  );
  assert.equal(dec.decode(Uint8Array.from(decoded, (c) => c.charCodeAt(0))), text.replace(/\n/g, "\r\n"));
});

Deno.test("mime: streaming base64 equals btoa, 76-column lines, across chunk boundaries", async () => {
  for (const n of [0, 1, 2, 3, 56, 57, 58, 57 * 4 + 1, 1000]) {
    const data = Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
    const c = collector();
    await new Base64Streamer(4).encodeBytes(data, c.sink);
    const out = c.text();
    for (const l of out.split("\r\n").slice(0, -1)) assert.ok(l.length <= 76);
    assert.equal(out.replace(/\r\n/g, ""), btoa(String.fromCharCode(...data)));
  }
  const dir = await Deno.makeTempDir();
  try {
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 13) & 255);
    await Deno.writeFile(`${dir}/f`, data);
    const c = collector();
    assert.equal(await new Base64Streamer(3).encodeFile(`${dir}/f`, c.sink), 10_000);
    assert.equal(c.text().replace(/\r\n/g, ""), btoa(String.fromCharCode(...data)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dot stuffing: first-line dot, bare LF and CR, chunk splits, terminator after the hook", async () => {
  const c = collector();
  const w = new DataWriter(c.sink, { bufferSize: 64 });
  const input = ".a\n..b\r\nc\r.\n" + "x".repeat(200);
  for (const ch of input) await w.write(enc.encode(ch)); // one byte at a time
  let hookSaw = "";
  await w.end(() => Promise.resolve(void (hookSaw = c.text())));
  assert.equal(hookSaw, "..a\r\n...b\r\nc\r\n..\r\n" + "x".repeat(200) + "\r\n");
  assert.equal(c.text(), hookSaw + ".\r\n");
});

Deno.test("replies: multi-line, enhanced codes, malformed and mixed codes", async () => {
  const reader = (s: string) => {
    const b = enc.encode(s);
    let done = false;
    return new LineReader({
      read: (buf: Uint8Array) => {
        if (done) return Promise.resolve(null);
        done = true;
        buf.set(b);
        return Promise.resolve(b.length);
      },
    });
  };
  const r = await readReply(reader("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"), "EHLO");
  assert.deepEqual(r, { code: 250, enhanced: null, lines: ["mx.example", "PIPELINING", "SIZE 100"] });
  const e = await readReply(reader("550 5.1.1 <x@y>: no such user\r\n"), "RCPT");
  assert.equal(e?.enhanced, "5.1.1");
  await assert.rejects(readReply(reader("hello\r\n"), "greeting"), /malformed/);
  await assert.rejects(readReply(reader("250-a\r\n251 b\r\n"), "EHLO"), /mixed/);
  assert.equal(await readReply(reader(""), "greeting"), null);
});

Deno.test("raw messages: -t extraction, groups, missing headers added, Bcc removed", () => {
  assert.deepEqual(parseAddressList('"Doe, J" <j@x.org>, k@x.org (Kay), team: a@x.org, b@x.org;'), [
    "j@x.org",
    "k@x.org",
    "a@x.org",
    "b@x.org",
  ]);
  const r = completeRawMessage(enc.encode("To: a@x.org\nCc: b@x.org\nBcc: c@x.org\n\nbody ü\n"), {
    defaults: { from: "pi@x.org", domain: "pi" },
    extractRecipients: true,
    recipients: [],
  });
  const text = dec.decode(r.bytes);
  assert.deepEqual(r.envelope, { from: "pi@x.org", to: ["a@x.org", "b@x.org", "c@x.org"] });
  assert.match(text, /^Date: /m);
  assert.match(text, /^Message-ID: <.+@pi>$/m);
  assert.match(text, /^From: pi@x\.org/m);
  assert.doesNotMatch(text, /Bcc/);
  assert.equal(r.eightBit, true);
  assert.throws(() =>
    completeRawMessage(enc.encode("Subject: x\n\ny"), {
      defaults: { from: "pi@x.org", domain: "pi" },
      extractRecipients: false,
      recipients: ["bad\r\nRCPT TO:<v@x.org>"],
    })
  );
});

Deno.test("config: [smtp] and [outbox] readers, defaults and problems", () => {
  const problems: string[] = [];
  const smtp = readSmtpConfig(
    new Section(
      { host: "smtp.gmail.com", username: "me@gmail.com", password_env: "PW", from: "me@gmail.com" },
      "smtp",
      problems,
    ),
    { name: "pi-freezer" },
  )!;
  assert.deepEqual(problems, []);
  assert.equal(smtp.port, 587);
  assert.equal(smtp.security, "starttls");
  assert.equal(smtp.heloName, "pi-freezer");
  assert.equal(readSmtpConfig(new Section(undefined, "smtp", problems), { name: "x" }), null);
  const bad: string[] = [];
  readSmtpConfig(
    new Section(
      {
        host: "mail.example.com",
        security: "none",
        from: "x",
        tls_fingerprint: "zz",
        password: "a",
        password_env: "b",
        usernme: "u",
      },
      "smtp",
      bad,
    ),
    { name: "x" },
  );
  assert.ok(bad.some((p) => p.startsWith("smtp.security:")));
  assert.ok(bad.some((p) => p.startsWith("smtp.tls_fingerprint:")));
  assert.ok(bad.some((p) => p.startsWith("smtp.from:")));
  assert.ok(bad.some((p) => p.startsWith("smtp.password:")));
  assert.ok(bad.some((p) => p.startsWith("smtp.usernme: unknown key")));
  const o = readOutboxConfig(
    new Section({ max_age: "2h", max_size: "8MiB" }, "outbox", problems),
    "/var/lib/outpost",
  );
  assert.equal(o.dir, "/var/lib/outpost/outbox");
  assert.equal(o.maxAgeMs, 7_200_000);
  assert.equal(o.maxBytes, 8 << 20);
});
