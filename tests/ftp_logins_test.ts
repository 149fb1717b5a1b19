/**
 * Password checks that cannot be turned against the device: the server-wide gate on concurrent PBKDF2 work, the
 * ban checked at every USER and PASS (also in sessions opened before it), and bans that outlive table pressure.
 */
import assert from "node:assert/strict";
import { BanTable, WorkGate } from "../src/ftp/ftp_server.ts";
import { FtpControl, PASS, startFtp, USER } from "./helpers/ftp_fixture.ts";

const HOST = "127.0.0.1";

Deno.test("the password gate runs at most `slots` checks at once and answers FULL at once past its queue", async () => {
  const gate = new WorkGate(2, 3, 10);
  let running = 0;
  let most = 0;
  const releases: (() => void)[] = [];
  const job = () =>
    new Promise<string>((resolve) => {
      running++;
      most = Math.max(most, running);
      releases.push(() => {
        running--;
        resolve("done");
      });
    });
  const results = Array.from({ length: 7 }, (_, i) => gate.run(`10.0.0.${i}`, job));
  // 2 run, 3 wait, the last 2 are refused without waiting.
  assert.equal(await results[5], WorkGate.FULL);
  assert.equal(await results[6], WorkGate.FULL);
  for (let i = 0; i < 20 && releases.length > 0; i++) {
    releases.shift()!();
    await new Promise((r) => setTimeout(r, 0));
  }
  assert.deepEqual(await Promise.all(results.slice(0, 5)), ["done", "done", "done", "done", "done"]);
  assert.equal(most, 2);
  assert.equal(gate.running, 0);
});

Deno.test("the password gate gives one address only its share", async () => {
  const gate = new WorkGate(1, 32, 2);
  let release!: () => void;
  const first = gate.run("a", () => new Promise<number>((r) => release = () => r(1)));
  const second = gate.run("a", () => Promise.resolve(2));
  assert.equal(await gate.run("a", () => Promise.resolve(3)), WorkGate.FULL);
  const other = gate.run("b", () => Promise.resolve(4));
  release();
  assert.deepEqual(await Promise.all([first, second, other]), [1, 2, 4]);
});

Deno.test("the password gate starts addresses without failures before those with failures", async () => {
  const gate = new WorkGate(1, 32, 32);
  const order: string[] = [];
  let release!: () => void;
  const first = gate.run("busy", () => new Promise<void>((r) => release = r));
  const waiting = [
    gate.run("attacker1", () => Promise.resolve(order.push("attacker1")), 5),
    gate.run("attacker2", () => Promise.resolve(order.push("attacker2")), 3),
    gate.run("legit", () => Promise.resolve(order.push("legit")), 0),
    gate.run("attacker3", () => Promise.resolve(order.push("attacker3")), 3),
  ];
  release();
  await first;
  await Promise.all(waiting);
  assert.deepEqual(order, ["legit", "attacker2", "attacker3", "attacker1"]);
});

Deno.test("an active ban outlives 10,000 failures from other addresses", () => {
  const bans = new BanTable(1000);
  const now = 1_000_000;
  for (let i = 0; i < 3; i++) bans.fail("192.168.1.66", now, 3, 60_000);
  assert.ok(bans.isBanned("192.168.1.66", now));
  for (let i = 0; i < 10_001; i++) {
    bans.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, now + 1, 3, 60_000);
  }
  assert.ok(bans.size <= 1000);
  assert.ok(bans.isBanned("192.168.1.66", now + 2), "the active ban was evicted");
  // A good login from the banned address does not lift the ban.
  bans.succeeded("192.168.1.66", now + 3);
  assert.ok(bans.isBanned("192.168.1.66", now + 3));
  assert.ok(!bans.isBanned("192.168.1.66", now + 60_001));
});

Deno.test("expired bans are evicted before failure counts, and failure counts before active bans", () => {
  const bans = new BanTable(3);
  bans.fail("a", 0, 1, 10); // banned until 10
  bans.fail("b", 5, 1, 1000); // banned until 1005
  bans.fail("c", 6, 5, 1000); // 1 failure
  bans.fail("d", 20, 5, 1000); // over capacity: "a" (expired) goes
  assert.ok(bans.isBanned("b", 21));
  bans.fail("e", 21, 5, 1000); // over capacity: "c" (least recently failed, not banned) goes, not "b"
  assert.ok(bans.isBanned("b", 22));
  assert.equal(bans.size, 3);
});

Deno.test("the ban is checked at every USER and PASS, also in a session opened before it", async () => {
  const fx = await startFtp({ server: { maxLoginFailures: 3, banMs: 60_000 } });
  const early = await FtpControl.connect(HOST, fx.port);
  const early2 = await FtpControl.connect(HOST, fx.port);
  const guesser = await FtpControl.connect(HOST, fx.port);
  try {
    assert.equal((await early.reply()).code, 220);
    assert.equal((await early2.reply()).code, 220);
    assert.equal((await early2.cmd(`USER ${USER}`)).code, 331);
    assert.equal((await guesser.reply()).code, 220);
    for (let i = 0; i < 3; i++) {
      assert.equal((await guesser.cmd(`USER ${USER}`)).code, 331);
      assert.equal((await guesser.cmd(`PASS wrong${i}`)).code, 530);
    }
    const banned = (await guesser.reply()).code === 421;
    assert.ok(banned, "three failures did not ban the address");
    // The session opened before the ban cannot log in with the right password either.
    const u = await early.cmd(`USER ${USER}`);
    assert.equal(u.code, 421, u.text);
    const p = await early2.cmd(`PASS ${PASS}`);
    assert.equal(p.code, 421, p.text);
    assert.equal(await early2.replyOrNull(5000), null);
  } finally {
    early.close();
    early2.close();
    guesser.close();
    await fx.close();
  }
});
