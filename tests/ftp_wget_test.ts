/** Interop: wget -r of a small tree from the in-process FTP server, SHA-256 per file. */
import assert from "node:assert/strict";
import { findPeer, requirePeer, skipWithout } from "./helpers/peers.ts";
import { PASS, startFtp, treeHashes, USER, writeRandomFile } from "./helpers/ftp_fixture.ts";
import { run } from "./helpers/test_util.ts";

const WGET = findPeer("wget");

for (const passive of [true, false]) {
  Deno.test({
    name: `wget: -r of a small tree (${passive ? "passive" : "active"})`,
    ignore: skipWithout(WGET),
    fn: async () => {
      const fx = await startFtp({ server: { allowActive: true } });
      try {
        const tree = `${fx.root}/tree`;
        await Deno.mkdir(`${tree}/sub/inner`, { recursive: true });
        await Deno.mkdir(`${tree}/empty`);
        await writeRandomFile(`${tree}/top.bin`, 100_000, 1);
        await writeRandomFile(`${tree}/zero.bin`, 0, 2);
        await writeRandomFile(`${tree}/sub/mid.bin`, 65_536, 3);
        await writeRandomFile(`${tree}/sub/inner/leaf.bin`, 1_048_577, 4);
        await Deno.writeTextFile(`${tree}/sub/inner/note é.txt`, "hello\n");
        const dest = `${fx.base}/dest`;
        const r = await run(requirePeer("wget"), [
          "-r",
          "-nH",
          "--no-verbose",
          "--tries=1",
          "--timeout=20",
          passive ? "--passive-ftp" : "--no-passive-ftp",
          `--user=${USER}`,
          `--password=${PASS}`,
          "-P",
          dest,
          `ftp://${fx.urlHost}:${fx.port}/tree/`,
        ], { timeoutMs: 120_000, env: { HOME: fx.base } });
        assert.equal(r.timedOut, false);
        assert.equal(r.code, 0, `wget exit ${r.code}\n${r.stderr}`);
        assert.deepEqual(await treeHashes(`${dest}/tree`), await treeHashes(tree));
        assert.ok((await Deno.stat(`${dest}/tree/empty`)).isDirectory);
      } finally {
        await fx.close();
      }
    },
  });
}
