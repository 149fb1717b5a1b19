/**
 * FTP protocol tests driving the server with Python's ftplib over loopback.
 */
import assert from "node:assert/strict";
import { runPython, startFtp } from "./helpers/ftp_fixture.ts";
import { findPeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const ignore = skipWithout(findPeer(SYSTEM_PYTHON));

Deno.test({
  name: "ftp: login, PWD, SYST, MKD/CWD, STOR/RETR, LIST, MLSD, QUIT with ftplib",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const out = await runPython(
        fx,
        `
f = connect()
assert f.getwelcome().startswith("220")
assert f.pwd() == "/"
expect(215, f.sendcmd, "SYST")
f.mkd("sub")
f.cwd("sub")
assert f.pwd() == "/sub"
f.storbinary("STOR a.bin", io.BytesIO(b"hello" * 1000))
assert f.size("a.bin") == 5000
buf = io.BytesIO(); f.retrbinary("RETR a.bin", buf.write)
assert buf.getvalue() == b"hello" * 1000
lines = []; f.retrlines("LIST", lines.append)
print(json.dumps({"list": lines, "mlsd": list(f.mlsd())}))
expect(221, f.quit)
`,
      );
      const r = JSON.parse(out);
      assert.equal(r.list.length, 1);
      assert.match(r.list[0], /^-rw-r--r-- +1 \S+ +\S+ +5000 \w{3} [ \d]\d [\d:]{4,5} a\.bin$/);
      assert.equal(r.mlsd[0][0], "a.bin");
      assert.equal(r.mlsd[0][1].type, "file");
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "ftp: every control verb answers with the right reply code",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.writeTextFile(`${fx.root}/hello.txt`, "hello\n");
      const out = await runPython(
        fx,
        `
f = connect(user=None)
expect(530, f.sendcmd, "PWD")
expect(530, f.sendcmd, "LIST")
expect(503, f.sendcmd, "PASS nobody")
expect(500, f.sendcmd, "XYZZY")
expect(501, f.sendcmd, "USER")
feat = expect(211, f.sendcmd, "FEAT")
lines = feat.split("\\n")
assert lines[0] == "211-Features:" and lines[-1] == "211 End", lines
for x in ["EPRT", "EPSV", "MDTM", "MLST type*;size*;modify*;perm*;unique*;", "PASV", "REST STREAM", "SIZE", "TVFS", "UTF8"]:
    assert " " + x in lines, (x, lines)
h = expect(214, f.sendcmd, "HELP")
assert h.startswith("214-") and h.split("\\n")[-1].startswith("214 ") and "RETR" in h and "XPWD" in h
expect(214, f.sendcmd, "HELP retr")
expect(211, f.sendcmd, "STAT")
try:
    f.login("alice", "wrong"); assert False, "bad password accepted"
except ftplib.error_perm as e:
    assert str(e).startswith("530"), e
expect(230, f.login, "alice", "secret")
expect(503, f.sendcmd, "PASS again")
expect(502, f.sendcmd, "ACCT billing")
expect(257, f.sendcmd, "XPWD")
for t in ["TYPE A", "type a n", "TYPE L 8", "TYPE I"]:
    expect(200, f.sendcmd, t)
expect(504, f.sendcmd, "TYPE E")
expect(200, f.sendcmd, "MODE S"); expect(504, f.sendcmd, "MODE B")
expect(200, f.sendcmd, "STRU F"); expect(504, f.sendcmd, "STRU R")
expect(202, f.sendcmd, "ALLO 1000")
expect(200, f.sendcmd, "NOOP")
expect(215, f.sendcmd, "SYST")
expect(200, f.sendcmd, "OPTS UTF8 ON")
expect(501, f.sendcmd, "OPTS FOO")
assert expect(200, f.sendcmd, "OPTS MLST type;size;") == "200 MLST OPTS type;size;"
m = expect(250, f.sendcmd, "MLST hello.txt").split("\\n")
assert m[1] == " type=file;size=6; /hello.txt", m
expect(200, f.sendcmd, "OPTS MLST type;size;modify;perm;unique;")
m = expect(250, f.sendcmd, "MLST hello.txt").split("\\n")
assert m[0].startswith("250-") and m[-1].startswith("250 "), m
import re
assert re.fullmatch(r" type=file;size=6;modify=\\d{14};perm=[adfrwcelmp]+;unique=[0-9a-f]+g?[0-9a-f]*; /hello\\.txt", m[1]), m
assert expect(257, f.sendcmd, "XMKD d1") == '257 "/d1" directory created.'
assert expect(257, f.sendcmd, 'MKD q"x') == '257 "/q""x" directory created.'
expect(250, f.sendcmd, "XCWD d1")
assert f.pwd() == "/d1"
expect(250, f.sendcmd, "CDUP")
expect(250, f.sendcmd, "CWD d1"); expect(250, f.sendcmd, "CWD /")
expect(550, f.sendcmd, "CWD hello.txt")
expect(550, f.sendcmd, "CWD nowhere")
expect(250, f.sendcmd, "XRMD d1")
expect(250, f.sendcmd, 'RMD q"x')
expect(550, f.sendcmd, "RMD nowhere")
expect(226, f.storbinary, "STOR a.txt", io.BytesIO(b"abc"))
expect(226, f.storbinary, "APPE a.txt", io.BytesIO(b"def"))
assert open(os.path.join(ROOT, "a.txt"), "rb").read() == b"abcdef"
assert expect(213, f.sendcmd, "SIZE a.txt") == "213 6"
assert re.fullmatch(r"213 \\d{14}", expect(213, f.sendcmd, "MDTM a.txt"))
expect(550, f.sendcmd, "SIZE nowhere")
f.mkd("dir")
expect(550, f.sendcmd, "DELE dir")
expect(550, f.sendcmd, "SIZE dir")
expect(550, f.sendcmd, "RNFR missing.txt")
expect(503, f.sendcmd, "RNTO b.txt")
expect(350, f.sendcmd, "RNFR a.txt"); expect(250, f.sendcmd, "RNTO b.txt")
assert os.path.exists(os.path.join(ROOT, "b.txt")) and not os.path.exists(os.path.join(ROOT, "a.txt"))
h = expect(214, f.sendcmd, "SITE HELP"); assert "CHMOD" in h
expect(200, f.sendcmd, "SITE CHMOD 600 b.txt")
assert os.stat(os.path.join(ROOT, "b.txt")).st_mode & 0o777 == 0o600
expect(501, f.sendcmd, "SITE CHMOD 999 b.txt")
expect(500, f.sendcmd, "SITE FOO")
expect(501, f.sendcmd, "REST abc")
expect(501, f.sendcmd, "REST -5")
expect(350, f.sendcmd, "REST 2")
buf = io.BytesIO(); f.retrbinary("RETR b.txt", buf.write, rest=2); assert buf.getvalue() == b"cdef"
st = expect(211, f.sendcmd, "STAT").split("\\n")
assert st[0].startswith("211-") and st[-1] == "211 End of status." and any("alice" in l for l in st), st
st = expect(213, f.sendcmd, "STAT /").split("\\n")
assert st[0].startswith("213-") and st[-1].startswith("213 ") and any(l.endswith(" b.txt") for l in st), st
assert all(l.startswith(" ") for l in st[1:-1]), st
for arg in ["-la", "-a", "-l", "-la /"]:
    lines = []; f.retrlines("LIST " + arg, lines.append)
    assert any(l.endswith(" b.txt") and l.startswith("-rw-------") for l in lines), (arg, lines)
names = f.nlst("-la"); assert sorted(names) == ["b.txt", "dir", "hello.txt"], names
assert sorted(f.nlst()) == ["b.txt", "dir", "hello.txt"]
facts = dict(f.mlsd())
assert facts["dir"]["type"] == "dir" and facts["b.txt"]["size"] == "6", facts
# STOU: 150 FILE: <name>, then 226.
conn, _ = f.ntransfercmd("STOU")
r150 = f.lastresp
conn.sendall(b"unique"); conn.close()
r = f.voidresp()
assert r.startswith("226"), r
print(json.dumps({"stou": r}))
expect(226, f.storbinary, "STOU", io.BytesIO(b"unique2"))
# EPSV ALL: PASV/PORT/EPRT refused afterwards; EPSV still works.
expect(200, f.sendcmd, "EPSV ALL")
expect(501, f.sendcmd, "PASV")
expect(501, f.sendcmd, "PORT 127,0,0,1,200,1")
expect(501, f.sendcmd, "EPRT |1|127.0.0.1|51201|")
expect(229, f.sendcmd, "EPSV")
expect(225, f.sendcmd, "ABOR")
expect(226, f.sendcmd, "ABOR")
expect(220, f.sendcmd, "REIN")
expect(530, f.sendcmd, "PWD")
f.login("reader", "secret")
expect(550, f.sendcmd, "DELE b.txt")
expect(550, f.sendcmd, "MKD x")
expect(550, f.sendcmd, "SITE CHMOD 644 b.txt")
expect(550, f.storbinary, "STOR c.txt", io.BytesIO(b"no"))
expect(550, f.sendcmd, "RNFR b.txt")
assert f.pwd() == "/"
expect(221, f.quit)
no_host_paths()
`,
      );
      const r = JSON.parse(out);
      assert.match(r.stou, /^226 /);
      const names = [];
      for await (const e of Deno.readDir(fx.root)) names.push(e.name);
      const contents = await Promise.all(
        names.filter((n) => n !== "dir").map((n) => Deno.readTextFile(`${fx.root}/${n}`)),
      );
      assert.ok(contents.includes("unique") && contents.includes("unique2"), names.join(","));
    } finally {
      await fx.close();
    }
  },
});
