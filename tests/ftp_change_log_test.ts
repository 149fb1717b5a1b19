// One log line per FTP change (issue 13, item 3): DELE, RMD, MKD, RNFR/RNTO, SITE CHMOD with user, path, result.
import assert from "node:assert/strict";
import { setLogSink } from "../src/log/logger.ts";
import { FtpControl, startFtp } from "./helpers/ftp_fixture.ts";

Deno.test("ftp: every change is logged once with user, path and result", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtp();
  try {
    await Deno.writeTextFile(`${fx.root}/a.txt`, "hello");
    const c = await FtpControl.login(fx.hostname, fx.port);
    try {
      assert.equal((await c.cmd("MKD docs")).code, 257);
      assert.equal((await c.cmd("CWD docs")).code, 250);
      assert.equal((await c.cmd("MKD sub dir")).code, 257);
      assert.equal((await c.cmd("RMD sub dir")).code, 250);
      assert.equal((await c.cmd("CWD /")).code, 250);
      assert.equal((await c.cmd("RNFR a.txt")).code, 350);
      assert.equal((await c.cmd("RNTO docs/b.txt")).code, 250);
      assert.equal((await c.cmd("SITE CHMOD 600 docs/b.txt")).code, 200);
      assert.equal((await c.cmd("DELE docs/b.txt")).code, 250);
      assert.equal((await c.cmd("DELE missing.txt")).code, 550);
      assert.equal((await c.cmd("RMD docs")).code, 250);
      assert.equal((await c.cmd("SITE HELP")).code, 214);
      assert.equal((await c.cmd("QUIT")).code, 221);
    } finally {
      c.close();
    }
  } finally {
    await fx.close();
    setLogSink(restore);
  }
  const changes = lines.filter((l) => / ftp change /.test(` ${l} `) || l.includes("ftp change "));
  assert.deepEqual(changes.map((l) => l.replace(/ id=\d+/, "").replace(/ ip=\S+/, "")), [
    "ftp change verb=MKD user=alice path=/docs result=257",
    'ftp change verb=MKD user=alice path="/docs/sub dir" result=257',
    'ftp change verb=RMD user=alice path="/docs/sub dir" result=250',
    "ftp change verb=RNTO user=alice from=/a.txt path=/docs/b.txt result=250",
    "ftp change verb=SITE_CHMOD user=alice path=/docs/b.txt mode=600 result=200",
    "ftp change verb=DELE user=alice path=/docs/b.txt result=250",
    "warn: ftp change verb=DELE user=alice path=/missing.txt result=550",
    "ftp change verb=RMD user=alice path=/docs result=250",
  ]);
});

Deno.test("ftp: a refused change (no permission) is logged as a warning with its reply code", async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtp();
  try {
    await Deno.writeTextFile(`${fx.root}/keep.txt`, "x");
    const c = await FtpControl.login(fx.hostname, fx.port, "reader");
    try {
      assert.equal((await c.cmd("DELE keep.txt")).code, 550);
      assert.equal((await c.cmd("RNFR keep.txt")).code, 550);
    } finally {
      c.close();
    }
  } finally {
    await fx.close();
    setLogSink(restore);
  }
  const changes = lines.filter((l) => l.includes("ftp change ")).map((l) =>
    l.replace(/ id=\d+/, "").replace(/ ip=\S+/, "")
  );
  assert.deepEqual(changes, [
    "warn: ftp change verb=DELE user=reader path=/keep.txt result=550",
    "warn: ftp change verb=RNFR user=reader path=/keep.txt result=550",
  ]);
});
