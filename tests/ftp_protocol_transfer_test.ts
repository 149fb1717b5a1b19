/**
 * FTP transfer tests with Python's ftplib: integrity by SHA-256, ASCII mode, resume, active and passive modes,
 * IPv6, UTF-8 names, ABOR and STAT mid-transfer, and 100 concurrent downloads.
 */
import assert from "node:assert/strict";
import { runPython, startFtp } from "./helpers/ftp_fixture.ts";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const ignore = skipWithout(findPeer(SYSTEM_PYTHON));

Deno.test({
  name:
    "ftp transfer: RETR and STOR keep 0 B, 1 B, 1 MiB+7 and 64 MiB files intact (SHA-256), passive and active",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const out = await runPython(
        fx,
        `
sizes = [0, 1, (1 << 20) + 7, 64 << 20]
results = []
for pasv in [True, False]:
    f = connect()
    f.set_pasv(pasv)
    for n in sizes:
        if not pasv and n > (1 << 21): continue
        local = os.path.join(DIR, f"src-{n}")
        with open(local, "wb") as fh:
            left = n
            while left > 0:
                chunk = os.urandom(min(left, 1 << 20)); fh.write(chunk); left -= len(chunk)
        name = f"up-{n}-{pasv}.bin"
        with open(local, "rb") as fh:
            r = f.storbinary("STOR " + name, fh, blocksize=1 << 16)
        assert r.startswith("226"), r
        assert sha_file(os.path.join(ROOT, name)) == sha_file(local), ("stor", n, pasv)
        back = os.path.join(DIR, f"back-{n}")
        with open(back, "wb") as fh:
            r = f.retrbinary("RETR " + name, fh.write, blocksize=1 << 16)
        assert r.startswith("226"), r
        assert sha_file(back) == sha_file(local), ("retr", n, pasv)
        assert f.size(name) == n
        results.append([n, pasv])
        os.remove(local); os.remove(back); os.remove(os.path.join(ROOT, name))
    f.quit()
print(json.dumps(results))
`,
      );
      assert.equal(JSON.parse(out).length, 7);
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: TYPE A converts line endings both ways; REST resumes RETR and STOR",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.writeTextFile(`${fx.root}/unix.txt`, "one\ntwo\r\nthree\n");
      await runPython(
        fx,
        `
f = connect()
f.voidcmd("TYPE A")
conn = f.transfercmd("RETR unix.txt")
data = b""
while True:
    b = conn.recv(65536)
    if not b: break
    data += b
conn.close(); f.voidresp()
assert data == b"one\\r\\ntwo\\r\\nthree\\r\\n", data
conn = f.transfercmd("STOR dos.txt")
conn.sendall(b"x\\r\\ny\\r\\nlone\\rcr\\r\\n"); conn.close(); f.voidresp()
assert open(os.path.join(ROOT, "dos.txt"), "rb").read() == b"x\\ny\\nlone\\rcr\\n"
lines = []; f.retrlines("RETR unix.txt", lines.append); assert lines == ["one", "two", "three"], lines
expect(501, f.sendcmd, "REST 5")
# Resume: binary mode.
blob = os.urandom(300000)
f.storbinary("STOR r.bin", io.BytesIO(blob[:100000]))
r = f.storbinary("STOR r.bin", io.BytesIO(blob[100000:]), rest=100000)
assert r.startswith("226"), r
assert open(os.path.join(ROOT, "r.bin"), "rb").read() == blob
buf = io.BytesIO(); f.retrbinary("RETR r.bin", buf.write, rest=123457)
assert buf.getvalue() == blob[123457:]
buf = io.BytesIO(); f.retrbinary("RETR r.bin", buf.write, rest=len(blob))
assert buf.getvalue() == b""
expect(350, f.sendcmd, "REST 999999")
try:
    f.retrbinary("RETR r.bin", lambda b: None, rest=999999); assert False
except ftplib.error_perm as e:
    assert str(e).startswith("55"), e
f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: explicit EPSV and EPRT over IPv4, PORT to another host or a low port refused",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.writeTextFile(`${fx.root}/f.txt`, "data");
      await runPython(
        fx,
        `
f = connect()
f.voidcmd("TYPE I")
port = ftplib.parse229(f.sendcmd("EPSV"), f.sock.getpeername())[1]
c = socket.create_connection((HOST, port))
f.putcmd("RETR f.txt"); r = f.getresp(); assert r.startswith("150"), r
data = c.recv(100); c.close(); assert data == b"data", data
assert f.voidresp().startswith("226")
srv = socket.create_server((HOST, 0)); p = srv.getsockname()[1]
expect(200, f.sendcmd, f"EPRT |1|{HOST}|{p}|")
f.putcmd("RETR f.txt"); r = f.getresp(); assert r.startswith("150"), r
c, _ = srv.accept(); data = c.recv(100); c.close(); srv.close(); assert data == b"data"
assert f.voidresp().startswith("226")
expect(501, f.sendcmd, "PORT 10,0,0,9,200,1")
expect(501, f.sendcmd, "PORT 127,0,0,1,0,21")
expect(501, f.sendcmd, "EPRT |1|10.1.1.1|5000|")
expect(522, f.sendcmd, "EPRT |2|::1|5000|")
expect(501, f.sendcmd, "PORT 1,2,3")
expect(425, f.sendcmd, "RETR f.txt")
f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: IPv6 on ::1 with EPSV and EPRT",
  ignore,
  fn: async () => {
    const fx = await startFtp({ hostname: "::1" });
    try {
      const out = await runPython(
        fx,
        `
blob = os.urandom(200000)
for pasv in [True, False]:
    f = connect()
    f.set_pasv(pasv)
    f.storbinary("STOR v6.bin", io.BytesIO(blob))
    buf = io.BytesIO(); f.retrbinary("RETR v6.bin", buf.write)
    assert buf.getvalue() == blob
    expect(501, f.sendcmd, "PASV")
    f.quit()
print("ok")
`,
      );
      assert.equal(out.trim(), "ok");
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: UTF-8 file names with OPTS UTF8 ON",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await runPython(
        fx,
        `
f = connect(encoding="utf-8")
expect(200, f.sendcmd, "OPTS UTF8 ON")
name = "héllo wörld ☃ 日本.txt"
f.mkd("dír")
f.cwd("dír")
f.storbinary("STOR " + name, io.BytesIO(name.encode()))
assert f.nlst() == [name], f.nlst()
assert [n for n, _ in f.mlsd()] == [name]
buf = io.BytesIO(); f.retrbinary("RETR " + name, buf.write); assert buf.getvalue() == name.encode()
assert os.listdir(os.path.join(ROOT, "dír")) == [name]
assert f.pwd() == "/dír"
f.quit()
`,
      );
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: ABOR mid-RETR and mid-STOR keeps the control connection usable; STAT shows progress",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const big = new Uint8Array(64 << 20);
      for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
      await Deno.writeFile(`${fx.root}/big.bin`, big);
      await Deno.writeTextFile(`${fx.root}/keep.bin`, "original");
      const out = await runPython(
        fx,
        `
f = connect()
f.voidcmd("TYPE I")
# STAT during a transfer shows the progress.
conn = f.transfercmd("RETR big.bin")
got = 0
while got < (4 << 20):
    b = conn.recv(65536); assert b; got += len(b)
st = f.sendcmd("STAT")
assert st.startswith("211-") and "RETR" in st and "/big.bin" in st and "bytes transferred" in st, st
expect(200, f.sendcmd, "NOOP")
h = hashlib.sha256()
while True:
    b = conn.recv(1 << 20)
    if not b: break
    got += len(b)
conn.close()
assert f.voidresp().startswith("226")
assert got == 64 << 20, got
# ABOR during a download (ftplib sends it as urgent data).
conn = f.transfercmd("RETR big.bin")
conn.recv(65536)
r1 = f.abort()
assert r1.startswith("426"), r1
r2 = f.getresp()
assert r2.startswith("226"), r2
conn.close()
expect(200, f.sendcmd, "NOOP")
# ABOR during an upload: the original file is untouched.
conn = f.transfercmd("STOR keep.bin")
conn.sendall(os.urandom(1 << 20))
r1 = f.abort()
assert r1.startswith("426") or r1.startswith("226"), r1
conn.close()
if r1.startswith("426"):
    assert f.getresp().startswith("226")
expect(200, f.sendcmd, "NOOP")
assert open(os.path.join(ROOT, "keep.bin"), "rb").read() == b"original"
assert not [n for n in os.listdir(ROOT) if n.startswith(".outpost-upload")]
# ABOR with Telnet IP/Synch bytes in front, as other clients send it.
conn = f.transfercmd("RETR big.bin")
conn.recv(65536)
f.sock.sendall(b"\\xff\\xf4\\xff\\xf2ABOR\\r\\n")
r1 = f.getmultiline()
assert r1.startswith("426"), r1
assert f.getmultiline().startswith("226")
conn.close()
buf = io.BytesIO(); f.retrbinary("RETR keep.bin", buf.write); assert buf.getvalue() == b"original"
f.quit()
print("ok")
`,
      );
      assert.equal(out.trim(), "ok");
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp transfer: 100 concurrent ftplib clients each download a file intact",
  ignore,
  fn: async () => {
    const fx = await startFtp({
      server: {
        maxSessionsPerIp: 200,
        maxSessions: 200,
        maxUnauthenticated: 200,
        maxUnauthenticatedPerIp: 200,
      },
    });
    try {
      const data = crypto.getRandomValues(new Uint8Array(65536));
      const file = new Uint8Array(2 << 20);
      for (let i = 0; i < file.length; i += data.length) file.set(data, i);
      file[12345] ^= 0x5a;
      await Deno.writeFile(`${fx.root}/shared.bin`, file);
      const out = await runPython(
        fx,
        `
want = sha_file(os.path.join(ROOT, "shared.bin"))
ok = []; errors = []
def worker(i):
    try:
        f = connect(timeout=120)
        h = hashlib.sha256()
        f.retrbinary("RETR shared.bin", h.update)
        f.quit()
        ok.append(h.hexdigest() == want)
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"ok": sum(ok), "bad": len(ok) - sum(ok), "errors": errors[:3]}))
`,
      );
      const r = JSON.parse(out);
      assert.deepEqual(r, { ok: 100, bad: 0, errors: [] });
    } finally {
      await fx.close();
    }
  },
});
