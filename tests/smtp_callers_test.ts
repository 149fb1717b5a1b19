/**
 * The programs that really call /usr/sbin/sendmail on a board, run for real: Debian's `cron` (a job with and
 * without MAILTO, and a job of another user), `busybox crond` (`-ti`) and `bsd-mailx` (`mail -s`, `-i -t`).
 *
 * /usr/sbin/sendmail is replaced only inside a private mount namespace (`unshare -m`): the wrapper that
 * scripts/link-sendmail.sh writes is bind-mounted over it, and so are cron's folders (/etc/cron.d, /etc/crontab,
 * the crontabs spool, /run for the pid file). The host's sendmail (exim4 here) is never touched. The board's
 * daemon runs from its own unit as the `outpost` user and delivers to aiosmtpd. cron and crond run jobs on
 * minute boundaries, so the test waits for at most one minute boundary (bounded at 150 s); then the messages are
 * checked: aliases applied, envelope sender [smtp] from, cron's own `From: root (Cron Daemon)` kept as written.
 */

import assert from "node:assert/strict";
import { findPeer, IN_CI, requirePeer, SYSTEM_PYTHON } from "./helpers/peers.ts";
import { startSink } from "./helpers/smtp_sink.ts";
import { fieldDeno } from "./helpers/field_deno.ts";
import { isRoot } from "./helpers/field_user.ts";
import { FieldDaemon, layOutBoard } from "./helpers/field_daemon.ts";
import { parseSendmailArgs } from "../src/cli/sendmail_command.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});
const dec = new TextDecoder();
const LINK = new URL("../scripts/link-sendmail.sh", import.meta.url).pathname;

function hasCrond(): boolean {
  const bb = findPeer("busybox");
  if (!bb) return false;
  const out = new Deno.Command(bb, { args: ["crond", "--help"], stdout: "piped", stderr: "piped" })
    .outputSync();
  return !/applet not found/.test(dec.decode(out.stderr) + dec.decode(out.stdout));
}

const peersMissing = !isRoot() || ["cron", "busybox", "bsd-mailx", "unshare", "mount", SYSTEM_PYTHON].some(
  (p) => findPeer(p) === null,
) || !hasCrond();

Deno.test("sendmail flags: grouped letters, --, -oi, -B8BITMIME, -oem, -F, -f, -t with and without recipients", () => {
  const p = (a: string[]) => parseSendmailArgs(a);
  assert.deepEqual(p(["-ti"]), { extract: true, ignoreDots: true, now: false, recipients: [] });
  assert.deepEqual(p(["-it"]), { extract: true, ignoreDots: true, now: false, recipients: [] });
  assert.deepEqual(p(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]), {
    extract: false,
    ignoreDots: true,
    now: false,
    fullName: "CronDaemon",
    recipients: ["root"],
  });
  assert.deepEqual(p(["-t", "-oi", "-f", "pi@x.org", "-F", "Pi Box", "a@x.org"]), {
    extract: true,
    ignoreDots: true,
    now: false,
    from: "pi@x.org",
    fullName: "Pi Box",
    recipients: ["a@x.org"],
  });
  assert.deepEqual(p(["-tifpi@x.org", "--", "-odd@x.org"]), {
    extract: true,
    ignoreDots: true,
    now: false,
    from: "pi@x.org",
    recipients: ["-odd@x.org"],
  });
  assert.deepEqual(p(["-oi", "-odi", "-oQ/var/spool", "-em", "-v", "-N", "never", "-B", "7BIT", "b@x.org"]), {
    extract: false,
    ignoreDots: true,
    now: false,
    recipients: ["b@x.org"],
  });
  assert.equal(typeof p(["-Q"]), "string");
  assert.equal(typeof p(["-tQ"]), "string");
  assert.equal(typeof p(["-bs"]), "string");
  assert.equal(typeof p(["-f"]), "string");
  assert.equal(typeof p(["--bogus"]), "string");
});

Deno.test({
  name:
    "real callers: Debian cron (MAILTO set, unset, another user's job), busybox crond -ti and bsd-mailx " +
    "submit through the linked sendmail; aliases, envelope and From header as expected",
  ignore: !IN_CI && peersMissing,
  async fn() {
    for (const p of ["cron", "busybox", "bsd-mailx", "unshare", "mount"]) requirePeer(p);
    if (!isRoot()) {
      throw new Error("This test bind-mounts over /usr/sbin/sendmail in a private namespace: run as root.");
    }
    if (!hasCrond()) throw new Error("busybox has no crond applet: install busybox-static (.ci/run does).");
    const fd = await fieldDeno();
    const dir = await Deno.makeTempDir({ prefix: "outpost-field-" });
    const sink = await startSink({ mode: "plain", dir });
    let daemon: FieldDaemon | null = null;
    try {
      // The board's daemon, started by its own unit (prepare as root, serve as outpost under derived flags).
      const board = await layOutBoard(
        dir,
        `[device]\nname = "test-board"\nstate_dir = "{{dir}}/var/lib/outpost"\n\n[ftp]\nenabled = false\n\n` +
          `[smtp]\nhost = "127.0.0.1"\nport = ${sink.port}\nsecurity = "none"\nfrom = "board@example.com"\n` +
          `aliases = { root = "root-alias@example.com", default = "default-alias@example.com" }\n\n` +
          `[outbox]\nretry_min = "1m"\n`,
      );
      const cfg = board.configPath;
      daemon = await FieldDaemon.start(board);
      assert.equal(daemon.failedPre, null, `ExecStartPre failed: ${daemon.failedPre?.stderr}`);
      await daemon.waitReady();
      // The wrapper exactly as scripts/link-sendmail.sh writes it (into the temp dir, not /usr).
      const wrapper = `${dir}/outpost-sendmail`;
      const link = await new Deno.Command("sh", {
        args: [LINK, "--do"],
        env: {
          WRAPPER: wrapper,
          TARGET: `${dir}/sendmail-link`,
          OUTPOST: `env DENO_DIR=${fd.denoDir} HOME=/nonexistent ${fd.deno} run -A ${fd.main}`,
          OUTPOST_CONFIG: cfg,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(link.success, dec.decode(link.stderr));
      const c = `${dir}/cronbox`; // cron's folders, bind-mounted over the real ones in the namespace
      for (const d of ["cron.d", "crontabs", "run", "bb"]) await Deno.mkdir(`${c}/${d}`, { recursive: true });
      await Deno.writeTextFile(`${c}/crontab`, "");
      await Deno.writeTextFile(
        `${c}/cron.d/withmailto`,
        'MAILTO=owner@example.com\n* * * * * root echo "with mailto"\n',
      );
      await Deno.writeTextFile(`${c}/cron.d/nomailto`, '* * * * * root echo "without mailto"\n');
      await Deno.writeTextFile(`${c}/cron.d/otheruser`, '* * * * * nobody echo "job of nobody"\n');
      for await (const e of Deno.readDir(`${c}/cron.d`)) await Deno.chmod(`${c}/cron.d/${e.name}`, 0o644);
      await Deno.writeTextFile(`${c}/bb/root`, 'MAILTO=root\n* * * * * echo "busybox job"\n');
      const script = `
set -e
mount --bind ${wrapper} /usr/sbin/sendmail
mount --bind ${c}/cron.d /etc/cron.d
mount --bind ${c}/crontab /etc/crontab
mount --bind ${c}/crontabs /var/spool/cron/crontabs
mount --bind ${c}/run /run
printf 'Temperatur im K\\303\\274hlschrank: 3 \\302\\260C\\n' | mail -s "mailx subject" root
cron -f > ${c}/cron.log 2>&1 &
c=$!
busybox crond -f -l 8 -L ${c}/crond.log -c ${c}/bb &
b=$!
# Bounded: at most one minute boundary (plus the time the submissions take), then stop both by PID.
i=0
while [ $i -lt 75 ] && [ "$(ls ${sink.outDir} | grep -c 'json$')" -lt 5 ]; do sleep 2; i=$((i+1)); done
kill $c $b
wait $c $b 2>/dev/null || true
`;
      const r = await new Deno.Command("unshare", {
        args: ["-m", "--propagation", "private", "sh", "-c", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(r.code, 0, dec.decode(r.stderr));
      const got = await sink.waitFor(5).catch(async (e) => {
        throw new Error(
          `${e.message}\ncron: ${await Deno.readTextFile(`${c}/cron.log`).catch(() => "")}\n` +
            `daemon: ${daemon?.output}`,
        );
      });
      const find = (subject: RegExp) => {
        const m = got.find((g) => subject.test(g.subject ?? ""));
        assert.ok(m, `no message with subject ${subject}: ${got.map((g) => g.subject).join(" | ")}`);
        return m;
      };
      for (const m of got) assert.equal(m.from, "board@example.com", "envelope sender is [smtp] from");
      const withMailto = find(/with mailto/);
      assert.deepEqual(withMailto.to, ["owner@example.com"]);
      assert.match(dec.decode(withMailto.raw), /^From: root \(Cron Daemon\)\r$/m);
      const noMailto = find(/without mailto/);
      assert.deepEqual(noMailto.to, ["root-alias@example.com"], "cron's recipient root goes to aliases.root");
      assert.match(dec.decode(noMailto.raw), /^To: root\r$/m, "the To header is kept as cron wrote it");
      const nobody = find(/job of nobody/);
      assert.deepEqual(nobody.to, ["default-alias@example.com"], "nobody has no alias: aliases.default");
      const bb = find(/cron: echo "busybox job"/);
      assert.deepEqual(bb.to, ["root-alias@example.com"]);
      assert.match(bb.from_header ?? "", /board@example\.com/, "a missing From is added from [smtp] from");
      const mailx = find(/mailx subject/);
      assert.deepEqual(mailx.to, ["root-alias@example.com"]);
      assert.equal(mailx.text?.trim(), "Temperatur im Kühlschrank: 3 °C");
      assert.match(
        daemon.output,
        /enqueued .*uid=65534.*source=maildrop/,
        "nobody's cron job went through too",
      );
      assert.doesNotMatch(daemon.output, /NotCapable|Requires (read|write|net|env|run|sys) access/);
    } finally {
      await daemon?.stop();
      await sink.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
