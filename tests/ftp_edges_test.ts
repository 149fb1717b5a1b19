/**
 * The smaller hostile-client items: atomic unique STOU names, concurrent APPEs that all land (in place, no temp
 * copy), stale upload temp files swept at start, a reply to every line (Telnet IAC and random bytes), PROT before
 * PBSZ refused, and a TLS-1.3-only client served under max_version "auto".
 */
import assert from "node:assert/strict";
import * as tls from "node:tls";
import { FtpControl, PASS, readAllText, startFtp, USER } from "./helpers/ftp_fixture.ts";
import { startFtps } from "./helpers/ftps_fixture.ts";
import { sweepUploadTemps } from "../src/ftp/ftp_server.ts";

const HOST = "127.0.0.1";

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

Deno.test("two concurrent STOU with the same hint get different names and both uploads are kept", async () => {
  const fx = await startFtp();
  const a = await FtpControl.login(HOST, fx.port);
  const b = await FtpControl.login(HOST, fx.port);
  try {
    const pa = await a.pasvConnect();
    const pb = await b.pasvConnect();
    // Both STOUs are answered (names chosen) before either sends a byte.
    const [ra, rb] = await Promise.all([a.cmd("STOU x"), b.cmd("STOU x")]);
    const na = /FILE: (\S+)/.exec(ra.text)?.[1];
    const nb = /FILE: (\S+)/.exec(rb.text)?.[1];
    assert.ok(na && nb, `${ra.text} | ${rb.text}`);
    assert.notEqual(na, nb);
    await writeAll(pa.data, new TextEncoder().encode("from a"));
    await writeAll(pb.data, new TextEncoder().encode("from b"));
    pa.data.close();
    pb.data.close();
    assert.equal((await a.reply()).code, 226);
    assert.equal((await b.reply()).code, 226);
    assert.equal(await Deno.readTextFile(`${fx.root}/${na}`), "from a");
    assert.equal(await Deno.readTextFile(`${fx.root}/${nb}`), "from b");
  } finally {
    a.close();
    b.close();
    await fx.close();
  }
});

Deno.test("concurrent APPEs all land, in place (no temp copy of the file)", async () => {
  const fx = await startFtp();
  const original = new Uint8Array(1 << 20).fill(1);
  await Deno.writeFile(`${fx.root}/log.bin`, original);
  const clients = await Promise.all([0, 1, 2].map(() => FtpControl.login(HOST, fx.port)));
  try {
    const chunk = (i: number) => new Uint8Array(200_000).fill(10 + i);
    const datas = [];
    for (const c of clients) {
      assert.equal((await c.cmd("TYPE I")).code, 200);
      datas.push((await c.pasvConnect()).data);
    }
    const opened = await Promise.all(clients.map((c) => c.cmd("APPE log.bin")));
    assert.ok(opened.every((r) => r.code === 150 || r.code === 125));
    // No temp file: an append needs no room for a copy of the file.
    assert.ok(![...Deno.readDirSync(fx.root)].some((e) => e.name.startsWith(".outpost-upload-")));
    await Promise.all(datas.map(async (d, i) => {
      await writeAll(d, chunk(i));
      d.close();
    }));
    for (const c of clients) assert.equal((await c.reply()).code, 226);
    const after = await Deno.readFile(`${fx.root}/log.bin`);
    assert.equal(after.length, original.length + 3 * 200_000);
    assert.deepEqual(after.subarray(0, original.length), original);
    for (let i = 0; i < 3; i++) {
      assert.equal(after.subarray(original.length).filter((x) => x === 10 + i).length, 200_000);
    }
  } finally {
    for (const c of clients) c.close();
    await fx.close();
  }
});

Deno.test("upload temp files left by a killed daemon are swept at start; others are not", async () => {
  const fx = await startFtp();
  try {
    await fx.server.sweepDone;
    await Deno.mkdir(`${fx.root}/sub/deep`, { recursive: true });
    const stale = [`${fx.root}/.outpost-upload-00112233`, `${fx.root}/sub/deep/.outpost-upload-44556677`];
    for (const p of stale) {
      await Deno.writeTextFile(p, "partial");
      await Deno.utime(p, 1_000_000, 1_000_000);
    }
    await Deno.writeTextFile(`${fx.root}/sub/keep.txt`, "k");
    // A restart: a new server over the same root.
    const { FtpServer, defaultFtpServerOptions } = await import("../src/ftp/ftp_server.ts");
    const { Accounts } = await import("../src/ftp/accounts.ts");
    const { FULL_ACCESS } = await import("../src/ftp/ftp_file_system.ts");
    const again = new FtpServer({
      ...defaultFtpServerOptions(
        new Accounts({
          users: [{ name: "u", passwordHash: null, root: fx.root, perms: FULL_ACCESS }],
          anonymous: null,
        }),
      ),
      hostname: HOST,
      port: 0,
    });
    await again.listen();
    assert.equal(await again.sweepDone, 2);
    await again.close();
    for (const p of stale) assert.ok(!(await Deno.stat(p).then(() => true, () => false)), `${p} was kept`);
    assert.equal(await Deno.readTextFile(`${fx.root}/sub/keep.txt`), "k");
  } finally {
    await fx.close();
  }
});

Deno.test("every line gets a reply: Telnet IAC sequences, control bytes and random bytes", async () => {
  const fx = await startFtp();
  const c = await FtpControl.connect(HOST, fx.port);
  try {
    assert.equal((await c.reply()).code, 220);
    const lines: Uint8Array[] = [
      new Uint8Array([0xff, 0xf4, 0xff, 0xf2, 0x0d, 0x0a]), // IAC IP IAC DM, nothing else
      new Uint8Array([0x0d, 0x0a]), // empty
      new Uint8Array([0x01, 0x02, 0x1b, 0x20, 0x0d, 0x0a]),
    ];
    let seed = 7;
    for (let i = 0; i < 20; i++) {
      const l = new Uint8Array(40);
      for (let j = 0; j < l.length; j++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        l[j] = seed & 0xff;
      }
      const clean = l.filter((x) => x !== 0x0a && x !== 0x0d);
      lines.push(new Uint8Array([0xff, 0xfb, ...clean, 0x0d, 0x0a]));
    }
    for (const l of lines) {
      await c.send(l);
      const r = await c.reply(5000);
      assert.ok(r.code >= 200 && r.code < 600, r.text);
    }
    assert.equal((await c.cmd("NOOP")).code, 200);
  } finally {
    c.close();
    await fx.close();
  }
});

Deno.test("PROT before PBSZ gets 503 (RFC 4217); after PBSZ it is accepted", async () => {
  const fx = await startFtps();
  try {
    const sock = tls.connect({ host: HOST, port: fx.implicitPort, rejectUnauthorized: false });
    const got: string[] = [];
    let buf = "";
    const waiters: (() => void)[] = [];
    sock.on("data", (b: Uint8Array) => {
      buf += new TextDecoder().decode(b);
      for (let i = buf.indexOf("\r\n"); i >= 0; i = buf.indexOf("\r\n")) {
        got.push(buf.slice(0, i));
        buf = buf.slice(i + 2);
        waiters.shift()?.();
      }
    });
    const next = async () => {
      for (let i = 0; i < 50 && got.length === 0; i++) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 200);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return got.shift() ?? "";
    };
    const cmd = async (l: string) => {
      sock.write(l + "\r\n");
      return await next();
    };
    assert.match(await next(), /^220 /);
    assert.match(await cmd(`USER ${USER}`), /^331 /);
    assert.match(await cmd(`PASS ${PASS}`), /^230 /);
    assert.match(await cmd("PROT P"), /^503 .*PBSZ/);
    assert.match(await cmd("PBSZ 0"), /^200 /);
    assert.match(await cmd("PROT P"), /^200 /);
    sock.destroy();
  } finally {
    await fx.close();
  }
});

Deno.test("a client that offers TLS 1.3 only is served under max_version auto", async () => {
  const fx = await startFtps({ maxVersion: "auto" });
  try {
    const greeting = await new Promise<string>((resolve, reject) => {
      const sock = tls.connect({
        host: HOST,
        port: fx.implicitPort,
        rejectUnauthorized: false,
        minVersion: "TLSv1.3",
        maxVersion: "TLSv1.3",
      });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error("No greeting within 10 s"));
      }, 10_000);
      sock.on("data", (b: Uint8Array) => {
        clearTimeout(timer);
        resolve(`${sock.getProtocol()} ${new TextDecoder().decode(b)}`);
        sock.destroy();
      });
      sock.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    assert.match(greeting, /^TLSv1\.3 220 /);
  } finally {
    await fx.close();
  }
});

Deno.test("a listing of a directory holding a file named like a reply stays one line per entry", async () => {
  const fx = await startFtp();
  try {
    await Deno.writeTextFile(`${fx.root}/a\x1b]0;pwned\x07`, "x");
    const c = await FtpControl.login(HOST, fx.port);
    const { data } = await c.pasvConnect();
    assert.equal((await c.cmd("NLST")).code, 150);
    const text = await readAllText(data);
    assert.equal((await c.reply()).code, 226);
    assert.equal(text, "a?]0;pwned?\r\n");
    c.close();
  } finally {
    await fx.close();
  }
});

Deno.test("the start-up sweep never removes the temp file of an upload in progress (coarse file times)", async () => {
  // File times come from the kernel's coarse clock, a few ms behind Date.now(): an upload that starts right after
  // the server did can get a temp file "older" than the start, and the sweep took it (550 at the end of STOR).
  const fx = await startFtp();
  try {
    await fx.server.sweepDone;
    const c = await FtpControl.login("127.0.0.1", fx.port);
    await c.cmd("TYPE I");
    const { data } = await c.pasvConnect();
    assert.equal((await c.cmd("STOR inflight.bin")).code, 150);
    await data.write(new Uint8Array(1000));
    // A sweep whose "before" lies after the temp file's time, as the coarse clock can make it.
    assert.equal(await sweepUploadTemps([fx.root], Date.now() + 60_000), 0);
    data.close();
    assert.equal((await c.reply()).code, 226);
    assert.equal((await Deno.stat(`${fx.root}/inflight.bin`)).size, 1000);
    c.close();
  } finally {
    await fx.close();
  }
});
