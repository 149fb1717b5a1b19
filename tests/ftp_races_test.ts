/**
 * Symlink races: a local process swaps a folder inside the root with a symlink to a folder outside it
 * (`renameat2(RENAME_EXCHANGE)` in a loop, via Python's ctypes) while a client runs RETR, STOR, APPE, MKD, DELE,
 * RNFR/RNTO and SITE CHMOD on paths through that folder. Nothing outside may be read, created, changed, moved or
 * removed. Every loop is bounded in count; the racer is killed at the end.
 */
import assert from "node:assert/strict";
import { FtpControl, readAllText, startFtp } from "./helpers/ftp_fixture.ts";
import { SYSTEM_PYTHON } from "./helpers/peers.ts";

const HOST = "127.0.0.1";
const TRIES = 60;

const RACER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
print("racing", flush=True)
end = time.time() + float(sys.argv[3])
n = 0
while time.time() < end:
    libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
    n += 1
print(n, flush=True)
`;

async function exists(p: string): Promise<boolean> {
  return await Deno.lstat(p).then(() => true, () => false);
}

Deno.test({
  name: "a folder swapped with a symlink in a loop never lets a verb act outside the root",
  async fn() {
    const fx = await startFtp();
    const outside = `${fx.base}/outside`;
    const d = `${fx.root}/d`;
    await Deno.mkdir(outside);
    await Deno.mkdir(d);
    await Deno.writeTextFile(`${outside}/secret.txt`, "SECRET");
    await Deno.chmod(`${outside}/secret.txt`, 0o600);
    await Deno.writeTextFile(`${d}/secret.txt`, "public");
    await Deno.writeTextFile(`${outside}/app.txt`, "outside");
    await Deno.writeTextFile(`${d}/app.txt`, "inside");
    for (let i = 0; i < TRIES; i++) {
      await Deno.writeTextFile(`${outside}/victim${i}`, "keep");
      await Deno.writeTextFile(`${d}/victim${i}`, "x");
      await Deno.writeTextFile(`${outside}/r${i}`, "keep");
      await Deno.writeTextFile(`${d}/r${i}`, "x");
    }
    await Deno.symlink(outside, `${fx.root}/swap`);
    const outsideBefore = new Set([...Deno.readDirSync(outside)].map((e) => e.name));
    const racer = new Deno.Command(SYSTEM_PYTHON, {
      args: ["-c", RACER, d, `${fx.root}/swap`, "120"],
      stdout: "piped",
    }).spawn();
    const c = await FtpControl.login(HOST, fx.port);
    const escapes: string[] = [];
    const done: Record<string, number> = {};
    const ok = (verb: string, yes: boolean) => done[verb] = (done[verb] ?? 0) + (yes ? 1 : 0);
    try {
      const out = racer.stdout.getReader();
      assert.match(new TextDecoder().decode((await out.read()).value), /racing/);
      out.releaseLock();
      assert.equal((await c.cmd("TYPE I")).code, 200);
      for (let i = 0; i < TRIES; i++) {
        // RETR: never the outside file's bytes.
        const r = await c.pasvConnect();
        const retr = await c.cmd("RETR d/secret.txt");
        const text = [125, 150].includes(retr.code) ? await readAllText(r.data) : (r.data.close(), "");
        if ([125, 150].includes(retr.code)) await c.reply();
        if (text.includes("SECRET")) escapes.push(`RETR read the outside file (try ${i})`);
        ok("RETR", text === "public");
        // STOR and APPE: data only ever lands inside.
        for (const verb of [`STOR d/new${i}.txt`, "APPE d/app.txt"]) {
          const s = await c.pasvConnect();
          const st = await c.cmd(verb);
          if ([125, 150].includes(st.code)) {
            await s.data.write(new TextEncoder().encode("UPLOADED"));
            s.data.close();
            ok(verb.slice(0, 4), (await c.reply()).code === 226);
          } else s.data.close();
        }
        ok("MKD", (await c.cmd(`MKD d/m${i}`)).code === 257);
        ok("DELE", (await c.cmd(`DELE d/victim${i}`)).code === 250);
        ok(
          "RNTO",
          (await c.cmd(`RNFR d/r${i}`)).code === 350 && (await c.cmd(`RNTO d/r${i}.renamed`)).code === 250,
        );
        ok("SITE CHMOD", (await c.cmd("SITE CHMOD 777 d/secret.txt")).code === 200);
      }
    } finally {
      c.close();
      racer.kill("SIGKILL");
      await racer.status;
      console.log(`succeeded of ${TRIES} tries while racing: ${JSON.stringify(done)}`);
      await racer.stdout.cancel().catch(() => {});
    }
    try {
      // Put the real folder back under its name if the racer stopped mid-swap.
      if ((await Deno.lstat(d)).isSymlink) {
        await Deno.rename(d, `${fx.root}/tmp_link`);
        await Deno.rename(`${fx.root}/swap`, d);
      }
      if ((await Deno.readTextFile(`${outside}/app.txt`)) !== "outside") {
        escapes.push("APPE changed outside/app.txt");
      }
      if (((await Deno.stat(`${outside}/secret.txt`)).mode! & 0o777) !== 0o600) {
        escapes.push("SITE CHMOD changed outside/secret.txt");
      }
      for (let i = 0; i < TRIES; i++) {
        if (!(await exists(`${outside}/victim${i}`))) escapes.push(`DELE removed outside/victim${i}`);
        if (!(await exists(`${outside}/r${i}`))) escapes.push(`RNFR/RNTO moved outside/r${i}`);
      }
      const created = [...Deno.readDirSync(outside)].map((e) => e.name).filter((n) => !outsideBefore.has(n));
      if (created.length > 0) escapes.push(`created outside: ${created.slice(0, 5).join(", ")}`);
      assert.deepEqual(escapes, []);
    } finally {
      await fx.close();
    }
  },
});
