/**
 * Interop: lftp against the in-process FTP server — a 200-file nested tree mirrored both ways (SHA-256 per
 * file), plus ls, cls, rm, mv, mkdir -p and get -c.
 */
import assert from "node:assert/strict";
import { findPeer, requirePeer, skipWithout } from "./helpers/peers.ts";
import { type FtpFixture, PASS, startFtp, treeHashes, USER, writeRandomFile } from "./helpers/ftp_fixture.ts";
import { run, sha256File } from "./helpers/test_util.ts";

const LFTP = findPeer("lftp");
const ignore = skipWithout(LFTP);
const SETTINGS = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; set xfer:clobber on; " +
  "set net:reconnect-interval-base 1; set cmd:fail-exit yes";

async function lftp(fx: FtpFixture, script: string, cwd?: string) {
  const r = await run(requirePeer("lftp"), [
    "-c",
    `${SETTINGS}; open -u ${USER},${PASS} -p ${fx.port} ${fx.urlHost.replace(/^\[|\]$/g, "")}; ${script}`,
  ], { timeoutMs: 180_000, cwd, env: { HOME: fx.base } });
  assert.equal(r.timedOut, false, `lftp was killed after the safety bound: ${script}\n${r.stderr}`);
  return r;
}

function ok(r: { code: number; stderr: string; stdout: string }, what: string): void {
  assert.equal(r.code, 0, `${what}: lftp exit ${r.code}\n${r.stderr}\n${r.stdout}`);
}

/** 200 files in a tree several levels deep, sizes 0 B .. ~1.5 MiB. */
async function makeTree(dir: string): Promise<void> {
  const dirs = [""];
  for (let a = 0; a < 4; a++) {
    dirs.push(`d${a}`);
    for (let b = 0; b < 3; b++) {
      dirs.push(`d${a}/e${b}`);
      if (b === 0) dirs.push(`d${a}/e${b}/f deep`, `d${a}/e${b}/f deep/g`);
    }
  }
  for (const d of dirs) await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  for (let i = 0; i < 200; i++) {
    const d = dirs[i % dirs.length];
    const size = i % 50 === 7 ? 1_500_000 + i : i % 10 === 0 ? 0 : (i * 7919) % 70_000;
    await writeRandomFile(
      `${d ? `${dir}/${d}` : dir}/file_${i}${i % 13 === 0 ? " spaced" : ""}.bin`,
      size,
      i + 11,
    );
  }
}

Deno.test({
  name: "lftp: mirror -R up and mirror down a 200-file nested tree, SHA-256 per file",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      const src = `${fx.base}/src`;
      await makeTree(src);
      const want = await treeHashes(src);
      assert.equal(want.size, 200);

      ok(await lftp(fx, `mirror -R ${JSON.stringify(src)} /up`), "mirror -R");
      assert.deepEqual(await treeHashes(`${fx.root}/up`), want);

      // Server-side tree mirrored down.
      await makeTree(`${fx.root}/served`);
      const dst = `${fx.base}/dst`;
      ok(await lftp(fx, `mirror /served ${JSON.stringify(dst)}`), "mirror");
      assert.deepEqual(await treeHashes(dst), await treeHashes(`${fx.root}/served`));

      // A second mirror has nothing to transfer and still succeeds.
      ok(await lftp(fx, `mirror /served ${JSON.stringify(dst)}`), "mirror again");
      assert.deepEqual(await treeHashes(dst), want);
      for await (const e of Deno.readDir(`${fx.root}/up`)) assert.ok(!e.name.startsWith(".outpost-upload-"));
    } finally {
      await fx.close();
    }
  },
});

Deno.test({
  name: "lftp: ls, cls, mkdir -p, mv, rm, rm -r, get -c",
  ignore,
  fn: async () => {
    const fx = await startFtp();
    try {
      await Deno.mkdir(`${fx.root}/docs`);
      await Deno.writeTextFile(`${fx.root}/docs/a.txt`, "alpha");
      await writeRandomFile(`${fx.root}/docs/big.bin`, 3_000_017, 4);

      const ls = await lftp(fx, "ls /docs");
      ok(ls, "ls");
      assert.match(ls.stdout, /^-[-rwx]{9} .* a\.txt$/m);
      assert.match(ls.stdout, / 3000017 .* big\.bin$/m);
      const cls = await lftp(fx, "cd /docs; cls -1");
      ok(cls, "cls");
      assert.deepEqual(cls.stdout.trim().split("\n").sort(), ["a.txt", "big.bin"]);
      const clsl = await lftp(fx, "cls -l --sort=name /docs");
      ok(clsl, "cls -l");
      assert.match(clsl.stdout, /a\.txt/);

      ok(await lftp(fx, "mkdir -p /m/n/o/p"), "mkdir -p");
      assert.ok((await Deno.stat(`${fx.root}/m/n/o/p`)).isDirectory);
      ok(await lftp(fx, "mv /docs/a.txt /m/n/renamed.txt"), "mv");
      assert.equal(await Deno.readTextFile(`${fx.root}/m/n/renamed.txt`), "alpha");
      ok(await lftp(fx, "rm /m/n/renamed.txt"), "rm");
      await assert.rejects(Deno.stat(`${fx.root}/m/n/renamed.txt`));
      const rmDir = await lftp(fx, "rm /m");
      assert.notEqual(rmDir.code, 0, "rm of a directory (DELE) must fail");
      ok(await lftp(fx, "rm -r /m"), "rm -r");
      await assert.rejects(Deno.stat(`${fx.root}/m`));

      // get -c: resume a partial download.
      const local = `${fx.base}/big.bin`;
      const bytes = await Deno.readFile(`${fx.root}/docs/big.bin`);
      await Deno.writeFile(local, bytes.subarray(0, 1_234_567));
      const get = await lftp(fx, `debug 5; get -c /docs/big.bin -o ${JSON.stringify(local)}`);
      ok(get, "get -c");
      assert.match(get.stderr, /REST 1234567/, "get -c did not resume");
      assert.equal(await sha256File(local), await sha256File(`${fx.root}/docs/big.bin`));
      // put -c: resume a partial upload.
      await Deno.writeFile(`${fx.root}/docs/up.bin`, bytes.subarray(0, 777_777));
      const put = await lftp(fx, `debug 5; put -c ${JSON.stringify(local)} -o /docs/up.bin`);
      ok(put, "put -c");
      assert.match(put.stderr, /REST 777777|APPE/, "put -c did not resume");
      assert.equal(await sha256File(`${fx.root}/docs/up.bin`), await sha256File(local));
    } finally {
      await fx.close();
    }
  },
});
