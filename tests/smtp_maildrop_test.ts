/**
 * The maildrop: many local users submitting at once, as different users, while the daemon runs or is stopped.
 *
 * - 30 `outpost sendmail` processes at once all succeed silently and all 30 messages reach the queue (before the
 *   maildrop, `Outbox.open()` emptied `outbox/tmp` under the other writers: 3 queued, 27 exited 74).
 * - Field test: the daemon runs as the `outpost` user with narrowed Deno flags (never -A); root and `nobody`
 *   submit while it is stopped and while it runs; nothing is lost, `nobody` cannot list the maildrop, delete
 *   root's file or read the queue, and aiosmtpd receives every message.
 * - Stale temp files are removed only when old and unlocked; a file being written (locked) stays.
 * - Hostile maildrop entries (symlink, FIFO, hard link, bad envelope) are refused without harm.
 */

import assert from "node:assert/strict";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { startSink } from "./helpers/smtp_sink.ts";
import { asUser, chownTree, fieldUser, SKIP_FIELD } from "./helpers/field_user.ts";
import { fieldDeno } from "./helpers/field_deno.ts";
import { Outbox } from "../src/smtp/outbox.ts";
import { STALE_DROP_MS, submitToMaildrop } from "../src/smtp/maildrop.ts";
import { loadMailConfig } from "../src/app/outpost_config.ts";
import { setLogSink } from "../src/log/logger.ts";
import { FieldDaemon, layOutBoard } from "./helpers/field_daemon.ts";

setLogSink(() => {});
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const dec = new TextDecoder();

async function writeConfig(dir: string, port: number, extra = ""): Promise<string> {
  const path = `${dir}/outpost.toml`;
  await Deno.writeTextFile(
    path,
    `[device]\nname = "test-board"\nstate_dir = "${dir}/state"\n\n[ftp]\nenabled = false\n\n` +
      `[smtp]\nhost = "127.0.0.1"\nport = ${port}\nsecurity = "none"\nfrom = "board@example.com"\n` +
      `reply_timeout = "5s"\naliases = { root = "owner@example.com" }\n${extra}\n` +
      `[outbox]\nretry_min = "1m"\npoll_interval = "1s"\n`,
  );
  return path;
}

async function run(
  argv: string[],
  stdin: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin)).catch(() => {});
  await w.close().catch(() => {});
  const out = await child.output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("maildrop: 30 concurrent sendmail calls all exit 0 silently and all 30 messages are queued", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1);
    const mail = await loadMailConfig(cfg);
    // The daemon opens the outbox while the submitters write: it must not touch their files.
    const opening = Array.from({ length: 5 }, () => Outbox.open(mail.outbox));
    const results = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) =>
        run(
          [Deno.execPath(), "run", "-A", MAIN, "sendmail", "-C", cfg, "-oi", "owner@example.com"],
          `Subject: job ${i}\n\n${"output line\n".repeat(2000)}`,
        )),
    ]);
    await Promise.all(opening);
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "", "sendmail prints nothing on success (cron would mail it)");
      assert.equal(r.stderr, "");
    }
    const outbox = await Outbox.open(mail.outbox);
    assert.equal(await outbox.pickup(), 30);
    const queued = await outbox.list("queued");
    assert.equal(queued.length, 30);
    assert.deepEqual(
      queued.map((e) => e.meta.subject).sort(),
      Array.from({ length: 30 }, (_, i) => `job ${i}`).sort(),
    );
    assert.deepEqual(await names(outbox.maildropDir), []);
    assert.deepEqual(await names(outbox.incomingDir), []);
    assert.deepEqual(await names(outbox.tmpDir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("maildrop: stale temp files are swept only when old and not locked by a writer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1);
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    const old = new Date(Date.now() - STALE_DROP_MS - 60_000);
    const mk = async (path: string, mode: number) => {
      await Deno.writeTextFile(path, "OUTPOST-DROP-1 {}\npartial");
      await Deno.chmod(path, mode);
      await Deno.utime(path, old, old);
    };
    const rnd = (c: string) => `m0000001-${c.repeat(32)}`;
    await mk(`${outbox.maildropDir}/${rnd("a")}`, 0o644); // abandoned: removed
    await mk(`${outbox.maildropDir}/${rnd("b")}`, 0o644); // old but its writer still holds the lock: kept
    await mk(`${outbox.maildropDir}/${rnd("c")}`, 0o644);
    await Deno.utime(`${outbox.maildropDir}/${rnd("c")}`, new Date(), new Date()); // recent: kept
    await mk(`${outbox.tmpDir}/old.tmp`, 0o600); // daemon temp, abandoned: removed at open
    await mk(`${outbox.tmpDir}/busy.tmp`, 0o600);
    // Hold the locks from another process, as a live writer would.
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const a = await Deno.open(${JSON.stringify(`${outbox.maildropDir}/${rnd("b")}`)}, { read: true });
         const b = await Deno.open(${JSON.stringify(`${outbox.tmpDir}/busy.tmp`)}, { read: true });
         await a.lock(true); await b.lock(true); console.log("locked"); await Deno.stdin.read(new Uint8Array(1));`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const reader = holder.stdout.getReader();
    assert.match(dec.decode((await reader.read()).value), /locked/);
    try {
      await Outbox.open(mail.outbox);
      await outbox.pickup();
      assert.deepEqual(await names(outbox.maildropDir), [rnd("b"), rnd("c")]);
      assert.deepEqual(await names(outbox.tmpDir), ["busy.tmp"]);
    } finally {
      reader.releaseLock();
      await holder.stdin.close();
      await holder.stdout.cancel();
      await holder.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("maildrop: symlinks, FIFOs, hard links and bad envelopes are refused; nothing outside is read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1);
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    const secret = `${dir}/secret`;
    await Deno.writeTextFile(
      secret,
      'OUTPOST-DROP-1 {"to":["thief@example.com"]}\nSubject: secret\n\nsecret\n',
    );
    const name = (c: string) => `m0000001-${c.repeat(32)}`;
    await Deno.symlink(secret, `${outbox.maildropDir}/${name("1")}`);
    await Deno.link(secret, `${outbox.maildropDir}/${name("2")}`);
    await Deno.chmod(`${outbox.maildropDir}/${name("2")}`, 0o744);
    await new Deno.Command("mkfifo", { args: [`${outbox.maildropDir}/${name("3")}`] }).output();
    await Deno.writeTextFile(`${outbox.maildropDir}/${name("4")}`, 'OUTPOST-DROP-1 {"to":["a b@x"]}\n\nx\n');
    await Deno.chmod(`${outbox.maildropDir}/${name("4")}`, 0o744);
    await Deno.writeTextFile(`${outbox.maildropDir}/${name("5")}`, "no envelope\n");
    await Deno.chmod(`${outbox.maildropDir}/${name("5")}`, 0o744);
    const old = new Date(Date.now() - STALE_DROP_MS - 60_000);
    for (const n of ["1", "3"]) {
      await new Deno.Command("touch", {
        args: ["-h", "-d", old.toISOString(), `${outbox.maildropDir}/${name(n)}`],
      })
        .output();
    }
    assert.equal(await outbox.pickup(), 0);
    assert.equal((await outbox.list("queued")).length, 0);
    assert.deepEqual(await names(outbox.maildropDir), []);
    assert.deepEqual(await names(outbox.incomingDir), []);
    assert.match(await Deno.readTextFile(secret), /secret/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("maildrop: a message over max_message_size exits 65 and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await writeConfig(dir, 1);
    await Deno.writeTextFile(cfg, (await Deno.readTextFile(cfg)) + 'max_message_size = "64KiB"\n');
    const mail = await loadMailConfig(cfg);
    const outbox = await Outbox.open(mail.outbox);
    const big = `Subject: big\n\n${"x".repeat(1000)}\n`.repeat(200);
    const r = await run([Deno.execPath(), "run", "-A", MAIN, "sendmail", "-C", cfg, "root"], big);
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /larger than max_message_size/);
    assert.deepEqual(await names(outbox.maildropDir), []);
    await assert.rejects(
      submitToMaildrop(
        { maildrop: outbox.maildropDir, maxMessageBytes: 1024 },
        { to: ["a@example.com"] },
        (w) => w.write(new Uint8Array(4096).fill(0x41)),
      ),
      /max_message_size/,
    );
    assert.deepEqual(await names(outbox.maildropDir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "maildrop field test: root and nobody submit while the board's daemon (its unit: prepare as root, serve " +
    "as outpost under the derived flags) is stopped and running; nothing is lost, nobody sees the others' mail",
  ignore: SKIP_FIELD || skipWithout(findPeer(SYSTEM_PYTHON)),
  sanitizeResources: false,
  async fn() {
    const fd = await fieldDeno();
    const nobody = { name: "nobody", uid: 65534, gid: 65534 };
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-" });
    const sink = await startSink({ mode: "plain", dir });
    let daemon: FieldDaemon | null = null;
    try {
      const board = await layOutBoard(
        dir,
        `[device]\nname = "pi-field"\nstate_dir = "{{dir}}/var/lib/outpost"\n\n[ftp]\nenabled = false\n\n` +
          `[smtp]\nhost = "127.0.0.1"\nport = ${sink.port}\nsecurity = "none"\nfrom = "board@example.com"\n` +
          `aliases = { root = "owner@example.com" }\n\n[outbox]\nretry_min = "1m"\npoll_interval = "1s"\n`,
      );
      const user = board.user;
      const cfg = board.configPath;
      const start = async () => {
        const d = await FieldDaemon.start(board);
        const failed = d.failedPre;
        assert.equal(failed, null, `ExecStartPre failed: ${failed?.stderr}${failed?.stdout}`);
        await d.waitReady();
        assert.equal(d.main?.argv.includes("-A") || d.main?.argv.includes("--allow-all"), false);
        return d;
      };
      // First start creates the outbox and maildrop as the outpost user; then stop it.
      daemon = await start();
      await daemon.stop();
      daemon = null;
      const outbox = `${dir}/var/lib/outpost/outbox`;
      const st = await Deno.stat(`${outbox}/maildrop`);
      assert.equal(st.uid, user.uid);
      assert.equal((st.mode ?? 0) & 0o7777, 0o1733);
      assert.equal((await Deno.stat(`${dir}/var/lib/outpost`)).mode! & 0o001, 0o001, "state dir searchable");

      const sendmail = (u: typeof nobody | null, args: string[], msg: string) =>
        run(
          [...(u ? asUser(u) : []), fd.deno, "run", "-A", fd.main, "sendmail", "-C", cfg, ...args],
          msg,
          { DENO_DIR: fd.denoDir, HOME: "/nonexistent" },
        );
      // While the daemon is stopped: root as Debian cron does it, and nobody.
      const cron = await sendmail(
        null,
        ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@board> run-parts /etc/cron.hourly\n\nall fine\n",
      );
      assert.equal(cron.code, 0, cron.stderr);
      assert.equal(cron.stdout, "");
      const other = await sendmail(
        nobody,
        ["-ti"],
        "To: someone@example.com\nSubject: from nobody\n\nhello\n",
      );
      assert.equal(other.code, 0, other.stderr);
      assert.equal(other.stdout, "");
      const dropped = await names(`${outbox}/maildrop`);
      assert.equal(dropped.length, 2, "both wait in the maildrop while the daemon is stopped");
      const rootsFile = [];
      for (const n of dropped) if ((await Deno.stat(`${outbox}/maildrop/${n}`)).uid === 0) rootsFile.push(n);
      assert.equal(rootsFile.length, 1);

      // nobody cannot list the maildrop, remove root's file, or look into the queue.
      const probe = await run(
        [
          ...asUser(nobody),
          fd.deno,
          "eval",
          `
          const r = [];
          try { for await (const _ of Deno.readDir(${
            JSON.stringify(`${outbox}/maildrop`)
          })); r.push("listed"); }
          catch { r.push("nolist"); }
          try { await Deno.remove(${
            JSON.stringify(`${outbox}/maildrop/${rootsFile[0]}`)
          }); r.push("removed"); }
          catch { r.push("noremove"); }
          try { for await (const _ of Deno.readDir(${JSON.stringify(`${outbox}/queue`)})); r.push("queue"); }
          catch { r.push("noqueue"); }
          console.log(r.join(","));`,
        ],
        "",
        { DENO_DIR: fd.denoDir, HOME: "/nonexistent" },
      );
      assert.equal(probe.stdout.trim(), "nolist,noremove,noqueue", probe.stderr);

      daemon = await start();
      // And one more while it runs.
      const live = await sendmail(nobody, ["--", "owner@example.com"], "Subject: while running\n\nlive\n");
      assert.equal(live.code, 0, live.stderr);
      const got = await sink.waitFor(3, 30_000);
      const bySubject = new Map(got.map((m) => [m.subject, m]));
      const c = bySubject.get("Cron <root@board> run-parts /etc/cron.hourly")!;
      assert.deepEqual(c.to, ["owner@example.com"], "root resolved through [smtp] aliases");
      assert.equal(c.from, "board@example.com", "envelope sender is [smtp] from");
      assert.match(
        dec.decode(c.raw),
        /^From: root \(Cron Daemon\)\r$/m,
        "the From header is kept as cron wrote it",
      );
      assert.equal(c.text?.replace(/\r\n/g, "\n"), "all fine\n");
      assert.deepEqual(bySubject.get("from nobody")!.to, ["someone@example.com"]);
      assert.match(bySubject.get("while running")!.from_header ?? "", /board@example\.com/);
      assert.match(daemon.output, /enqueued .*uid=65534.*source=maildrop/);
      assert.doesNotMatch(daemon.output, /NotCapable|Requires (read|write|net|env|run|sys) access/);
      await daemon.stop();
      daemon = null;
      assert.deepEqual(await names(`${outbox}/maildrop`), []);
      assert.deepEqual(await names(`${outbox}/queue`), []);
    } finally {
      await daemon?.stop();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "maildrop: files root writes into the daemon's outbox (outbox retry/purge/list as root) belong to outpost",
  ignore: SKIP_FIELD,
  async fn() {
    const user = await fieldUser();
    const dir = await Deno.makeTempDir();
    try {
      const cfg = await writeConfig(dir, 1);
      const mail = await loadMailConfig(cfg);
      await Deno.mkdir(mail.outbox.dir, { recursive: true });
      await chownTree(mail.outbox.dir, user);
      const outbox = await Outbox.open(mail.outbox);
      const id = await outbox.enqueue({ to: ["a@example.com"], subject: "s", text: "t" });
      await outbox.fail(id, "test");
      assert.equal(await outbox.retry(), 1);
      await submitToMaildrop({ maildrop: outbox.maildropDir, maxMessageBytes: 1 << 20 }, {
        to: ["b@example.com"],
      }, (w) => w.write(new TextEncoder().encode("Subject: x\n\ny\n")));
      assert.equal(await outbox.pickup(), 1);
      for (
        const d of [outbox.queueDir, outbox.failedDir, outbox.incomingDir, outbox.tmpDir, outbox.maildropDir]
      ) {
        assert.equal((await Deno.stat(d)).uid, user.uid, d);
        for (const n of await names(d)) {
          assert.equal((await Deno.stat(`${d}/${n}`)).uid, user.uid, `${d}/${n}`);
        }
      }
      assert.equal((await Deno.stat(`${mail.outbox.dir}/.pickup.lock`)).uid, user.uid);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
