// `outpost outbox` messages a person can act on (issue 13, item 4): a header, "empty", attempts and the last
// error; purge without an id asks for --all; retry or purge of an unknown id exits 64; quick-start state works.
import assert from "node:assert/strict";
import { Outbox } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { setLogSink } from "../src/log/logger.ts";
import { startScriptServer } from "./helpers/smtp_script_server.ts";
import { clientOptions } from "./helpers/smtp_test_util.ts";

setLogSink(() => {});
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function outpost(args: string[], cwd?: string): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: "null",
    cwd,
    env: { NO_COLOR: "1", OUTPOST_LOG: "off" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("outbox cli: empty, header, attempts and last error; purge asks for --all; unknown ids exit 64", async () => {
  const dir = await Deno.makeTempDir();
  const srv = startScriptServer({ mail: () => "451 4.3.0 mailbox busy, try later" });
  try {
    const file = `${dir}/outpost.toml`;
    await Deno.writeTextFile(
      file,
      `[device]\nstate_dir = "state"\n[outbox]\nretry_min = "1s"\nretry_max = "1s"\n`,
    );
    const empty = await outpost(["outbox", "list", "-C", file]);
    assert.equal(empty.code, 0, empty.err);
    assert.equal(empty.out.trim(), `The outbox is empty (${dir}/state/outbox).`);

    const outbox = await Outbox.open({
      dir: `${dir}/state/outbox`,
      maxAgeMs: 86_400_000,
      maxBytes: 1 << 20,
      maxMessageBytes: 1 << 20,
      retryMinMs: 0,
      retryMaxMs: 0,
      defaults: { from: "pi@example.com", domain: "pi" },
    });
    const id = await outbox.enqueue({ to: ["you@example.com"], subject: "freezer warm", text: "hi" });
    const worker = new DeliveryWorker(outbox, clientOptions(srv.port));
    await worker.runOnce();
    await worker.runOnce();

    const list = await outpost(["outbox", "list", "-C", file]);
    assert.equal(list.code, 0, list.err);
    const lines = list.out.trimEnd().split("\n");
    assert.match(lines[0], /^ID\s+STATE\s+SIZE\s+AGE\s+ATTEMPTS\s+NEXT\s+TO\s+SUBJECT$/);
    assert.match(
      lines[1],
      new RegExp(
        `^${id}\\s+queued\\s+\\d+ B\\s+\\d+s\\s+2\\s+(due|in \\d+s)\\s+you@example.com\\s+"freezer warm"$`,
      ),
    );
    assert.match(lines[2], /^\s+last error: .*451 4\.3\.0 mailbox busy, try later/);
    assert.match(lines.at(-1)!, /^1 queued, 0 failed\.$/);
    const json = JSON.parse((await outpost(["outbox", "list", "--json", "-C", file])).out.trim());
    assert.equal(json.attempts, 2);
    assert.match(json.lastError, /451 4\.3\.0/);

    const purgeAll = await outpost(["outbox", "purge", "-C", file]);
    assert.equal(purgeAll.code, 64);
    assert.match(purgeAll.err, /give a message id, or --all to delete every queued and failed message/);
    const retryUnknown = await outpost(["outbox", "retry", "m0000000-00000000", "-C", file]);
    assert.equal(retryUnknown.code, 64);
    assert.match(
      retryUnknown.err,
      /no message m0000000-00000000 in .*state\/outbox; `outpost outbox list` shows the ids/,
    );
    const retryBad = await outpost(["outbox", "retry", "../etc", "-C", file]);
    assert.equal(retryBad.code, 64);
    const purgeUnknown = await outpost(["outbox", "purge", "m0000000-00000000", "-C", file]);
    assert.equal(purgeUnknown.code, 64);

    const retry = await outpost(["outbox", "retry", id, "-C", file]);
    assert.equal(retry.code, 0, retry.err);
    const purge = await outpost(["outbox", "purge", "--all", "-C", file]);
    assert.equal(purge.code, 0, purge.err);
    assert.match(purge.out, /1 message\(s\) deleted/);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outbox cli: without a config, the quick-start state in this folder is used", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/.outpost-state/outbox`, { recursive: true });
    const r = await outpost(["outbox", "list"], dir);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /The outbox is empty \(.*\.outpost-state\/outbox\)\./);
    assert.match(r.err, /no config file: using the quick-start state in .*\.outpost-state/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outbox: a 4xx answer to the final dot is a refusal, not a possible duplicate", async () => {
  const dir = await Deno.makeTempDir();
  const srv = startScriptServer({ afterData: () => "451 4.3.0 try later" });
  try {
    const outbox = await Outbox.open({
      dir,
      maxAgeMs: 86_400_000,
      maxBytes: 1 << 20,
      maxMessageBytes: 1 << 20,
      retryMinMs: 0,
      retryMaxMs: 0,
      defaults: { from: "pi@example.com", domain: "pi" },
    });
    await outbox.enqueue({ to: ["you@example.com"], subject: "s", text: "hi" });
    await new DeliveryWorker(outbox, clientOptions(srv.port)).runOnce();
    const [e] = await outbox.list();
    assert.equal(e.attempts, 1);
    assert.equal(e.inDoubt, false, "the server answered 451: it did not take the message");
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
