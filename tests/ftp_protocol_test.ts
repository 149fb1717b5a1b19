/**
 * FTP protocol tests driving the server with Python's ftplib over loopback.
 */
import assert from "node:assert/strict";
import { runPython, startFtp } from "./helpers/ftp_session_fixture.ts";
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
