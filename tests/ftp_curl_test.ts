/**
 * Interop: curl against the in-process FTP server (passive/active, EPSV/PASV/EPRT/PORT, CWD methods, listing,
 * resume both ways, create-dirs, quote commands, IPv6, skip-pasv-ip, UTF-8 names, 0 B to 64 MiB by SHA-256).
 */
import assert from "node:assert/strict";
import { findPeer, requirePeer, skipWithout } from "./helpers/peers.ts";
import { PASS, startFtp, USER, writeRandomFile } from "./helpers/ftp_fixture.ts";
import { run, sha256File } from "./helpers/test_util.ts";

const CURL = findPeer("curl");
const ignore = skipWithout(CURL);

async function curl(args: string[], timeoutMs = 120_000) {
  const r = await run(requirePeer("curl"), ["-sS", "--max-time", "110", "-u", `${USER}:${PASS}`, ...args], {
    timeoutMs,
  });
  return r;
}

function ok(r: { code: number; stderr: string; timedOut: boolean }, what: string): void {
  assert.equal(r.timedOut, false, `${what}: curl was killed after the safety bound`);
  assert.equal(r.code, 0, `${what}: curl exit ${r.code}: ${r.stderr}`);
}

Deno.test({
  name: "curl: upload and download 0 B to 64 MiB keep SHA-256",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const sizes = [0, 1, 1000, 65_535, 65_536, 65_537, (1 << 20) + 7, 64 << 20];
      for (const [i, size] of sizes.entries()) {
        const local = `${fx.base}/src_${size}.bin`;
        await writeRandomFile(local, size, i + 1);
        const want = await sha256File(local);
        const base = `ftp://${fx.urlHost}:${fx.port}`;
        ok(await curl(["-T", local, `${base}/f_${size}.bin`]), `upload ${size}`);
        assert.equal(await sha256File(`${fx.root}/f_${size}.bin`), want, `uploaded ${size} B differs`);
        const back = `${fx.base}/back_${size}.bin`;
        ok(await curl(["-o", back, `${base}/f_${size}.bin`]), `download ${size}`);
        assert.equal((await Deno.stat(back)).size, size);
        assert.equal(await sha256File(back), want, `downloaded ${size} B differs`);
        await Deno.remove(local);
        await Deno.remove(back);
      }
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: passive (EPSV, PASV) and active (EPRT, PORT) transfers",
  ignore,
  fn: async () => {
    const fx = await startFtp({ server: { allowActive: true } });
    try {
      const local = `${fx.base}/m.bin`;
      await writeRandomFile(local, 300_001, 9);
      const want = await sha256File(local);
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      const modes: [string, string[], RegExp][] = [
        ["epsv", ["--ftp-pasv"], /EPSV/],
        ["pasv", ["--ftp-pasv", "--disable-epsv"], /PASV/],
        ["eprt", ["-P", "-"], /EPRT \|1\|127\.0\.0\.1\|/],
        ["port", ["-P", "-", "--disable-eprt"], /PORT 127,0,0,1,/],
        ["port-ip", ["-P", "127.0.0.1", "--disable-eprt"], /PORT 127,0,0,1,/],
      ];
      for (const [name, flags, seen] of modes) {
        const up = await curl(["-v", ...flags, "-T", local, `${base}/${name}.bin`]);
        ok(up, `${name} upload`);
        assert.match(up.stderr, seen, `${name}: expected ${seen} in the dialogue`);
        assert.equal(await sha256File(`${fx.root}/${name}.bin`), want, `${name} upload differs`);
        const back = `${fx.base}/${name}.back`;
        const down = await curl(["-v", ...flags, "-o", back, `${base}/${name}.bin`]);
        ok(down, `${name} download`);
        assert.match(down.stderr, seen);
        assert.equal(await sha256File(back), want, `${name} download differs`);
      }
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: --ftp-method nocwd, singlecwd and multicwd on a nested path",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.mkdir(`${fx.root}/a/b/c`, { recursive: true });
      await writeRandomFile(`${fx.root}/a/b/c/deep.bin`, 123_457, 3);
      const want = await sha256File(`${fx.root}/a/b/c/deep.bin`);
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      for (const method of ["nocwd", "singlecwd", "multicwd"]) {
        const back = `${fx.base}/${method}.bin`;
        const r = await curl(["-v", "--ftp-method", method, "-o", back, `${base}/a/b/c/deep.bin`]);
        ok(r, `${method} download`);
        assert.equal(await sha256File(back), want, method);
        if (method === "nocwd") assert.match(r.stderr, /RETR a\/b\/c\/deep\.bin/);
        if (method === "singlecwd") assert.match(r.stderr, /CWD a\/b\/c/);
        if (method === "multicwd") assert.match(r.stderr, /CWD b/);
        ok(
          await curl(["--ftp-method", method, "-T", back, `${base}/a/b/c/${method}.up`]),
          `${method} upload`,
        );
        assert.equal(await sha256File(`${fx.root}/a/b/c/${method}.up`), want);
        const list = await curl(["--ftp-method", method, `${base}/a/b/`]);
        ok(list, `${method} list`);
        assert.match(list.stdout, /^d[-rwxsStT]{9} .* c\r?$/m);
      }
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: directory listing (LIST) and name-only listing (NLST) parse",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.mkdir(`${fx.root}/dir/sub`, { recursive: true });
      await Deno.writeTextFile(`${fx.root}/dir/one.txt`, "1");
      await writeRandomFile(`${fx.root}/dir/two.bin`, 4321, 2);
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      const list = await curl([`${base}/dir/`]);
      ok(list, "LIST");
      // Listings travel in TYPE A with CRLF; curl turns CRLF into LF on Unix, so accept both.
      const lines = list.stdout.split(/\r?\n/).filter((l) => l !== "");
      assert.equal(lines.length, 3, list.stdout);
      const re =
        /^([-dl])[-rwxsStT]{9} +\d+ +\S+ +\S+ +(\d+) ([A-Z][a-z]{2}) ([ \d]\d) ( \d{4}|\d\d:\d\d) (.+)$/;
      const parsed = new Map(lines.map((l) => {
        const m = re.exec(l);
        assert.ok(m, `not an ls -l line: ${JSON.stringify(l)}`);
        return [m[6], { type: m[1], size: Number(m[2]) }];
      }));
      assert.deepEqual(parsed.get("one.txt"), { type: "-", size: 1 });
      assert.deepEqual(parsed.get("two.bin"), { type: "-", size: 4321 });
      assert.equal(parsed.get("sub")?.type, "d");
      const nlst = await curl(["-l", `${base}/dir/`]);
      ok(nlst, "NLST");
      assert.deepEqual(nlst.stdout.split(/\r?\n/).filter((l) => l !== "").sort(), [
        "one.txt",
        "sub",
        "two.bin",
      ]);
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: -C - resumes downloads and uploads",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const full = `${fx.base}/full.bin`;
      await writeRandomFile(full, 2_000_003, 5);
      const want = await sha256File(full);
      const bytes = await Deno.readFile(full);
      const base = `ftp://${fx.urlHost}:${fx.port}`;

      // Download resume: local holds the first 700001 bytes.
      await Deno.copyFile(full, `${fx.root}/r.bin`);
      const part = `${fx.base}/part.bin`;
      await Deno.writeFile(part, bytes.subarray(0, 700_001));
      const d = await curl(["-v", "-C", "-", "-o", part, `${base}/r.bin`]);
      ok(d, "resume download");
      assert.match(d.stderr, /REST 700001/);
      assert.equal(await sha256File(part), want);

      // Upload resume: the server holds the first 900007 bytes.
      await Deno.writeFile(`${fx.root}/u.bin`, bytes.subarray(0, 900_007));
      const u = await curl(["-v", "-C", "-", "-T", full, `${base}/u.bin`]);
      ok(u, "resume upload");
      assert.match(u.stderr, /APPE u\.bin|REST 900007/);
      assert.equal(await sha256File(`${fx.root}/u.bin`), want);
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: --ftp-create-dirs and -Q quote commands",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const local = `${fx.base}/c.txt`;
      await Deno.writeTextFile(local, "created\n");
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      ok(await curl(["--ftp-create-dirs", "-T", local, `${base}/x/y/z/c.txt`]), "create dirs");
      assert.equal(await Deno.readTextFile(`${fx.root}/x/y/z/c.txt`), "created\n");
      // Without the flag a missing directory fails.
      const miss = await curl(["-T", local, `${base}/nope/c.txt`]);
      assert.notEqual(miss.code, 0);

      await Deno.writeTextFile(`${fx.root}/victim.txt`, "v");
      await Deno.writeTextFile(`${fx.root}/old.txt`, "o");
      ok(
        await curl(["-Q", "DELE victim.txt", "-Q", "RNFR old.txt", "-Q", "RNTO new.txt", `${base}/`]),
        "quote",
      );
      assert.equal(await exists(`${fx.root}/victim.txt`), false);
      assert.equal(await Deno.readTextFile(`${fx.root}/new.txt`), "o");
      // Post-transfer quote (leading "-") and a failing quote (curl exit 21).
      await Deno.writeTextFile(`${fx.root}/after.txt`, "a");
      ok(await curl(["-Q", "-DELE after.txt", `${base}/`]), "post quote");
      assert.equal(await exists(`${fx.root}/after.txt`), false);
      const bad = await curl(["-Q", "DELE does-not-exist.txt", `${base}/`]);
      assert.equal(bad.code, 21, bad.stderr);
      const dir = await curl(["-Q", "DELE x", `${base}/`]);
      assert.equal(dir.code, 21, "DELE of a directory must fail");
      assert.ok((await Deno.stat(`${fx.root}/x`)).isDirectory);
      ok(await curl(["-Q", "MKD made", "-Q", "RMD made", "-Q", "MKD kept", `${base}/`]), "MKD/RMD quote");
      assert.ok((await Deno.stat(`${fx.root}/kept`)).isDirectory);
      assert.equal(await exists(`${fx.root}/made`), false);
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: IPv6 on [::1] with EPSV and EPRT",
  ignore,
  fn: async () => {
    const fx = await startFtp({ hostname: "::1", server: { allowActive: true } });
    try {
      const local = `${fx.base}/v6.bin`;
      await writeRandomFile(local, 500_000, 6);
      const want = await sha256File(local);
      const base = `ftp://[::1]:${fx.port}`;
      const up = await curl(["-g", "--ipv6", "-v", "-T", local, `${base}/v6.bin`]);
      ok(up, "v6 upload");
      assert.match(up.stderr, /EPSV/);
      assert.equal(await sha256File(`${fx.root}/v6.bin`), want);
      const back = `${fx.base}/v6.back`;
      ok(await curl(["-g", "--ipv6", "-o", back, `${base}/v6.bin`]), "v6 download");
      assert.equal(await sha256File(back), want);
      const act = await curl(["-g", "--ipv6", "-v", "-P", "-", "-o", back, `${base}/v6.bin`]);
      ok(act, "v6 active download");
      assert.match(act.stderr, /EPRT \|2\|::1\|/);
      assert.equal(await sha256File(back), want);
      const list = await curl(["-g", "--ipv6", `${base}/`]);
      ok(list, "v6 list");
      assert.match(list.stdout, / v6\.bin\r?\n/);
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: --ftp-skip-pasv-ip ignores an advertised PASV address",
  ignore,
  fn: async () => {
    // 192.0.2.1 is TEST-NET-1: unroutable, so only --ftp-skip-pasv-ip can succeed.
    const fx = await startFtp({ server: { passive: { portMin: 0, portMax: 0, address: "192.0.2.1" } } });
    try {
      await Deno.writeTextFile(`${fx.root}/s.txt`, "skip");
      const r = await curl([
        "-v",
        "--disable-epsv",
        "--ftp-skip-pasv-ip",
        `ftp://${fx.urlHost}:${fx.port}/s.txt`,
      ]);
      ok(r, "skip pasv ip");
      assert.match(r.stderr, /227 Entering Passive Mode \(192,0,2,1,\d+,\d+\)/);
      assert.equal(r.stdout, "skip");
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: UTF-8 names pass through unchanged",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const name = "Grüße 日本 ✓.txt";
      const local = `${fx.base}/u.txt`;
      await Deno.writeTextFile(local, "utf8 content");
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      const enc = encodeURIComponent(name);
      ok(await curl(["-T", local, `${base}/${enc}`]), "utf8 upload");
      assert.equal(await Deno.readTextFile(`${fx.root}/${name}`), "utf8 content");
      const down = await curl([`${base}/${enc}`]);
      ok(down, "utf8 download");
      assert.equal(down.stdout, "utf8 content");
      const nlst = await curl(["-l", `${base}/`]);
      assert.ok(nlst.stdout.split(/\r?\n/).includes(name), nlst.stdout);
      const list = await curl([`${base}/`]);
      assert.match(list.stdout, new RegExp(` ${name.replace(/[.]/g, "\\.")}\r?\n`));
      await Deno.mkdir(`${fx.root}/Ωmega`);
      await Deno.writeTextFile(`${fx.root}/Ωmega/ü.txt`, "deep");
      const deep = await curl([`${base}/${encodeURIComponent("Ωmega")}/${encodeURIComponent("ü.txt")}`]);
      ok(deep, "utf8 dir");
      assert.equal(deep.stdout, "deep");
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "curl: ASCII mode (-B) converts line endings both ways",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const base = `ftp://${fx.urlHost}:${fx.port}`;
      // curl -B sends TYPE A and turns each LF into CRLF on the wire; the server stores LF again.
      const lf = `${fx.base}/lf.txt`;
      await Deno.writeTextFile(lf, "one\ntwo\n\nthree");
      const up = await curl(["-v", "-B", "-T", lf, `${base}/a1.txt`]);
      ok(up, "ascii upload");
      assert.match(up.stderr, /TYPE A/);
      assert.equal(await Deno.readTextFile(`${fx.root}/a1.txt`), "one\ntwo\n\nthree");
      const crlf = `${fx.base}/crlf.txt`;
      await Deno.writeTextFile(crlf, "one\r\ntwo\r\n\r\nthree");
      // A binary upload keeps CRLF; an ASCII download sends CRLF, which curl turns back into LF.
      ok(await curl(["-T", crlf, `${base}/b.txt`]), "binary upload");
      assert.equal(await Deno.readTextFile(`${fx.root}/b.txt`), "one\r\ntwo\r\n\r\nthree");
      await Deno.writeTextFile(`${fx.root}/d.txt`, "p\nq\n");
      const down = await curl(["-B", `${base}/d.txt`]);
      ok(down, "ascii download");
      assert.equal(down.stdout, "p\nq\n");
      const bin = await curl([`${base}/d.txt`]);
      assert.equal(bin.stdout, "p\nq\n");
    } finally {
      await fx.close();
    }
  },
});

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}
