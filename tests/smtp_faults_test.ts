/**
 * Fault injection against our scripted SMTP server: missing STARTTLS, bad certificates and pins, 4xx/5xx replies,
 * refused recipients, dropped and stalled connections, header injection, dot-stuffing and long lines.
 */

import assert from "node:assert/strict";
import { findPeer, skipWithout } from "./helpers/peers.ts";
import { startScriptServer } from "./helpers/smtp_script_server.ts";
import { makeTestCerts } from "./helpers/smtp_sink.ts";
import { bytesSource, clientOptions, renderToBytes } from "./helpers/smtp_test_util.ts";
import { deliver, SmtpError } from "../src/smtp/smtp_client.ts";
import { HeaderInjectionError, type MailMessage, prepareMessage } from "../src/smtp/mail_message.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});
const enc = new TextEncoder();
const defaults = { from: "board@example.com", domain: "test-board" };
const simple = () => bytesSource(enc.encode("Subject: t\r\n\r\nhello\r\n"));
const env = { from: "board@example.com", to: ["me@example.com"] };
const isErr = (stage: string, permanent?: boolean) => (e: unknown) =>
  e instanceof SmtpError && e.stage === stage && (permanent === undefined || e.permanent === permanent);

Deno.test("smtp faults: STARTTLS not offered fails closed, nothing sent after EHLO", async () => {
  const srv = startScriptServer({ extensions: () => ["PIPELINING", "AUTH PLAIN LOGIN", "SIZE 100000"] });
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port, { security: "starttls", username: "u", password: "p" }), env, simple()),
      (e: unknown) => isErr("STARTTLS", false)(e) && /does not offer STARTTLS/.test((e as Error).message),
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(srv.lines, [["EHLO test-board"]]);
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: STARTTLS refused by the server (454) fails closed", async () => {
  const srv = startScriptServer({ extensions: () => ["STARTTLS", "AUTH PLAIN"] });
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port, { security: "starttls", username: "u", password: "p" }), env, simple()),
      (e: unknown) => isErr("STARTTLS")(e) && /454/.test((e as Error).message),
    );
    assert.deepEqual(srv.lines, [["EHLO test-board", "STARTTLS"]]);
  } finally {
    await srv.close();
  }
});

Deno.test({
  name:
    "smtp faults: self-signed certificate refused at TLS; accepted with its SHA-256 pin, refused with another",
  ignore: skipWithout(findPeer("openssl")),
  async fn() {
    const dir = await Deno.makeTempDir();
    const certs = await makeTestCerts(dir);
    const srv = startScriptServer({}, {
      cert: await Deno.readTextFile(certs.selfCertFile),
      key: await Deno.readTextFile(certs.selfKeyFile),
    });
    try {
      await assert.rejects(
        deliver(clientOptions(srv.port, { security: "tls", caFile: certs.caFile }), env, simple()),
        isErr("TLS", false),
      );
      await assert.rejects(
        deliver(
          clientOptions(srv.port, { security: "tls", fingerprintSha256: "00".repeat(32) }),
          env,
          simple(),
        ),
        (e: unknown) => isErr("TLS")(e) && /does not match the pin/.test((e as Error).message),
      );
      const r = await deliver(
        clientOptions(srv.port, { security: "tls", fingerprintSha256: certs.selfFingerprint.toLowerCase() }),
        env,
        simple(),
      );
      assert.equal(r.reply.code, 250);
      assert.equal(srv.messages.length, 1);
      // Only the pinned session got past the handshake.
      assert.deepEqual(srv.lines.filter((l) => l.length > 0).length, 1);
    } finally {
      await srv.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("smtp faults: 421 greeting and 451 after DATA are temporary; 552 after DATA is permanent", async () => {
  const srv = startScriptServer({
    greeting: (n) => n === 1 ? "421 4.3.2 busy, try later" : "220 ok",
    afterData: (_m, n) =>
      n === 2 ? "451 4.3.0 local error" : n === 3 ? "552 5.3.4 message too big" : "250 ok",
  });
  try {
    await assert.rejects(deliver(clientOptions(srv.port), env, simple()), isErr("greeting", false));
    await assert.rejects(
      deliver(clientOptions(srv.port), env, simple()),
      (e: unknown) => isErr("DATA", false)(e) && /451 4\.3\.0 local error/.test((e as Error).message),
    );
    await assert.rejects(deliver(clientOptions(srv.port), env, simple()), isErr("DATA", true));
    const r = await deliver(clientOptions(srv.port), env, simple());
    assert.equal(r.reply.code, 250);
    assert.equal(srv.messages.length, 1);
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: 550 on one recipient is reported, the others get the message (with and without PIPELINING)", async () => {
  for (const ext of [["PIPELINING"], []]) {
    const srv = startScriptServer({
      extensions: () => ext,
      rcpt: (a) => a.startsWith("nobody") ? "550 5.1.1 <nobody@example.com>: no such user" : "250 ok",
    });
    try {
      const r = await deliver(
        clientOptions(srv.port),
        { from: env.from, to: ["a@example.com", "nobody@example.com", "b@example.com"] },
        simple(),
      );
      assert.deepEqual(r.accepted, ["a@example.com", "b@example.com"]);
      assert.equal(r.refused.length, 1);
      assert.equal(r.refused[0].rcpt, "nobody@example.com");
      assert.equal(r.refused[0].error.permanent, true);
      assert.equal(r.refused[0].error.reply?.enhanced, "5.1.1");
      assert.equal(srv.messages.length, 1);
      await assert.rejects(
        deliver(clientOptions(srv.port), { from: env.from, to: ["nobody@example.com"] }, simple()),
        isErr("RCPT", true),
      );
      assert.ok(!srv.lines[1].includes("DATA"));
    } finally {
      await srv.close();
    }
  }
});

Deno.test("smtp faults: connection dropped mid-DATA is a temporary DATA error and no message is complete", async () => {
  let seen = 0;
  const srv = startScriptServer({ bodyLine: () => ++seen === 50 ? "drop" : undefined });
  try {
    const body = Array.from({ length: 20000 }, (_, i) => `line ${i}`).join("\r\n");
    await assert.rejects(
      deliver(clientOptions(srv.port), env, bytesSource(enc.encode("Subject: big\r\n\r\n" + body))),
      (e: unknown) => e instanceof SmtpError && e.stage === "DATA" && !e.permanent,
    );
    assert.equal(srv.messages.length, 0);
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: a slow server hits the reply timeout, naming the stage", async () => {
  const srv = startScriptServer({ delayMs: () => 1500 });
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port, { replyTimeoutMs: 200 }), env, simple()),
      (e: unknown) => isErr("greeting", false)(e) && /within 200 ms/.test((e as Error).message),
    );
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: a server that never answers the final dot hits the DATA timeout", async () => {
  let release: () => void = () => {};
  const stalled = new Promise<void>((r) => release = r);
  const srv = startScriptServer({ afterData: async () => (await stalled, null) });
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port, { dataTimeoutMs: 300 }), env, simple()),
      (e: unknown) => isErr("DATA", false)(e) && /within 300 ms/.test((e as Error).message),
    );
  } finally {
    release();
    await srv.close();
  }
});

Deno.test("smtp faults: header and command injection attempts are refused before anything is sent", async () => {
  const bad: MailMessage[] = [
    { to: ["me@example.com"], subject: "hi\r\nBcc: victim@example.com", text: "x" },
    { to: ["me@example.com\r\nRCPT TO:<victim@example.com>"], subject: "hi", text: "x" },
    { to: ["me@example.com"], subject: "hi", text: "x", headers: { "X-Tag": "a\nBcc: v@example.com" } },
    { to: ["me@example.com"], subject: "hi", text: "x", headers: { "X Bad:": "a" } },
    { to: ["me@example.com"], subject: "hi", text: "x", headers: { "Bcc": "v@example.com" } },
    { to: ["me@example.com"], subject: "hi", text: "x", messageId: "<a@b>\r\nBcc: v@example.com" },
    {
      to: ["me@example.com"],
      subject: "hi",
      text: "x",
      attachments: [{ filename: "a\r\n.txt", content: new Uint8Array(1) }],
    },
    {
      to: ["me@example.com"],
      subject: "hi",
      text: "x",
      attachments: [{ filename: "a", contentType: "text/plain\r\nX: y", content: new Uint8Array(1) }],
    },
  ];
  for (const m of bad) assert.throws(() => prepareMessage(m, defaults), HeaderInjectionError);
  const srv = startScriptServer();
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port), { from: "a@example.com\r\nRSET", to: ["b@example.com"] }, simple()),
      isErr("MAIL", true),
    );
    await assert.rejects(
      deliver(clientOptions(srv.port), { from: "a@example.com", to: ["b@example.com>\r\nDATA"] }, simple()),
      isErr("RCPT", true),
    );
    assert.equal(srv.connections, 0);
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: leading dots (first line too), 5000-character lines and bare LF survive; UTF-8 headers fold", async () => {
  const srv = startScriptServer();
  try {
    const text = ".first line starts with a dot\n..two dots\n.\nmiddle\n" + "y".repeat(5000) + "\nlast";
    const p = prepareMessage({
      to: ["Jürgen Groß <j@example.com>"],
      subject: "Überhitzung: Gefriertruhe im Keller meldet 3,2 °C seit 10 Minuten — bitte prüfen 🔥🔥🔥",
      text,
    }, defaults);
    const bytes = await renderToBytes(p);
    await deliver(clientOptions(srv.port), p.envelope, bytesSource(bytes));
    assert.equal(srv.messages.length, 1);
    const got = srv.messages[0];
    const sent = new TextDecoder().decode(bytes);
    assert.equal(got, sent); // unstuffed on the server side: exactly what we built
    for (const line of sent.split("\r\n")) {
      assert.ok(line.length <= 78, `line of ${line.length}: ${line.slice(0, 40)}`);
    }
    // A raw body whose first line is a dot and that uses bare LF.
    const raw = enc.encode(".dot first\nsecond\n.\n");
    await deliver(clientOptions(srv.port), env, bytesSource(raw));
    assert.equal(srv.messages[1], ".dot first\r\nsecond\r\n.\r\n");
    const wire = new TextDecoder().decode(srv.rawData[1]);
    assert.equal(wire, "..dot first\r\nsecond\r\n..\r\n.\r\n");
    assert.ok(!/[^\r]\n/.test(wire));
  } finally {
    await srv.close();
  }
});

Deno.test("smtp faults: SIZE is checked before MAIL; SMTPUTF8 and BODY=8BITMIME are used when needed", async () => {
  const srv = startScriptServer({ extensions: () => ["SIZE 1000", "8BITMIME", "SMTPUTF8"] });
  try {
    await assert.rejects(
      deliver(clientOptions(srv.port), env, bytesSource(new Uint8Array(5000).fill(0x41))),
      (e: unknown) => isErr("MAIL", true)(e) && /at most 1000/.test((e as Error).message),
    );
    assert.deepEqual(srv.lines[0], ["EHLO test-board"]);
    await deliver(
      clientOptions(srv.port),
      { from: "board@example.com", to: ["jürgen@example.com"] },
      bytesSource(enc.encode("Subject: ü\r\n\r\nü\r\n"), { eightBit: true, smtputf8: true }),
    );
    const mail = srv.lines[1].find((l) => l.startsWith("MAIL"))!;
    assert.match(mail, /SIZE=\d+ BODY=8BITMIME SMTPUTF8$/);
  } finally {
    await srv.close();
  }
});
