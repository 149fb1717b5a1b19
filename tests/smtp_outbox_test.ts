/**
 * The durable outbox and its delivery worker: retries with backoff, permanent failures, partial refusals, the size
 * bound, crash leftovers, and kill -9 of a worker process before and after the final "." of DATA.
 */

import assert from "node:assert/strict";
import { type ScriptHooks, startScriptServer } from "./helpers/smtp_script_server.ts";
import { clientOptions } from "./helpers/smtp_test_util.ts";
import { Outbox, type OutboxOptions } from "../src/smtp/outbox.ts";
import { DeliveryWorker } from "../src/smtp/delivery_worker.ts";
import { setLogSink } from "../src/log/logger.ts";

setLogSink(() => {});

function opts(dir: string, over: Partial<OutboxOptions> = {}): OutboxOptions {
  return {
    dir,
    maxAgeMs: 3_600_000,
    maxBytes: 1 << 26,
    maxMessageBytes: 1 << 26,
    retryMinMs: 60_000,
    retryMaxMs: 120_000,
    defaults: { from: "board@example.com", domain: "test-board" },
    ...over,
  };
}

async function withServer(
  hooks: ScriptHooks,
  fn: (port: number, srv: ReturnType<typeof startScriptServer>, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir();
  const srv = startScriptServer(hooks);
  try {
    await fn(srv.port, srv, dir);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("outbox: enqueue is durable and sends nothing; the worker delivers and removes it", async () => {
  await withServer({}, async (port, srv, dir) => {
    const outbox = await Outbox.open(opts(dir));
    const id = await outbox.enqueue({ to: ["me@example.com"], subject: "queued", text: "hi" }, { tag: "t" });
    assert.equal(srv.connections, 0);
    assert.deepEqual(await names(`${dir}/queue`), [`${id}.msg`]);
    assert.deepEqual(await names(`${dir}/tmp`), []);
    assert.equal(await outbox.pendingCount("t"), 1);
    const [e] = await outbox.list();
    assert.equal(e.meta.subject, "queued");
    const worker = new DeliveryWorker(outbox, clientOptions(port));
    await worker.runOnce();
    assert.equal(srv.messages.length, 1);
    assert.match(srv.messages[0], new RegExp(`Message-ID: ${e.meta.messageId.replace(/[.]/g, "\\.")}`));
    assert.deepEqual(await names(`${dir}/queue`), []);
    assert.equal(worker.status().failing, false);
  });
});

Deno.test("outbox: 421 then success: deferred with backoff, kept across a reopen, delivered after retry", async () => {
  await withServer(
    { greeting: (n) => n === 1 ? "421 4.3.2 try later" : "220 ok" },
    async (port, srv, dir) => {
      let outbox = await Outbox.open(opts(dir));
      await outbox.enqueue({ to: ["me@example.com"], subject: "s", text: "t" }, { critical: true });
      const worker = new DeliveryWorker(outbox, clientOptions(port), { random: () => 0.5 });
      await worker.runOnce();
      assert.equal(srv.messages.length, 0);
      const st = worker.status();
      assert.equal(st.failing, true);
      assert.match(st.lastError ?? "", /421/);
      const [e] = await outbox.list("queued");
      assert.ok(e.notBefore.getTime() > Date.now() + 30_000, "deferred by about retry_min");
      outbox = await Outbox.open(opts(dir)); // a restart keeps the message and its backoff
      const w2 = new DeliveryWorker(outbox, clientOptions(port));
      await w2.runOnce();
      assert.equal(srv.connections, 1, "not due yet: no new attempt");
      assert.equal(await outbox.retry(), 1);
      await w2.runOnce();
      assert.equal(srv.messages.length, 1);
      assert.equal(await outbox.pendingCount(), 0);
    },
  );
});

Deno.test("outbox: 5xx moves to failed/ with the reason; retry puts it back; purge deletes", async () => {
  await withServer(
    { afterData: (_m, n) => n === 1 ? "554 5.7.1 rejected as spam" : "250 ok" },
    async (port, srv, dir) => {
      const outbox = await Outbox.open(opts(dir));
      const failed: string[] = [];
      const worker = new DeliveryWorker(outbox, clientOptions(port), { onFailed: (_e, r) => failed.push(r) });
      const id = await outbox.enqueue({ to: ["me@example.com"], subject: "s", text: "t" });
      await worker.runOnce();
      assert.equal(failed.length, 1);
      assert.match(failed[0], /554 5\.7\.1 rejected as spam/);
      const [e] = await outbox.list();
      assert.equal(e.state, "failed");
      assert.match(e.reason ?? "", /554/);
      assert.equal(await outbox.retry(id), 1);
      await worker.runOnce();
      assert.equal(srv.messages.length, 1);
      await outbox.enqueue({ to: ["x@example.com"], subject: "s", text: "t" });
      assert.equal(await outbox.purge(), 1);
      assert.deepEqual(await outbox.list(), []);
    },
  );
});

Deno.test("outbox: partial refusal delivers to the rest, requeues the 4xx recipient, fails the 5xx one", async () => {
  await withServer({
    rcpt: (a, n) =>
      n === 1 && a.startsWith("busy")
        ? "450 4.2.1 mailbox busy"
        : a.startsWith("gone")
        ? "550 5.1.1 gone"
        : "250 ok",
  }, async (port, srv, dir) => {
    const outbox = await Outbox.open(opts(dir));
    const worker = new DeliveryWorker(outbox, clientOptions(port));
    await outbox.enqueue({
      to: ["ok@example.com", "busy@example.com", "gone@example.com"],
      subject: "s",
      text: "t",
    });
    await worker.runOnce();
    assert.equal(srv.messages.length, 1);
    const list = await outbox.list();
    const queued = list.filter((e) => e.state === "queued");
    const failed = list.filter((e) => e.state === "failed");
    assert.deepEqual(queued.map((e) => e.meta.to), [["busy@example.com"]]);
    assert.deepEqual(failed.map((e) => e.meta.to), [["gone@example.com"]]);
    assert.equal(queued[0].meta.messageId, failed[0].meta.messageId);
    await outbox.retry(queued[0].id);
    await worker.runOnce();
    assert.equal(srv.messages.length, 2);
    assert.equal(await outbox.pendingCount(), 0);
  });
});

Deno.test("outbox: a message past max_age that fails again goes to failed/", async () => {
  await withServer({ greeting: () => "421 4.3.2 down" }, async (port, _srv, dir) => {
    const outbox = await Outbox.open(opts(dir, { maxAgeMs: 0 }));
    await outbox.enqueue({ to: ["me@example.com"], subject: "s", text: "t" });
    await new Promise((r) => setTimeout(r, 5));
    await new DeliveryWorker(outbox, clientOptions(port)).runOnce();
    const [e] = await outbox.list();
    assert.equal(e.state, "failed");
    assert.match(e.reason ?? "", /Gave up after .*421/);
  });
});

Deno.test("outbox: the size bound drops the oldest non-critical message first, never a critical one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const outbox = await Outbox.open(opts(dir, { maxBytes: 3000 }));
    const big = "x".repeat(1000);
    const a = await outbox.enqueue({ to: ["a@example.com"], subject: "old critical", text: big }, {
      critical: true,
    });
    const b = await outbox.enqueue({ to: ["b@example.com"], subject: "old", text: big });
    const c = await outbox.enqueue({ to: ["c@example.com"], subject: "newer", text: big });
    const d = await outbox.enqueue({ to: ["d@example.com"], subject: "alert", text: big }, {
      critical: true,
    });
    const ids = (await outbox.list()).map((e) => e.id);
    assert.ok(ids.includes(a) && ids.includes(d), "critical messages kept");
    assert.ok(!ids.includes(b), "oldest non-critical dropped");
    assert.ok(ids.includes(c) || ids.length === 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outbox: open() removes old unlocked temp files and stale markers, keeps fresh and in-doubt ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let outbox = await Outbox.open(opts(dir));
    const id = await outbox.enqueue({ to: ["a@example.com"], subject: "s", text: "t" });
    await Deno.writeTextFile(`${dir}/tmp/0000000aa-deadbeef.tmp`, "partial");
    const old = new Date(Date.now() - 2 * 3_600_000);
    await Deno.utime(`${dir}/tmp/0000000aa-deadbeef.tmp`, old, old);
    await Deno.writeTextFile(
      `${dir}/tmp/0000000cc-deadbeef.tmp`,
      "another process is writing this right now",
    );
    await Deno.writeTextFile(`${dir}/queue/0000000bb-deadbeef.sending`, "stale");
    await outbox.markSending(id);
    outbox = await Outbox.open(opts(dir));
    assert.deepEqual(await names(`${dir}/tmp`), ["0000000cc-deadbeef.tmp"]);
    assert.deepEqual(await names(`${dir}/queue`), [`${id}.msg`, `${id}.sending`]);
    const [e] = await outbox.list();
    assert.equal(e.inDoubt, true);
    await outbox.delivered(id);
    assert.deepEqual(await names(`${dir}/queue`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resolves `p`, or fails the test when `child` exits first or `ms` pass: no wait in these tests is unbounded. */
async function within<T>(p: Promise<T>, what: string, child?: Deno.ChildProcess, ms = 120_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Test gave up: ${what} did not happen within ${ms / 1000} s.`)),
      ms,
    );
  });
  const exited = child
    ? child.status.then((st) => Promise.reject(new Error(`Worker exited (code ${st.code}) before ${what}.`)))
    : new Promise<never>(() => {});
  try {
    return await Promise.race([p, limit, exited]);
  } finally {
    clearTimeout(timer);
  }
}

function spawnWorker(dir: string, port: number): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./helpers/smtp_worker_child.ts", import.meta.url).pathname,
      dir,
      String(port),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

function messageIdOf(msg: string): string {
  return /^Message-ID: (.*)$/m.exec(msg)?.[1] ?? "";
}

Deno.test("outbox: kill -9 of the worker after the marker fsync, before the 250: resent once, same Message-ID", async () => {
  const received: string[] = [];
  let gotDot: () => void = () => {};
  const dotSeen = new Promise<void>((r) => gotDot = r);
  let release: () => void = () => {};
  const stall = new Promise<void>((r) => release = r);
  await withServer({
    afterData: async (msg, n) => {
      received.push(msg);
      if (n === 1) {
        gotDot();
        await stall; // never answer: the worker is killed while waiting for the 250
        return null;
      }
      return "250 2.0.0 ok";
    },
  }, async (port, srv, dir) => {
    const outbox = await Outbox.open(opts(dir));
    const id = await outbox.enqueue({ to: ["me@example.com"], subject: "kill -9", text: "exactly once?" });
    const first = spawnWorker(dir, port);
    await within(dotSeen, "the final dot", first);
    assert.ok((await names(`${dir}/queue`)).includes(`${id}.sending`), "marker fsynced before the final dot");
    first.kill("SIGKILL");
    await first.status;
    release();
    const second = spawnWorker(dir, port);
    const st = await within(second.status, "the second worker's exit");
    assert.equal(st.code, 0);
    assert.equal(received.length, 2, "the server saw the message twice: at most twice");
    assert.equal(srv.messages.length, 1, "acknowledged once");
    assert.equal(messageIdOf(received[0]), messageIdOf(received[1]));
    assert.ok(messageIdOf(received[0]).length > 3);
    assert.deepEqual(await names(`${dir}/queue`), []);
  });
});

Deno.test("outbox: kill -9 of the worker in the middle of the body: delivered exactly once after restart", async () => {
  let midBody: () => void = () => {};
  const inBody = new Promise<void>((r) => midBody = r);
  let release: () => void = () => {};
  const stall = new Promise<void>((r) => release = r);
  await withServer({
    extensions: () => ["PIPELINING", "SIZE 104857600"],
    bodyLine: async (_l, n) => {
      if (n === 1) {
        midBody();
        await stall; // stop reading: the client blocks with most of the body unsent
        return "drop";
      }
      return undefined;
    },
  }, async (port, srv, dir) => {
    const file = `${dir}/big.bin`;
    const data = new Uint8Array(24 << 20);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    await Deno.writeFile(file, data);
    const outbox = await Outbox.open(opts(dir));
    const id = await outbox.enqueue({
      to: ["me@example.com"],
      subject: "big",
      text: "see attachment",
      attachments: [{ filename: "big.bin", path: file }],
    });
    const first = spawnWorker(dir, port);
    await within(inBody, "the first body line", first);
    assert.ok(!(await names(`${dir}/queue`)).includes(`${id}.sending`), "no marker before the body is sent");
    first.kill("SIGKILL");
    await first.status;
    release();
    const second = spawnWorker(dir, port);
    assert.equal((await within(second.status, "the second worker's exit")).code, 0);
    assert.equal(srv.messages.length, 1, "exactly once");
    assert.deepEqual(await names(`${dir}/queue`), []);
  });
});
