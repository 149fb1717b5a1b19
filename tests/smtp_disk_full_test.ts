/**
 * A local submitter cannot fill the card: `outpost sendmail` keeps 1.5 x max_message_size free on the file system
 * of the maildrop (as Postfix's smtpd does with its message_size_limit), answers 75 (try again later) with a line
 * that says why, and a disk that fills up mid-message leaves nothing behind. Runs in a small tmpfs inside a
 * private mount namespace (`unshare -rm`); under CI a machine without user namespaces fails it.
 */
import assert from "node:assert/strict";
import { IN_CI } from "./helpers/peers.ts";
import { NAMESPACES, runInTmpfs } from "./helpers/tmpfs_child.ts";

function childScript(): string {
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const maildropUrl = new URL("../src/smtp/maildrop.ts", import.meta.url).href;
  return `
import { submitToMaildrop } from ${JSON.stringify(maildropUrl)};
const mnt = Deno.args[0];
const cfg = mnt + "/outpost.toml";
await Deno.writeTextFile(cfg, '[device]\\nname = "full"\\nstate_dir = "' + mnt + '/state"\\n' +
  '[outbox]\\nmax_message_size = "4MiB"\\n');
const drops = () => [...Deno.readDirSync(mnt + "/state/outbox/maildrop")].map((e) => e.name);
async function sendmail() {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ${JSON.stringify(main)}, "sendmail", "-C", cfg, "me@example.com"],
    stdin: "piped", stdout: "piped", stderr: "piped", env: { OUTPOST_LOG: "off" },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("Subject: cron\\n\\nbackup done\\n"));
  await w.close();
  const out = await child.output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}
const result: Record<string, unknown> = {};
// 16 MiB free, 6 MiB kept free (1.5 x 4 MiB): accepted.
result.roomy = await sendmail();
result.roomyDrops = drops().length;
// 4 MiB free: refused, 75, and nothing added.
const filler = await Deno.open(mnt + "/filler", { write: true, create: true });
const block = new Uint8Array(1 << 20);
for (let i = 0; i < 12; i++) await filler.write(block);
filler.close();
result.tight = await sendmail();
result.tightDrops = drops().length;
// Without the reserve (as a caller that opted out would), the disk fills mid-message: a clear error, no file left.
try {
  await submitToMaildrop({ maildrop: mnt + "/state/outbox/maildrop", maxMessageBytes: 64 << 20, minFreeBytes: 0 },
    { to: ["me@example.com"] }, async (w) => {
      const line = new TextEncoder().encode("x".repeat(76) + "\\n");
      for (let i = 0; i < 100_000; i++) await w.write(line);
    });
  result.midway = "accepted";
} catch (e) {
  result.midway = (e as Error).name + ": " + (e as Error).message;
}
result.midwayDrops = drops().length;
console.log(JSON.stringify(result));
`;
}

Deno.test({
  name:
    "sendmail: a nearly full disk is refused with 75 (1.5 x max_message_size kept free); full midway leaves nothing",
  ignore: !NAMESPACES && !IN_CI,
  fn: async () => {
    const { res } = await runInTmpfs(childScript(), 16);
    assert.deepEqual(res.roomy, { code: 0, stderr: "" });
    assert.equal(res.roomyDrops, 1);
    assert.equal(res.tight.code, 75, res.tight.stderr);
    assert.match(res.tight.stderr, /MiB free.*keeps? 6\.0 MiB free/s);
    assert.equal(res.tightDrops, 1);
    assert.match(res.midway, /MaildropUnavailableError: .*disk is full/);
    assert.equal(res.midwayDrops, 1);
  },
});
