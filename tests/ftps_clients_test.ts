/**
 * FTPS with real clients: curl (explicit --ssl-reqd and implicit ftps://), lftp mirroring a tree both ways with
 * ftp:ssl-force, and Python's ftplib.FTP_TLS with prot_p(). SHA-256 checks on every file.
 */

import assert from "node:assert/strict";
import { setLogSink } from "../src/log/logger.ts";
import { run, sha256File, startFtps, writeRandom } from "./helpers/ftps_fixture.ts";
import { findPeer, requirePeer, skipWithout, SYSTEM_PYTHON } from "./helpers/peers.ts";

const CURL = findPeer("curl");
const LFTP = findPeer("lftp");
const PYTHON = findPeer(SYSTEM_PYTHON);

// curl turns TLS 1.2 session tickets off and resumes TLS 1.2 by session id, which Deno's TLS server cannot do:
// with a forced max_version "1.2" its data connections resume nothing, so reuse is required only over 1.3, and
// by default ("auto", no setting) the server sees curl's ClientHello has no session_ticket and picks TLS 1.3.
for (const [maxVersion, reuse] of [["1.2", false], ["1.3", true], [null, true]] as const) {
  Deno.test({
    name: `FTPS curl, max_version ${maxVersion ?? "not set"}, session reuse ${reuse ? "required" : "off"}: ` +
      "explicit (--ssl-reqd) and implicit (ftps://) upload and download",
    ignore: skipWithout(CURL),
    fn: () => curlExplicitAndImplicit(maxVersion, reuse),
  });
}

Deno.test({
  name:
    "FTPS curl, max_version 1.2 with session reuse required: refused, and the log says why and what to set",
  ignore: skipWithout(CURL),
  fn: async () => {
    const curl = requirePeer("curl");
    const lines: string[] = [];
    const restore = setLogSink((l) => lines.push(l));
    const fx = await startFtps({ mode: "required", requireSessionReuse: true, maxVersion: "1.2" }, {
      dataTimeoutMs: 3000,
    });
    try {
      const src = `${fx.base}/small.bin`;
      await writeRandom(src, 1000);
      const r = await run(curl, [
        ...["-sS", "--fail", "-k", "-u", "alice:secret", "--max-time", "30", "--ssl-reqd", "-T", src],
        `ftp://127.0.0.1:${fx.port}/small.bin`,
      ]);
      assert.notEqual(r.code, 0, r.out);
      assert.ok(
        lines.some((l) => /tls\.data_refused .*did not resume.*max_version = \\?"1\.3\\?"/.test(l)),
        lines.join("\n"),
      );
      await assert.rejects(Deno.stat(`${fx.root}/small.bin`), Deno.errors.NotFound);
    } finally {
      await fx.close();
      setLogSink(restore);
    }
  },
});

async function curlExplicitAndImplicit(maxVersion: "1.2" | "1.3" | null, reuse: boolean): Promise<void> {
  const curl = requirePeer("curl");
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  const fx = await startFtps({
    mode: "required",
    requireSessionReuse: reuse,
    ...maxVersion ? { maxVersion } : {},
  });
  try {
    const src = `${fx.base}/src.bin`;
    await writeRandom(src, 3 * 1024 * 1024 + 17);
    const want = await sha256File(src);
    const base = ["-sS", "--fail", "-k", "-u", "alice:secret", "--max-time", "60"];

    let r = await run(curl, [...base, "--ssl-reqd", "-T", src, `ftp://127.0.0.1:${fx.port}/explicit.bin`]);
    assert.equal(r.code, 0, `${r.out}\n${lines.join("\n")}`);
    assert.equal(await sha256File(`${fx.root}/explicit.bin`), want);
    r = await run(curl, [
      ...base,
      "--ssl-reqd",
      "-o",
      `${fx.base}/e.out`,
      `ftp://127.0.0.1:${fx.port}/explicit.bin`,
    ]);
    assert.equal(r.code, 0, `${r.out}\n${lines.join("\n")}`);
    assert.equal(await sha256File(`${fx.base}/e.out`), want);

    r = await run(curl, [...base, "-T", src, `ftps://127.0.0.1:${fx.implicitPort}/implicit.bin`]);
    assert.equal(r.code, 0, `${r.out}\n${lines.join("\n")}`);
    assert.equal(await sha256File(`${fx.root}/implicit.bin`), want);
    r = await run(curl, [
      ...base,
      "-o",
      `${fx.base}/i.out`,
      `ftps://127.0.0.1:${fx.implicitPort}/implicit.bin`,
    ]);
    assert.equal(r.code, 0, `${r.out}\n${lines.join("\n")}`);
    assert.equal(await sha256File(`${fx.base}/i.out`), want);

    // Plain FTP is refused by a server that requires TLS.
    r = await run(curl, [...base, "-o", `${fx.base}/p.out`, `ftp://127.0.0.1:${fx.port}/explicit.bin`]);
    assert.notEqual(r.code, 0);
    // The explicit sessions negotiated the configured version (curl offers both 1.2 and 1.3); unset, curl gets
    // TLS 1.3 (its ClientHello has no TLS 1.2 session_ticket extension).
    const upgrades = lines.filter((l) => /tls\.upgrade /.test(l));
    assert.ok(upgrades.length >= 2, lines.join("\n"));
    for (const l of upgrades) {
      assert.match(l, new RegExp(`protocol=TLSv${(maxVersion ?? "1.3").replace(".", "\\.")}\\b`));
    }
  } finally {
    await fx.close();
    setLogSink(restore);
  }
}

Deno.test({
  name: "FTPS curl: 64 MiB PROT P upload and download keep every byte and the server's memory bounded",
  ignore: skipWithout(CURL),
  fn: async () => {
    // Guards the Deno 2.9 server-TLS read bugs: a paused TLSSocket lost the end of an upload (426 after the stall
    // timeout) and kept buffering what it read, and every decrypted chunk was a fresh buffer.
    const curl = requirePeer("curl");
    // curl resumes only over TLS 1.3 here (see above).
    const fx = await startFtps({ mode: "required", requireSessionReuse: true, maxVersion: "1.3" });
    const size = 64 * 1024 * 1024;
    let peak = 0;
    const sample = () => peak = Math.max(peak, Deno.memoryUsage().rss);
    let timer: ReturnType<typeof setInterval> | undefined;
    try {
      const src = `${fx.base}/big.bin`;
      await writeRandom(src, size);
      const want = await sha256File(src);
      const base = ["-sS", "--fail", "-k", "-u", "alice:secret", "--max-time", "300", "--ssl-reqd"];
      const before = Deno.memoryUsage().rss;
      timer = setInterval(sample, 20);
      let r = await run(curl, [...base, "-T", src, `ftp://127.0.0.1:${fx.port}/big.bin`]);
      assert.equal(r.code, 0, r.out);
      r = await run(curl, [...base, "-o", `${fx.base}/big.out`, `ftp://127.0.0.1:${fx.port}/big.bin`]);
      assert.equal(r.code, 0, r.out);
      sample();
      clearInterval(timer);
      timer = undefined;
      assert.equal(await sha256File(`${fx.root}/big.bin`), want, "upload");
      assert.equal(await sha256File(`${fx.base}/big.out`), want, "download");
      // A generous sanity bound, not a benchmark: the broken reader grew by more than the file size.
      const growthMiB = (peak - before) / (1024 * 1024);
      assert.ok(
        growthMiB < 100,
        `server RSS grew by ${growthMiB.toFixed(0)} MiB during 64 MiB TLS transfers`,
      );
    } finally {
      if (timer !== undefined) clearInterval(timer);
      await fx.close();
    }
  },
});

async function makeTree(root: string): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  for (let d = 0; d < 3; d++) {
    await Deno.mkdir(`${root}/dir${d}/sub`, { recursive: true });
    for (let f = 0; f < 4; f++) {
      const rel = f % 2 === 0 ? `dir${d}/file${f}.bin` : `dir${d}/sub/file${f}.bin`;
      await writeRandom(`${root}/${rel}`, (d * 4 + f) * 7919 + (f === 3 ? 300_000 : 0));
      sums.set(rel, await sha256File(`${root}/${rel}`));
    }
  }
  return sums;
}

Deno.test({
  name: "FTPS lftp with its default TLS settings: ssl-force + ssl-protect-data mirrors a tree both ways",
  ignore: skipWithout(LFTP),
  fn: async () => {
    const lftp = requirePeer("lftp");
    const fx = await startFtps({ mode: "required", requireSessionReuse: true });
    try {
      const local = `${fx.base}/local`;
      await Deno.mkdir(local);
      const sums = await makeTree(local);
      const settings =
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; " +
        // No client-side TLS version forcing: the server's default max_version "1.2" is what makes lftp work.
        "set net:max-retries 1; set net:timeout 20; set cmd:fail-exit true;";
      const open = `open -u alice,secret -p ${fx.port} 127.0.0.1;`;
      let r = await run(lftp, ["-c", `${settings} ${open} mirror -R ${local} up`]);
      assert.equal(r.code, 0, r.out);
      for (const [rel, sum] of sums) assert.equal(await sha256File(`${fx.root}/up/${rel}`), sum, rel);
      const back = `${fx.base}/back`;
      r = await run(lftp, ["-c", `${settings} ${open} mirror up ${back}`]);
      assert.equal(r.code, 0, r.out);
      for (const [rel, sum] of sums) assert.equal(await sha256File(`${back}/${rel}`), sum, rel);
    } finally {
      await fx.close();
    }
  },
});

const PY_FTPS = `
import ftplib, ssl, os, hashlib, sys
HOST = os.environ["FTP_HOST"]; PORT = int(os.environ["FTP_PORT"]); SRC = os.environ["SRC"]
REUSE = os.environ.get("REUSE") == "1"

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
cls = ReusingFTP_TLS if REUSE else ftplib.FTP_TLS
f = cls(context=ctx, timeout=30)
f.connect(HOST, PORT)
f.auth()
f.login("alice", "secret")
f.prot_p()
if os.environ.get("ACTIVE") == "1":
    f.set_pasv(False)  # PORT/EPRT: the server connects out and is the TLS server on that connection
with open(SRC, "rb") as fh:
    f.storbinary("STOR py.bin", fh)
h = hashlib.sha256()
f.retrbinary("RETR py.bin", h.update)
names = f.nlst()
assert "py.bin" in names, names
f.quit()
print(h.hexdigest())
`;

Deno.test({
  name:
    "FTPS Python ftplib.FTP_TLS prot_p(): plain FTP_TLS with reuse off, session-passing subclass with reuse on, " +
    "passive and active",
  ignore: skipWithout(PYTHON),
  fn: async () => {
    for (const [reuse, active] of [[false, false], [true, false], [false, true], [true, true]]) {
      const fx = await startFtps({ mode: "required", requireSessionReuse: reuse });
      try {
        const src = `${fx.base}/py-src.bin`;
        await writeRandom(src, 1024 * 1024 + 3);
        const want = await sha256File(src);
        const script = `${fx.base}/ftps.py`;
        await Deno.writeTextFile(script, PY_FTPS);
        const r = await run(SYSTEM_PYTHON, [script], {
          env: {
            FTP_HOST: "127.0.0.1",
            FTP_PORT: String(fx.port),
            SRC: src,
            REUSE: reuse ? "1" : "0",
            ACTIVE: active ? "1" : "0",
          },
        });
        assert.equal(r.code, 0, `reuse ${reuse}, active ${active}: ${r.out}`);
        assert.equal(r.out.trim().split("\n").at(-1), want);
        assert.equal(await sha256File(`${fx.root}/py.bin`), want);
      } finally {
        await fx.close();
      }
    }
  },
});

const PY_NO_REUSE = `
import ftplib, ssl, os, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=60)
f.connect("127.0.0.1", int(os.environ["FTP_PORT"]))
f.auth(); f.login("alice", "secret"); f.prot_p()
try:
    f.retrbinary("RETR pub/readme.txt", lambda b: None)
    print("NO REFUSAL")
except ftplib.all_errors as e:
    print("REPLY", str(e).splitlines()[0])
f.quit()
`;

Deno.test({
  name:
    "FTPS: a data connection that does not resume the TLS session is refused at once (425), and the log names the fix",
  ignore: skipWithout(PYTHON),
  fn: async () => {
    // A data timeout of 10 minutes: a reply within the script's 60 s can only be the immediate refusal.
    const fx = await startFtps({ mode: "required", requireSessionReuse: true }, { dataTimeoutMs: 600_000 });
    const logged: string[] = [];
    const prev = setLogSink((line) => logged.push(line));
    try {
      await Deno.mkdir(`${fx.root}/pub`, { recursive: true }).catch(() => {});
      await Deno.writeTextFile(`${fx.root}/pub/readme.txt`, "hello\n");
      const script = `${fx.base}/noreuse.py`;
      await Deno.writeTextFile(script, PY_NO_REUSE);
      const r = await run(SYSTEM_PYTHON, [script], { env: { FTP_PORT: String(fx.port) } });
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^REPLY 425 /m, r.out);
      const refusal = logged.find((l) => l.includes("tls.data_refused"));
      assert.ok(refusal, logged.join("\n"));
      assert.match(
        refusal,
        /require_tls_session_reuse = false/,
        "the advice names the setting for this client",
      );
    } finally {
      setLogSink(prev);
      await fx.close();
    }
  },
});
