/** The `outpost` command as users run it: help, unknown commands, check-config and passwd exit codes. */
import assert from "node:assert/strict";
import { verifyPassword } from "../src/config/password.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function outpost(args: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await child.output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

Deno.test("cli: --help lists every command; an unknown command is a usage error", async () => {
  const help = await outpost(["--help"]);
  assert.equal(help.code, 0);
  for (
    const cmd of ["serve", "check-config", "ftp", "passwd", "cert", "sensors", "sendmail", "send", "outbox"]
  ) {
    assert.match(help.out, new RegExp(`^  ${cmd} `, "m"), cmd);
  }
  const bad = await outpost(["frobnicate"]);
  assert.equal(bad.code, 64);
  assert.match(bad.err, /unknown command "frobnicate"/);
});

Deno.test("cli: check-config prints the resolved config, or every problem with exit 78", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/good.toml`, '[device]\nname = "pi-freezer"\n[ftp]\nport = 2121\n');
    const good = await outpost(["check-config", "--json", `${dir}/good.toml`]);
    assert.equal(good.code, 0, good.err);
    assert.equal(JSON.parse(good.out).device.name, "pi-freezer");
    const text = await outpost(["check-config", `${dir}/good.toml`]);
    assert.match(text.out, /is valid\.\n\nDevice {2}pi-freezer, /);
    await Deno.writeTextFile(`${dir}/bad.toml`, '[ftp]\nport = "twenty-one"\nidle = 3\n');
    const bad = await outpost(["check-config", `${dir}/bad.toml`]);
    assert.equal(bad.code, 78);
    assert.match(bad.err, /ftp\.port: must be a whole number/);
    assert.match(bad.err, /ftp\.idle: unknown key/);
    const missing = await outpost(["check-config", `${dir}/nope.toml`]);
    assert.equal(missing.code, 78);
    assert.match(missing.err, /cannot be read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: passwd --stdin prints a hash that verifies, never the password", async () => {
  const r = await outpost(["passwd", "--stdin"], "correct horse\n");
  assert.equal(r.code, 0, r.err);
  const hash = r.out.trim();
  assert.match(hash, /^pbkdf2-sha256\$\d+\$/);
  assert.ok(!r.out.includes("correct horse"));
  assert.equal(await verifyPassword("correct horse", hash), true);
  const empty = await outpost(["passwd", "--stdin"], "");
  assert.equal(empty.code, 65);
});
