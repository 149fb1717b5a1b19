/**
 * FTP session limits: overlong lines, idle timeout, session caps, failed-login bans, passive listeners that are
 * never used or used from another address, and shutdown.
 */
import assert from "node:assert/strict";
import { runPython, startFtp } from "./helpers/ftp_fixture.ts";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const ignore = skipWithout(findPeer(SYSTEM_PYTHON));

Deno.test({
  name:
    "ftp limits: a 1 MiB line without CRLF gets 500 and the session closes; commands split across segments work",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await runPython(
        fx,
        `
s = socket.create_connection((HOST, PORT)); fh = s.makefile("rb")
assert fh.readline().startswith(b"220")
# One command split over three segments, then two in one segment, with a bare LF.
for part in [b"US", b"ER ali", b"ce\\r"]:
    s.sendall(part); time.sleep(0.05)
s.sendall(b"\\nPASS secret\\nPWD\\r\\n")
assert fh.readline().startswith(b"331"); assert fh.readline().startswith(b"230")
assert fh.readline() == b'257 "/" is the current directory.\\r\\n'
try:
    for i in range(16):
        s.sendall(b"A" * 65536)
except OSError:
    pass
line = fh.readline()
assert line == b"500 Command line too long.\\r\\n", line
assert fh.readline() == b""
s.close()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp limits: idle timeout, max sessions, max sessions per address",
  ignore,
  fn: async () => {
    const fx = await startFtp({ server: { idleTimeoutMs: 300, maxSessions: 3, maxSessionsPerIp: 2 } });
    try {
      await runPython(
        fx,
        `
f = connect()
time.sleep(1.0)
try:
    r = f.sendcmd("NOOP"); assert False, r
except (ftplib.error_temp, EOFError, OSError) as e:
    assert "421" in str(e) or isinstance(e, (EOFError, OSError)), e
a = connect(); b = connect()
# Third from the same address: 421 per-address cap.
try:
    connect(); assert False
except ftplib.error_temp as e:
    assert str(e).startswith("421"), e
a.quit(); b.quit()
`,
      );
      const fx2 = await startFtp({ server: { maxSessions: 1 } });
      try {
        await runPython(
          fx2,
          `
a = connect()
try:
    connect(); assert False
except ftplib.error_temp as e:
    assert str(e).startswith("421"), e
a.quit()
for i in range(50):
    try:
        b = connect(); b.quit(); break
    except ftplib.error_temp:
        time.sleep(0.1)
else:
    assert False, "the freed session slot was never reused"
`,
        );
      } finally {
        await fx2.close();
      }
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name:
    "ftp limits: failed logins from one address ban it; another address and the end of the ban still log in",
  ignore,
  fn: async () => {
    const fx = await startFtp({
      hostname: "0.0.0.0",
      server: { loginFailDelayMs: 0, maxLoginFailures: 5, banMs: 1500 },
    });
    try {
      await runPython(
        fx,
        `
HOST = "127.0.0.1"
fails = 0
banned = False
for attempt in range(100):
    try:
        f = ftplib.FTP(timeout=10); f.connect(HOST, PORT)
    except ftplib.error_temp as e:
        assert str(e).startswith("421"), e
        banned = True
        break
    while True:
        try:
            f.login("alice", "wrong")
            assert False
        except ftplib.error_perm as e:
            assert str(e).startswith("530"), e
            fails += 1
        except (ftplib.error_temp, EOFError) as e:
            banned = True
            break
    if banned: break
assert banned and fails == 5, (banned, fails)
# Another address logs in fine while 127.0.0.1 is banned.
f = ftplib.FTP(timeout=10, source_address=("127.0.0.2", 0)); f.connect(HOST, PORT)
assert f.login("alice", "secret").startswith("230"); f.quit()
time.sleep(1.7)
f = ftplib.FTP(timeout=10); f.connect(HOST, PORT)
assert f.login("alice", "secret").startswith("230"); f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name:
    "ftp limits: a PASV never connected times out (425); a data connection from another address is refused",
  ignore,
  fn: async () => {
    const fx = await startFtp({ hostname: "0.0.0.0", server: { dataTimeoutMs: 400 } });
    try {
      await Deno.writeTextFile(`${fx.root}/f.txt`, "data");
      await runPython(
        fx,
        `
HOST = "127.0.0.1"
f = connect()
host, port = ftplib.parse227(f.sendcmd("PASV"))
time.sleep(0.8)
try:
    socket.create_connection((HOST, port), timeout=2).close()
    refused = False
except OSError:
    refused = True
assert refused, "passive port still open after the data timeout"
f.putcmd("RETR f.txt")
r = f.getresp(); assert r.startswith("150"), r
try:
    f.voidresp(); assert False
except ftplib.error_temp as e:
    assert str(e).startswith("425"), e
# A new PASV closes the previous listener.
_, p1 = ftplib.parse227(f.sendcmd("PASV"))
_, p2 = ftplib.parse227(f.sendcmd("PASV"))
if p1 != p2:
    time.sleep(0.3)  # Deno releases a listener's socket once its pending accept is cancelled.
    try:
        socket.create_connection((HOST, p1), timeout=2).close(); old_open = True
    except OSError:
        old_open = False
    assert not old_open, (p1, p2)
# A connection from 127.0.0.2 is closed; the client's own connection still works.
intruder = socket.create_connection((HOST, p2), source_address=("127.0.0.2", 0))
c = socket.create_connection((HOST, p2))
f.putcmd("RETR f.txt"); assert f.getresp().startswith("150")
assert c.recv(100) == b"data"; c.close()
assert f.voidresp().startswith("226")
intruder.settimeout(5)
assert intruder.recv(100) == b""
intruder.close()
f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp limits: close() ends open sessions with 421 and logs transfers to the xferlog",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const xferlog = `${dir}/xferlog`;
    const fx = await startFtp({ anonymous: true, server: { xferlogPath: xferlog } });
    try {
      await runPython(
        fx,
        `
f = connect(user="anonymous", password="guest@")
try:
    f.storbinary("STOR x", io.BytesIO(b"x")); assert False
except ftplib.error_perm as e:
    assert str(e).startswith("550"), e
f.quit()
f = connect()
f.storbinary("STOR x.bin", io.BytesIO(b"12345"))
f.retrbinary("RETR x.bin", lambda b: None)
f.quit()
`,
      );
      const log = (await Deno.readTextFile(xferlog)).trim().split("\n");
      assert.equal(log.length, 2);
      assert.match(
        log[0],
        /^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} \d+ 127\.0\.0\.1 5 \/x\.bin b _ i r alice ftp 0 \* c$/,
      );
      assert.match(log[1], / \/x\.bin b _ o r alice ftp 0 \* c$/);
      const conn = await Deno.connect({ hostname: fx.hostname, port: fx.port });
      const buf = new Uint8Array(200);
      const n = await conn.read(buf);
      assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^220 /);
      const closing = fx.server.close();
      let text = "";
      for (let i = 0; i < 10; i++) {
        const m = await conn.read(buf);
        if (m === null) break;
        text += new TextDecoder().decode(buf.subarray(0, m));
      }
      conn.close();
      await closing;
      assert.match(text, /^421 /);
    } finally {
      await fx.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
