/**
 * The SMTP client against a real server: Debian's aiosmtpd over loopback with required STARTTLS, implicit TLS,
 * AUTH PLAIN/LOGIN and a plain loopback relay. The server's own MIME parser checks what we built.
 */

import assert from "node:assert/strict";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { makeTestCerts, startSink } from "./helpers/smtp_sink.ts";
import { bytesSource, clientOptions, renderToBytes, sha256Hex } from "./helpers/smtp_test_util.ts";
import { deliver, SmtpError } from "../src/smtp/smtp_client.ts";
import { prepareMessage } from "../src/smtp/mail_message.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});
const ignore = skipWithout(findPeer(SYSTEM_PYTHON), findPeer("openssl"));
const defaults = { from: "board@example.com", fromName: "Test Board", domain: "test-board" };

Deno.test({
  name: "smtp client: STARTTLS + AUTH PLAIN to aiosmtpd, UTF-8 subject, HTML, binary attachment by SHA-256",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const certs = await makeTestCerts(dir);
    const sink = await startSink({ mode: "starttls", dir, certs, auth: { user: "pi", password: "s3cret" } });
    try {
      const bin = new Uint8Array(300_000);
      for (let i = 0; i < bin.length; i += 65536) crypto.getRandomValues(bin.subarray(i, i + 65536));
      await Deno.writeFile(`${dir}/capture.bin`, bin);
      const subject =
        "[pi-freezer] ALERT Gefrierschrank 3.2 °C > -10 °C — Temperaturüberschreitung im Keller 🧊";
      const p = prepareMessage({
        to: ["Zoë Müller <zoe@example.com>", "ops@example.com"],
        subject,
        text: ".leading dot\nline two\n" + "x".repeat(5000) + "\nÜmlaut end",
        html: "<p>Température <b>3.2 °C</b></p>",
        attachments: [{ filename: "capture.bin", path: `${dir}/capture.bin` }, {
          filename: "données.csv",
          content: new TextEncoder().encode("a,b\n1,2\n"),
        }],
      }, defaults);
      const bytes = await renderToBytes(p);
      const r = await deliver(
        clientOptions(sink.port, {
          security: "starttls",
          caFile: certs.caFile,
          username: "pi",
          password: "s3cret",
          authMethod: "plain",
        }),
        p.envelope,
        bytesSource(bytes),
      );
      assert.equal(r.reply.code, 250);
      assert.deepEqual(r.accepted, ["zoe@example.com", "ops@example.com"]);
      const [m] = await sink.waitFor(1);
      assert.equal(m.tls, true);
      assert.equal(m.auth, true);
      assert.equal(m.subject, subject);
      assert.equal(m.message_id, p.messageId);
      assert.match(m.to_header ?? "", /Zoë Müller <zoe@example.com>/);
      assert.equal(
        m.text?.replace(/\r\n/g, "\n").replace(/\n$/, ""),
        ".leading dot\nline two\n" + "x".repeat(5000) + "\nÜmlaut end",
      );
      assert.match(m.html ?? "", /Température/);
      assert.equal(m.bare_lf, false);
      assert.ok(m.max_line <= 78, `longest line ${m.max_line}`);
      assert.deepEqual(m.defects, []);
      assert.equal(m.attachments.length, 2);
      assert.equal(m.attachments[0].filename, "capture.bin");
      assert.equal(m.attachments[0].sha256, await sha256Hex(bin));
      assert.equal(m.attachments[1].filename, "données.csv");
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "smtp client: implicit TLS + AUTH LOGIN to aiosmtpd",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const certs = await makeTestCerts(dir);
    const sink = await startSink({ mode: "tls", dir, certs, auth: { user: "pi", password: "pw" } });
    try {
      const p = prepareMessage({ to: ["me@example.com"], subject: "implicit", text: "hello" }, defaults);
      const r = await deliver(
        clientOptions(sink.port, {
          security: "tls",
          caFile: certs.caFile,
          tlsServername: "localhost",
          username: "pi",
          password: "pw",
          authMethod: "login",
        }),
        p.envelope,
        bytesSource(await renderToBytes(p)),
      );
      assert.equal(r.reply.code, 250);
      const [m] = await sink.waitFor(1);
      assert.equal(m.auth, true); // aiosmtpd does not flag implicit TLS in its session; the handshake proved it
      assert.equal(m.subject, "implicit");
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "smtp client: wrong password is a permanent AUTH error; CA mismatch fails at TLS and sends nothing",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const certs = await makeTestCerts(dir);
    const sink = await startSink({ mode: "starttls", dir, certs, auth: { user: "pi", password: "right" } });
    try {
      const p = prepareMessage({ to: ["me@example.com"], subject: "x", text: "x" }, defaults);
      const src = bytesSource(await renderToBytes(p));
      const base = { security: "starttls" as const, caFile: certs.caFile, username: "pi" };
      await assert.rejects(
        deliver(clientOptions(sink.port, { ...base, password: "wrong" }), p.envelope, src),
        (e: unknown) => e instanceof SmtpError && e.stage === "AUTH" && e.permanent && /535/.test(e.message),
      );
      // Trust only the unrelated self-signed certificate: the server's CA-signed one must be refused.
      await assert.rejects(
        deliver(
          clientOptions(sink.port, { ...base, password: "right", caFile: certs.selfCertFile }),
          p.envelope,
          src,
        ),
        (e: unknown) => e instanceof SmtpError && e.stage === "TLS" && !e.permanent,
      );
      // password_command supplies the secret.
      const r = await deliver(
        clientOptions(sink.port, { ...base, passwordCommand: ["/bin/sh", "-c", "echo right"] }),
        p.envelope,
        src,
      );
      assert.equal(r.reply.code, 250);
      assert.equal((await sink.waitFor(1)).length, 1);
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "smtp client: plain relay on loopback, many recipients; security none refused to a remote host",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sink = await startSink({ mode: "plain", dir });
    try {
      const to = Array.from({ length: 5 }, (_, i) => `r${i}@example.com`);
      const p = prepareMessage({ to, subject: "relay", text: "hi" }, defaults);
      const r = await deliver(clientOptions(sink.port), p.envelope, bytesSource(await renderToBytes(p)));
      assert.deepEqual(r.accepted, to);
      const [m] = await sink.waitFor(1);
      assert.deepEqual(m.to, to);
      assert.ok(m.mail_options.some((o) => o.startsWith("SIZE=")));
      await assert.rejects(
        deliver(clientOptions(25, { host: "192.0.2.1" }), p.envelope, bytesSource(new Uint8Array(1))),
        (e: unknown) => e instanceof SmtpError && e.stage === "connect" && e.permanent,
      );
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
