/**
 * RFC 6152 and line length: to a relay without 8BITMIME an 8-bit message goes out as quoted-printable (headers
 * rewritten, each multipart part on its own), lines over 998 octets are encoded the same way even with 8BITMIME,
 * and a UTF-8 address to a relay without SMTPUTF8 is refused with an error naming it. Python's `email` package
 * decodes what was sent and must get the original text back.
 */

import assert from "node:assert/strict";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { startScriptServer } from "./helpers/smtp_script_server.ts";
import { SevenBitWriter } from "../src/smtp/seven_bit.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { submitToMaildrop } from "../src/smtp/maildrop.ts";
import { setLogSink } from "../src/log/logger.ts";
import type { SmtpClientOptions } from "../src/smtp/smtp_client.ts";

setLogSink(() => {});
const enc = new TextEncoder();
const dec = new TextDecoder();
const python = findPeer(SYSTEM_PYTHON);

const PARSE_PY = String.raw`
import email, email.utils, json, sys
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = []
for p in msg.walk():
    if p.is_multipart():
        continue
    name = p.get_param("name")
    parts.append({"type": p.get_content_type(), "cte": p.get("content-transfer-encoding"),
                  "filename": p.get_filename(),
                  "name": email.utils.collapse_rfc2231_value(name) if name is not None else None,
                  "data": p.get_payload(decode=True).decode("utf-8", "replace")})
print(json.dumps({"subject": str(msg["subject"]), "to": str(msg["to"]), "parts": parts,
                  "defects": [str(d) for p in msg.walk() for d in p.defects]}))
`;

async function parse(raw: Uint8Array): Promise<{
  subject: string;
  to: string;
  parts: { type: string; cte: string | null; filename: string | null; name: string | null; data: string }[];
  defects: string[];
}> {
  const child = new Deno.Command(python!, { args: ["-c", PARSE_PY], stdin: "piped", stdout: "piped" })
    .spawn();
  const w = child.stdin.getWriter();
  await w.write(raw);
  await w.close();
  return JSON.parse(dec.decode((await child.output()).stdout));
}

async function convert(text: string | Uint8Array, chunk = 7): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const seven = new SevenBitWriter({ write: (d) => Promise.resolve(void parts.push(d.slice())) });
  const bytes = typeof text === "string" ? enc.encode(text) : text;
  for (let i = 0; i < bytes.length; i += chunk) await seven.write(bytes.subarray(i, i + chunk));
  await seven.end();
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

function assertSevenBitShort(raw: Uint8Array): void {
  assert.ok(raw.every((b) => b < 0x80), "only 7-bit bytes");
  for (const line of dec.decode(raw).split("\r\n")) assert.ok(line.length <= 998, `line of ${line.length}`);
  assert.ok(!/[^\r]\n/.test(dec.decode(raw)), "CRLF only");
}

const LONG = "0123456789".repeat(500); // 5000 octets, one line

Deno.test({
  name: "7bit: a plain 8-bit message gets MIME headers and a quoted-printable body; the subject is encoded",
  ignore: skipWithout(python),
  async fn() {
    const src =
      'From: root (Cron Daemon)\nTo: Zoë Müller <zoe@example.com>, "Jörg" <j@example.com>, plain@example.com\n' +
      "Subject: Kühlschrank über 3 °C\n\n" +
      "Temperatur im Kühlschrank: 3 °C\n.leading dot = sign\ntrailing space \n" + LONG + "\n";
    const raw = await convert(src);
    assertSevenBitShort(raw);
    const text = dec.decode(raw);
    assert.match(text, /^MIME-Version: 1\.0\r$/m);
    assert.match(text, /^Content-Transfer-Encoding: quoted-printable\r$/m);
    assert.match(text, /^From: root \(Cron Daemon\)\r$/m, "structured headers untouched");
    const p = await parse(raw);
    assert.equal(p.subject, "Kühlschrank über 3 °C");
    assert.equal(p.to, "Zoë Müller <zoe@example.com>, Jörg <j@example.com>, plain@example.com");
    assert.equal(
      p.parts[0].data.replace(/\r\n/g, "\n"),
      "Temperatur im Kühlschrank: 3 °C\n.leading dot = sign\ntrailing space \n" + LONG + "\n",
    );
    assert.deepEqual(p.defects, []);
  },
});

Deno.test({
  name:
    "7bit: multipart parts are converted one by one (nested too); base64 parts and boundaries pass unchanged",
  ignore: skipWithout(python),
  async fn() {
    const b64 = btoa(String.fromCharCode(...new Uint8Array([0, 1, 2, 255])));
    const src = [
      "Subject: parts",
      "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="outer"',
      "",
      "preamble",
      "--outer",
      'Content-Type: multipart/alternative; boundary="inner"',
      "",
      "--inner",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 8bit",
      "",
      "Grüße aus dem Keller",
      "--inner",
      "Content-Type: text/html; charset=utf-8",
      "",
      "<p>Grüße " + LONG + "</p>",
      "--inner--",
      "--outer",
      "Content-Type: application/octet-stream",
      "Content-Transfer-Encoding: base64",
      "",
      b64,
      "--outer",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: 7bit",
      "",
      "plain ascii",
      "--outer--",
      "",
    ].join("\n");
    const raw = await convert(src, 13);
    assertSevenBitShort(raw);
    const text = dec.decode(raw);
    assert.ok(text.includes(`\r\n${b64}\r\n`), "base64 part unchanged");
    const p = await parse(raw);
    assert.deepEqual(p.parts.map((x) => x.type), [
      "text/plain",
      "text/html",
      "application/octet-stream",
      "text/plain",
    ]);
    assert.equal(p.parts[0].data.trim(), "Grüße aus dem Keller");
    assert.equal(p.parts[0].cte, "quoted-printable");
    assert.equal(p.parts[1].data.trim(), "<p>Grüße " + LONG + "</p>");
    assert.equal(p.parts[3].data.trim(), "plain ascii");
    assert.deepEqual(p.defects, []);
  },
});

function smtpOptions(port: number): SmtpClientOptions {
  return {
    host: "127.0.0.1",
    port,
    security: "none",
    allowInsecure: false,
    heloName: "test-board",
    from: "board@example.com",
    authMethod: "auto",
    connectTimeoutMs: 5000,
    replyTimeoutMs: 5000,
    dataTimeoutMs: 5000,
    passwordCommandTimeoutMs: 1000,
  };
}

Deno.test({
  name:
    "7bit: the worker converts for a relay without 8BITMIME, encodes long lines even with it, and refuses " +
    "a UTF-8 address to a relay without SMTPUTF8 naming it",
  ignore: skipWithout(python),
  async fn() {
    const dir = await Deno.makeTempDir();
    const plain = startScriptServer({ extensions: () => ["PIPELINING", "SIZE 10485760"] });
    const eight = startScriptServer({ extensions: () => ["PIPELINING", "8BITMIME"] });
    try {
      const opts = {
        dir: `${dir}/outbox`,
        maxAgeMs: 86_400_000,
        maxBytes: 1 << 24,
        maxMessageBytes: 1 << 20,
        retryMinMs: 60_000,
        retryMaxMs: 60_000,
      };
      const outbox = await Outbox.open(opts);
      const drop = (to: string[], body: string) =>
        submitToMaildrop(
          { maildrop: outbox.maildropDir, maxMessageBytes: 1 << 20 },
          { to },
          (w) => w.write(enc.encode(body)),
        );
      await drop(["me@example.com"], "Subject: cron\n\nTemperatur: 3 °C\n");
      assert.equal(await outbox.pickup(), 1);
      await new DeliveryWorker(outbox, smtpOptions(plain.port)).runOnce();
      assert.equal(plain.messages.length, 1);
      assert.ok(!plain.lines[0].some((l) => /BODY=8BITMIME/.test(l)));
      const sent = plain.rawData.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array(0));
      assertSevenBitShort(sent);
      // RFC 1870: SIZE= is the size as transmitted; the stored size undercounts a converted message, so none.
      const mail = plain.lines[0].find((l) => /^MAIL FROM/i.test(l)) ?? "";
      const declared = /SIZE=(\d+)/i.exec(mail);
      assert.ok(!declared || Number(declared[1]) >= sent.length, `${mail} for ${sent.length} bytes sent`);
      const p = await parse(enc.encode(plain.messages[0]));
      assert.equal(p.parts[0].data.trim(), "Temperatur: 3 °C");

      await drop(["me@example.com"], "Subject: long\n\n" + LONG + "\n");
      await outbox.pickup();
      await new DeliveryWorker(outbox, smtpOptions(eight.port)).runOnce();
      assert.equal(eight.messages.length, 1);
      assert.ok(eight.messages[0].split("\r\n").every((l) => l.length <= 998));
      assert.equal((await parse(enc.encode(eight.messages[0]))).parts[0].data.trim(), LONG);

      await drop(["zoë@example.com"], "Subject: utf8\n\nx\n");
      await outbox.pickup();
      await new DeliveryWorker(outbox, smtpOptions(plain.port)).runOnce();
      const [failed] = await outbox.list("failed");
      assert.match(failed.reason ?? "", /zoë@example\.com is not an ASCII address.*does not offer SMTPUTF8/);
    } finally {
      await plain.close();
      await eight.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "7bit: a 300 KB line (8-bit) is converted in bounded pieces and decodes to the same text",
  ignore: skipWithout(python),
  async fn() {
    const line = "Grüße ".repeat(50_000); // 350 KB of UTF-8, no line end
    const raw = await convert(`Subject: big\n\n${line}\n`, 65_536);
    assertSevenBitShort(raw);
    const p = await parse(raw);
    assert.equal(p.parts[0].data.replace(/\r?\n$/, ""), line);
  },
});

Deno.test({
  name:
    "7bit: 8-bit file names in Content-Type and Content-Disposition become RFC 2231 parameters (long ones continued)",
  ignore: skipWithout(python),
  async fn() {
    const short = "résumé 2026.pdf";
    const long = "Überwachungsprotokoll für den Gefrierschrank im Keller, Woche 48, Messwerte ".repeat(4) +
      "ü.csv";
    const part = (n: string) =>
      `--b\nContent-Type: text/plain; charset=utf-8; name="${n}"\n` +
      `Content-Disposition: attachment;\n filename="${n}"\n\nGrüße aus dem Keller\n`;
    const text =
      `From: a@example.com\nSubject: logs\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n` +
      `${part(short)}${part(long)}--b--\n`;
    const raw = await convert(text);
    assertSevenBitShort(raw);
    for (const line of dec.decode(raw).split("\r\n")) {
      assert.ok(line.length <= 78, `line of ${line.length}: ${line}`);
    }
    const m = await parse(raw);
    assert.deepEqual(m.defects, []);
    assert.equal(m.parts.length, 2);
    for (const [i, n] of [short, long].entries()) {
      assert.equal(m.parts[i].filename, n);
      assert.equal(m.parts[i].name, n);
      assert.equal(m.parts[i].data, "Grüße aus dem Keller"); // the line end before a boundary is the boundary's
    }
  },
});
