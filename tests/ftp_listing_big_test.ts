/**
 * Listings in bounded memory: a 100,000-entry directory listed twice at once (LIST and MLSD) by a server whose
 * heap is capped at 64 MB, as on a Zero 2 W the whole daemon gets 192 MB. Also: control bytes in names are
 * shown as "?", and STAT of a big directory streams too.
 */
import assert from "node:assert/strict";
import { FtpControl, readAllText, startFtp } from "./helpers/ftp_fixture.ts";
import { startFtpChild } from "./helpers/ftp_child.ts";
import { SYSTEM_PYTHON } from "./helpers/peers.ts";

const HOST = "127.0.0.1";
const ENTRIES = 100_000;

/** Peak resident set (VmHWM) of a process, in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Math.round(Number(m[1]) / 1024) : -1;
}

async function listing(port: number, verb: string): Promise<string> {
  const c = await FtpControl.login(HOST, port, "alice", "secret");
  try {
    const { data } = await c.pasvConnect();
    const r = await c.cmd(`${verb} big`, 60_000);
    assert.ok([125, 150].includes(r.code), r.text);
    const text = await readAllText(data, 64 << 20);
    assert.equal((await c.reply(120_000)).code, 226);
    return text;
  } finally {
    c.close();
  }
}

Deno.test({
  name: "two concurrent listings of 100,000 entries under a 40 MB heap cap",
  async fn() {
    const child = await startFtpChild({}, { denoFlags: ["--v8-flags=--max-old-space-size=40"] });
    try {
      const dir = `${child.info.root}/big`;
      const made = await new Deno.Command(SYSTEM_PYTHON, {
        args: [
          "-c",
          "import os,sys\nd=sys.argv[1]\nos.mkdir(d)\n" +
          `for i in range(${ENTRIES}):\n  open(os.path.join(d,'file_%06d_with_a_longish_name.dat'%i),'w').close()\n`,
          dir,
        ],
      }).output();
      assert.ok(made.success);
      const [list, mlsd] = await Promise.all([
        listing(child.info.port, "LIST"),
        listing(child.info.port, "MLSD"),
      ]);
      const listLines = list.split("\r\n").filter((l) => l !== "");
      const mlsdLines = mlsd.split("\r\n").filter((l) => l !== "");
      assert.equal(listLines.length, ENTRIES);
      assert.equal(mlsdLines.length, ENTRIES);
      assert.ok(listLines.some((l) => l.endsWith(" file_099999_with_a_longish_name.dat")));
      const mem = await child.ask<{ rss: number; heapUsed: number }>("mem");
      console.log(
        `100,000-entry LIST + MLSD at once: peak RSS ${await peakRssMb(child.pid)} MB, ` +
          `heap now ${Math.round(mem.heapUsed / 1e6)} MB`,
      );
    } finally {
      await child.close();
    }
  },
});

Deno.test("names with terminal escape bytes are shown with ? in LIST, NLST, MLSD and STAT", async () => {
  const fx = await startFtp();
  try {
    await Deno.writeTextFile(`${fx.root}/evil\x1b[2J\x07\x7f\u009bname.txt`, "x");
    const c = await FtpControl.login(HOST, fx.port);
    try {
      for (const verb of ["LIST", "NLST", "MLSD"]) {
        const { data } = await c.pasvConnect();
        assert.ok([125, 150].includes((await c.cmd(verb)).code));
        const text = await readAllText(data);
        assert.equal((await c.reply()).code, 226);
        // deno-lint-ignore no-control-regex
        assert.ok(!/[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]/.test(text), `${verb} sent a control byte`);
        assert.ok(text.includes("evil?[2J???name.txt"), `${verb}: ${JSON.stringify(text)}`);
      }
      const stat = await c.cmd("STAT .");
      assert.equal(stat.code, 213);
      assert.ok(stat.text.includes("evil?[2J???name.txt"));
    } finally {
      c.close();
    }
  } finally {
    await fx.close();
  }
});
