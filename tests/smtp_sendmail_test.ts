/**
 * The mail commands as a user runs them: `outpost sendmail` piped a message (queued, then delivered by the worker
 * to aiosmtpd), `outpost send --now` (final reply and exit status), `outpost outbox`, and sysexits codes.
 */

import assert from "node:assert/strict";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { startSink } from "./helpers/smtp_sink.ts";
import { startScriptServer } from "./helpers/smtp_script_server.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { loadMailConfig } from "../src/app/outpost_config.ts";
import { parseSendmailArgs } from "../src/cli/sendmail_command.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const ignore = skipWithout(findPeer(SYSTEM_PYTHON));

async function writeConfig(dir: string, port: number, extra = ""): Promise<string> {
  const path = `${dir}/outpost.toml`;
  await Deno.writeTextFile(
    path,
    `[device]\nname = "test-board"\nstate_dir = "${dir}/state"\n\n[smtp]\nhost = "127.0.0.1"\nport = ${port}\n` +
      `security = "none"\nfrom = "board@example.com"\nreply_timeout = "5s"\n${extra}\n[outbox]\nretry_min = "1m"\n`,
  );
  return path;
}

async function outpost(
  args: string[],
  stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { OUTPOST_LOG: "off" },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin));
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name:
    "sendmail: -t -oi queues the piped message (Date/Message-ID added, Bcc removed); the worker delivers it",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sink = await startSink({ mode: "plain", dir });
    try {
      const cfg = await writeConfig(dir, sink.port);
      const msg =
        "To: Me <me@example.com>\nBcc: hidden@example.com\nSubject: cron: backup done\n\n.dotted\n.\nend\n";
      const r = await outpost(["sendmail", "-t", "-oi", "-C", cfg], msg);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "", "nothing on stdout (cron would mail it)");
      const mail = await loadMailConfig(cfg);
      const outbox = await Outbox.open(mail.outbox);
      assert.equal(await outbox.pickup(), 1);
      const [e] = await outbox.list("queued");
      assert.deepEqual(e.meta.to, ["me@example.com", "hidden@example.com"]);
      assert.equal(e.meta.tag, "sendmail");
      await new DeliveryWorker(outbox, mail.smtp!).runOnce();
      const [m] = await sink.waitFor(1);
      assert.deepEqual(m.to, ["me@example.com", "hidden@example.com"]);
      assert.equal(m.from, "board@example.com");
      assert.equal(m.subject, "cron: backup done");
      assert.equal(m.date, true);
      assert.equal(m.message_id, e.meta.messageId);
      assert.equal(m.bcc_header, false);
      assert.equal(m.bare_lf, false);
      assert.equal(m.text?.replace(/\r\n/g, "\n"), ".dotted\n.\nend\n");
      assert.equal(await outbox.pendingCount(), 0);
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "send --now: prints the final reply and exits 0; attachments stream; sendmail --now 550 exits 69",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sink = await startSink({ mode: "plain", dir });
    const srv = startScriptServer({ rcpt: () => "550 5.1.1 no such user" });
    try {
      const cfg = await writeConfig(dir, sink.port);
      await Deno.writeFile(`${dir}/data.bin`, new Uint8Array([0, 1, 2, 255, 13, 10, 46]));
      const r = await outpost([
        "send",
        "--config",
        cfg,
        "--to",
        "me@example.com",
        "--subject",
        "Test from outpost ✓",
        "--body",
        "It works.",
        "--attach",
        `${dir}/data.bin`,
        "--now",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^250 2\.0\.0 OK/m);
      const [m] = await sink.waitFor(1);
      assert.equal(m.subject, "Test from outpost ✓");
      assert.equal(m.attachments[0].filename, "data.bin");
      assert.equal(m.attachments[0].size, 7);
      const q = await outpost([
        "send",
        "-C",
        cfg,
        "--to",
        "me@example.com",
        "--subject",
        "later",
        "--body",
        "x",
      ]);
      assert.equal(q.code, 0, q.stderr);
      assert.match(q.stdout, /Queued \(<[^>]+>\)/);
      const list = await outpost(["outbox", "list", "--json", "-C", cfg]);
      assert.equal(list.code, 0);
      assert.equal(JSON.parse(list.stdout.trim()).subject, "later");
      assert.equal((await outpost(["outbox", "purge", "--all", "-C", cfg])).code, 0);
      const cfg2 = await writeConfig(`${dir}`, srv.port);
      const bad = await outpost(["sendmail", "--now", "-C", cfg2, "x@example.com"], "Subject: s\n\nbody\n");
      assert.equal(bad.code, 69, bad.stderr);
      assert.match(bad.stderr, /550 5\.1\.1/);
    } finally {
      await srv.close();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("sendmail: usage and config errors map to sysexits 64 and 78", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal((await outpost(["sendmail", "-oi"], "x")).code, 64);
    assert.equal((await outpost(["sendmail", "-bs", "a@example.com"], "x")).code, 64);
    await Deno.writeTextFile(`${dir}/bad.toml`, `[smtp]\nhost = "127.0.0.1"\nsecurity = "bogus"\n`);
    assert.equal((await outpost(["sendmail", "-C", `${dir}/bad.toml`, "a@example.com"], "x")).code, 78);
    const cfg = await writeConfig(dir, 1);
    const noRcpt = await outpost(["sendmail", "-t", "-C", cfg], "Subject: none\n\nx\n");
    assert.equal(noRcpt.code, 65);
    assert.match((await outpost(["sendmail", "--help"])).stdout, /drops it in outpost's maildrop/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sendmail: traditional flags parse", () => {
  assert.deepEqual(
    parseSendmailArgs(["-t", "-oi", "-oem", "-fpi@x.org", "-F", "Pi Box", "-odi", "a@x.org"]),
    {
      extract: true,
      ignoreDots: true,
      now: false,
      from: "pi@x.org",
      fullName: "Pi Box",
      recipients: ["a@x.org"],
    },
  );
  assert.equal(typeof parseSendmailArgs(["-Q"]), "string");
  assert.equal(parseSendmailArgs(["--help"]), "help");
});

Deno.test("sendmail: a local name without an alias is refused (67) naming the key to set; nothing is queued", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1, 'aliases = { root = "owner@example.com" }\n');
    const r = await outpost(["sendmail", "-C", cfg, "pi"], "Subject: x\n\ny\n");
    assert.equal(r.code, 67, r.stderr);
    assert.match(r.stderr, /aliases\.pi = /);
    const t = await outpost(["sendmail", "-t", "-C", cfg], "To: www-data@localhost\nSubject: x\n\ny\n");
    assert.equal(t.code, 67, t.stderr);
    assert.match(t.stderr, /aliases\.www-data/);
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    assert.equal(await outbox.pickup(), 0);
    const bad = `${dir}/bad.toml`;
    await Deno.writeTextFile(
      bad,
      `[smtp]\nhost = "127.0.0.1"\nsecurity = "none"\nfrom = "a@x.org"\naliases = { root = "root" }\n`,
    );
    const b = await outpost(["sendmail", "-C", bad, "a@x.org"], "x");
    assert.equal(b.code, 78);
    assert.match(b.stderr, /aliases\.root.*mail address with a domain/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "outbox: envelope sender and a missing From are resolved from [smtp] when sent, not when queued",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sink = await startSink({ mode: "plain", dir });
    try {
      // Queued while [smtp] was not configured (the daemon's placeholder sender), and by sendmail without From.
      const noSmtp = `${dir}/nosmtp.toml`;
      await Deno.writeTextFile(noSmtp, `[device]\nname = "test-board"\nstate_dir = "${dir}/state"\n`);
      const mail0 = await loadMailConfig(noSmtp);
      const outbox = await Outbox.open({
        ...mail0.outbox,
        defaults: { from: "outpost@test-board.local", domain: "test-board" },
      });
      await outbox.enqueue({ to: ["me@example.com"], subject: "alert while unconfigured", text: "hot" });
      const r = await outpost(
        ["sendmail", "-C", noSmtp, "me@example.com"],
        "Subject: cron before setup\n\nok\n",
      );
      assert.equal(r.code, 0, r.stderr);
      // Then the owner configures [smtp]; the worker sends with that.
      const cfg = await writeConfig(dir, sink.port, 'from_name = "Freezer Pi"\n');
      const mail = await loadMailConfig(cfg);
      await new DeliveryWorker(await Outbox.open(mail.outbox), mail.smtp!).runOnce();
      const got = await sink.waitFor(2);
      for (const m of got) {
        assert.equal(m.from, "board@example.com");
        assert.equal(m.from_header, "Freezer Pi <board@example.com>");
      }
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("send: an attachment or body over max_message_size is 65 (bad message), queued or --now; nothing left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1);
    await Deno.writeTextFile(cfg, (await Deno.readTextFile(cfg)) + 'max_message_size = "8KiB"\n');
    await Deno.writeFile(`${dir}/big.bin`, new Uint8Array(7000)); // fits raw, not as base64
    const base = ["send", "-C", cfg, "--to", "me@example.com", "--subject", "s"];
    for (const extra of [["--attach", `${dir}/big.bin`], ["--attach", `${dir}/big.bin`, "--now"]]) {
      const r = await outpost([...base, "--body", "x", ...extra]);
      assert.equal(r.code, 65, `${extra.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /max_message_size/);
    }
    for (const extra of [[], ["--now"]]) {
      const r = await outpost([...base, ...extra], "y".repeat(20_000));
      assert.equal(r.code, 65, `stdin ${extra.join(" ")}: ${r.stderr}`);
    }
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    assert.equal(await outbox.pickup(), 0);
    for await (const _ of Deno.readDir(outbox.maildropDir)) assert.fail("maildrop not empty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sendmail: a config broken outside the mail tables still queues (warning on stderr); broken [smtp] is 78", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1, 'aliases = { root = "owner@example.com" }\n');
    await Deno.writeTextFile(
      cfg,
      (await Deno.readTextFile(cfg)) + '\n[[rules]]\nsensor = "nope"\nabove = "hot"\n',
    );
    const r = await outpost(["sendmail", "-C", cfg, "root"], "Subject: cron\n\nout\n");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /problem\(s\) outside the mail settings/);
    const text = await Deno.readTextFile(cfg);
    await Deno.writeTextFile(cfg, text.replace('security = "none"', 'security = "bogus"'));
    assert.equal((await outpost(["sendmail", "-C", cfg, "root"], "x")).code, 78);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("send: --to root goes through [smtp] aliases; a local name without one is 67", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1, 'aliases = { root = "owner@example.com" }\n');
    const ok = await outpost(["send", "-C", cfg, "--to", "root", "--subject", "s", "--body", "b"]);
    assert.equal(ok.code, 0, ok.stderr);
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    await outbox.pickup();
    assert.deepEqual((await outbox.list("queued"))[0].meta.to, ["owner@example.com"]);
    const bad = await outpost(["send", "-C", cfg, "--to", "pi", "--subject", "s", "--body", "b"]);
    assert.equal(bad.code, 67);
    assert.match(bad.stderr, /aliases\.pi/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Peak RSS (KiB) of `outpost sendmail` fed `input` on stdin, as the kernel counted it for the child. */
async function sendmailPeakRss(
  args: string[],
  input: string,
): Promise<{ code: number; kib: number; err: string }> {
  const py = "import resource,subprocess,sys\n" +
    "r=subprocess.run(sys.argv[2:],stdin=open(sys.argv[1],'rb'),stdout=subprocess.DEVNULL,stderr=subprocess.PIPE)\n" +
    "sys.stderr.write(r.stderr.decode(errors='replace'))\n" +
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
  const out = await new Deno.Command(SYSTEM_PYTHON, {
    args: ["-c", py, input, Deno.execPath(), "run", "-A", MAIN, "sendmail", ...args],
    env: { OUTPOST_LOG: "off" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const [code, kib] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
  return { code, kib, err: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name:
    "sendmail --now: a 24 MiB message is streamed (peak RSS grows by less than the message) and arrives whole",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const sink = await startSink({ mode: "plain", dir });
    try {
      const cfg = await writeConfig(dir, sink.port);
      await Deno.writeTextFile(cfg, (await Deno.readTextFile(cfg)) + 'max_message_size = "30MiB"\n');
      const line = "0123456789abcdefghijklmnopqrstuvwxyz".repeat(2).padEnd(75, "-") + "\n";
      const small = `${dir}/small.eml`;
      await Deno.writeTextFile(small, `Subject: small\n\n${line.repeat(10)}`);
      const big = `${dir}/big.eml`;
      const f = await Deno.open(big, { write: true, create: true });
      await f.write(new TextEncoder().encode("Subject: big\n\n"));
      const block = new TextEncoder().encode(line.repeat(14_000)); // ~1 MiB
      for (let i = 0; i < 24; i++) await f.write(block);
      await f.write(new TextEncoder().encode("the last line\n"));
      f.close();
      const a = await sendmailPeakRss(["--now", "-C", cfg, "me@example.com"], small);
      assert.equal(a.code, 0, a.err);
      const b = await sendmailPeakRss(["--now", "-C", cfg, "me@example.com"], big);
      assert.equal(b.code, 0, b.err);
      const msgs = await sink.waitFor(2);
      const got = msgs.find((m) => m.subject === "big");
      assert.ok(got && got.raw.length > 24 * 14_000 * 76, `${got?.raw.length}`);
      assert.match(new TextDecoder().decode(got.raw.subarray(got.raw.length - 40)), /the last line\r?\n$/);
      // Held whole (as before), the 24 MiB message cost +79 MiB; streamed, what remains is V8's young generation
      // filling with per-chunk garbage before it collects (+10-15 MiB seen). Less than the message is the claim.
      const grew = (b.kib - a.kib) / 1024;
      assert.ok(
        grew < 24,
        `peak RSS ${(b.kib / 1024).toFixed(1)} MiB for 24 MiB vs ${(a.kib / 1024).toFixed(1)} MiB`,
      );
    } finally {
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
