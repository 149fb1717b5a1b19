/**
 * Hostile clients against the in-process FTP server, over raw sockets: traversal, symlink escape, PORT bounce,
 * an overlong line, login flooding, abandoned PASV, CR/LF/NUL injection, split and coalesced commands, and
 * anonymous write attempts. Every loop is bounded; sleeps only wait for configured timeouts to pass.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { FtpControl, type FtpReply, PASS, readAllText, startFtp } from "./helpers/ftp_fixture.ts";

const HOST = "127.0.0.1";

function assertClean(r: FtpReply, base: string): void {
  for (const l of r.lines) {
    assert.ok(!l.includes("\r") && !l.includes("\0"), `reply holds a raw CR or NUL: ${JSON.stringify(l)}`);
    assert.ok(!l.includes(base), `reply reveals a host path: ${l}`);
  }
}

/** Sends a transfer command that must be refused before any data flows; the PASV data conn is closed after. */
async function refusedTransfer(c: FtpControl, cmd: string, base: string, codes = [550]): Promise<FtpReply> {
  const { data } = await c.pasvConnect();
  try {
    const r = await c.cmd(cmd);
    assertClean(r, base);
    assert.ok(
      codes.includes(r.code),
      `${JSON.stringify(cmd)} answered ${r.text}, expected ${codes.join("/")}`,
    );
    return r;
  } finally {
    data.close();
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * True when nothing listens on `port`. The probe comes from 127.0.0.2, not the control peer's 127.0.0.1, so an
 * open passive listener refuses it as a stranger instead of taking it as the data connection.
 */
async function connectRefused(port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve, reject) => {
    const sock = net.connect({ host: HOST, port, localAddress: "127.0.0.2" });
    sock.once("connect", () => {
      sock.destroy();
      resolve(false);
    });
    sock.once("error", (e: NodeJS.ErrnoException) => {
      sock.destroy();
      if (e.code === "ECONNREFUSED") resolve(true);
      else if (e.code === "ECONNRESET" || e.code === "EPIPE") resolve(false); // accepted, then dropped
      else reject(e);
    });
  });
}

Deno.test("hostile: path traversal never leaves the root", async () => {
  const fx = await startFtp();
  const c = await FtpControl.login(HOST, fx.port);
  try {
    await Deno.writeTextFile(`${fx.base}/secret.txt`, "secret");
    await Deno.mkdir(`${fx.root}/sub`);
    await Deno.writeTextFile(`${fx.root}/sub/in.txt`, "in");

    const cwd = await c.cmd("CWD ../..");
    assertClean(cwd, fx.base);
    assert.ok([250, 550].includes(cwd.code), cwd.text);
    const pwd = await c.cmd("PWD");
    assert.equal(pwd.code, 257);
    assert.match(pwd.text, /^257 "\/"/);
    assertClean(pwd, fx.base);
    assert.equal((await c.cmd("CWD /")).code, 250);

    for (
      const path of [
        "../secret.txt",
        "../../etc/passwd",
        "/etc/passwd",
        "/../secret.txt",
        "sub/../../secret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2fsecret.txt",
        "..%2fsecret.txt",
        "..\\secret.txt",
        "sub\\..\\..\\secret.txt",
        "....//secret.txt",
      ]
    ) {
      await refusedTransfer(c, `RETR ${path}`, fx.base);
      const size = await c.cmd(`SIZE ${path}`);
      assertClean(size, fx.base);
      assert.equal(size.code, 550, `SIZE ${path}: ${size.text}`);
    }
    for (const dir of ["/etc", "../..", "%2e%2e", "..\\.."]) {
      const r = await c.cmd(`CWD ${dir}`);
      assertClean(r, fx.base);
      if (r.code === 250) {
        // Collapsing ".." to "/" is fine; being anywhere but inside the root is not.
        const p = await c.cmd("PWD");
        assert.match(p.text, /^257 "\/[^"]*"/);
        assert.equal((await c.cmd("SIZE sub/in.txt")).code, p.text.startsWith('257 "/"') ? 213 : 550);
        await c.cmd("CWD /");
      } else {
        assert.equal(r.code, 550, r.text);
      }
    }
    // STOR through traversal lands inside the root (or is refused), never outside.
    const { data } = await c.pasvConnect();
    const stor = await c.cmd("STOR ../../escaped.txt");
    if (stor.code === 150 || stor.code === 125) {
      await data.write(new TextEncoder().encode("x"));
      data.close();
      assert.equal((await c.reply()).code, 226);
      assert.equal(await Deno.readTextFile(`${fx.root}/escaped.txt`), "x");
    } else {
      data.close();
      assert.equal(stor.code, 550);
    }
    await assert.rejects(Deno.stat(`${fx.base}/escaped.txt`));
    assert.equal(await Deno.readTextFile(`${fx.base}/secret.txt`), "secret");
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: symlinks leading out of the root are refused", async () => {
  const fx = await startFtp();
  const c = await FtpControl.login(HOST, fx.port);
  try {
    await Deno.mkdir(`${fx.base}/outside`);
    await Deno.writeTextFile(`${fx.base}/outside/secret.txt`, "secret");
    await Deno.symlink("/etc", `${fx.root}/etc_link`);
    await Deno.symlink(`${fx.base}/outside`, `${fx.root}/out_dir`);
    await Deno.symlink(`${fx.base}/outside/secret.txt`, `${fx.root}/out_file`);
    await Deno.symlink(`${fx.base}/outside/new.txt`, `${fx.root}/out_dangling`);
    await Deno.writeTextFile(`${fx.root}/real.txt`, "real");
    await Deno.symlink("real.txt", `${fx.root}/in_link`);

    await refusedTransfer(c, "RETR etc_link/passwd", fx.base);
    await refusedTransfer(c, "RETR out_file", fx.base);
    await refusedTransfer(c, "RETR out_dir/secret.txt", fx.base);
    await refusedTransfer(c, "STOR out_dir/new.txt", fx.base, [550, 553]);
    await refusedTransfer(c, "STOR out_dangling", fx.base, [550, 553]);
    await refusedTransfer(c, "STOR out_file", fx.base, [550, 553]);
    await refusedTransfer(c, "APPE out_file", fx.base, [550, 553]);
    await refusedTransfer(c, "LIST etc_link", fx.base, [450, 550]);
    await refusedTransfer(c, "MLSD out_dir", fx.base, [450, 550]);
    for (const cmd of ["CWD etc_link", "CWD out_dir", "SIZE out_file", "MDTM out_file", "MLST out_file"]) {
      const r = await c.cmd(cmd);
      assertClean(r, fx.base);
      assert.equal(r.code, 550, `${cmd}: ${r.text}`);
    }
    for (const cmd of ["DELE out_dir/secret.txt", "MKD out_dir/made", "RNFR out_dir/secret.txt"]) {
      const r = await c.cmd(cmd);
      assertClean(r, fx.base);
      assert.equal(r.code, 550, `${cmd}: ${r.text}`);
    }
    const rnfr = await c.cmd("RNFR real.txt");
    assert.equal(rnfr.code, 350);
    const rnto = await c.cmd("RNTO out_dir/stolen.txt");
    assertClean(rnto, fx.base);
    assert.ok([550, 553].includes(rnto.code), rnto.text);

    // The listing shows no link leading out; a link inside works.
    const { data } = await c.pasvConnect();
    const nlst = await c.cmd("NLST");
    assert.ok([125, 150].includes(nlst.code), nlst.text);
    const names = (await readAllText(data)).split("\r\n").filter((l) => l).map((l) => l.replace(/^\/+/, ""));
    assert.equal((await c.reply()).code, 226);
    assert.deepEqual(names.sort(), ["in_link", "real.txt"]);
    const { data: d2 } = await c.pasvConnect();
    const retr = await c.cmd("RETR in_link");
    assert.ok([125, 150].includes(retr.code), retr.text);
    assert.equal(await readAllText(d2), "real");
    assert.equal((await c.reply()).code, 226);

    assert.equal(await Deno.readTextFile(`${fx.base}/outside/secret.txt`), "secret");
    assert.deepEqual([...Deno.readDirSync(`${fx.base}/outside`)].map((e) => e.name), ["secret.txt"]);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: PORT/EPRT bounce to another host or a privileged port is refused", async () => {
  const fx = await startFtp({ server: { allowActive: true } });
  const c = await FtpControl.login(HOST, fx.port);
  try {
    for (
      const cmd of [
        "PORT 10,0,0,1,195,80",
        "PORT 192,0,2,1,4,1",
        "PORT 127,0,0,1,0,80",
        "PORT 127,0,0,1,0,21",
        "PORT 127,0,0,1,3,255",
        "EPRT |1|10.0.0.1|50000|",
        "EPRT |1|127.0.0.1|80|",
        "EPRT |1|127.0.0.1|1023|",
        "EPRT |2|::1|50000|",
        "PORT 127,0,0,1",
        "PORT 999,0,0,1,4,1",
        "EPRT garbage",
      ]
    ) {
      const r = await c.cmd(cmd);
      assertClean(r, fx.base);
      assert.ok([500, 501, 504, 522].includes(r.code), `${cmd} answered ${r.text}`);
      assert.ok(r.code !== 522 || cmd.startsWith("EPRT |2|"), `${cmd}: 522 only for the wrong family`);
    }
    // The control peer on an unprivileged port is fine.
    const ok = await c.cmd("PORT 127,0,0,1,195,80");
    assert.equal(ok.code, 200, ok.text);
    const ok2 = await c.cmd("EPRT |1|127.0.0.1|50000|");
    assert.equal(ok2.code, 200, ok2.text);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: PORT/EPRT refused when active mode is off", async () => {
  const fx = await startFtp({ server: { allowActive: false } });
  const c = await FtpControl.login(HOST, fx.port);
  try {
    for (const cmd of ["PORT 127,0,0,1,195,80", "EPRT |1|127.0.0.1|50000|"]) {
      const r = await c.cmd(cmd);
      assert.ok(
        [500, 502, 504, 534].includes(r.code) || (r.code >= 500 && r.code < 600),
        `${cmd}: ${r.text}`,
      );
    }
    assert.equal((await c.cmd("NOOP")).code, 200);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: a 1 MiB line without CRLF gets 500 and a close, memory stays bounded", async () => {
  const fx = await startFtp();
  const c = await FtpControl.connect(HOST, fx.port);
  try {
    assert.equal((await c.reply()).code, 220);
    const before = Deno.memoryUsage().rss;
    const replyP = c.replyOrNull(30_000).catch((e) => e as Error);
    const chunk = new Uint8Array(64 * 1024).fill(0x41);
    let sent = 0;
    for (let i = 0; i < 16; i++) {
      try {
        await c.send(chunk);
        sent += chunk.length;
      } catch {
        break; // The server closed on us: expected once it has refused the line.
      }
    }
    const r = await replyP;
    assert.ok(!(r instanceof Error), `no reply: ${r}`);
    assert.ok(r !== null, "the server closed without a 500 reply");
    assert.equal(r.code, 500, r.text);
    assertClean(r, fx.base);
    // Then the server closes the session.
    let closed = false;
    for (let i = 0; i < 1000 && !closed; i++) {
      try {
        const next = await c.replyOrNull(15_000);
        if (next === null) closed = true;
      } catch (e) {
        if (/closed|reset|No reply/i.test(String(e))) closed = true;
        else throw e;
      }
    }
    assert.ok(closed, "session not closed after the overlong line");
    const after = Deno.memoryUsage().rss;
    assert.ok(after - before < 32 << 20, `rss grew by ${(after - before) >> 20} MiB after ${sent} bytes`);
    // The server still serves others.
    const d = await FtpControl.login(HOST, fx.port);
    assert.equal((await d.cmd("NOOP")).code, 200);
    d.close();
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: 500 failed logins, a temporary ban, then good logins after it expires", async () => {
  const banMs = 1500;
  const fx = await startFtp({
    anonymous: true,
    server: { maxLoginFailures: 5, banMs, loginFailDelayMs: 1, maxSessionsPerIp: 50 },
  });
  let c: FtpControl | null = null;
  try {
    let attempts = 0;
    let refusedWhileBanned = 0;
    for (let conns = 0; attempts < 500 && conns < 600; conns++) {
      c = await FtpControl.connect(HOST, fx.port);
      const g = await c.replyOrNull();
      if (g === null || g.code !== 220) {
        // Banned at connect time (421 or a plain close) counts as a refused attempt.
        attempts++;
        refusedWhileBanned++;
        c.close();
        continue;
      }
      for (; attempts < 500; attempts++) {
        const u = await c.replyOrNullAfter(`USER alice`);
        if (u === null) {
          attempts++; // Closed on us (banned): a refused attempt.
          refusedWhileBanned++;
          break;
        }
        if (u.code !== 331) {
          assert.ok([421, 530].includes(u.code), u.text);
          refusedWhileBanned++;
          if (u.code === 421) break;
          continue;
        }
        const p = await c.replyOrNullAfter(`PASS wrong-${attempts}`);
        if (p === null) break;
        assert.ok([421, 530].includes(p.code), `wrong password answered ${p.text}`);
        if (p.code === 421) break;
      }
      c.close();
      c = null;
    }
    assert.equal(attempts, 500);
    assert.ok(refusedWhileBanned > 0, "the ban never took effect");

    // Still banned right after the flood: the right password is refused too.
    const banned = await FtpControl.connect(HOST, fx.port).then(async (b) => {
      try {
        const g = await b.replyOrNull();
        if (g === null || g.code !== 220) return true;
        const u = await b.cmd("USER alice");
        if (u.code !== 331) return true;
        return (await b.cmd(`PASS ${PASS}`)).code !== 230;
      } finally {
        b.close();
      }
    });
    assert.ok(banned, "the right password was accepted during the ban");

    // After the ban expires (bounded wait), the good login and another account from the same IP work.
    let good: FtpControl | null = null;
    for (let i = 0; i < 40 && good === null; i++) {
      await sleep(banMs / 2);
      good = await FtpControl.login(HOST, fx.port).catch(() => null);
    }
    assert.ok(good, "the good login never worked after the ban");
    assert.equal((await good.cmd("PWD")).code, 257);
    good.close();
    const anon = await FtpControl.login(HOST, fx.port, "anonymous", "guest@example.com");
    assert.equal((await anon.cmd("NOOP")).code, 200);
    anon.close();
  } finally {
    c?.close();
    await fx.close();
  }
});

Deno.test("hostile: PASV opened and never connected", async () => {
  const fx = await startFtp({ server: { dataTimeoutMs: 1000 } });
  const c = await FtpControl.login(HOST, fx.port);
  try {
    const port = async (): Promise<number> => {
      const r = await c.cmd("PASV");
      const m = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(r.text);
      assert.ok(r.code === 227 && m, r.text);
      return +m[1] * 256 + +m[2];
    };
    const p1 = await port();
    assert.equal((await c.cmd("NOOP")).code, 200);
    const p2 = await port();
    // A new PASV closes the previous listener.
    if (p1 !== p2) {
      assert.ok(await connectRefused(p1), "the first PASV listener is still open after a second PASV");
    }
    assert.equal((await c.cmd("NOOP")).code, 200);
    // After the data timeout the listener closes (bounded poll) and the session stays usable.
    let closed = false;
    for (let i = 0; i < 40 && !closed; i++) {
      await sleep(500);
      closed = await connectRefused(p2);
    }
    assert.ok(closed, "the PASV listener was never closed");
    assert.equal((await c.cmd("NOOP")).code, 200);
    const r = await c.cmd("PWD");
    assert.equal(r.code, 257);
    // A transfer command without a connected data channel fails cleanly.
    const list = await c.cmd("LIST", 20_000);
    if ([125, 150].includes(list.code)) {
      const end = await c.reply(20_000);
      assert.ok([425, 426].includes(end.code), `LIST after an expired PASV: ${list.text} then ${end.text}`);
    } else assert.ok([425, 426, 503].includes(list.code), list.text);
    assert.equal((await c.cmd("NOOP")).code, 200);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: CR, LF and NUL injected into arguments never run a second command", async () => {
  const fx = await startFtp();
  const c = await FtpControl.login(HOST, fx.port);
  try {
    await Deno.writeTextFile(`${fx.root}/b`, "keep me");
    await Deno.mkdir(`${fx.root}/keepdir`);
    for (
      const line of [
        "MKD a\rDELE b",
        "MKD a\rRMD keepdir",
        "DELE x\rDELE b",
        "CWD a\rDELE b",
        "RNFR b\rRNTO c",
        "MKD a\0b",
        "DELE b\0.txt",
        "SIZE \0../../etc/passwd",
        'MKD "q"\r',
      ]
    ) {
      await c.send(line + "\r\n");
      const r = await c.reply();
      assertClean(r, fx.base);
      assert.ok(r.code >= 500 && r.code < 600, `${JSON.stringify(line)} answered ${r.text}`);
      // Exactly one reply per line: the next one answers our NOOP.
      const n = await c.cmd("NOOP");
      assert.equal(n.code, 200, `after ${JSON.stringify(line)}: ${n.text}`);
    }
    assert.equal(await Deno.readTextFile(`${fx.root}/b`), "keep me");
    assert.ok((await Deno.stat(`${fx.root}/keepdir`)).isDirectory);
    const names = [...Deno.readDirSync(fx.root)].map((e) => e.name).sort();
    assert.deepEqual(names, ["b", "keepdir"]);
    // A quote in a created name is doubled in the 257 reply (RFC 959).
    const mkd = await c.cmd('MKD say "hi"');
    assert.equal(mkd.code, 257, mkd.text);
    assert.match(mkd.text, /^257 "\/say ""hi"""/);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: commands split across TCP segments and several in one segment", async () => {
  const fx = await startFtp();
  const c = await FtpControl.connect(HOST, fx.port);
  try {
    c.conn.setNoDelay(true);
    assert.equal((await c.reply()).code, 220);
    // Several commands in one segment, answered in order.
    await c.send(`USER alice\r\nPASS ${PASS}\r\nPWD\r\nNOOP\r\nSYST\r\n`);
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await c.reply()).code);
    assert.deepEqual(codes, [331, 230, 257, 200, 215]);
    // One command byte by byte, with pauses so the bytes travel in separate segments.
    for (const ch of "NOOP\r\n") {
      await c.send(ch);
      await sleep(20);
    }
    assert.equal((await c.reply()).code, 200);
    // Split inside the CRLF, and a bare LF line.
    await c.send("PW");
    await sleep(20);
    await c.send("D\r");
    await sleep(20);
    await c.send("\nno");
    await sleep(20);
    await c.send("op\n");
    assert.equal((await c.reply()).code, 257);
    assert.equal((await c.reply()).code, 200);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: anonymous cannot write when enabled", async () => {
  const fx = await startFtp({ anonymous: true });
  await Deno.writeTextFile(`${fx.pub}/readme.txt`, "public");
  await Deno.mkdir(`${fx.pub}/dir`);
  const c = await FtpControl.login(HOST, fx.port, "anonymous", "guest@example.com");
  try {
    const pwd = await c.cmd("PWD");
    assert.match(pwd.text, /^257 "\/"/);
    for (const cmd of ["STOR new.txt", "APPE readme.txt", "STOU", "STOR readme.txt"]) {
      await refusedTransfer(c, cmd, fx.base, [550, 553]);
    }
    for (const cmd of ["MKD x", "RMD dir", "DELE readme.txt", "SITE CHMOD 777 readme.txt"]) {
      const r = await c.cmd(cmd);
      assertClean(r, fx.base);
      assert.ok(
        [550, 553].includes(r.code) || (cmd.startsWith("SITE") && r.code >= 500),
        `${cmd}: ${r.text}`,
      );
    }
    const rnfr = await c.cmd("RNFR readme.txt");
    assert.equal(rnfr.code, 550, rnfr.text);
    // Reading works, and it sees only its own root.
    const { data } = await c.pasvConnect();
    const retr = await c.cmd("RETR readme.txt");
    assert.ok([125, 150].includes(retr.code), retr.text);
    assert.equal(await readAllText(data), "public");
    assert.equal((await c.reply()).code, 226);
    await refusedTransfer(c, "RETR ../root/anything", fx.base);
    assert.deepEqual([...Deno.readDirSync(fx.pub)].map((e) => e.name).sort(), ["dir", "readme.txt"]);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: anonymous login refused when disabled", async () => {
  const fx = await startFtp({ anonymous: false });
  try {
    for (const name of ["anonymous", "ftp", "ANONYMOUS"]) {
      const c = await FtpControl.connect(HOST, fx.port);
      try {
        assert.equal((await c.reply()).code, 220);
        const u = await c.cmd(`USER ${name}`);
        if (u.code === 331) assert.equal((await c.cmd("PASS guest@example.com")).code, 530);
        else assert.equal(u.code, 530, u.text);
        const after = await c.cmd("PWD");
        assert.equal(after.code, 530, `not logged in, yet PWD answered ${after.text}`);
      } finally {
        c.close();
      }
    }
  } finally {
    await fx.close();
  }
});

Deno.test("hostile: an aborted or dropped upload never damages the original nor leaves a temp file", async () => {
  const fx = await startFtp();
  try {
    const original = "original content that must survive\n";
    await Deno.writeTextFile(`${fx.root}/keep.txt`, original);
    const chunk = new Uint8Array(256 * 1024).fill(0x5a);

    // 1. ABOR mid-STOR.
    const c = await FtpControl.login(HOST, fx.port);
    try {
      assert.equal((await c.cmd("TYPE I")).code, 200);
      const { data } = await c.pasvConnect();
      const stor = await c.cmd("STOR keep.txt");
      assert.ok([125, 150].includes(stor.code), stor.text);
      await data.write(chunk);
      await c.send("ABOR\r\n");
      const codes: number[] = [];
      for (let i = 0; i < 3 && !codes.includes(226) && !codes.includes(225); i++) {
        codes.push((await c.reply()).code);
      }
      try {
        data.close();
      } catch {
        // The server may have closed it first.
      }
      assert.ok(codes.includes(226) || codes.includes(225), `ABOR replies: ${codes}`);
      assert.equal((await c.cmd("NOOP")).code, 200, "control connection unusable after ABOR");
    } finally {
      c.close();
    }
    assert.equal(await Deno.readTextFile(`${fx.root}/keep.txt`), original, "ABOR damaged the original");

    // 2. The client drops the control connection mid-STOR (also for APPE and REST+STOR).
    for (const cmds of [["STOR keep.txt"], ["APPE keep.txt"], ["REST 5", "STOR keep.txt"]]) {
      const d = await FtpControl.login(HOST, fx.port);
      const { data } = await d.pasvConnect();
      assert.equal((await d.cmd("TYPE I")).code, 200);
      for (const cmd of cmds.slice(0, -1)) {
        const r350 = await d.cmd(cmd);
        assert.equal(r350.code, 350, r350.text);
      }
      const r = await d.cmd(cmds[cmds.length - 1]);
      assert.ok([125, 150].includes(r.code), r.text);
      await data.write(chunk);
      d.close();
      // Let the server notice: bounded wait until it has no sessions left.
      for (let i = 0; i < 100 && fx.server.sessionCount > 0; i++) await sleep(50);
      try {
        data.close();
      } catch {
        // Closed already.
      }
      for (let i = 0; i < 100; i++) {
        const temps = [...Deno.readDirSync(fx.root)].filter((e) => e.name.startsWith(".outpost-upload-"));
        if (temps.length === 0) break;
        await sleep(50);
      }
      assert.equal(await Deno.readTextFile(`${fx.root}/keep.txt`), original, `${cmds} damaged the original`);
    }
    const left = [...Deno.readDirSync(fx.root)].map((e) => e.name);
    assert.deepEqual(left, ["keep.txt"], `temp files left behind: ${left}`);
  } finally {
    await fx.close();
  }
});

Deno.test("hostile: a data connection from another address cannot steal a PASV transfer", async () => {
  const fx = await startFtp();
  const c = await FtpControl.login(HOST, fx.port);
  try {
    await Deno.writeTextFile(`${fx.root}/private.txt`, "private data");
    const r = await c.cmd("PASV");
    const m = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(r.text);
    assert.ok(m, r.text);
    const port = +m[1] * 256 + +m[2];
    // The thief, from 127.0.0.2, connects first and tries to read.
    const stolen = await new Promise<string>((resolve) => {
      let got = "";
      const sock = net.connect({ host: HOST, port, localAddress: "127.0.0.2" });
      sock.on("data", (b: Uint8Array) => got += new TextDecoder().decode(b));
      sock.on("error", () => {});
      // The server closes the stranger; if it does not, stop waiting after a safety bound.
      const timer = setTimeout(() => sock.destroy(), 3000);
      sock.on("close", () => {
        clearTimeout(timer);
        resolve(got);
      });
    });
    const data = await Deno.connect({ hostname: HOST, port });
    const retr = await c.cmd("RETR private.txt");
    assert.ok([125, 150].includes(retr.code), retr.text);
    assert.equal(await readAllText(data), "private data");
    assert.equal((await c.reply()).code, 226);
    assert.equal(stolen, "", "a stranger received the file");
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("hostile: session limits, idle timeout and commands before login", async () => {
  const fx = await startFtp({ server: { maxSessionsPerIp: 3, idleTimeoutMs: 1500 } });
  const open: FtpControl[] = [];
  try {
    // Before login nothing but the login commands work.
    const pre = await FtpControl.connect(HOST, fx.port);
    open.push(pre);
    assert.equal((await pre.reply()).code, 220);
    for (
      const cmd of ["RETR x", "LIST", "PASV", "CWD /", "STOR x", "DELE x", "MKD x", "PWD", "SITE CHMOD 777 x"]
    ) {
      const r = await pre.cmd(cmd);
      assert.equal(r.code, 530, `${cmd} before login: ${r.text}`);
    }
    assert.equal((await pre.cmd("PASS x")).code, 503, "PASS without USER");
    const rest = await (await FtpControl.login(HOST, fx.port).then((c) => (open.push(c), c))).cmd("REST abc");
    assert.equal(rest.code, 501, rest.text);
    // The third session from this address is allowed, the fourth is refused with 421.
    open.push(await FtpControl.login(HOST, fx.port));
    const extra = await FtpControl.connect(HOST, fx.port);
    open.push(extra);
    const g = await extra.replyOrNull();
    assert.ok(g !== null && g.code === 421, `4th session greeted with ${g?.text}`);
    for (const c of open) c.close();
    open.length = 0;
    for (let i = 0; i < 100 && fx.server.sessionCount > 0; i++) await sleep(50);

    // An idle session is told 421 and closed (bounded wait).
    const idle = await FtpControl.login(HOST, fx.port);
    open.push(idle);
    const bye = await idle.replyOrNull(20_000);
    assert.ok(bye === null || bye.code === 421, `idle session got ${bye?.text}`);
    assert.equal(await idle.replyOrNull(20_000), null, "idle session not closed");
  } finally {
    for (const c of open) c.close();
    await fx.close();
  }
});

Deno.test("hostile: EPSV ALL locks out PASV/PORT; Telnet IAC bytes are ignored", async () => {
  const fx = await startFtp({ server: { allowActive: true } });
  const c = await FtpControl.login(HOST, fx.port);
  try {
    // Telnet IP (IAC 244) and Synch (IAC 242) before a command.
    await c.send(new Uint8Array([255, 244, 255, 242, ...new TextEncoder().encode("NOOP\r\n")]));
    assert.equal((await c.reply()).code, 200);
    assert.equal((await c.cmd("EPSV ALL")).code, 200);
    for (const cmd of ["PASV", "PORT 127,0,0,1,195,80", "EPRT |1|127.0.0.1|50000|"]) {
      const r = await c.cmd(cmd);
      assert.ok(r.code >= 500 && r.code < 600, `${cmd} after EPSV ALL: ${r.text}`);
    }
    const e = await c.cmd("EPSV");
    assert.equal(e.code, 229, e.text);
  } finally {
    c.close();
    await fx.close();
  }
});
